/**
 * The profiled container's root: each layer mounted with lazypull's FUSE layer (recording into an
 * AccessLog), stacked with overlayfs under an upper dir in the work dir. `close` unmounts everything
 * (overlay first, then the layers, then any lazypull mount still under the work dir) even when one
 * step fails, and reports what it could not undo.
 */
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MemoryOnlyChunkCache } from '../../src/cache/index.js';
import { inlineDecoder } from '../../src/fs/chunk-decoder.js';
import { cleanStaleMounts, MountManager } from '../../src/fs/mount-manager.js';
import type { RandomAccessSource } from '../../src/io/random-access.js';
import type { LayerIndex } from '../../src/layer/layer-index.js';
import type { AccessLog } from './access-log.js';

const execFileAsync = promisify(execFile);

export interface MountableLayer {
  index: LayerIndex;
  source: RandomAccessSource;
  /** Names the mount (`lazypull:<hex>` in mountinfo). */
  digest: string;
}

export class ContainerRootfs {
  private overlayMounted = false;

  private constructor(
    readonly path: string,
    private readonly workDir: string,
    private readonly mounts: MountManager,
  ) {}

  /** Mounts `layers` (bottom first) under `workDir` and the overlay at `workDir/rootfs`; on failure nothing stays mounted. */
  static async mount(workDir: string, layers: MountableLayer[], log: AccessLog): Promise<ContainerRootfs> {
    const mounts = new MountManager({ decoder: inlineDecoder });
    const rootfs = new ContainerRootfs(join(workDir, 'rootfs'), workDir, mounts);
    try {
      // The workload's reads are the only fetches wanted: no prefetch, no background pass. One cache
      // for all layers; chunks are local-file reads, so eviction costs little.
      const cache = new MemoryOnlyChunkCache({ maxMemoryBytes: 64 << 20 });
      const lowers: string[] = [];
      for (const [i, layer] of layers.entries()) {
        const mountpoint = join(workDir, 'layers', String(i));
        await mkdir(mountpoint, { recursive: true });
        await mounts.mount({ mountpoint, index: layer.index, source: layer.source, cache, layerDigest: layer.digest, fetch: { prefetch: false, background: false }, recorder: log.recorder(i) });
        lowers.unshift(mountpoint); // overlayfs lists the topmost lower first
      }
      for (const dir of ['upper', 'overlay-work', 'rootfs']) await mkdir(join(workDir, dir), { recursive: true });
      await execFileAsync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lowers.join(':')},upperdir=${join(workDir, 'upper')},workdir=${join(workDir, 'overlay-work')}`, rootfs.path]).catch((err: Error & { stderr?: string }) => {
        throw new Error(`cannot stack the layers with overlayfs: ${(err.stderr ?? err.message).trim()}`);
      });
      rootfs.overlayMounted = true;
      return rootfs;
    } catch (err) {
      await rootfs.close().catch(() => undefined);
      throw err;
    }
  }

  async close(): Promise<void> {
    const failures: unknown[] = [];
    if (this.overlayMounted) {
      await execFileAsync('umount', [this.path]).catch(() => execFileAsync('umount', ['-l', this.path])).then(
        () => (this.overlayMounted = false),
        (err: unknown) => failures.push(err),
      );
    }
    await this.mounts.shutdown().catch((err: unknown) => failures.push(err));
    await cleanStaleMounts(this.workDir).catch((err: unknown) => failures.push(err));
    if (failures.length > 0) throw new AggregateError(failures, `could not unmount everything under ${this.workDir}`);
  }
}
