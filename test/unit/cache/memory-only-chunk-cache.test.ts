import { describe, expect, it } from 'vitest';
import { MemoryOnlyChunkCache } from '../../../src/cache/memory-only-chunk-cache.js';
import { digestChunk } from './cache-fixtures.js';

describe('memory-only chunk cache', () => {
  it('round-trips, misses unknown keys and counts both', async () => {
    const cache = new MemoryOnlyChunkCache();
    const chunk = digestChunk(1, 1000);
    await cache.put(chunk.key, chunk.data);
    expect((await cache.get(chunk.key))?.equals(chunk.data)).toBe(true);
    expect(await cache.get(digestChunk(2, 10).key)).toBeUndefined();
    expect(await cache.has(chunk.key)).toBe(true);
    expect(cache.stats()).toMatchObject({ hits: { memory: 1, disk: 0 }, misses: 1, memoryBytes: 1000, diskBytes: 0 });
  });

  it('stays within its byte bound, dropping the least recently used', async () => {
    const cache = new MemoryOnlyChunkCache({ maxMemoryBytes: 10_000 });
    const chunks = Array.from({ length: 5 }, (_, index) => digestChunk(index, 3000));
    for (const chunk of chunks) await cache.put(chunk.key, chunk.data);
    expect(cache.stats()).toMatchObject({ memoryBytes: 9000, memoryEntries: 3, evictions: 2 });
    const present = await Promise.all(chunks.map((chunk) => cache.has(chunk.key)));
    expect(present).toEqual([false, false, true, true, true]);
  });

  it('keeps pinned chunks past the bound until released', async () => {
    const cache = new MemoryOnlyChunkCache({ maxMemoryBytes: 10_000 });
    const pinned = digestChunk(100, 3000);
    const tooLarge = digestChunk(101, 20_000);
    const release = cache.pin(pinned.key);
    const releaseLarge = cache.pin(tooLarge.key);
    await cache.put(pinned.key, pinned.data);
    await cache.put(tooLarge.key, tooLarge.data);
    for (let index = 0; index < 5; index++) {
      const chunk = digestChunk(index, 3000);
      await cache.put(chunk.key, chunk.data);
    }
    expect((await cache.get(pinned.key))?.equals(pinned.data)).toBe(true);
    expect((await cache.get(tooLarge.key))?.equals(tooLarge.data)).toBe(true);

    releaseLarge();
    expect(await cache.has(tooLarge.key)).toBe(false); // it can never fit the LRU
    release();
    expect(await cache.has(pinned.key)).toBe(true); // back in the LRU as its newest entry
    expect(cache.stats().memoryBytes).toBeLessThanOrEqual(10_000);
    expect(cache.stats().pinnedKeys).toBe(0);
  });

  it('drops a chunk larger than the whole bound when nothing pins it', async () => {
    const cache = new MemoryOnlyChunkCache({ maxMemoryBytes: 100 });
    const chunk = digestChunk(1, 101);
    await cache.put(chunk.key, chunk.data);
    expect(await cache.get(chunk.key)).toBeUndefined();
    expect(cache.stats().memoryBytes).toBe(0);
  });

  it('rejects a bound that is not a positive integer', () => {
    expect(() => new MemoryOnlyChunkCache({ maxMemoryBytes: 0 })).toThrow(RangeError);
    expect(() => new MemoryOnlyChunkCache({ maxMemoryBytes: 1.5 })).toThrow(RangeError);
  });
});
