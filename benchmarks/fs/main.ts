/**
 * FUSE layer benchmark: a layer with many small files and one large file, converted to eStargz, pushed
 * to docker-registry on 127.0.0.1 and mounted; the same tree extracted to the local disk (ext4) is the
 * reference. Prints one table: find+stat, cat of every small file, sequential read of the large file
 * (cold from the registry, warm from the disk cache with the page cache dropped, hot from the page
 * cache), 4 KiB random reads (of the large file in 4 MiB chunks, and of a smaller file the converter cut
 * into 4 KiB chunks); ratios to ext4; bytes fetched from the registry / bytes read.
 *
 * Run: npx vite-node benchmarks/fs/main.ts
 * Env: FS_BENCH_FILES (small files, default 20000), FS_BENCH_BIG_MIB (large file, default 1024),
 *      FS_BENCH_RANDOM_READS (default 5000), FS_BENCH_SMALL_CHUNK_MIB (the file in 4 KiB chunks, default
 *      64), FS_BENCH_METRICS=1 (every FUSE operation reported to the
 *      daemon's metrics, to measure what that costs). Needs root (drop_caches, FUSE).
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createChunkCache, type TieredChunkCache } from '../../src/cache/index.js';
import { openLayer } from '../../src/estargz/open.js';
import { convertLayerFile } from '../../src/estargz/writer.js';
import { MountManager } from '../../src/fs/mount-manager.js';
import { inlineDecoder } from '../../src/fs/chunk-decoder.js';
import type { LayerMount } from '../../src/fs/layer-mount.js';
import { DaemonMetrics } from '../../src/metrics/index.js';
import { RegistryClient, parseReference } from '../../src/remote/index.js';
import { extractTar, makeTar, pseudoRandom } from '../../test/helpers/fixture-tree.js';
import { forceUnmount } from '../../test/helpers/fuse.js';
import { startRegistry } from '../../test/helpers/registry.js';

const execFileAsync = promisify(execFile);
const FILES = Number(process.env.FS_BENCH_FILES ?? 20_000);
const BIG_MIB = Number(process.env.FS_BENCH_BIG_MIB ?? 1024);
const RANDOM_READS = Number(process.env.FS_BENCH_RANDOM_READS ?? 5000);
const SMALL_CHUNK_MIB = Number(process.env.FS_BENCH_SMALL_CHUNK_MIB ?? 64);
/** A chunk per page: a random 4 KiB read then needs one chunk, where a 4 MiB chunk makes it fetch ~1000x. */
const SMALL_CHUNK_BYTES = 4096;
const SMALL_CHUNK_FILE = 'random.bin';
const MiB = 1024 * 1024;

interface Row {
  name: string;
  seconds: number;
  ext4Seconds?: number;
  unit?: string;
  amount?: number;
  fetchedPerRead?: number;
}
const rows: Row[] = [];

async function timed(cmd: string, args: string[]): Promise<number> {
  const started = performance.now();
  await execFileAsync(cmd, args, { maxBuffer: 1 << 30 });
  return (performance.now() - started) / 1000;
}

const dropCaches = () => writeFile('/proc/sys/vm/drop_caches', '3');
const findStat = (dir: string) => timed('sh', ['-c', `find "$1" -printf '%s %m %U %T@\\n' > /dev/null`, 'sh', dir]);
const catSmall = (dir: string) => timed('sh', ['-c', `find "$1/small" -type f -print0 | xargs -0 cat > /dev/null`, 'sh', dir]);
const readBig = (dir: string) => timed('dd', [`if=${join(dir, 'big.bin')}`, 'of=/dev/null', 'bs=1M']);
const randomReads = (dir: string, file = 'big.bin') =>
  timed('python3', [
    '-c',
    'import os,random,sys\nfd=os.open(sys.argv[1],os.O_RDONLY)\nsize=os.fstat(fd).st_size\nr=random.Random(7)\nfor _ in range(int(sys.argv[2])): os.pread(fd,4096,r.randrange(0,size-4096)//4096*4096)',
    join(dir, file),
    String(RANDOM_READS),
  ]);

async function buildTree(dir: string): Promise<string[]> {
  const members = ['small', 'big.bin', SMALL_CHUNK_FILE];
  for (let d = 0; d < Math.ceil(FILES / 1000); d++) {
    await mkdir(join(dir, 'small', `d${d}`), { recursive: true });
    members.push(`small/d${d}`);
  }
  for (let i = 0; i < FILES; i++) {
    const path = `small/d${Math.floor(i / 1000)}/f${i}`;
    await writeFile(join(dir, path), pseudoRandom(i, 200 + ((i * 7919) % 8000)));
    members.push(path);
  }
  const big = await open(join(dir, 'big.bin'), 'w');
  for (let i = 0; i < BIG_MIB; i++) await big.write(pseudoRandom(1_000_000 + i, MiB));
  await big.close();
  const smallChunked = await open(join(dir, SMALL_CHUNK_FILE), 'w');
  for (let i = 0; i < SMALL_CHUNK_MIB; i++) await smallChunked.write(pseudoRandom(2_000_000 + i, MiB));
  await smallChunked.close();
  return members;
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'lazypull-fs-bench-'));
  const registry = await startRegistry();
  const client = new RegistryClient({ dockerConfig: false, hostsDir: null });
  const manager = new MountManager({
    ...(process.env.FS_BENCH_INLINE ? { decoder: inlineDecoder } : {}),
    ...(process.env.FS_BENCH_METRICS ? { observer: new DaemonMetrics().fuseObserver } : {}),
  });
  let cache: TieredChunkCache | undefined;
  try {
    const tree = join(work, 'tree');
    await mkdir(tree);
    console.error(`building ${FILES} small files and a ${BIG_MIB} MiB file...`);
    const members = await buildTree(tree);
    await makeTar(tree, members, join(work, 'layer.tar'), false);
    await rm(tree, { recursive: true });
    const ext4 = join(work, 'ext4');
    await mkdir(ext4);
    await extractTar(join(work, 'layer.tar'), ext4);
    console.error('converting and pushing...');
    const written = await convertLayerFile(join(work, 'layer.tar'), join(work, 'layer.blob'), {
      chunkSizeFor: (name) => (name === SMALL_CHUNK_FILE ? SMALL_CHUNK_BYTES : undefined),
    });
    await rm(join(work, 'layer.tar'));
    await registry.pushBlob('bench/fs', await readFile(join(work, 'layer.blob')));
    const source = await client.openBlob(parseReference(`${registry.host}/bench/fs:latest`), { digest: written.digest, size: written.size });
    const index = await openLayer(source, { expectedTocDigest: written.tocDigest });
    const cacheDir = join(work, 'cache');
    cache = await createChunkCache({ dir: cacheDir, maxDiskBytes: 4 * BIG_MIB * MiB, durable: false });

    let count = 0;
    const mountFresh = async (): Promise<LayerMount> => {
      const mountpoint = join(work, `mnt${count++}`);
      await mkdir(mountpoint);
      return manager.mount({ mountpoint, index, source, cache: cache!, layerDigest: written.digest, fetch: { background: false, prefetch: false }, ...(process.env.FS_BENCH_READ_AHEAD_MIB ? { readAheadBytes: Number(process.env.FS_BENCH_READ_AHEAD_MIB) * MiB } : {}) });
    };
    const fetchedPerRead = (m: LayerMount, before: { fetched: number; served: number }) => {
      const p = m.progress();
      return (p.fetchedBytes - before.fetched) / Math.max(1, p.servedBytes - before.served);
    };
    const snapshot = (m: LayerMount) => ({ fetched: m.progress().fetchedBytes, served: m.progress().servedBytes });

    console.error('measuring...');
    await dropCaches();
    const ext4Find = await findStat(ext4);
    const ext4FindWarm = await findStat(ext4);
    const ext4Cat = await catSmall(ext4);
    await dropCaches();
    const ext4BigCold = await readBig(ext4);
    const ext4BigHot = await readBig(ext4);
    await dropCaches();
    const ext4Random = await randomReads(ext4);
    await dropCaches();
    const ext4RandomSmallChunks = await randomReads(ext4, SMALL_CHUNK_FILE);

    let m = await mountFresh();
    rows.push({ name: 'find+stat, first', seconds: await findStat(m.mountpoint), ext4Seconds: ext4Find, unit: 'entries/s', amount: index.entries.size });
    rows.push({ name: 'find+stat, repeated', seconds: await findStat(m.mountpoint), ext4Seconds: ext4FindWarm, unit: 'entries/s', amount: index.entries.size });
    let before = snapshot(m);
    const catSeconds = await catSmall(m.mountpoint);
    rows.push({ name: 'cat all small files, cold (registry)', seconds: catSeconds, ext4Seconds: ext4Cat, unit: 'files/s', amount: FILES, fetchedPerRead: fetchedPerRead(m, before) });
    before = snapshot(m);
    const bigCold = await readBig(m.mountpoint);
    rows.push({ name: `sequential ${BIG_MIB} MiB, cold (registry)`, seconds: bigCold, ext4Seconds: ext4BigCold, unit: 'MB/s', amount: BIG_MIB * MiB / 1e6, fetchedPerRead: fetchedPerRead(m, before) });
    rows.push({ name: `sequential ${BIG_MIB} MiB, hot (page cache)`, seconds: await readBig(m.mountpoint), ext4Seconds: ext4BigHot, unit: 'MB/s', amount: BIG_MIB * MiB / 1e6 });
    await manager.unmount(m.mountpoint);
    await dropCaches();
    m = await mountFresh();
    before = snapshot(m);
    rows.push({ name: `sequential ${BIG_MIB} MiB, warm (disk cache)`, seconds: await readBig(m.mountpoint), ext4Seconds: ext4BigCold, unit: 'MB/s', amount: BIG_MIB * MiB / 1e6, fetchedPerRead: fetchedPerRead(m, before) });
    await manager.unmount(m.mountpoint);

    // Random reads from the registry: a fresh cache.
    await cache.close();
    await rm(cacheDir, { recursive: true });
    cache = await createChunkCache({ dir: cacheDir, maxDiskBytes: 4 * BIG_MIB * MiB, durable: false });
    await dropCaches();
    m = await mountFresh();
    before = snapshot(m);
    rows.push({ name: `${RANDOM_READS} random 4 KiB reads, cold (registry)`, seconds: await randomReads(m.mountpoint), ext4Seconds: ext4Random, unit: 'reads/s', amount: RANDOM_READS, fetchedPerRead: fetchedPerRead(m, before) });
    rows.push({ name: `${RANDOM_READS} random 4 KiB reads, repeated`, seconds: await randomReads(m.mountpoint), ext4Seconds: ext4Random, unit: 'reads/s', amount: RANDOM_READS });
    before = snapshot(m);
    const smallChunkSeconds = await randomReads(m.mountpoint, SMALL_CHUNK_FILE);
    rows.push({ name: `${RANDOM_READS} random 4 KiB reads, ${SMALL_CHUNK_MIB} MiB file in 4 KiB chunks, cold (registry)`, seconds: smallChunkSeconds, ext4Seconds: ext4RandomSmallChunks, unit: 'reads/s', amount: RANDOM_READS, fetchedPerRead: fetchedPerRead(m, before) });
    await manager.unmount(m.mountpoint);

    console.log(`| workload | lazypull | ext4 | ext4 time / lazypull time | fetched / read |`);
    console.log('|---|---|---|---|---|');
    for (const r of rows) {
      const rate = (s: number) => (r.amount !== undefined ? `${(r.amount / s).toFixed(r.amount / s > 100 ? 0 : 1)} ${r.unit}` : `${s.toFixed(2)} s`);
      const ratio = r.ext4Seconds !== undefined ? (r.ext4Seconds / r.seconds).toFixed(2) : '';
      console.log(`| ${r.name} | ${rate(r.seconds)} (${r.seconds.toFixed(2)} s) | ${r.ext4Seconds !== undefined ? rate(r.ext4Seconds) : ''} | ${ratio} | ${r.fetchedPerRead !== undefined ? r.fetchedPerRead.toFixed(2) : ''} |`);
    }
  } finally {
    await manager.shutdown().catch(() => undefined);
    for (let i = 0; i < 8; i++) await forceUnmount(join(work, `mnt${i}`));
    await cache?.close().catch(() => undefined);
    await client.close();
    await registry.stop();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
