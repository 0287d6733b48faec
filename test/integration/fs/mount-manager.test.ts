/**
 * The mount manager and mount-time fetching: prefetch of the landmark region in large ranges, the
 * background pass over the rest, progress, unmount of everything on shutdown, and cleanup of a mount
 * whose server was killed with SIGKILL (readers get ENOTCONN until it is unmounted).
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryOnlyChunkCache } from '../../../src/cache/index.js';
import { openLayer } from '../../../src/estargz/open.js';
import { convertLayerFile } from '../../../src/estargz/writer.js';
import { DEFAULT_BACKGROUND_FETCH } from '../../../src/fs/background-fetch.js';
import { MountManager, cleanStaleMounts, findLazypullMounts } from '../../../src/fs/mount-manager.js';
import type { RangeSource } from '../../../src/fs/chunk-fetcher.js';
import { FileSource } from '../../../src/io/random-access.js';
import type { LayerIndex } from '../../../src/layer/layer-index.js';
import { forceUnmount, isMounted } from '../../helpers/fuse.js';
import { makeTar, pseudoRandom } from '../../helpers/fixture-tree.js';

const execFileAsync = promisify(execFile);

/** A local blob that counts requests and bytes, with readRanges like the registry source. */
class CountingSource implements RangeSource {
  requests = 0;
  bytes = 0;
  constructor(private readonly inner: FileSource) {}
  get size(): number {
    return this.inner.size;
  }
  async readAt(offset: number, length: number): Promise<Buffer> {
    this.requests++;
    this.bytes += length;
    return this.inner.readAt(offset, length);
  }
  async readRanges(ranges: readonly { start: number; length: number }[]): Promise<Buffer[]> {
    this.requests++;
    const out = await Promise.all(ranges.map((r) => this.inner.readAt(r.start, r.length)));
    for (const b of out) this.bytes += b.length;
    return out;
  }
}

let work: string;
let index: LayerIndex;
let blob: string;
let digest: string;
const manager = new MountManager();
const stalePaths: string[] = [];
const sources: FileSource[] = [];

/** The blob as a source, closed after the suite (an unclosed handle is closed by GC, with a warning). */
async function openBlob(): Promise<FileSource> {
  const source = await FileSource.open(blob);
  sources.push(source);
  return source;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'lazypull-fs-manager-'));
  const tree = join(work, 'tree');
  await mkdir(join(tree, 'app'), { recursive: true });
  await writeFile(join(tree, 'app/startup.bin'), pseudoRandom(1, 3 * 1024 * 1024));
  await writeFile(join(tree, 'app/config'), 'read first\n');
  await writeFile(join(tree, 'app/rarely-used.bin'), pseudoRandom(2, 5 * 1024 * 1024));
  await makeTar(tree, ['app', 'app/startup.bin', 'app/config', 'app/rarely-used.bin'], join(work, 'layer.tar'), false);
  blob = join(work, 'layer.blob');
  const written = await convertLayerFile(join(work, 'layer.tar'), blob, { chunkSize: 256 * 1024, prioritizedFiles: ['app/config', 'app/startup.bin'] });
  digest = written.digest;
  index = await openLayer(await openBlob(), { expectedTocDigest: written.tocDigest });
});

afterAll(async () => {
  await manager.shutdown().catch(() => undefined);
  await Promise.allSettled(sources.map((source) => source.close()));
  for (const path of stalePaths) await forceUnmount(path);
  if (work) await rm(work, { recursive: true, force: true });
});

async function newMountpoint(name: string): Promise<string> {
  const path = join(work, name);
  await mkdir(path, { recursive: true });
  return path;
}

describe('mount-time fetching', () => {
  it('prefetches the landmark region in a few large requests, then fetches the rest in the background', async () => {
    const source = new CountingSource(await openBlob());
    const cache = new MemoryOnlyChunkCache();
    const mount = await manager.mount({ mountpoint: await newMountpoint('prefetch'), index, source, cache, layerDigest: digest, fetch: { background: false } });
    await mount.whenPrefetched();
    const progress = mount.progress();
    expect(progress.prefetchDone).toBe(true);
    expect(progress.prefetchBytes).toBeGreaterThan(3 * 1024 * 1024 * 0.9);
    // 3 MiB of 256 KiB chunks: a request per batch, not one per chunk (12).
    const batches = Math.ceil(progress.prefetchBytes / DEFAULT_BACKGROUND_FETCH.batchBytes);
    expect(source.requests).toBeLessThanOrEqual(batches + 1);
    expect(source.requests).toBeLessThan(index.lookup('app/startup.bin')!.chunks.length);
    for (const c of index.lookup('app/startup.bin')!.chunks) expect(await cache.has(c.digest!)).toBe(true);
    for (const c of index.lookup('app/rarely-used.bin')!.chunks) expect(await cache.has(c.digest!)).toBe(false);
    // The prefetched file is served without another request.
    const before = source.requests;
    expect((await readFile(join(mount.mountpoint, 'app/startup.bin'))).equals(pseudoRandom(1, 3 * 1024 * 1024))).toBe(true);
    expect(source.requests).toBe(before);
    await manager.unmount(mount.mountpoint);
    expect(await isMounted(mount.mountpoint)).toBe(false);
  });

  it('fetches the whole layer in the background and reports progress to completion', async () => {
    const source = new CountingSource(await openBlob());
    const cache = new MemoryOnlyChunkCache();
    const mount = await manager.mount({ mountpoint: await newMountpoint('background'), index, source, cache, layerDigest: digest });
    await mount.whenFetched();
    const progress = mount.progress();
    expect(progress).toMatchObject({ prefetchDone: true, backgroundDone: true });
    expect(progress.completedBytes).toBe(progress.totalBytes);
    expect(progress.fetchedBytes).toBe(progress.totalBytes);
    expect(manager.progress().get(mount.mountpoint)?.backgroundDone).toBe(true);
    for (const c of index.lookup('app/rarely-used.bin')!.chunks) expect(await cache.has(c.digest!)).toBe(true);
  });
});

describe('MountManager', () => {
  it('unmounts everything on shutdown', async () => {
    const mounts = [];
    for (const name of ['s1', 's2']) {
      mounts.push(await manager.mount({ mountpoint: await newMountpoint(name), index, source: await openBlob(), cache: new MemoryOnlyChunkCache(), layerDigest: digest, fetch: { background: false, prefetch: false } }));
    }
    await expect(manager.mount({ mountpoint: mounts[0]!.mountpoint, index, source: await openBlob(), cache: new MemoryOnlyChunkCache(), layerDigest: digest })).rejects.toThrow(/already mounted/);
    expect(await findLazypullMounts(work)).toEqual(expect.arrayContaining(mounts.map((m) => m.mountpoint)));
    await manager.shutdown();
    for (const m of mounts) expect(await isMounted(m.mountpoint)).toBe(false);
    expect(manager.list()).toEqual([]);
  });

  it('an unmount succeeds when the mount was already removed from outside (fusermount then fails)', async () => {
    const mount = await manager.mount({ mountpoint: await newMountpoint('removed'), index, source: await openBlob(), cache: new MemoryOnlyChunkCache(), layerDigest: digest, fetch: { background: false, prefetch: false } });
    await execFileAsync('umount', ['-l', mount.mountpoint]);
    expect(await isMounted(mount.mountpoint)).toBe(false);
    await manager.unmount(mount.mountpoint);
    expect(manager.get(mount.mountpoint)).toBeUndefined();
  });

  it('cleans up a mount left by a server killed with SIGKILL', async () => {
    const mountpoint = await newMountpoint('crashed');
    stalePaths.push(mountpoint);
    // A stand-in daemon: a bare fuse-native server mounted the way lazypull mounts (subtype lazypull).
    const script = `
      const Fuse = require(${JSON.stringify(join(process.cwd(), 'node_modules/fuse-native'))});
      const fuse = new Fuse(process.argv[1], { getattr: (p, cb) => cb(0, { mode: 0o40755, size: 0, mtime: 0, atime: 0, ctime: 0 }) }, { subtype: 'lazypull', fsname: 'lazypull:crashed' });
      fuse.mount((err) => { if (err) { console.error(err); process.exit(1); } console.log('mounted'); });`;
    const child = spawn(process.execPath, ['-e', script, mountpoint], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => d.toString().includes('mounted') && resolve());
      child.once('exit', (code) => reject(new Error(`stand-in server exited with ${code}`)));
    });
    process.kill(child.pid!, 'SIGKILL');
    await new Promise((r) => child.once('exit', r));
    await expect(stat(join(mountpoint, 'x'))).rejects.toMatchObject({ code: 'ENOTCONN' });

    expect(await cleanStaleMounts(work, manager)).toEqual([mountpoint]);
    expect(await isMounted(mountpoint)).toBe(false);
    expect(await findLazypullMounts(work)).toEqual([]);
  });
});
