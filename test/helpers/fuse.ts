/**
 * FUSE test helpers that always clean up: every mount a test makes is recorded, and `unmountAll` (call
 * it from afterAll / finally) unmounts each by its path, falling back to `fusermount -u` and then
 * `umount -l` for a mount whose server is gone. Mountpoints are made under the caller's temp dir.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { LayerMount } from '../../src/fs/layer-mount.js';
import { isMountpoint } from '../../src/fs/mountinfo.js';

const execFileAsync = promisify(execFile);

export class MountTracker {
  private readonly mounts: LayerMount[] = [];
  private readonly paths = new Set<string>();

  /** Records a lazypull mount so it is unmounted at the end. */
  track<T extends LayerMount>(mount: T): T {
    this.mounts.push(mount);
    this.paths.add(mount.mountpoint);
    return mount;
  }

  /** Records any other mount (overlayfs) made at `path`. */
  trackPath(path: string): void {
    this.paths.add(path);
  }

  /** Unmounts everything recorded, overlays (later mounts) first; never throws. */
  async unmountAll(): Promise<void> {
    for (const path of [...this.paths].reverse()) {
      if (this.mounts.some((m) => m.mountpoint === path)) continue;
      await forceUnmount(path);
    }
    for (const mount of this.mounts.splice(0).reverse()) {
      await mount.unmount().catch(() => undefined);
      await forceUnmount(mount.mountpoint);
    }
    this.paths.clear();
  }
}

/** True when `path` is a mountpoint (per /proc/self/mountinfo). */
export const isMounted = isMountpoint;

/** Unmounts `path` if it is still mounted: umount, then fusermount -u, then a lazy umount. */
export async function forceUnmount(path: string): Promise<void> {
  for (const [cmd, args] of [
    ['umount', [path]],
    ['fusermount', ['-u', path]],
    ['umount', ['-l', path]],
  ] as const) {
    if (!(await isMounted(path))) return;
    await execFileAsync(cmd, [...args]).catch(() => undefined);
  }
}
