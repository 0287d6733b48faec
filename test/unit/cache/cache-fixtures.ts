/** Shared by the cache tests and the crash-test child process: deterministic chunks and their keys. */
import { createCipheriv, createHash } from 'node:crypto';
import { unverifiedChunkKey } from '../../../src/cache/chunk-cache.js';

export interface TestChunk {
  key: string;
  data: Buffer;
}

/** Bytes that depend only on (seed, length), so a reader can rebuild what a writer put: an AES-CTR keystream (fast). */
export function chunkBytes(seed: number, length: number): Buffer {
  const key = Buffer.alloc(16);
  key.writeUInt32LE(seed >>> 0, 0);
  key.writeUInt32LE(Math.floor(seed / 2 ** 32), 4);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(length));
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
