// Plain JavaScript on purpose: worker threads load this file directly, without a TypeScript loader,
// both from the compiled tree and when tests run the sources.
import { createRequire } from 'node:module';
import { gzipSync } from 'node:zlib';

/**
 * @typedef {{ compress(dst: Uint8Array, src: Uint8Array, level: number): number }} ZstdCompressContext
 * @typedef {{ decompress(dst: Uint8Array, src: Uint8Array): number }} ZstdDecompressContext
 * @typedef {{ CCtx: new () => ZstdCompressContext, DCtx: new () => ZstdDecompressContext, compressBound(size: number): number }} ZstdBinding
 */

/** @type {ZstdBinding} */
export const zstdBinding = createRequire(import.meta.url)('zstd-napi/binding');

/** @type {ZstdCompressContext | undefined} */
let compressContext;

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
