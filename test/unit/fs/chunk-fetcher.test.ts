import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { MemoryOnlyChunkCache } from '../../../src/cache/index.js';
import { ChunkFetcher } from '../../../src/fs/chunk-fetcher.js';
import { DeadlineExceededError } from '../../../src/fs/deadline.js';
import { pseudoRandom } from '../../helpers/fixture-tree.js';
import { fakeLayer } from './fake-layer.js';
import { ScriptedSource } from './scripted-source.js';

function setup(deadlineMs = 2000) {
  const data = pseudoRandom(1, 5 * 1000);
  const layer = fakeLayer([{ path: 'file', data, chunkSize: 1000 }, { path: 'other', data: pseudoRandom(2, 300) }]);
  const source = new ScriptedSource(layer.blob);
  const cache = new MemoryOnlyChunkCache();
  const fetcher = new ChunkFetcher({ index: layer.index, source, cache, layerDigest: 'sha256:layer', deadlineMs });
  const file = layer.index.lookup('file')!;
  return { data, layer, source, cache, fetcher, file };
}

describe('ChunkFetcher', () => {
  it('fetches all chunks one read needs in one coalesced request and returns exactly the requested bytes', async () => {
    const { data, layer, source, fetcher, file } = setup();
    const target = Buffer.alloc(2100);
    expect(await fetcher.readInto(layer.index.plan(file, 1500, 2000), target)).toBe(2000);
    expect(target.subarray(0, 2000).equals(data.subarray(1500, 3500))).toBe(true);
    expect(source.readRangesCalls).toHaveLength(1);
    expect(source.readRangesCalls[0]).toHaveLength(3);
  });

  it('shares one fetch among concurrent readers of the same chunk', async () => {
    const { data, source, fetcher, file } = setup();
    source.delayMs = 20;
    const results = await Promise.all(Array.from({ length: 10 }, () => fetcher.getChunks([file.chunks[2]!], 'foreground')));
    for (const [chunk] of results) expect(chunk!.equals(data.subarray(2000, 3000))).toBe(true);
    expect(source.readRangesCalls).toHaveLength(1);
    expect(fetcher.counters.decodedChunks).toBe(1);
  });

  it('serves cached chunks without touching the source', async () => {
    const { source, fetcher, file } = setup();
    await fetcher.getChunks(file.chunks, 'foreground');
    const before = source.readRangesCalls.length;
    await fetcher.getChunks(file.chunks, 'foreground');
    expect(source.readRangesCalls.length).toBe(before);
  });

  it('copies cached slices through the cache range read and fetches only the chunks it lacks', async () => {
    const { data, layer, source, cache, fetcher, file } = setup();
    await fetcher.getChunks([file.chunks[1]!, file.chunks[3]!], 'foreground');
    const ranges: number[] = [];
    const readRange = cache.readRange.bind(cache);
    cache.readRange = async (key, offset, length, target, at) => (ranges.push(length), readRange(key, offset, length, target, at));
    const target = Buffer.alloc(4000);
    expect(await fetcher.readInto(layer.index.plan(file, 500, 4000), target)).toBe(4000);
    expect(target.equals(data.subarray(500, 4500))).toBe(true);
    // every slice asked the cache for just its bytes; chunks 0, 2 and 4 were missing and came in one request
    expect(ranges).toEqual([500, 1000, 1000, 1000, 500]);
    expect(source.readRangesCalls.at(-1)!.map((r) => r.start)).toEqual([0, 2, 4].map((i) => file.chunks[i]!.compressedOffset));
    expect(fetcher.counters.decodedChunks).toBe(5);
  });

  it('fetches ahead only the chunks the cache lacks, without reading the cached ones', async () => {
    const { source, cache, fetcher, file } = setup();
    await fetcher.getChunks([file.chunks[0]!], 'foreground');
    const before = source.readRangesCalls.length;
    const get = cache.get.bind(cache);
    let gets = 0;
    cache.get = async (key) => (gets++, get(key));
    await fetcher.fetchMissing(file.chunks.slice(0, 2), 'foreground');
    expect(source.readRangesCalls.slice(before)).toEqual([[{ start: file.chunks[1]!.compressedOffset, length: file.chunks[1]!.compressedEnd - file.chunks[1]!.compressedOffset }]]);
    expect(gets).toBe(1); // the missing chunk's lookup before fetching; the cached one is never read
  });

  it('brings the small files that follow an on-demand miss in the same request, within the window, and no more', async () => {
    const small = (i: number) => ({ path: `dir/f${i}`, data: pseudoRandom(10 + i, 300) });
    const layer = fakeLayer([{ path: 'dir', type: 'dir' }, small(0), small(1), small(2), small(3), { path: 'big', data: pseudoRandom(20, 5000), chunkSize: 1000 }, small(4)]);
    const members = [0, 1, 2, 3].map((i) => layer.index.lookup(`dir/f${i}`)!.chunks[0]!);
    const source = new ScriptedSource(layer.blob);
    const cache = new MemoryOnlyChunkCache();
    // The window ends inside f3's member: f1 and f2 come along, f3 does not.
    const window = members[2]!.compressedEnd - members[0]!.compressedEnd + 10;
    const fetcher = new ChunkFetcher({ index: layer.index, source, cache, layerDigest: 'sha256:layer', deadlineMs: 2000, smallFileReadAheadBytes: window });
    await cache.put(fetcher.keyOf(members[2]!), Buffer.from('already cached'));
    const f0 = layer.index.lookup('dir/f0')!;
    await fetcher.readInto(layer.index.plan(f0, 0, 300), Buffer.alloc(300));
    expect(source.readRangesCalls).toHaveLength(1);
    expect(source.readRangesCalls[0]!.map((r) => r.start)).toEqual([members[0]!.compressedOffset, members[1]!.compressedOffset]);
    expect(await cache.has(fetcher.keyOf(members[1]!))).toBe(true);
    expect(await cache.has(fetcher.keyOf(members[3]!))).toBe(false);
    // Other chunks of a large file do not come along (random reads stay 1:1), nor does anything with
    // prefetch and background fetches.
    const big = layer.index.lookup('big')!;
    await fetcher.getChunks([big.chunks[2]!], 'foreground');
    await fetcher.getChunks([members[3]!], 'background');
    expect(source.readRangesCalls.slice(1).map((call) => call.length)).toEqual([1, 1]);
    expect(await cache.has(fetcher.keyOf(layer.index.lookup('dir/f4')!.chunks[0]!))).toBe(false);
  });

  it('rejects bytes that do not match the chunk digest and caches nothing, then recovers', async () => {
    const { data, source, cache, fetcher, file } = setup();
    // A valid gzip member with the wrong content: only the digest check can catch it.
    source.replace = () => gzipSync(Buffer.alloc(1000, 7));
    await expect(fetcher.getChunks([file.chunks[0]!], 'foreground')).rejects.toThrow(/digest/);
    expect(await cache.has(file.chunks[0]!.digest!)).toBe(false);
    source.replace = undefined;
    const [chunk] = await fetcher.getChunks([file.chunks[0]!], 'foreground');
    expect(chunk!.equals(data.subarray(0, 1000))).toBe(true);
    expect(await cache.has(file.chunks[0]!.digest!)).toBe(true);
  });

  it('fails an on-demand read at the deadline when the source never answers', async () => {
    const { source, fetcher, file } = setup(150);
    source.stall = true;
    const started = Date.now();
    await expect(fetcher.getChunks([file.chunks[0]!], 'foreground')).rejects.toBeInstanceOf(DeadlineExceededError);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(fetcher.foregroundPending).toBe(0);
  });

  it('lets background work wait while an on-demand read is in progress', async () => {
    const { source, fetcher, file } = setup();
    source.delayMs = 50;
    let decodedWhenIdle = -1;
    const foreground = fetcher.getChunks([file.chunks[0]!], 'foreground');
    expect(fetcher.foregroundPending).toBe(1);
    const idle = fetcher.whenIdle().then(() => (decodedWhenIdle = fetcher.counters.decodedChunks));
    await Promise.all([foreground, idle]);
    expect(decodedWhenIdle).toBe(1); // woken only after the on-demand chunk was fetched and decoded
  });

  it('keys chunks without a digest by layer and offset', () => {
    const { fetcher, file } = setup();
    const { digest: _digest, ...undigested } = file.chunks[1]!;
    expect(fetcher.keyOf(undigested)).toBe(`unverified:sha256:layer:${file.chunks[1]!.compressedOffset}:0`);
    expect(fetcher.keyOf(file.chunks[1]!)).toBe(file.chunks[1]!.digest);
  });

  it('never stores bytes of an unverified layer under their claimed digest (no cross-layer cache poisoning)', async () => {
    const { layer, source, cache, file } = setup();
    const unverified = Object.assign(Object.create(Object.getPrototypeOf(layer.index) as object) as typeof layer.index, layer.index, { verified: false });
    const fetcher = new ChunkFetcher({ index: unverified, source, cache, layerDigest: 'sha256:untrusted', deadlineMs: 2000 });
    const chunk = file.chunks[0]!;
    expect(fetcher.keyOf(chunk)).toBe(`unverified:sha256:untrusted:${chunk.compressedOffset}:0`);
    await fetcher.getChunks([chunk], 'foreground');
    expect(await cache.has(chunk.digest!)).toBe(false);
    expect(await cache.has(fetcher.keyOf(chunk))).toBe(true);
  });
});
