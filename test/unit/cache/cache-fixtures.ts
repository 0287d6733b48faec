/** Shared by the cache tests and the crash-test child process: deterministic chunks and their keys. */
import { createHash } from 'node:crypto';
import { unverifiedChunkKey } from '../../../src/cache/chunk-cache.js';

export interface TestChunk {
  key: string;
  data: Buffer;
}

/** Bytes that depend only on (seed, length): a reader can rebuild what a writer put. */
export function chunkBytes(seed: number, length: number): Buffer {
  const data = Buffer.allocUnsafe(length);
  let state = (seed * 2654435761 + 1) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    data[i] = state & 0xff;
  }
  return data;
}

export function digestKeyOf(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** A chunk keyed by its sha256, like a verified eStargz chunk. */
export function digestChunk(seed: number, length: number): TestChunk {
  const data = chunkBytes(seed, length);
  return { key: digestKeyOf(data), data };
}

/** Chunk `index` of the crash test: odd indexes use unverified keys, sizes vary from 1 byte to ~192 KiB. */
export function crashTestChunk(index: number): TestChunk {
  const data = chunkBytes(index, 1 + ((index * 7919) % (192 * 1024)));
  const key = index % 2 === 0 ? digestKeyOf(data) : unverifiedChunkKey('sha256:crashlayer', index * 1000, 0);
  return { key, data };
}
