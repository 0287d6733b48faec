import { mkdir, open, readFile, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { unverifiedChunkKey } from '../../../src/cache/chunk-cache.js';
import { entryFootprint } from '../../../src/cache/disk-store.js';
import { entryNameForKey } from '../../../src/cache/entry-names.js';
import { createChunkCache, type ChunkCacheOptions, type TieredChunkCache } from '../../../src/cache/tiered-chunk-cache.js';
import { chunkBytes, digestChunk, digestKeyOf, type TestChunk } from './cache-fixtures.js';
import { listFiles, useTempDirs } from './temp-dirs.js';

const { makeTempDir } = useTempDirs();
const openCaches: TieredChunkCache[] = [];
afterEach(async () => {
  await Promise.all(openCaches.splice(0).map((cache) => cache.close()));
});

/** `durable: false` only to keep the suite fast: the crash test runs with fsync on. */
async function openCache(dir: string, options: Partial<ChunkCacheOptions> = {}): Promise<TieredChunkCache> {
  const cache = await createChunkCache({ dir, durable: false, ...options });
  openCaches.push(cache);
  return cache;
}

async function reopen(cache: TieredChunkCache, dir: string, options: Partial<ChunkCacheOptions> = {}): Promise<TieredChunkCache> {
  await cache.close();
  return openCache(dir, options);
}

function entryPath(dir: string, key: string): string {
  const name = entryNameForKey(key);
  return join(dir, 'entries', name.slice(0, 2), name);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Chunks of one size: 8000 data bytes + a 95-byte header fit one 8 KiB footprint each. */
function sameSizeChunks(count: number): TestChunk[] {
  return Array.from({ length: count }, (_, index) => digestChunk(index, 8000));
}
const FOOTPRINT = 8192;
/** A memory tier too small for any test chunk, so gets exercise the disk. */
const NO_MEMORY = { maxMemoryBytes: 1 };

describe('tiered chunk cache: disk write hold', () => {
  it('keeps new chunks in memory only while held, writes them on release, and on close', async () => {
    const dir = await makeTempDir();
    const cache = await openCache(dir);
    const release = cache.holdDiskWrites(60_000);
    const chunk = digestChunk(7, 5000);
    const put = cache.put(chunk.key, chunk.data);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await exists(entryPath(dir, chunk.key))).toBe(false);
    expect((await cache.get(chunk.key))?.equals(chunk.data)).toBe(true);
    release();
    await put;
    expect(await exists(entryPath(dir, chunk.key))).toBe(true);

    cache.holdDiskWrites(60_000);
    const later = digestChunk(8, 5000);
    void cache.put(later.key, later.data);
    await cache.close();
    expect(await exists(entryPath(dir, later.key))).toBe(true);
  });
});

describe('tiered chunk cache: storage', () => {
  it('round-trips digest and unverified keys, and misses unknown keys', async () => {
    const cache = await openCache(await makeTempDir());
    const verified = digestChunk(1, 100_000);
    const unverified = { key: unverifiedChunkKey('sha256:abc', 4096, 17), data: chunkBytes(2, 5000) };
    await cache.put(verified.key, verified.data);
    await cache.put(unverified.key, unverified.data);
    expect((await cache.get(verified.key))?.equals(verified.data)).toBe(true);
    expect((await cache.get(unverified.key))?.equals(unverified.data)).toBe(true);
    expect(await cache.get(digestChunk(3, 10).key)).toBeUndefined();
    expect(await cache.has(verified.key)).toBe(true);
    expect(await cache.has(digestChunk(3, 10).key)).toBe(false);
    expect(cache.stats()).toMatchObject({ hits: { memory: 2, disk: 0 }, misses: 1, diskEntries: 2 });
  });

  it('persists entries across close and reopen, served from disk', async () => {
    const dir = await makeTempDir();
    const chunks = [digestChunk(1, 70_000), { key: unverifiedChunkKey('sha256:l', 0, 0), data: chunkBytes(9, 1) }];
    const first = await openCache(dir);
    for (const chunk of chunks) await first.put(chunk.key, chunk.data);
    const second = await reopen(first, dir);
    expect(second.stats()).toMatchObject({ diskEntries: 2, diskBytes: entryFootprint(chunks[0]!.key, 70_000) + 4096 });
    for (const chunk of chunks) expect((await second.get(chunk.key))?.equals(chunk.data)).toBe(true);
    expect(second.stats().hits).toEqual({ memory: 0, disk: 2 });
  });

  it('stores a key once however often and however concurrently it is put', async () => {
    const dir = await makeTempDir();
    const cache = await openCache(dir, NO_MEMORY);
    const chunk = digestChunk(5, 300_000);
    const puts = Array.from({ length: 20 }, () => cache.put(chunk.key, Buffer.from(chunk.data)));
    const gets = Array.from({ length: 20 }, () => cache.get(chunk.key));
    await Promise.all(puts);
    for (const seen of await Promise.all(gets)) {
      // A get racing the puts misses or sees the whole chunk, never part of it.
      if (seen !== undefined) expect(seen.equals(chunk.data)).toBe(true);
    }
    await cache.put(chunk.key, chunk.data);
    expect((await cache.get(chunk.key))?.equals(chunk.data)).toBe(true);
    expect(await listFiles(dir)).toEqual([join('entries', chunk.key.slice(7, 9), chunk.key.slice(7))]);
    expect(cache.stats().diskEntries).toBe(1);
  });

  it('names entries by digest, and unverified keys by a hash of the key', async () => {
    const dir = await makeTempDir();
    const cache = await openCache(dir);
    const odd = unverifiedChunkKey('sha256:../../etc/passwd', 1, 2);
    await cache.put(odd, Buffer.from('x'));
    await cache.put(digestKeyOf(Buffer.from('y')), Buffer.from('y'));
    const files = await listFiles(dir);
    expect(files).toHaveLength(2);
    for (const file of files) expect(file).toMatch(/^entries\/[0-9a-f]{2}\/[0-9a-f]{64}(\.u)?$/);
    expect(await exists(entryPath(dir, odd))).toBe(true);
  });

  it('keeps a chunk in memory and reports the error when the disk write fails', async () => {
    const dir = await makeTempDir();
    const chunk = digestChunk(7, 1000);
    // A file where the entry's shard directory should be makes every write under it fail.
    await mkdir(join(dir, 'entries'), { recursive: true });
    await writeFile(join(dir, 'entries', chunk.key.slice(7, 9)), 'not a directory');
    const errors: unknown[] = [];
    const cache = await openCache(dir, { onError: (error) => errors.push(error) });
    await expect(cache.put(chunk.key, chunk.data)).resolves.toBeUndefined();
    expect(errors).toHaveLength(1);
    expect(cache.stats()).toMatchObject({ diskWriteErrors: 1, diskEntries: 0 });
    expect((await cache.get(chunk.key))?.equals(chunk.data)).toBe(true);
  });

  it('refuses calls after close', async () => {
    const cache = await openCache(await makeTempDir());
    await cache.close();
    await expect(cache.get(digestChunk(1, 1).key)).rejects.toThrow(/closed/);
  });
});

describe('tiered chunk cache: bounds and eviction', () => {
  it('evicts least recently used entries down to the target once over the disk bound', async () => {
    const chunks = sameSizeChunks(11);
    const cache = await openCache(await makeTempDir(), { ...NO_MEMORY, maxDiskBytes: 10 * FOOTPRINT, evictionTargetRatio: 0.8 });
    for (const chunk of chunks.slice(0, 10)) await cache.put(chunk.key, chunk.data);
    expect(cache.stats()).toMatchObject({ diskEntries: 10, evictions: 0 });
    // Reading 0 and 1 makes 2, 3 and 4 the least recently used.
    await cache.get(chunks[0]!.key);
    await cache.get(chunks[1]!.key);
    await cache.put(chunks[10]!.key, chunks[10]!.data);
    await cache.evictionSettled();
    const present = await Promise.all(chunks.map((chunk) => cache.has(chunk.key)));
    expect(present).toEqual([true, true, false, false, false, true, true, true, true, true, true]);
    expect(cache.stats()).toMatchObject({ diskEntries: 8, diskBytes: 8 * FOOTPRINT, evictions: 3 });
  });

  it('keeps the access order across a restart (file mtimes)', async () => {
    const dir = await makeTempDir();
    const chunks = sameSizeChunks(5);
    const options = { ...NO_MEMORY, maxDiskBytes: 4 * FOOTPRINT, evictionTargetRatio: 1, accessTouchIntervalMs: 0 };
    const first = await openCache(dir, options);
    for (const chunk of chunks.slice(0, 4)) await first.put(chunk.key, chunk.data);
    // Written oldest first; then chunk 0 is read, which must make it the most recent after the restart.
    const base = Date.now() / 1000 - 100;
    for (const [index, chunk] of chunks.slice(0, 4).entries()) await utimes(entryPath(dir, chunk.key), base + index, base + index);
    await first.get(chunks[0]!.key);
    const second = await reopen(first, dir, options);
    await second.put(chunks[4]!.key, chunks[4]!.data);
    await second.evictionSettled();
    const present = await Promise.all(chunks.map((chunk) => second.has(chunk.key)));
    expect(present).toEqual([true, false, true, true, true]);
  });

  it('never evicts a pinned key, and evicts it once released', async () => {
    const chunks = sameSizeChunks(5);
    const cache = await openCache(await makeTempDir(), { ...NO_MEMORY, maxDiskBytes: 4 * FOOTPRINT, evictionTargetRatio: 1 });
    // The read path pins a key before fetching it, and releases it after the put.
    const releases = chunks.map((chunk) => cache.pin(chunk.key));
    for (const chunk of chunks) await cache.put(chunk.key, chunk.data);
    await cache.evictionSettled();
    expect(cache.stats()).toMatchObject({ diskEntries: 5, diskBytes: 5 * FOOTPRINT, evictions: 0, pinnedKeys: 5 });
    for (const chunk of chunks) expect((await cache.get(chunk.key))?.equals(chunk.data)).toBe(true);

    releases[2]!();
    releases[2]!(); // a second call of the same release is harmless
    await cache.evictionSettled();
    expect(await cache.has(chunks[2]!.key)).toBe(false);
    expect(cache.stats()).toMatchObject({ diskEntries: 4, evictions: 1, pinnedKeys: 4 });
    for (const release of releases) release();
    await cache.evictionSettled();
    expect(cache.stats().diskEntries).toBe(4);
  });

  it('bounds the memory tier in bytes and serves older chunks from disk', async () => {
    const chunks = Array.from({ length: 40 }, (_, index) => digestChunk(index, 10_000));
    const cache = await openCache(await makeTempDir(), { maxMemoryBytes: 100_000 });
    for (const chunk of chunks) await cache.put(chunk.key, chunk.data);
    expect(cache.stats().memoryBytes).toBeLessThanOrEqual(100_000);
    expect(cache.stats().memoryEntries).toBe(10);
    // Newest first: the last 10 put are in memory, the 30 before them come from disk.
    for (const chunk of [...chunks].reverse()) expect((await cache.get(chunk.key))?.equals(chunk.data)).toBe(true);
    const { hits, memoryBytes, memoryEvictions } = cache.stats();
    expect(hits).toEqual({ memory: 10, disk: 30 });
    expect(memoryBytes).toBeLessThanOrEqual(100_000);
    expect(memoryEvictions).toBeGreaterThan(0);
  });

  it('shares one disk read among concurrent gets of a chunk', async () => {
    const chunk = digestChunk(3, 1 << 20);
    const dir = await makeTempDir();
    const writer = await openCache(dir);
    await writer.put(chunk.key, chunk.data);
    const cache = await reopen(writer, dir);
    const results = await Promise.all(Array.from({ length: 8 }, () => cache.get(chunk.key)));
    expect(new Set(results).size).toBe(1); // the very same buffer
    expect(results[0]?.equals(chunk.data)).toBe(true);
  });
});

describe('tiered chunk cache: range reads', () => {
  const BLOCK = 64 * 1024;

  async function diskOnly(chunks: TestChunk[], options: Partial<ChunkCacheOptions> = {}): Promise<{ dir: string; cache: TieredChunkCache }> {
    const dir = await makeTempDir();
    const writer = await openCache(dir, NO_MEMORY);
    for (const chunk of chunks) await writer.put(chunk.key, chunk.data);
    return { dir, cache: await reopen(writer, dir, { ...NO_MEMORY, ...options }) };
  }

  it('copies block-aligned and unaligned ranges from disk into the target without loading the chunk into memory', async () => {
    const chunk = digestChunk(21, 4 * BLOCK + 1000);
    const { cache } = await diskOnly([chunk]);
    const ranges: Array<[number, number]> = [
      [0, 2 * BLOCK], // aligned: read straight into the target
      [BLOCK, 3 * BLOCK + 1000], // aligned, up to the end of the data
      [100, 10], // inside one block
      [BLOCK - 7, 2 * BLOCK + 14], // crosses three blocks
      [4 * BLOCK + 999, 1], // the last byte
      [0, 0],
    ];
    for (const [offset, length] of ranges) {
      const target = Buffer.alloc(length + 8, 0xee);
      expect(await cache.readRange(chunk.key, offset, length, target, 5)).toBe(true);
      expect(target.subarray(5, 5 + length).equals(chunk.data.subarray(offset, offset + length)), `${offset}+${length}`).toBe(true);
      expect(target.subarray(0, 5).every((b) => b === 0xee) && target.subarray(5 + length).every((b) => b === 0xee)).toBe(true);
    }
    expect(cache.stats()).toMatchObject({ memoryBytes: 0, hits: { memory: 0, disk: ranges.length }, misses: 0 });
  });

  it('answers from memory when the chunk is there, and misses what neither tier has', async () => {
    const chunk = digestChunk(22, 5000);
    const cache = await openCache(await makeTempDir());
    await cache.put(chunk.key, chunk.data);
    const target = Buffer.alloc(100);
    expect(await cache.readRange(chunk.key, 4900, 100, target, 0)).toBe(true);
    expect(target.equals(chunk.data.subarray(4900))).toBe(true);
    expect(await cache.readRange(digestChunk(23, 10).key, 0, 10, target, 0)).toBe(false);
    expect(cache.stats()).toMatchObject({ hits: { memory: 1, disk: 0 }, misses: 1 });
  });

  it('checks the blocks it reads: a flipped byte in one is a miss that deletes the entry', async () => {
    const chunk = digestChunk(24, 3 * BLOCK);
    const { dir, cache } = await diskOnly([chunk]);
    expect(await cache.readRange(chunk.key, 0, 100, Buffer.alloc(100), 0)).toBe(true); // opens the entry
    await flipByte(entryPath(dir, chunk.key), -BLOCK - 10); // in the second block, under the open handle
    expect(await cache.readRange(chunk.key, 2 * BLOCK, BLOCK, Buffer.alloc(BLOCK), 0)).toBe(true); // third block intact
    expect(await cache.readRange(chunk.key, BLOCK, 10, Buffer.alloc(10), 0)).toBe(false);
    expect(await exists(entryPath(dir, chunk.key))).toBe(false);
    expect(cache.stats()).toMatchObject({ corruptEntries: 1, diskEntries: 0 });
    expect(await cache.readRange(chunk.key, 0, 100, Buffer.alloc(100), 0)).toBe(false);
  });

  it('reads a whole multi-block entry only when every block checks out', async () => {
    const chunk = digestChunk(25, 5 * BLOCK);
    const { dir, cache } = await diskOnly([chunk]);
    await flipByte(entryPath(dir, chunk.key), -3 * BLOCK);
    expect(await cache.get(chunk.key)).toBeUndefined();
    expect(cache.stats().corruptEntries).toBe(1);
  });

  it('re-hashes the whole chunk for a range read when digests are verified on read', async () => {
    const wrong = { key: digestKeyOf(Buffer.from('the real chunk')), data: Buffer.from('something else') };
    const { cache: trusting } = await diskOnly([wrong]);
    expect(await trusting.readRange(wrong.key, 0, 4, Buffer.alloc(4), 0)).toBe(true);
    const { cache: verifying } = await diskOnly([wrong], { verifyDigestOnRead: true });
    expect(await verifying.readRange(wrong.key, 0, 4, Buffer.alloc(4), 0)).toBe(false);
    expect(verifying.stats().corruptEntries).toBe(1);
  });

  it('keeps reading correctly across more entries than it holds open, and misses evicted ones', async () => {
    const chunks = Array.from({ length: 40 }, (_, i) => digestChunk(100 + i, 8000));
    const { cache } = await diskOnly(chunks, { maxDiskBytes: 40 * FOOTPRINT });
    for (let round = 0; round < 2; round++) {
      for (const chunk of chunks) {
        const target = Buffer.alloc(50);
        expect(await cache.readRange(chunk.key, 7000, 50, target, 0)).toBe(true);
        expect(target.equals(chunk.data.subarray(7000, 7050))).toBe(true);
      }
    }
    await cache.put(digestChunk(999, 8000).key, digestChunk(999, 8000).data); // over the bound: evicts the oldest batch
    await cache.evictionSettled();
    const evicted = chunks[0]!; // the least recently read
    expect(await cache.has(evicted.key)).toBe(false);
    expect(await cache.readRange(evicted.key, 0, 10, Buffer.alloc(10), 0)).toBe(false);
  });
});

describe('tiered chunk cache: damage and crashes', () => {
  const damages: Array<[string, (path: string) => Promise<void>]> = [
    ['truncated by one byte', async (path) => truncate(path, (await stat(path)).size - 1)],
    ['cut inside the header', async (path) => truncate(path, 30)],
    ['emptied', async (path) => truncate(path, 0)],
    ['a data byte flipped', (path) => flipByte(path, -1)],
    ['a header byte flipped', (path) => flipByte(path, 30)],
    ['zero-filled', async (path) => writeFile(path, Buffer.alloc((await stat(path)).size))],
  ];

  it.each(damages)('deletes an entry %s and reports a miss', async (_, damage) => {
    const dir = await makeTempDir();
    const chunk = digestChunk(11, 50_000);
    const writer = await openCache(dir);
    await writer.put(chunk.key, chunk.data);
    await writer.close();
    await damage(entryPath(dir, chunk.key));
    const cache = await openCache(dir);
    expect(await cache.get(chunk.key)).toBeUndefined();
    expect(await exists(entryPath(dir, chunk.key))).toBe(false);
    expect(cache.stats()).toMatchObject({ corruptEntries: 1, misses: 1, diskEntries: 0, diskBytes: 0 });
    // The next put repairs it.
    await cache.put(chunk.key, chunk.data);
    expect((await cache.get(chunk.key))?.equals(chunk.data)).toBe(true);
  });

  it('re-verifies digests on read only when asked', async () => {
    const dir = await makeTempDir();
    const wrong = { key: digestKeyOf(Buffer.from('the real chunk')), data: Buffer.from('something else') };
    const writer = await openCache(dir, NO_MEMORY);
    await writer.put(wrong.key, wrong.data); // put trusts its caller: the checksums match what was written
    const trusting = await reopen(writer, dir, NO_MEMORY);
    expect((await trusting.get(wrong.key))?.equals(wrong.data)).toBe(true);
    const verifying = await reopen(trusting, dir, { ...NO_MEMORY, verifyDigestOnRead: true });
    expect(await verifying.get(wrong.key)).toBeUndefined();
    expect(verifying.stats().corruptEntries).toBe(1);
  });

  it('removes orphaned temp files at open and leaves entries and foreign files alone', async () => {
    const dir = await makeTempDir();
    const chunk = digestChunk(4, 1000);
    const writer = await openCache(dir);
    await writer.put(chunk.key, chunk.data);
    await writer.close();
    const shardDir = join(dir, 'entries', chunk.key.slice(7, 9));
    await writeFile(join(shardDir, '.tmp-123-0011223344556677'), chunkBytes(1, 5000));
    await mkdir(join(dir, 'entries', 'ff'), { recursive: true });
    await writeFile(join(dir, 'entries', 'ff', '.tmp-9-aa'), '');
    await writeFile(join(shardDir, 'notes.txt'), 'not an entry');
    const cache = await openCache(dir);
    expect(cache.stats()).toMatchObject({ orphanedTempFilesRemoved: 2, diskEntries: 1 });
    expect((await listFiles(dir)).sort()).toEqual(
      [join('entries', chunk.key.slice(7, 9), chunk.key.slice(7)), join('entries', chunk.key.slice(7, 9), 'notes.txt')].sort(),
    );
    expect((await cache.get(chunk.key))?.equals(chunk.data)).toBe(true);
  });
});

async function flipByte(path: string, position: number): Promise<void> {
  const content = await readFile(path);
  const at = position < 0 ? content.length + position : position;
  const handle = await open(path, 'r+');
  try {
    await handle.write(Buffer.from([content[at]! ^ 0x01]), 0, 1, at);
  } finally {
    await handle.close();
  }
}
