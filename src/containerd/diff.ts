/** containerd.services.diff.v1: containerd unpacks a layer blob from its content store onto snapshot mounts. */
import type { Descriptor } from '../remote/index.js';
import type { ContainerdConnection } from './connection.js';
import type { Mount } from './snapshots.js';

export class DiffClient {
  constructor(private readonly connection: ContainerdConnection) {}

  /** Applies the layer (decompressing it) and returns the digest of the uncompressed tar: the diffID. */
  async apply(layer: Descriptor, mounts: Mount[]): Promise<string> {
    const diff = { media_type: layer.mediaType, digest: layer.digest, size: layer.size, annotations: layer.annotations ?? {} };
    // Unpacking a large layer takes as long as the disk needs; the deadline only catches a hung daemon.
    const response = await this.connection.unary<{ applied?: { digest: string } }>('diff', 'Apply', { diff, mounts, payloads: {} }, `apply layer ${layer.digest}`, 60 * 60_000);
    if (!response.applied?.digest) throw new Error(`apply layer ${layer.digest}: containerd returned no diff digest`);
    return response.applied.digest;
  }
}
