/**
 * The read path under load and faults, through real FUSE and a real docker-registry: concurrent
 * readers share fetches, a registry that goes away gives EIO within the deadline and nothing hangs,
 * corrupted bytes are never served or cached, shared chunks are stored once, and a warm disk cache
 * serves a remount with the registry down. Readers are separate processes (sha256sum, dd), as
 * containers would be.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryOnlyChunkCache, createChunkCache } from '../../../src/cache/index.js';
import type { LayerMount } from '../../../src/fs/layer-mount.js';
import type { LayerEntry, LayerIndex } from '../../../src/layer/layer-index.js';
import type { RegistryClient } from '../../../src/remote/index.js';
import { MountTracker } from '../../helpers/fuse.js';
import { makeTar, pseudoRandom } from '../../helpers/fixture-tree.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { convertAndPush, mountTracked, openRemoteLayer, testClient, type PushedLayer } from './harness.js';
import { startBitFlipProxy, startTcpRelay } from './proxies.js';

const execFileAsync = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 256 * KiB;

let work: string;
let registry: TestRegistry;
let client: RegistryClient;
const tracker = new MountTracker();
/** sha256 hex of every file, by layer path. */
const hashes = new Map<string, string>();
let layerA: PushedLayer;
let layerB: PushedLayer;

async function writeTree(dir: string, files: Record<string, Buffer>): Promise<string[]> {
  for (const [path, data] of Object.entries(files)) {
    await mkdir(join(dir, path, '..'), { recursive: true });
    await writeFile(join(dir, path), data);
    hashes.set(path, createHash('sha256').update(data).digest('hex'));
  }
  return ['data', ...Object.keys(files)];
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'lazypull-fs-read-'));
  registry = await startRegistry();
  client = testClient();
  const shared = pseudoRandom(7, 2 * MiB + 123);
  const treeA = join(work, 'tree-a');
  const filesA: Record<string, Buffer> = { 'data/big.bin': pseudoRandom(1, 24 * MiB + 5), 'data/shared.bin': shared };
  for (let i = 0; i < 8; i++) filesA[`data/f${i}`] = pseudoRandom(10 + i, 600 * KiB + i);
  await makeTar(treeA, await writeTree(treeA, filesA), join(work, 'a.tar'), false);
  const treeB = join(work, 'tree-b');
  await makeTar(treeB, await writeTree(treeB, { 'data/shared.bin': shared, 'data/b-only.bin': pseudoRandom(99, 1 * MiB) }), join(work, 'b.tar'), false);
  layerA = await convertAndPush(registry, join(work, 'a.tar'), join(work, 'a.blob'), { chunkSize: CHUNK });
  layerB = await convertAndPush(registry, join(work, 'b.tar'), join(work, 'b.blob'), { chunkSize: CHUNK });
});

afterAll(async () => {
  await tracker.unmountAll();
  await client?.close();
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function sha256sum(path: string): Promise<string> {
  const { stdout } = await execFileAsync('sha256sum', [path]);
  return stdout.split(' ')[0]!;
}

function chunksOf(index: LayerIndex, paths: string[]): number {
  return paths.reduce((n, p) => n + index.lookup(p)!.chunks.length, 0);
}

function distinctDigests(indexes: LayerIndex[]): Set<string> {
  const out = new Set<string>();
  for (const index of indexes) for (const e of new Set<LayerEntry>(index.entries.values())) for (const c of e.chunks) out.add(c.digest!);
  return out;
}

describe('the FUSE read path', () => {
  it('serves concurrent readers of the same and different files, fetching each chunk once', async () => {
    const { source, index } = await openRemoteLayer(client, registry.host, layerA);
    const mount = await mountTracked(tracker, work, 'concurrent', { index, source, layerDigest: layerA.written.digest, fetch: { background: false } });
    const paths = ['data/big.bin', 'data/big.bin', 'data/big.bin', 'data/big.bin', 'data/f0', 'data/f1', 'data/f2', 'data/f3'];
    const sums = await Promise.all(paths.map((p) => sha256sum(join(mount.mountpoint, p))));
    expect(sums).toEqual(paths.map((p) => hashes.get(p)));
    // Four readers of big.bin and read-ahead all shared one fetch and one decode per chunk.
    expect(mount.counters.decodedChunks).toBe(chunksOf(index, ['data/big.bin', 'data/f0', 'data/f1', 'data/f2', 'data/f3']));
    expect(mount.counters.fetchedBytes).toBeLessThanOrEqual(layerA.written.size);
  });

  it('answers EIO within the deadline when the registry goes away mid-read, and reads again when it is back', async () => {
    const relay = await startTcpRelay(Number(registry.host.split(':')[1]));
    try {
      const { source, index } = await openRemoteLayer(client, relay.host, layerA);
      const deadlineMs = 1500;
      const mount = await mountTracked(tracker, work, 'outage', { index, source, layerDigest: layerA.written.digest, fetchDeadlineMs: deadlineMs, fetch: { background: false } });
      const file = join(mount.mountpoint, 'data/big.bin');
      relay.throttle(4 * MiB);
      const reader = execFileAsync('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M']).then(
        () => ({ ok: true, stderr: '' }),
        (err: { stderr?: string }) => ({ ok: false, stderr: err.stderr ?? '' }),
      );
      while (mount.counters.fetchedBytes === 0) await new Promise((r) => setTimeout(r, 20));
      await relay.stop();
      const stoppedAt = Date.now();
      const outcome = await reader;
      expect(outcome.ok).toBe(false);
      expect(outcome.stderr).toMatch(/Input\/output error/);
      expect(Date.now() - stoppedAt).toBeLessThan(deadlineMs * 2 + 1000);
      // Metadata needs no registry; the mount is alive.
      expect((await stat(file)).size).toBe(24 * MiB + 5);
      relay.throttle(0);
      await relay.start();
      expect(await sha256sum(file)).toBe(hashes.get('data/big.bin'));
    } finally {
      await relay.close();
    }
  });

  it('never serves or caches bytes that fail verification', async () => {
    const proxy = await startBitFlipProxy(registry.url);
    try {
      proxy.flipping = false; // the TOC must arrive intact
      const { source, index } = await openRemoteLayer(client, proxy.host, layerA);
      const cache = new MemoryOnlyChunkCache();
      const mount = await mountTracked(tracker, work, 'bitflip', { index, source, cache, layerDigest: layerA.written.digest, fetch: { background: false } });
      proxy.flipping = true;
      const file = join(mount.mountpoint, 'data/f5');
      await expect(readFile(file)).rejects.toMatchObject({ code: 'EIO' });
      expect(proxy.flipped).toBeGreaterThan(0);
      for (const chunk of index.lookup('data/f5')!.chunks) expect(await cache.has(chunk.digest!)).toBe(false);
      proxy.flipping = false;
      expect(createHash('sha256').update(await readFile(file)).digest('hex')).toBe(hashes.get('data/f5'));
    } finally {
      await proxy.close();
    }
  });

  it('stores chunks shared by two layers once, and serves a remount from the warm disk cache with the registry down', async () => {
    const relay = await startTcpRelay(Number(registry.host.split(':')[1]));
    const cacheDir = join(work, 'cache');
    let cache = await createChunkCache({ dir: cacheDir, durable: false });
    const mounts: LayerMount[] = [];
    try {
      const a = await openRemoteLayer(client, relay.host, layerA);
      const b = await openRemoteLayer(client, relay.host, layerB);
      for (const [name, layer, opened] of [['warm-a', layerA, a], ['warm-b', layerB, b]] as const) {
        const mount = await mountTracked(tracker, work, name, { ...opened, cache, layerDigest: layer.written.digest });
        mounts.push(mount);
      }
      await Promise.all(mounts.map((m) => m.whenFetched()));
      expect(mounts.every((m) => m.progress().backgroundDone)).toBe(true);
      const digests = distinctDigests([a.index, b.index]);
      const sharedChunks = a.index.lookup('data/shared.bin')!.chunks.length;
      // One entry per distinct chunk: the chunks of shared.bin (in both layers) are stored once.
      expect(cache.stats().diskEntries).toBe(digests.size);
      expect(digests.size).toBeLessThanOrEqual(distinctDigests([a.index]).size + distinctDigests([b.index]).size - sharedChunks);

      for (const m of mounts.splice(0)) await m.unmount();
      await cache.close();
      await relay.stop();

      cache = await createChunkCache({ dir: cacheDir, durable: false });
      for (const [name, layer, opened] of [['warm-a', layerA, a], ['warm-b', layerB, b]] as const) {
        mounts.push(await mountTracked(tracker, work, `${name}-again`, { ...opened, cache, layerDigest: layer.written.digest, fetchDeadlineMs: 2000, fetch: { background: false } }));
      }
      for (const [mount, paths] of [[mounts[0]!, ['data/big.bin', 'data/shared.bin', 'data/f7']], [mounts[1]!, ['data/shared.bin', 'data/b-only.bin']]] as const) {
        for (const p of paths) expect(await sha256sum(join(mount.mountpoint, p))).toBe(hashes.get(p));
        expect(mount.counters.fetchedBytes).toBe(0);
      }
    } finally {
      for (const m of mounts) await m.unmount().catch(() => undefined);
      await cache.close().catch(() => undefined);
      await relay.close();
    }
  });
});
