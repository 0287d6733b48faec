/**
 * The FUSE observer on real mounts: a LayerMount reports lookups (getattr), reads and the ENOENT of a
 * missing path with their durations; a MountManager hands its observer to every mount, and the daemon's
 * metrics count what it reports.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryOnlyChunkCache } from '../../../src/cache/index.js';
import { openLayer } from '../../../src/estargz/open.js';
import { convertLayerFile } from '../../../src/estargz/writer.js';
import type { FuseOperationName } from '../../../src/fs/fuse-observer.js';
import { inlineDecoder } from '../../../src/fs/chunk-decoder.js';
import { MountManager } from '../../../src/fs/mount-manager.js';
import { FileSource } from '../../../src/io/random-access.js';
import type { LayerIndex } from '../../../src/layer/layer-index.js';
import { DaemonMetrics, serveMetrics } from '../../../src/metrics/index.js';
import { MountTracker } from '../../helpers/fuse.js';
import { makeTar, pseudoRandom } from '../../helpers/fixture-tree.js';
import { scrape } from '../../helpers/prometheus.js';
import { mountTracked } from './harness.js';

const execFileAsync = promisify(execFile);

let work: string;
let index: LayerIndex;
let source: FileSource;
let digest: string;
const tracker = new MountTracker();

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'lazypull-fs-observer-'));
  const tree = join(work, 'tree');
  await mkdir(join(tree, 'app'), { recursive: true });
  await writeFile(join(tree, 'app/data.bin'), pseudoRandom(3, 300 * 1024));
  await makeTar(tree, ['app', 'app/data.bin'], join(work, 'layer.tar'), false);
  const written = await convertLayerFile(join(work, 'layer.tar'), join(work, 'layer.blob'), { chunkSize: 64 * 1024 });
  digest = written.digest;
  source = await FileSource.open(join(work, 'layer.blob'));
  index = await openLayer(source, { expectedTocDigest: written.tocDigest });
});

afterAll(async () => {
  await tracker.unmountAll();
  await source?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Lists, reads and looks up a missing path from other processes, as containers would. */
async function exercise(mountpoint: string): Promise<void> {
  await execFileAsync('cat', [join(mountpoint, 'app/data.bin')], { encoding: 'buffer', maxBuffer: 1 << 20 });
  await expect(execFileAsync('stat', [join(mountpoint, 'app/missing')])).rejects.toThrow(/No such file/);
}

describe('FUSE observer', () => {
  it('a LayerMount reports lookups, reads and an ENOENT lookup with their durations', async () => {
    const seen: { op: FuseOperationName; ms: number; errno: number | undefined }[] = [];
    const mount = await mountTracked(tracker, work, 'direct', {
      index,
      source,
      layerDigest: digest,
      decoder: inlineDecoder,
      fetch: { background: false, prefetch: false },
      observer: { onOperation: (op, ms, errno) => seen.push({ op, ms, errno }) },
    });
    await exercise(mount.mountpoint);

    const ops = new Set(seen.map((s) => s.op));
    for (const op of ['getattr', 'open', 'read', 'release'] as const) expect(ops, op).toContain(op);
    expect(seen.filter((s) => s.op === 'getattr' && s.errno === 2)).toHaveLength(1);
    expect(seen.filter((s) => s.op === 'read').every((s) => s.errno === undefined)).toBe(true);
    expect(seen.every((s) => s.ms >= 0 && s.ms < 10_000)).toBe(true);
  });

  it("a MountManager passes its observer to every mount; the daemon's metrics count it", async () => {
    const metrics = new DaemonMetrics();
    const server = await serveMetrics('127.0.0.1:0', metrics);
    const manager = new MountManager({ decoder: inlineDecoder, observer: metrics.fuseObserver });
    try {
      const mountpoint = join(work, 'managed');
      await mkdir(mountpoint);
      const mount = tracker.track(
        await manager.mount({ mountpoint, index, source, cache: new MemoryOnlyChunkCache(), layerDigest: digest, fetch: { background: false, prefetch: false } }),
      );
      metrics.watchLayers(() => manager.list().map((m) => ({ layerDigest: m.layerDigest, progress: m.progress() })));
      await exercise(mount.mountpoint);

      const page = await scrape(server.address);
      expect(page.value('lazypull_fuse_operations_total', { op: 'getattr' })).toBeGreaterThanOrEqual(3);
      expect(page.value('lazypull_fuse_operations_total', { op: 'read' })).toBeGreaterThanOrEqual(1);
      expect(page.value('lazypull_fuse_errors_total', { op: 'getattr', errno: 'ENOENT' })).toBe(1);
      expect(page.value('lazypull_ondemand_read_duration_seconds_count')).toBe(page.value('lazypull_fuse_operations_total', { op: 'read' }));
      expect(page.value('lazypull_layer_served_bytes', { digest })).toBe(300 * 1024);
    } finally {
      await manager.shutdown();
      await server.close();
    }
  });
});
