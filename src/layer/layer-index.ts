import type { Digest } from '../util/digest.js';

/**
 * The seam between formats and everything that serves files (FUSE, cache, prefetch): eStargz,
 * zstd:chunked and SOCI each build a LayerIndex; consumers see only entries and chunk fetch plans.
 */

export type FileType = 'dir' | 'reg' | 'symlink' | 'char' | 'block' | 'fifo';

export type LayerFormat = 'estargz' | 'stargz-legacy' | 'zstd:chunked' | 'soci';

/**
 * How a chunk's compressed bytes become file bytes. 'soci-span': a piece of a SOCI span, inflated by the
 * SOCI index from the span's zTOC checkpoint (or taken as is from an uncompressed layer).
 */
export type ChunkEncoding = 'gzip' | 'zstd' | 'zeros' | 'soci-span';

export interface ChunkRef {
  /** Offset of this chunk inside its file. */
  readonly fileOffset: number;
  /** Uncompressed length of this chunk. */
  readonly size: number;
  /** Compressed range to fetch: the whole member (gzip) or frame run (zstd) holding the chunk. */
  readonly compressedOffset: number;
  readonly compressedEnd: number;
  /** Where the chunk starts inside the decompressed member (several small files may share one). */
  readonly innerOffset: number;
  readonly encoding: ChunkEncoding;
  /** Upper bound for inflating the member; past it the data is treated as a decompression bomb. */
  readonly maxInflated: number;
  /**
   * sha256 of the uncompressed chunk; absent only for legacy stargz, served with verification off.
   * Whatever the encoding, it names exactly what decode() returns (caches key decode output by it).
   * For 'soci-span' chunks it is not a hash of those bytes but a key derived from everything they depend
   * on (the zTOC's digest of the span's compressed bytes, which decode verifies, the checkpoint's bits
   * and window, the piece's place in the span); SOCI's plan() returns whole-span chunks, so reads cache
   * each span once for all the files in it.
   */
  readonly digest?: Digest;
}

export type SpecialEntry = 'whiteout' | 'opaque-marker' | 'landmark';

export interface LayerEntry {
  /** Stable inode number, assigned in TOC order (root is 1). */
  readonly ino: number;
  /** Clean path relative to the layer root; '' for the root. */
  readonly name: string;
  readonly type: FileType;
  /** Permission bits, setuid/setgid/sticky (mode & 0o7777). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly userName: string;
  readonly groupName: string;
  readonly size: number;
  readonly mtimeSec: number;
  readonly mtimeNsec: number;
  /** Symlink target. */
  readonly linkName: string;
  readonly devMajor: number;
  readonly devMinor: number;
  readonly xattrs: ReadonlyMap<string, Buffer>;
  /** Whole-file digest when the format records one. */
  readonly digest?: Digest;
  /** File content chunks in file order, covering [0, size) without gaps. */
  readonly chunks: readonly ChunkRef[];
  /** Names (not paths) of hardlinks share this object; nlink counts them. */
  nlink: number;
  /** Directory children by base name. */
  readonly children?: Map<string, LayerEntry>;
  /** A directory holding `.wh..wh..opq`. */
  opaque?: boolean;
  /** Whiteouts, opaque markers and landmarks: the filesystem translates or hides these. */
  special?: SpecialEntry;
}

/** A piece of one chunk needed to serve a read. */
export interface ChunkSlice {
  readonly chunk: ChunkRef;
  /** Range inside the uncompressed chunk. */
  readonly start: number;
  readonly end: number;
}

export interface LayerIndex {
  readonly format: LayerFormat;
  /** Digest of the TOC the index was built from (checked against the layer annotation). */
  readonly tocDigest: Digest;
  readonly root: LayerEntry;
  /** Every entry by clean path, hardlinks included (they map to their target's object). */
  readonly entries: ReadonlyMap<string, LayerEntry>;
  /** Compressed range [start, end) holding the prioritized files; undefined when there is no landmark. */
  readonly prefetchRange?: { readonly start: number; readonly end: number };
  /** True when the layer says "prefetch nothing" (`.no.prefetch.landmark`). */
  readonly noPrefetch: boolean;
  /** Chunks are verified against their digests unless this is false (legacy stargz with verification off). */
  readonly verified: boolean;
  lookup(path: string): LayerEntry | undefined;
  /**
   * Every chunk the read path can ask for, once each, in blob order: what prefetch and background fetch
   * walk, so that what they cache is exactly what `plan` will look up.
   */
  fetchUnits(): readonly ChunkRef[];
  /** The chunk pieces that serve [offset, offset + length) of a regular file. */
  plan(entry: LayerEntry, offset: number, length: number): ChunkSlice[];
  /** Decompresses a fetched member and returns the verified chunk bytes. */
  decode(chunk: ChunkRef, compressed: Buffer): Buffer;
}
