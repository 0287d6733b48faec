// Plain JavaScript on purpose: Piscina loads this file in worker threads without a TypeScript loader.
import { createHash } from 'node:crypto';
import { gzipCompress, zstdCompress } from '../compression/compress-core.js';

/**
 * @typedef {object} CompressTask
 * @property {'gzip' | 'zstd'} codec
 * @property {number} level
 * @property {Uint8Array} data            the members of this batch, back to back
 * @property {number[]} memberLengths     uncompressed length of each member
 * @property {number[]} digestRanges      [start, end) pairs inside `data` whose sha256 the writer needs
 *
 * @typedef {object} CompressResult
 * @property {Uint8Array} compressed      compressed members back to back
 * @property {number[]} compressedLengths
 * @property {string[]} digests           hex sha256 per digest range
 */

/**
 * Compresses each member into its own gzip member or zstd frame and hashes the chunk ranges, so the
 * main thread only orders results and writes them.
 * @param {CompressTask} task
 * @returns {CompressResult}
 */
export default function compressBatch(task) {
  const compress = task.codec === 'gzip' ? gzipCompress : zstdCompress;
  const data = Buffer.from(task.data.buffer, task.data.byteOffset, task.data.byteLength);
  const outputs = [];
  let position = 0;
  for (const length of task.memberLengths) {
    outputs.push(compress(data.subarray(position, position + length), task.level));
    position += length;
  }
  const digests = [];
  for (let i = 0; i < task.digestRanges.length; i += 2) {
    digests.push(createHash('sha256').update(data.subarray(task.digestRanges[i], task.digestRanges[i + 1])).digest('hex'));
  }
  return { compressed: Buffer.concat(outputs), compressedLengths: outputs.map((o) => o.length), digests };
}
