/**
 * Shared setup of the FUSE integration tests: convert a tar, push the blob to the harness registry,
 * open it through the registry client, and mount it with a tracked LayerMount.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MemoryOnlyChunkCache, type ChunkCache } from '../../../src/cache/index.js';
import { openLayer } from '../../../src/estargz/open.js';
import { convertLayerFile, type ConvertOptions, type ConvertResult } from '../../../src/estargz/writer.js';
import { LayerMount, type LayerMountOptions } from '../../../src/fs/layer-mount.js';
import type { LayerIndex } from '../../../src/layer/layer-index.js';
import { RegistryClient, parseReference, type RegistryBlobSource } from '../../../src/remote/index.js';
import type { Digest } from '../../../src/util/digest.js';
import type { MountTracker } from '../../helpers/fuse.js';
import type { ExpectedEntry } from '../../helpers/fixture-tree.js';
import type { TestRegistry } from '../../helpers/registry.js';

export interface PushedLayer {
  blobPath: string;
  written: ConvertResult;
}

/** Converts `tarPath` into `outPath` and pushes the blob. */
export async function convertAndPush(registry: TestRegistry, tarPath: string, outPath: string, options: ConvertOptions): Promise<PushedLayer> {
  const written = await convertLayerFile(tarPath, outPath, options);
  await registry.pushBlob('fs/layers', await readFile(outPath));
  return { blobPath: outPath, written };
}

/** The pushed blob through the registry client at `host` (the registry or a proxy in front of it). */
export async function openRemoteLayer(client: RegistryClient, host: string, layer: PushedLayer): Promise<{ source: RegistryBlobSource; index: LayerIndex }> {
  const source = await client.openBlob(parseReference(`${host}/fs/layers:latest`), { digest: layer.written.digest, size: layer.written.size });
  const index = await openLayer(source, { expectedTocDigest: layer.written.tocDigest });
  return { source, index };
}

export function testClient(): RegistryClient {
  // Few retries, short timeouts: fault tests must see failures within their deadlines.
  return new RegistryClient({ dockerConfig: false, hostsDir: '/nonexistent', retry: { maxAttempts: 2 }, requestTimeoutMs: 5_000 });
}

export async function mountTracked(
  tracker: MountTracker,
  dir: string,
  name: string,
  options: Omit<LayerMountOptions, 'mountpoint' | 'cache'> & { cache?: ChunkCache },
): Promise<LayerMount> {
  const mountpoint = join(dir, name);
  await mkdir(mountpoint, { recursive: true });
  const mount = await LayerMount.mount({ cache: new MemoryOnlyChunkCache(), ...options, mountpoint });
  return tracker.track(mount);
}

export function layerDigest(layer: PushedLayer): Digest {
  return layer.written.digest;
}

/**
 * What the fixture oracle must look like through the FUSE mount: whiteouts `.wh.X` as X, a 0/0 char
 * device with no permission bits; opaque markers gone and their directory carrying
 * trusted.overlay.opaque=y; times at fuse-native's millisecond resolution, pre-1970 times clamped to 0.
 */
export function mountedOracle(expected: ReadonlyMap<string, ExpectedEntry>): Map<string, ExpectedEntry> {
  const out = new Map<string, ExpectedEntry>();
  for (const [path, entry] of expected) {
    if (entry.special === 'opaque-marker') continue;
    const base = { ...entry, opaque: false, special: undefined, ...millisecondTime(entry) };
    if (entry.special === 'whiteout') {
      const slash = path.lastIndexOf('/');
      const hidden = `${path.slice(0, slash + 1)}${path.slice(slash + 1 + '.wh.'.length)}`;
      out.set(hidden, { ...base, path: hidden, type: 'char', mode: 0, size: 0, sha256: undefined, xattrs: new Map(), linkCount: 1, devMajor: 0, devMinor: 0 });
      continue;
    }
    const xattrs = entry.opaque ? new Map([...entry.xattrs, ['trusted.overlay.opaque', Buffer.from('y')]]) : entry.xattrs;
    out.set(path, { ...base, xattrs });
  }
  return out;
}

function millisecondTime(entry: ExpectedEntry): { mtimeSec: number; mtimeNsec: number } {
  if (entry.mtimeSec < 0) return { mtimeSec: 0, mtimeNsec: 0 };
  return { mtimeSec: entry.mtimeSec, mtimeNsec: Math.floor(entry.mtimeNsec / 1e6) * 1e6 };
}
