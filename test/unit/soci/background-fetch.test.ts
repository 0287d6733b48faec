import { describe, expect, it } from 'vitest';
import { MemoryOnlyChunkCache } from '../../../src/cache/index.js';
import { BackgroundFetch, DEFAULT_BACKGROUND_FETCH } from '../../../src/fs/background-fetch.js';
import { ChunkFetcher } from '../../../src/fs/chunk-fetcher.js';
import { BufferSource } from '../../../src/io/random-access.js';
import { openSociLayer } from '../../../src/soci/layer-index.js';
import { gzipped, sampleTar, sampleZtoc } from './helpers.js';

describe('background fetch of a SOCI layer', () => {
  it('caches each span once under the key reads look up, so reads afterwards fetch nothing', async () => {
    const sample = sampleTar();
    const blob = gzipped(sample.tar);
    const index = openSociLayer((await sampleZtoc(blob)).bytes);
    const source = new BufferSource(blob);
    const cache = new MemoryOnlyChunkCache();
    const fetcher = new ChunkFetcher({ index, source, cache, layerDigest: 'sha256:layer', deadlineMs: 5000 });
    const background = new BackgroundFetch(index, fetcher, { ...DEFAULT_BACKGROUND_FETCH, prefetchBytes: blob.length });
    await background.finished;

    const spans = index.fetchUnits().length;
    expect(spans).toBeGreaterThan(4);
    expect(fetcher.counters.decodedChunks).toBe(spans);
    expect(background.progress(0).completedBytes).toBe(background.progress(0).totalBytes);
    const before = { ...fetcher.counters };
    for (const [name, data] of sample.files) {
      const target = Buffer.alloc(data.length);
      await fetcher.readInto(index.plan(index.lookup(name)!, 0, data.length), target);
      expect(target.equals(data), name).toBe(true);
    }
    expect(fetcher.counters.requests).toBe(before.requests);
    expect(fetcher.counters.decodedChunks).toBe(before.decodedChunks);
  });
});
