import { describe, expect, it } from 'vitest';
import { MemoryOnlyChunkCache } from '../../../src/cache/index.js';
import { ChunkFetcher } from '../../../src/fs/chunk-fetcher.js';
import type { FuseOperations } from '../../../src/fs/fuse-binding.js';
import { LayerFilesystem } from '../../../src/fs/layer-filesystem.js';
import { LayerFetch } from '../../../src/fs/layer-mount.js';
import { LayerView } from '../../../src/fs/layer-view.js';
import { BufferSource } from '../../../src/io/random-access.js';
import type { ByteRange } from '../../../src/layer/prefetch-ranges.js';
import { pseudoRandom } from '../../helpers/fixture-tree.js';
import { fakeLayer } from './fake-layer.js';
import { ScriptedSource } from './scripted-source.js';

const CHUNK = 1000;

function setup(profile?: (chunkOffsets: number[]) => ByteRange[]) {
  const layer = fakeLayer([
    { path: 'mapped', data: pseudoRandom(1, 20 * CHUNK), chunkSize: CHUNK },
    { path: 'streamed', data: pseudoRandom(2, 20 * CHUNK), chunkSize: CHUNK },
  ]);
  const mapped = layer.index.lookup('mapped')!;
  const source = new ScriptedSource(layer.blob);
  const fetcher = new ChunkFetcher({ index: layer.index, source, cache: new MemoryOnlyChunkCache(), layerDigest: 'sha256:layer', deadlineMs: 2000 });
  const profiledRanges = profile?.(mapped.chunks.map((c) => c.compressedOffset));
  const filesystem = new LayerFilesystem(new LayerView(layer.index), layer.index, fetcher, { readAheadBytes: 8 * CHUNK, ...(profiledRanges ? { profiledRanges } : {}) });
  return { layer, fetcher, ops: filesystem.operations(), fetchedMembers: () => source.readRangesCalls.flat().length + source.readAtCalls };
}

function call<T>(run: (cb: (...args: never[]) => void) => void): Promise<T[]> {
  return new Promise((resolve) => run(((...args: T[]) => resolve(args)) as never));
}

/** Opens `path` and reads its first `reads` chunks in order, one read per chunk, as a sequential reader does. */
async function readSequentially(ops: FuseOperations, path: string, reads: number): Promise<void> {
  const [err, fd] = await call<number>((cb) => ops.open!(path, 0, cb as never));
  expect(err).toBe(0);
  for (let i = 0; i < reads; i++) {
    const [got] = await call<number>((cb) => ops.read!(path, fd!, Buffer.alloc(CHUNK), CHUNK, i * CHUNK, cb as never));
    expect(got).toBe(CHUNK);
  }
}

describe('LayerFilesystem read-ahead', () => {
  it('reads ahead of a sequential reader of a file the range profile does not cover', async () => {
    const { fetchedMembers, fetcher, ops } = setup((offsets) => [{ start: offsets[0]!, end: offsets[0]! + 1 }]);
    await readSequentially(ops, '/streamed', 3);
    await fetcher.whenIdle();
    // Three chunks read, and the read-ahead window behind them.
    expect(fetchedMembers()).toBeGreaterThan(3 + 4);
  });

  it('does not read ahead in a file the range profile covers: the profile already says which of its chunks are read', async () => {
    const { fetchedMembers, fetcher, ops } = setup((offsets) => [{ start: offsets[0]!, end: offsets[0]! + 1 }]);
    await readSequentially(ops, '/mapped', 3);
    await fetcher.whenIdle();
    expect(fetchedMembers()).toBe(3);
  });

  it('reads ahead in every file of a layer without a profile, or with an empty one', async () => {
    for (const profile of [undefined, () => []]) {
      const { fetchedMembers, fetcher, ops } = setup(profile);
      await readSequentially(ops, '/mapped', 3);
      await fetcher.whenIdle();
      expect(fetchedMembers()).toBeGreaterThan(3 + 4);
    }
  });
});

describe('LayerFetch', () => {
  it('hands its mount the range profile only when the prefetch follows it', () => {
    const layer = fakeLayer([{ path: 'f', data: pseudoRandom(3, CHUNK) }]);
    const prefetchRanges = [{ start: 0, end: 10 }];
    const start = (prefetch: boolean) =>
      LayerFetch.start({ index: layer.index, source: new BufferSource(layer.blob), cache: new MemoryOnlyChunkCache(), layerDigest: 'sha256:layer', fetch: { prefetch, prefetchRanges, background: false } });
    const following = start(true);
    const ignoring = start(false);
    try {
      expect(following.prefetchRanges).toEqual(prefetchRanges);
      expect(ignoring.prefetchRanges).toBeUndefined();
    } finally {
      following.stop();
      ignoring.stop();
    }
  });
});
