/**
 * The chunk cache seam between the read path (src/fs, prefetch, background fetch) and storage.
 * Keys are content addresses: a chunk's `sha256:` digest, so a chunk shared by two layers or two images is
 * stored once; chunks without a digest (legacy stargz, verification off) use `unverifiedChunkKey`.
 * Values are the verified, decompressed chunk bytes. Single-flight fetching of missing chunks is the
 * read path's job (it knows how to coalesce range requests); the cache only stores and evicts.
 */
export interface ChunkCache {
  /** Decompressed chunk bytes from memory, then disk; undefined on a miss. Never returns partial data. */
  get(key: string): Promise<Buffer | undefined>;
  /**
   * Copies bytes [offset, offset + length) of a cached chunk into `target` at `targetOffset`; false on a
   * miss. Unlike `get`, a disk hit reads and checks only the part asked for and does not load the chunk
   * into memory, so streaming a large cached file does not churn whole chunks through the heap.
   */
  readRange(key: string, offset: number, length: number, target: Buffer, targetOffset: number): Promise<boolean>;
  /** Stores verified bytes (memory and disk). Idempotent; a concurrent put of the same key is harmless. */
  put(key: string, data: Buffer): Promise<void>;
  /** True when the chunk is on disk or in memory, without reading it. */
  has(key: string): Promise<boolean>;
  /** Keeps `key` from being evicted until the returned release function is called (in-flight reads, prefetch). */
  pin(key: string): () => void;
  stats(): ChunkCacheStats;
  close(): Promise<void>;
}

export interface ChunkCacheStats {
  memoryBytes: number;
  diskBytes: number;
  diskEntries: number;
  hits: { memory: number; disk: number };
  misses: number;
  evictions: number;
}

/** The key of a chunk that has no digest: the layer it came from and where. */
export function unverifiedChunkKey(layerDigest: string, compressedOffset: number, innerOffset: number): string {
  return `unverified:${layerDigest}:${compressedOffset}:${innerOffset}`;
}

/** Copies bytes [offset, offset + length) of a chunk; a range outside it is a caller bug. */
export function copyRange(chunk: Buffer, offset: number, length: number, target: Buffer, targetOffset: number): void {
  if (offset < 0 || length < 0 || offset + length > chunk.length) throw new RangeError(`range ${offset}+${length} outside a chunk of ${chunk.length} bytes`);
  chunk.copy(target, targetOffset, offset, offset + length);
}
