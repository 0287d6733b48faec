import type { RandomAccessSource } from '../io/random-access.js';
import type { LayerEntry, LayerIndex } from './layer-index.js';

/**
 * Reads [offset, offset + length) of a regular file straight from the blob, chunk by chunk, verified.
 * The cache and FUSE layers do the same through their own fetchers; this is the uncached path used by
 * the CLI and tests.
 */
export async function readFileRange(index: LayerIndex, source: RandomAccessSource, entry: LayerEntry, offset: number, length: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const slice of index.plan(entry, offset, length)) {
    const { chunk } = slice;
    const compressed = chunk.encoding === 'zeros' ? Buffer.alloc(0) : await source.readAt(chunk.compressedOffset, chunk.compressedEnd - chunk.compressedOffset);
    let data: Buffer;
    try {
      data = index.decode(chunk, compressed);
    } catch (err) {
      // Keep the error's class (verification, bomb, corrupt data): callers map them to different outcomes.
      if (err instanceof Error) err.message = `reading ${JSON.stringify(entry.name)} at ${chunk.fileOffset}: ${err.message}`;
      throw err;
    }
    parts.push(data.subarray(slice.start, slice.end));
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/** A whole regular file as a stream of verified chunks, for large files and `lazypull cat`. */
export async function* readFileChunks(index: LayerIndex, source: RandomAccessSource, entry: LayerEntry): AsyncGenerator<Buffer> {
  for (const chunk of entry.chunks) yield await readFileRange(index, source, entry, chunk.fileOffset, chunk.size);
}
