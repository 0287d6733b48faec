import type { ChunkCacheStats } from './chunk-cache.js';

/** What the caches report beyond the `ChunkCacheStats` seam, for metrics and status. */
export interface DetailedChunkCacheStats extends ChunkCacheStats {
  memoryEntries: number;
  /** Chunks the memory LRU dropped (still on disk in a tiered cache). `evictions` counts chunks gone for good. */
  memoryEvictions: number;
  maxMemoryBytes: number;
  maxDiskBytes: number;
  pinnedKeys: number;
  /** Disk entries found damaged on read; each was deleted and read as a miss. */
  corruptEntries: number;
  /** Puts whose disk write failed (the chunk stayed in memory; the put itself did not fail). */
  diskWriteErrors: number;
  /** Disk reads that failed with an I/O error (read as misses). */
  diskReadErrors: number;
  /** Temp files of interrupted writes deleted when the cache was opened. */
  orphanedTempFilesRemoved: number;
}
