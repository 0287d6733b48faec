/**
 * Range-granular prefetch for converted layers: what a workload read of each file (optimize's
 * recording) becomes (1) small chunks for large files it read only parts of, so the parts it needs are
 * small members, and (2) the compressed byte ranges of the chunks those reads touch in the new blob,
 * stored as the layer's `dev.lazypull.prefetch-ranges` annotation for the daemon to prefetch exactly.
 */
import { openLayer } from '../../src/estargz/open.js';
import { FileSource } from '../../src/io/random-access.js';
import { formatPrefetchRanges, type ByteRange } from '../../src/layer/prefetch-ranges.js';
import type { Digest } from '../../src/util/digest.js';

/** Read byte ranges per file, by absolute path as FUSE reports it (`/usr/lib/x.so`). */
export type FileReads = ReadonlyMap<string, readonly ByteRange[]>;

/** Chunk size for files a workload read only parts of: small enough that a few pages cost little. */
export const PARTIAL_READ_CHUNK_SIZE = 256 << 10;
/** A file read to at least this fraction is fetched whole anyway: small chunks would only add members. */
const MOSTLY_READ = 0.5;

/**
 * `chunkSizeFor` for the writer: small chunks for files the workload read less than half of (a shared
 * library it mapped, a data file it seeked in), whether or not they exceed the usual chunk size.
 */
export function partialReadChunkSizes(reads: FileReads, chunkSize: number): (path: string, size: number) => number | undefined {
  return (path, size) => {
    if (size <= 2 * PARTIAL_READ_CHUNK_SIZE || chunkSize <= PARTIAL_READ_CHUNK_SIZE) return undefined;
    const ranges = reads.get(`/${path}`);
    if (!ranges) return undefined;
    const read = ranges.reduce((sum, r) => sum + Math.min(r.end, size) - Math.min(r.start, size), 0);
    return read < size * MOSTLY_READ ? PARTIAL_READ_CHUNK_SIZE : undefined;
  };
}

/** The annotation value: compressed ranges of every chunk the recorded reads touch in the converted blob. */
export async function prefetchRangesOf(blobPath: string, tocDigest: Digest, reads: FileReads): Promise<string> {
  const file = await FileSource.open(blobPath);
  try {
    const layer = await openLayer(file, { expectedTocDigest: tocDigest });
    const ranges: ByteRange[] = [];
    for (const [path, fileRanges] of reads) {
      const entry = layer.lookup(path);
      if (entry?.type !== 'reg') continue;
      for (const range of fileRanges) {
        const length = Math.min(range.end, entry.size) - range.start;
        if (length <= 0) continue;
        for (const slice of layer.plan(entry, range.start, length)) ranges.push({ start: slice.chunk.compressedOffset, end: slice.chunk.compressedEnd });
      }
    }
    return formatPrefetchRanges(ranges);
  } finally {
    await file.close();
  }
}
