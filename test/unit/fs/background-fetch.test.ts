import { describe, expect, it, vi } from 'vitest';
import { MemoryOnlyChunkCache } from '../../../src/cache/index.js';
import { BackgroundFetch, DEFAULT_BACKGROUND_FETCH } from '../../../src/fs/background-fetch.js';
import { ChunkFetcher, type RangeSource } from '../../../src/fs/chunk-fetcher.js';
import { FetchActivity } from '../../../src/fs/fetch-activity.js';
import { BufferSource } from '../../../src/io/random-access.js';
import { pseudoRandom } from '../../helpers/fixture-tree.js';
import { fakeLayer } from './fake-layer.js';

/** Records when each request was made; each answer takes `delayMs`. */
class TimedSource implements RangeSource {
  readonly requestTimes: number[] = [];
  private readonly inner: BufferSource;
  constructor(
    blob: Buffer,
    private readonly delayMs = 0,
  ) {
    this.inner = new BufferSource(blob);
  }
  get size(): number {
    return this.inner.size;
  }
  async readAt(offset: number, length: number): Promise<Buffer> {
    this.requestTimes.push(performance.now());
    return this.inner.readAt(offset, length);
  }
  async readRanges(ranges: readonly { start: number; length: number }[]): Promise<Buffer[]> {
    this.requestTimes.push(performance.now());
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    return Promise.all(ranges.map((r) => this.inner.readAt(r.start, r.length)));
  }
}

describe('mount-time prefetch of a small layer', () => {
  const eightMembers = () =>
    fakeLayer([
      { path: 'read-first', data: pseudoRandom(4, 3000), chunkSize: 1000 },
      { path: 'rest', data: pseudoRandom(5, 5000), chunkSize: 1000 },
    ]);

  function start(layer: ReturnType<typeof fakeLayer>, options: Partial<typeof DEFAULT_BACKGROUND_FETCH>) {
    const cache = new MemoryOnlyChunkCache();
    const fetcher = new ChunkFetcher({ index: layer.index, source: new TimedSource(layer.blob), cache, layerDigest: 'sha256:layer', deadlineMs: 5000 });
    return { cache, fetcher, fetch: new BackgroundFetch(layer.index, fetcher, { ...DEFAULT_BACKGROUND_FETCH, background: false, ...options }) };
  }

  it('takes the whole layer when it is at most prefetchWholeLayerBytes, beyond the first prefetchBytes', async () => {
    const layer = eightMembers();
    const { fetch, fetcher } = start(layer, { prefetchBytes: 1, prefetchWholeLayerBytes: layer.blob.length });
    await fetch.prefetched;
    expect(fetch.progress(0).prefetchBytes).toBe(fetch.progress(0).totalBytes);
    expect(fetcher.counters.fetchedBytes).toBe(fetch.progress(0).totalBytes);
  });

  it('keeps to the first prefetchBytes for a larger layer, and to the range profile whatever the size', async () => {
    const layer = eightMembers();
    const larger = start(layer, { prefetchBytes: 1, prefetchWholeLayerBytes: 1000 });
    await larger.fetch.prefetched;
    const region = larger.fetch.progress(0).prefetchBytes;
    expect(region).toBeGreaterThan(0);
    expect(region).toBeLessThan(larger.fetch.progress(0).totalBytes / 2);
    const rest = layer.index.lookup('rest')!.chunks[2]!;
    const profiled = start(layer, { prefetchWholeLayerBytes: layer.blob.length, prefetchRanges: [{ start: rest.compressedOffset, end: rest.compressedOffset + 1 }] });
    await profiled.fetch.prefetched;
    expect(profiled.fetch.progress(0).prefetchBytes).toBe(rest.compressedEnd - rest.compressedOffset);
  });

  it('takes nothing of a layer whose range profile is empty (profiled, never read), however small', async () => {
    const layer = eightMembers();
    const { fetch, fetcher } = start(layer, { prefetchWholeLayerBytes: layer.blob.length, prefetchRanges: [] });
    await fetch.prefetched;
    expect(fetch.progress(0)).toMatchObject({ prefetchBytes: 0, prefetchDone: true });
    expect(fetcher.counters.fetchedBytes).toBe(0);
  });

  it("takes /etc/passwd and /etc/group, which every container start reads, beyond a larger layer's first prefetchBytes, but not against a range profile", async () => {
    const layer = fakeLayer([
      { path: 'usr', type: 'dir' },
      { path: 'usr/big', data: pseudoRandom(6, 6000), chunkSize: 1000 },
      { path: 'etc', type: 'dir' },
      { path: 'etc/group', data: Buffer.from('root:x:0:\n') },
      { path: 'etc/passwd', data: Buffer.from('root:x:0:0:root:/root:/bin/sh\n') },
    ]);
    const member = (path: string) => layer.index.lookup(path)!.chunks[0]!;
    const bytesOf = (path: string) => member(path).compressedEnd - member(path).compressedOffset;
    const plain = start(layer, { prefetchWholeLayerBytes: 0 });
    await plain.fetch.prefetched;
    expect(plain.fetch.progress(0).prefetchBytes).toBe(bytesOf('etc/group') + bytesOf('etc/passwd'));
    expect(await plain.cache.has(plain.fetcher.keyOf(member('etc/passwd')))).toBe(true);
    const profiled = start(layer, { prefetchWholeLayerBytes: 0, prefetchRanges: [] });
    await profiled.fetch.prefetched;
    expect(profiled.fetch.progress(0).prefetchBytes).toBe(0);
  });

  it('is off with prefetch off', async () => {
    const layer = eightMembers();
    const { fetch, fetcher } = start(layer, { prefetch: false, prefetchWholeLayerBytes: layer.blob.length });
    await fetch.prefetched;
    expect(fetch.progress(0).prefetchBytes).toBe(0);
    expect(fetcher.counters.fetchedBytes).toBe(0);
  });
});

/** Keeps every chunk readable at once but finishes no put (a disk write) until `release()`. */
class HeldWritesCache extends MemoryOnlyChunkCache {
  private releaseAll!: () => void;
  private readonly released = new Promise<void>((resolve) => (this.releaseAll = resolve));
  override async put(key: string, data: Buffer): Promise<void> {
    await super.put(key, data);
    await this.released;
  }
  release(): void {
    this.releaseAll();
  }
}

describe('prefetch while disk writes are held back', () => {
  it('requests every batch without waiting for their writes, and counts as done only once they are written', async () => {
    const layer = fakeLayer([{ path: 'file', data: pseudoRandom(9, 8000), chunkSize: 1000 }]);
    const cache = new HeldWritesCache();
    const source = new TimedSource(layer.blob);
    const fetcher = new ChunkFetcher({ index: layer.index, source, cache, layerDigest: 'sha256:layer', deadlineMs: 5000 });
    const fetch = new BackgroundFetch(layer.index, fetcher, { ...DEFAULT_BACKGROUND_FETCH, background: false, prefetchWholeLayerBytes: layer.blob.length, batchBytes: 1, prefetchConcurrency: 1 });
    await vi.waitFor(() => expect(source.requestTimes).toHaveLength(8), { timeout: 2000 });
    expect(fetch.progress(0).prefetchDone).toBe(false);
    cache.release();
    await fetch.prefetched;
    expect(fetch.progress(0)).toMatchObject({ prefetchDone: true, completedBytes: fetch.progress(0).totalBytes });
  });
});

describe('background fetch', () => {
  it('starts only after on-demand reads have left the registry alone for the quiet period, then fetches the rest in small batches', async () => {
    const layer = fakeLayer([{ path: 'file', data: pseudoRandom(3, 8000), chunkSize: 1000 }]);
    const source = new TimedSource(layer.blob);
    const cache = new MemoryOnlyChunkCache();
    const fetcher = new ChunkFetcher({ index: layer.index, source, cache, layerDigest: 'sha256:layer', deadlineMs: 5000 });
    const file = layer.index.lookup('file')!;
    const quietMs = 300;
    const background = new BackgroundFetch(layer.index, fetcher, { ...DEFAULT_BACKGROUND_FETCH, prefetch: false, quietMs, backgroundBatchBytes: 2500 });
    await new Promise((r) => setTimeout(r, 150));
    await fetcher.readInto(layer.index.plan(file, 0, 100), Buffer.alloc(100));
    const readAt = performance.now();
    expect(source.requestTimes).toHaveLength(1);
    await background.finished;
    const backgroundRequests = source.requestTimes.slice(1);
    expect(backgroundRequests.length).toBeGreaterThanOrEqual(3); // 7 remaining members in batches of 2500 compressed bytes at most
    expect(backgroundRequests[0]! - readAt).toBeGreaterThanOrEqual(quietMs - 20);
    expect(background.progress(0).backgroundDone).toBe(true);
  });

  it('waits a quiet period after the prefetch ends, when the container that waited for it starts reading', async () => {
    const layer = fakeLayer([{ path: 'file', data: pseudoRandom(6, 8000), chunkSize: 1000 }]);
    const quietMs = 300;
    const source = new TimedSource(layer.blob, quietMs); // a prefetch as long as the quiet period
    const fetcher = new ChunkFetcher({ index: layer.index, source, cache: new MemoryOnlyChunkCache(), layerDigest: 'sha256:layer', deadlineMs: 5000 });
    const first = layer.index.lookup('file')!.chunks[0]!;
    const background = new BackgroundFetch(layer.index, fetcher, { ...DEFAULT_BACKGROUND_FETCH, quietMs, prefetchRanges: [{ start: first.compressedOffset, end: first.compressedEnd }] });
    await background.prefetched;
    const prefetchedAt = performance.now();
    await background.finished;
    expect(source.requestTimes.length).toBeGreaterThan(1);
    expect(source.requestTimes[1]! - prefetchedAt).toBeGreaterThanOrEqual(quietMs - 20);
  });

  it("of an idle layer waits for another layer's prefetch when they share the link's activity", async () => {
    const quietMs = 200;
    const activity = new FetchActivity();
    const mount = (seed: number, delayMs: number, options: Partial<typeof DEFAULT_BACKGROUND_FETCH>) => {
      const layer = fakeLayer([{ path: 'file', data: pseudoRandom(seed, 4000), chunkSize: 1000 }]);
      const source = new TimedSource(layer.blob, delayMs);
      const fetcher = new ChunkFetcher({ index: layer.index, source, cache: new MemoryOnlyChunkCache(), layerDigest: `sha256:layer${seed}`, deadlineMs: 5000, activity });
      return { source, fetch: new BackgroundFetch(layer.index, fetcher, { ...DEFAULT_BACKGROUND_FETCH, quietMs, ...options }) };
    };
    const idle = mount(7, 0, { prefetchRanges: [] }); // profiled, never read: nothing to prefetch
    const busy = mount(8, 3 * quietMs, { prefetchWholeLayerBytes: 1 << 20 }); // a prefetch longer than the quiet period
    await busy.fetch.prefetched;
    const prefetchedAt = performance.now();
    await idle.fetch.finished;
    expect(idle.source.requestTimes.length).toBeGreaterThan(0);
    expect(idle.source.requestTimes[0]! - prefetchedAt).toBeGreaterThanOrEqual(quietMs - 20);
    await busy.fetch.finished;
  });
});
