/** `lazypull rpull` without a daemon: the pull runs in this process, talking to containerd and the registry itself. */
import { ContainerdConnection } from '../../containerd/connection.js';
import { remotePull, type PullResult } from '../../containerd/pull.js';
import { RegistryClient } from '../../remote/index.js';
import type { PullDisplay, RpullOptions } from './rpull.js';

export async function pullInProcess(reference: string, options: RpullOptions, events: PullDisplay, signal: AbortSignal): Promise<PullResult> {
  // Connecting to containerd and fetching the image's documents overlap (remotePull awaits both).
  const connection = ContainerdConnection.open({ address: options.address, namespace: options.namespace });
  connection.catch(() => undefined);
  const registry = new RegistryClient({ hostsDir: options.hostsDir, ...(options.plainHttp ? { plainHttp: true } : {}) });
  try {
    return await remotePull({ reference, snapshotter: options.snapshotter, registry, connection, events, signal, ...(options.platform ? { platform: options.platform } : {}) });
  } finally {
    (await connection.catch(() => undefined))?.close();
    await registry.close();
  }
}
