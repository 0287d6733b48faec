/**
 * containerd.services.snapshots.v1 as containerd serves it (not lazypull's own socket): containerd keeps
 * its metadata, leases and garbage collection in the loop and forwards to the snapshotter by name.
 */
import * as grpc from '@grpc/grpc-js';
import { ContainerdError, type ContainerdConnection } from './connection.js';

export interface Mount {
  type: string;
  source: string;
  target: string;
  options: string[];
}

export interface SnapshotInfo {
  name: string;
  parent: string;
  kind: string;
  labels: Record<string, string>;
}

/** containerd has no snapshotter of that name (it answers NotFound "snapshotter not loaded"). */
export class UnknownSnapshotterError extends Error {
  override name = 'UnknownSnapshotterError';
}

export class SnapshotsClient {
  constructor(
    private readonly connection: ContainerdConnection,
    readonly snapshotter: string,
  ) {}

  async stat(key: string): Promise<SnapshotInfo> {
    const response = await this.call<{ info: SnapshotInfo }>('Stat', { key }, `stat snapshot ${key}`);
    return response.info;
  }

  async prepare(key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    // A remote snapshotter fetches and verifies the layer's TOC inside Prepare: allow it the time a slow registry needs.
    const response = await this.call<{ mounts: Mount[] }>('Prepare', { key, parent, labels }, `prepare snapshot ${key}`, 10 * 60_000);
    return response.mounts;
  }

  async commit(name: string, key: string, labels: Record<string, string>): Promise<void> {
    await this.call('Commit', { name, key, labels }, `commit snapshot ${key} as ${name}`);
  }

  async remove(key: string): Promise<void> {
    await this.call('Remove', { key }, `remove snapshot ${key}`);
  }

  private async call<Response>(method: string, request: object, what: string, timeoutMs?: number): Promise<Response> {
    try {
      return await this.connection.unary<Response>('snapshots', method, { snapshotter: this.snapshotter, ...request }, `${what} (snapshotter ${this.snapshotter})`, timeoutMs);
    } catch (err) {
      throw this.explain(err);
    }
  }

  /** The two failures users cause by configuration, said in their terms. */
  private explain(err: unknown): unknown {
    if (!(err instanceof ContainerdError)) return err;
    // containerd 1.6 answers InvalidArgument here, later versions NotFound: the message is what is stable.
    if (/snapshotter not loaded/.test(err.details)) {
      return new UnknownSnapshotterError(`containerd has no snapshotter named ${JSON.stringify(this.snapshotter)} (for lazypull, add its [proxy_plugins.${this.snapshotter}] table to containerd's config and restart containerd)`);
    }
    if (err.code === grpc.status.UNAVAILABLE) {
      return new ContainerdError(`${err.message} (is the snapshotter's daemon, e.g. \`lazypull serve\`, running on the socket containerd's proxy_plugins entry names?)`, err.code, err.details);
    }
    return err;
  }
}
