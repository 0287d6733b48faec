export { unverifiedChunkKey, type ChunkCache, type ChunkCacheStats } from './chunk-cache.js';
export { DISK_BLOCK_BYTES, entryFootprint } from './disk-store.js';
export { DEFAULT_MAX_MEMORY_BYTES, MemoryOnlyChunkCache } from './memory-only-chunk-cache.js';
export type { DetailedChunkCacheStats } from './stats.js';
export {
  DEFAULT_ACCESS_TOUCH_INTERVAL_MS,
  DEFAULT_EVICTION_TARGET_RATIO,
  DEFAULT_MAX_DISK_BYTES,
  TieredChunkCache,
  createChunkCache,
  type ChunkCacheOptions,
} from './tiered-chunk-cache.js';
