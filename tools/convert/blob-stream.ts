import { Readable, pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { DecompressStream } from 'zstd-napi';
import type { RandomAccessSource } from '../../src/io/random-access.js';
import { DigestMismatchError } from '../../src/remote/index.js';
import { Digester, type Digest } from '../../src/util/digest.js';

/** Bytes per read of a blob being streamed, and how many reads run ahead of the consumer: bounds memory per layer. */
const PIECE_SIZE = 4 << 20;
const READ_AHEAD = 2;

/**
 * Bytes [start, end) of a source as sequential pieces, with a few reads in flight so a registry's round
 * trip overlaps the consumer's work. Memory stays at (READ_AHEAD + 1) pieces whatever the blob size.
 */
export async function* readPieces(source: RandomAccessSource, start = 0, end = source.size): AsyncGenerator<Buffer> {
  const pending: Promise<Buffer>[] = [];
  let next = start;
  const schedule = (): void => {
    while (pending.length < READ_AHEAD + 1 && next < end) {
      const length = Math.min(PIECE_SIZE, end - next);
      const read = source.readAt(next, length);
      // Reads already in flight when the consumer stops must not become unhandled rejections.
      read.catch(() => undefined);
      pending.push(read);
      next += length;
    }
  };
  schedule();
  while (pending.length > 0) {
    const piece = await pending.shift()!;
    schedule();
    yield piece;
  }
}

/** Passes pieces through and fails at the end unless they hash to `digest` (so nothing is pushed from a corrupt blob). */
export async function* verifiedPieces(pieces: AsyncIterable<Buffer>, digest: Digest, onBytes?: (n: number) => void): AsyncGenerator<Buffer> {
  const digester = new Digester();
  for await (const piece of pieces) {
    digester.update(piece);
    onBytes?.(piece.length);
    yield piece;
  }
  const actual = digester.digest();
  if (actual !== digest) throw new DigestMismatchError(`blob ${digest} read back as ${actual}`);
}

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/**
 * A layer's tar stream, whatever its compression (plain, gzip or zstd, sniffed from the first bytes
 * rather than trusted from the media type). Errors of the input or the decompressor end the stream.
 */
export async function decompressedTar(pieces: AsyncIterable<Buffer>): Promise<Readable> {
  const iterator = pieces[Symbol.asyncIterator]();
  const first = await iterator.next();
  const head: Buffer = first.done ? Buffer.alloc(0) : first.value;
  async function* all(): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head;
    for (let item = await iterator.next(); !item.done; item = await iterator.next()) yield item.value;
  }
  const input = Readable.from(all(), { objectMode: false });
  const decompressor = head.subarray(0, 2).equals(GZIP_MAGIC) ? createGunzip({ chunkSize: 1 << 20 }) : head.subarray(0, 4).equals(ZSTD_MAGIC) ? new DecompressStream() : undefined;
  if (!decompressor) return input;
  return pipeline(input, decompressor, () => undefined);
}
