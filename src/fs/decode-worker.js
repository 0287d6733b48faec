// Plain JavaScript on purpose: Piscina loads this file in worker threads without a TypeScript loader.
import { createHash } from 'node:crypto';
import { move } from 'piscina';
import { gunzipBounded, zstdBinding } from '../compression/compress-core.js';

/**
 * @typedef {object} DecodeTask
 * @property {'gzip' | 'zstd'} encoding
 * @property {Uint8Array} compressed   the whole member (gzip) or frame run (zstd)
 * @property {number} innerOffset      where the chunk starts in the inflated member
 * @property {number} size             chunk length
 * @property {number} maxInflated      bound on inflation (decompression bombs fail)
 * @property {string | undefined} digest  `sha256:` the chunk must hash to; undefined: unverified layer
 *
 * @typedef {Uint8Array | { error: string, kind: 'corrupt' | 'verification' }} DecodeResult
 */

/** @type {{ decompress(dst: Uint8Array, src: Uint8Array): number } | undefined} */
let zstdContext;

/**
 * @param {DecodeTask['encoding']} encoding
 * @param {Buffer} compressed
 * @param {number} maxInflated
 * @param {number} needed  bytes of the inflated member the chunk ends at
 * @returns {Buffer}
 */
function inflate(encoding, compressed, maxInflated, needed) {
  if (encoding === 'gzip') return gunzipBounded(compressed, maxInflated, needed);
  zstdContext ??= new zstdBinding.DCtx();
  const out = Buffer.allocUnsafe(maxInflated);
  return out.subarray(0, zstdContext.decompress(out, compressed));
}

/**
 * Inflates one member, cuts the chunk out and checks its sha256: the same rules as the format's decode,
 * for the encodings every chunked format shares. Errors come back as values (kind + message).
 * @param {DecodeTask | { warm: true }} task
 * @returns {DecodeResult | null}
 */
export default function decodeChunk(task) {
  // WorkerDecoder.warm: the worker has loaded this module, which is all that was asked.
  if ('warm' in task) return null;
  const compressed = Buffer.from(task.compressed.buffer, task.compressed.byteOffset, task.compressed.byteLength);
  let inflated;
  try {
    inflated = inflate(task.encoding, compressed, task.maxInflated, task.innerOffset + task.size);
  } catch (err) {
    return { kind: 'corrupt', error: `invalid ${task.encoding} member: ${/** @type {Error} */ (err).message}` };
  }
  if (inflated.length < task.innerOffset + task.size) {
    return { kind: 'corrupt', error: `member inflates to ${inflated.length} bytes, short of the chunk's ${task.innerOffset + task.size}` };
  }
  const data = new Uint8Array(inflated.buffer, inflated.byteOffset + task.innerOffset, task.size);
  if (task.digest !== undefined) {
    const actual = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    if (actual !== task.digest) return { kind: 'verification', error: `chunk has digest ${actual}, expected ${task.digest}` };
  }
  // Moved, not copied, back to the main thread (the inflated member's buffer goes with it; nothing else uses it).
  return /** @type {DecodeResult} */ (move(data));
}
