// Plain JavaScript on purpose: worker threads load this file directly, without a TypeScript loader,
// both from the compiled tree and when tests run the sources.
import { createRequire } from 'node:module';
import { gunzipSync, gzipSync } from 'node:zlib';

/**
 * @typedef {{ compress(dst: Uint8Array, src: Uint8Array, level: number): number }} ZstdCompressContext
 * @typedef {{ decompress(dst: Uint8Array, src: Uint8Array): number }} ZstdDecompressContext
 * @typedef {{ CCtx: new () => ZstdCompressContext, DCtx: new () => ZstdDecompressContext, compressBound(size: number): number }} ZstdBinding
 */

/** @type {ZstdBinding} */
export const zstdBinding = createRequire(import.meta.url)('zstd-napi/binding');

/** @type {ZstdCompressContext | undefined} */
let compressContext;

const SMALL_PIECE = 16 << 10;

/**
 * The uncompressed size the last gzip member's trailer states (ISIZE, modulo 4 GiB): only a guess for
 * sizing buffers (the last member of several, or a lie), never a bound.
 * @param {Uint8Array} data
 * @returns {number}
 */
function gzipTrailerSize(data) {
  if (data.length < 18) return data.length * 4;
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).readUInt32LE(data.length - 4);
}
const LARGE_PIECE = 4 << 20;

/**
 * Inflates gzip data, failing (ERR_BUFFER_TOO_LARGE) past `maxOutput` bytes. zlib writes its output in
 * pieces and joins them: its 16 KiB default made a 1.9 MB TOC take 9.6 ms to inflate, pieces sized
 * from `expectedOutput` (up to 4 MiB: a whole chunk or TOC in one) 2-5 ms. An output that fits one piece is a view of it, so one
 * much smaller than its piece is copied out: a cached chunk must not hold a megabyte for a kilobyte.
 * @param {Uint8Array} data
 * @param {number} maxOutput
 * @param {number} [expectedOutput] what the data likely inflates to (default: the size its gzip trailer states)
 * @returns {Buffer}
 */
export function gunzipBounded(data, maxOutput, expectedOutput = gzipTrailerSize(data)) {
  const maxOutputLength = Math.max(1, maxOutput);
  const chunkSize = Math.max(64, Math.min(LARGE_PIECE, maxOutputLength + 1, Math.max(SMALL_PIECE, expectedOutput + SMALL_PIECE)));
  const out = gunzipSync(data, { maxOutputLength, chunkSize });
  if (out.buffer.byteLength - out.length <= SMALL_PIECE) return out;
  // Not Buffer.from: a pooled copy could not be moved to another thread.
  const exact = Buffer.allocUnsafeSlow(out.length);
  out.copy(exact);
  return exact;
}

/**
 * One complete gzip member.
 * @param {Uint8Array} data
 * @param {number} level
 * @returns {Buffer}
 */
export function gzipCompress(data, level) {
  return gzipSync(data, { level });
}

/**
 * One complete zstd frame.
 * @param {Uint8Array} data
 * @param {number} level
 * @returns {Buffer}
 */
export function zstdCompress(data, level) {
  compressContext ??= new zstdBinding.CCtx();
  const out = Buffer.allocUnsafe(zstdBinding.compressBound(data.length));
  const n = compressContext.compress(out, data, level);
  return out.subarray(0, n);
}
