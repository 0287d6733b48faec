/**
 * What the end-to-end suites share: the layers of their sample images, pushing them so containerd pulls
 * through the byte-counting relay, and asking the daemon for its status the way a user does
 * (`lazypull status --json`).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { DaemonStatus, LayerStatus } from '../../../src/daemon/status.js';
import type { TestRegistry } from '../../helpers/registry.js';
import { coreutilsFiles, incompressible, pushRunnableImage, type RunnableImage, type RunnableLayer } from '../../helpers/runnable-image.js';
import type { TcpRelay } from '../fs/proxies.js';
import { REPO } from '../snapshot/lazypull-daemon.js';

const execFileAsync = promisify(execFile);

/** Bytes no workload reads: what lazy pulling must never fetch. */
export const UNREAD_BYTES = 24 << 20;

/** /bin/echo, /bin/cat, their libraries and UNREAD_BYTES of incompressible data. */
export function coreutilsLayer(format: RunnableLayer['format']): RunnableLayer {
  return { format, files: { ...coreutilsFiles(), '/data/unread.bin': incompressible(UNREAD_BYTES) } };
}

export function greetingLayer(text: string, format: RunnableLayer['format'] = 'estargz'): RunnableLayer {
  return { format, files: { '/etc/greeting': Buffer.from(`${text}\n`) } };
}

export type RelayedImage = RunnableImage & { viaRelay: string };

/** Pushes to the registry; `viaRelay` is the reference that pulls through the relay. */
export async function pushViaRelay(registry: TestRegistry, relay: TcpRelay, repo: string, layers: RunnableLayer[]): Promise<RelayedImage> {
  const image = await pushRunnableImage(registry, repo, 'v1', layers);
  return { ...image, viaRelay: image.ref.replace(registry.host, relay.host) };
}

export async function daemonStatus(socket: string): Promise<DaemonStatus> {
  const { stdout } = await execFileAsync(process.execPath, [`${REPO}/bin/lazypull.js`, 'status', '--json', '--address', socket]);
  return JSON.parse(stdout) as DaemonStatus;
}

/** The status of each layer of `image`, bottom first; a layer status does not list is an error. */
export function layersOf(status: DaemonStatus, image: { layers: string[] }): LayerStatus[] {
  return image.layers.map((digest) => {
    const found = status.layers.find((l) => l.digest === digest);
    if (!found) throw new Error(`status lists no layer ${digest}: ${JSON.stringify(status.layers)}`);
    return found;
  });
}
