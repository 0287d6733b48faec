import { gzipSync } from 'node:zlib';
import { zstdCodec } from '../../../src/compression/codec.js';
import { afterAll, describe, expect, it } from 'vitest';
import { WorkerDecoder } from '../../../src/fs/worker-decoder.js';
import type { ChunkRef } from '../../../src/layer/layer-index.js';
import { sha256 } from '../../../src/util/digest.js';
import { pseudoRandom } from '../../helpers/fixture-tree.js';
import { fakeLayer } from './fake-layer.js';

const { index } = fakeLayer([]);
const decoder = new WorkerDecoder({ minWorkerBytes: 64 * 1024, threads: 1 });
afterAll(() => decoder.close());

function chunkOf(member: Buffer, data: Buffer, encoding: 'gzip' | 'zstd', innerOffset = 0, size = data.length - innerOffset): ChunkRef {
  return { fileOffset: 0, size, compressedOffset: 0, compressedEnd: member.length, innerOffset, encoding, maxInflated: data.length, digest: sha256(data.subarray(innerOffset, innerOffset + size)) };
}

describe('WorkerDecoder', () => {
  it('decodes and verifies large gzip and zstd chunks on a worker, inner offsets included', async () => {
    const data = pseudoRandom(3, 300 * 1024);
    const gz = gzipSync(data);
    expect((await decoder.decode(index, chunkOf(gz, data, 'gzip'), gz)).equals(data)).toBe(true);
    const zst = zstdCodec.compress(data, 3);
    const inner = chunkOf(zst, data, 'zstd', 1000, 200 * 1024);
    expect((await decoder.decode(index, inner, zst)).equals(data.subarray(1000, 1000 + 200 * 1024))).toBe(true);
  });

  it('decodes members that are views into one shared response, leaving that buffer to its other readers', async () => {
    const first = pseudoRandom(7, 200 * 1024);
    const second = pseudoRandom(8, 200 * 1024);
    const [a, b] = [gzipSync(first), gzipSync(second)];
    const response = Buffer.concat([a, b]);
    const [decodedA, decodedB] = await Promise.all([decoder.decode(index, chunkOf(a, first, 'gzip'), response.subarray(0, a.length)), decoder.decode(index, chunkOf(b, second, 'gzip'), response.subarray(a.length))]);
    expect(decodedA.equals(first) && decodedB.equals(second)).toBe(true);
    // The response was copied member by member for the worker, not moved: it is still whole here.
    expect(response.byteLength).toBe(a.length + b.length);
    expect(response.subarray(0, a.length).equals(a)).toBe(true);
  });

  it('rejects a chunk whose bytes do not match its digest', async () => {
    const data = pseudoRandom(4, 128 * 1024);
    const other = gzipSync(pseudoRandom(5, 128 * 1024));
    await expect(decoder.decode(index, chunkOf(gzipSync(data), data, 'gzip'), other)).rejects.toMatchObject({ kind: 'verification' });
  });

  it('rejects a corrupt member and one that inflates past its bound', async () => {
    const data = pseudoRandom(6, 128 * 1024);
    const member = gzipSync(data);
    const broken = Buffer.from(member);
    broken[broken.length >> 1]! ^= 0xff;
    await expect(decoder.decode(index, chunkOf(member, data, 'gzip'), broken)).rejects.toMatchObject({ kind: 'corrupt' });
    await expect(decoder.decode(index, { ...chunkOf(member, data, 'gzip'), maxInflated: 100 * 1024, size: 100 * 1024 }, member)).rejects.toMatchObject({ kind: 'corrupt' });
  });

  it('starts no worker before the first task, unless it keeps them warm', async () => {
    const lazy = new WorkerDecoder({ minWorkerBytes: 64 * 1024, threads: 2 });
    const warm = new WorkerDecoder({ minWorkerBytes: 64 * 1024, threads: 2, keepWarm: true });
    try {
      expect(lazy.liveWorkers).toBe(0);
      await warm.ready;
      expect(warm.liveWorkers).toBe(2);
    } finally {
      await Promise.all([lazy.close(), warm.close()]);
    }
  });

  it('closes a warm decoder right after making it without tearing down a worker mid-load', async () => {
    const warm = new WorkerDecoder({ minWorkerBytes: 64 * 1024, threads: 2, keepWarm: true });
    await warm.close();
    expect(warm.liveWorkers).toBe(0);
  });

  it('keeps small chunks inline with the format decode', async () => {
    const data = Buffer.from('small');
    const gz = gzipSync(data);
    expect((await decoder.decode(index, chunkOf(gz, data, 'gzip'), gz)).toString()).toBe('small');
  });
});
