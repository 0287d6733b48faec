import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import type { LayerProgress } from './background-fetch.js';
import type { ChunkDecoder } from './chunk-decoder.js';
import { FetchActivity } from './fetch-activity.js';
import type { FuseObserver } from './fuse-observer.js';
import { readMounts } from './mountinfo.js';
import { WorkerDecoder } from './worker-decoder.js';
import { FUSE_SUBTYPE, LayerFetch, LayerMount, type LayerFetchOptions, type LayerMountOptions } from './layer-mount.js';

const execFileAsync = promisify(execFile);

/**
 * Every layer mount of the daemon: mount, unmount, progress for status and metrics, cleanup of mounts
 * a crashed daemon left behind (readers of those get ENOTCONN until they are unmounted), and unmount of
 * everything on shutdown.
 */
export class MountManager {
  private readonly mounts = new Map<string, LayerMount>();
  /** Shared by every mount: one small pool for the whole daemon. */
  private readonly decoder: ChunkDecoder;
  /** Given to every mount (a mount's own `observer` option wins). */
  private readonly observer: FuseObserver | undefined;
  /** One registry link for all layers: background fetching of any layer waits for every layer's urgent work. */
  private readonly activity = new FetchActivity();
  /** Fetching started ahead of a mount that has not happened yet. */
  private readonly unmounted = new Set<LayerFetch>();

  constructor(options: { decoder?: ChunkDecoder; observer?: FuseObserver } = {}) {
    this.decoder = options.decoder ?? new WorkerDecoder();
    this.observer = options.observer;
  }

  /**
   * Starts a layer's fetching (its prefetch first) before it is mounted: pass it to `mount` as
   * `started`, or `stop` it. Shutdown stops those never mounted.
   */
  startFetch(options: LayerFetchOptions): LayerFetch {
    const started = LayerFetch.start({ decoder: this.decoder, activity: this.activity, ...options });
    this.unmounted.add(started);
    return started;
  }

  async mount(options: LayerMountOptions): Promise<LayerMount> {
    const mountpoint = resolve(options.mountpoint);
    if (options.started) this.unmounted.delete(options.started);
    if (this.mounts.has(mountpoint)) {
      options.started?.stop();
      throw new Error(`${mountpoint} is already mounted by lazypull`);
    }
    const mount = await LayerMount.mount({ decoder: this.decoder, observer: this.observer, activity: this.activity, ...options, mountpoint });
    this.mounts.set(mountpoint, mount);
    return mount;
  }

  get(mountpoint: string): LayerMount | undefined {
    return this.mounts.get(resolve(mountpoint));
  }

  list(): LayerMount[] {
    return [...this.mounts.values()];
  }

  progress(): Map<string, LayerProgress> {
    return new Map([...this.mounts].map(([path, mount]) => [path, mount.progress()]));
  }

  async unmount(mountpoint: string): Promise<void> {
    const path = resolve(mountpoint);
    const mount = this.mounts.get(path);
    if (!mount) throw new Error(`${path} is not mounted by lazypull`);
    await mount.unmount();
    this.mounts.delete(path);
  }

  /** Unmounts everything and stops the decode workers; tries each mount even when one fails, then reports the failures. */
  async shutdown(): Promise<void> {
    for (const started of this.unmounted) started.stop();
    this.unmounted.clear();
    const results = await Promise.allSettled([...this.mounts.keys()].map((path) => this.unmount(path)));
    await this.decoder.close?.();
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failures.length > 0) throw new AggregateError(failures.map((f) => f.reason as unknown), `${failures.length} mount(s) failed to unmount`);
  }
}

/** lazypull FUSE mounts at or under `root` that this process does not serve (left by a crash). */
export async function findLazypullMounts(root: string): Promise<string[]> {
  const base = resolve(root);
  return (await readMounts())
    .filter(({ mountpoint, fsType }) => fsType === `fuse.${FUSE_SUBTYPE}` && (mountpoint === base || mountpoint.startsWith(`${base}/`)))
    .map(({ mountpoint }) => mountpoint);
}

/**
 * Unmounts lazypull mounts under `root` that no MountManager of this process serves: run at daemon
 * start, after a crash. `fusermount -u` first; a busy mount is detached with `umount -l`.
 */
export async function cleanStaleMounts(root: string, manager?: MountManager): Promise<string[]> {
  const stale = (await findLazypullMounts(root)).filter((path) => manager?.get(path) === undefined);
  // Deepest first: a mount inside another must go before its parent.
  stale.sort((a, b) => b.length - a.length);
  for (const path of stale) {
    try {
      await execFileAsync('fusermount', ['-u', path]);
    } catch {
      await execFileAsync('umount', ['-l', path]);
    }
  }
  return stale;
}
