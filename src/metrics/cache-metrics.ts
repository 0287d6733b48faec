import { Gauge, type Registry } from 'prom-client';
import type { DetailedChunkCacheStats } from '../cache/stats.js';
import { cumulativeCounter } from './cumulative-counter.js';

export type CacheStatsSource = () => DetailedChunkCacheStats;

/** The chunk cache's cumulative statistics, read at scrape time. */
export class CacheMetrics {
  private source: CacheStatsSource | undefined;

  constructor(registry: Registry) {
    const stats = () => this.source?.();
    cumulativeCounter(registry, 'lazypull_cache_hits_total', 'Chunk cache hits by tier that answered (memory, or disk after a memory miss).', ['tier'], () => {
      const s = stats();
      return [
        [{ tier: 'memory' }, s?.hits.memory ?? 0],
        [{ tier: 'disk' }, s?.hits.disk ?? 0],
      ];
    });
    cumulativeCounter(registry, 'lazypull_cache_misses_total', 'Chunk cache lookups found in neither tier (the chunk is fetched from the registry).', [], () => [[{}, stats()?.misses ?? 0]]);
    cumulativeCounter(registry, 'lazypull_cache_evictions_total', 'Chunks evicted from the cache for good (dropped from disk, or from memory in a memory-only cache).', [], () => [[{}, stats()?.evictions ?? 0]]);
    cumulativeCounter(registry, 'lazypull_cache_corrupt_entries_total', 'Disk cache entries found damaged on read (deleted and read as misses).', [], () => [[{}, stats()?.corruptEntries ?? 0]]);
    new Gauge({
      name: 'lazypull_cache_bytes',
      help: 'Bytes of decompressed chunks held by the cache, by tier.',
      labelNames: ['tier'] as const,
      registers: [registry],
      collect() {
        const s = stats();
        this.set({ tier: 'memory' }, s?.memoryBytes ?? 0);
        this.set({ tier: 'disk' }, s?.diskBytes ?? 0);
      },
    });
  }

  watch(source: CacheStatsSource): void {
    this.source = source;
  }
}
