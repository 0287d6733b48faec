import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DetailedChunkCacheStats } from '../cache/stats.js';
import type { FuseObserver } from '../fs/fuse-observer.js';
import type { RemoteObserver } from '../remote/observer.js';
import { SLOW_OPERATION_BUCKETS } from './buckets.js';
import { CacheMetrics } from './cache-metrics.js';
import { FALLBACK_CATEGORIES, type FallbackCategory } from './fallback.js';
import { FuseMetrics } from './fuse-metrics.js';
import { LayerMetrics, type WatchedLayer } from './layer-metrics.js';
import { registryObserver } from './registry-metrics.js';

/**
 * Every Prometheus metric of the daemon, in a registry of its own (never prom-client's global one, so
 * two daemons in one process, as in tests, do not collide). The daemon reports mounts, TOC fetches and
 * fallbacks; hands `remoteObserver` to the registry client and `fuseObserver` to the mount manager;
 * and lets per-layer and cache figures be read at scrape time through `watchLayers` and `watchCache`.
 */
export class DaemonMetrics {
  readonly registry = new Registry();
  readonly remoteObserver: RemoteObserver;
  readonly fuseObserver: FuseObserver;
  private readonly mountDuration: Histogram<'outcome'>;
  private readonly tocFetchDuration: Histogram;
  private readonly fallbacks: Counter<'reason'>;
  private readonly layers: LayerMetrics;
  private readonly cache: CacheMetrics;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.mountDuration = new Histogram({
      name: 'lazypull_layer_mount_duration_seconds',
      help: 'Time to prepare a remote layer: resolve, fetch and verify its TOC and mount it (outcome "lazy"), or to give up on it (outcome "fallback").',
      labelNames: ['outcome'] as const,
      buckets: SLOW_OPERATION_BUCKETS,
      registers,
    });
    this.tocFetchDuration = new Histogram({
      name: 'lazypull_toc_fetch_duration_seconds',
      help: "Time to fetch, verify and index a layer's table of contents.",
      buckets: SLOW_OPERATION_BUCKETS,
      registers,
    });
    this.fallbacks = new Counter({
      name: 'lazypull_layer_fallbacks_total',
      help: 'Layers pulled normally by containerd instead of lazily, by reason.',
      labelNames: ['reason'] as const,
      registers,
    });
    // Every reason exists from the start at 0, so rate() and alerts see the first fallback.
    for (const reason of FALLBACK_CATEGORIES) this.fallbacks.inc({ reason }, 0);
    this.remoteObserver = registryObserver(this.registry);
    this.fuseObserver = new FuseMetrics(this.registry);
    this.layers = new LayerMetrics(this.registry);
    this.cache = new CacheMetrics(this.registry);
  }

  observeMount(seconds: number, outcome: 'lazy' | 'fallback'): void {
    this.mountDuration.observe({ outcome }, seconds);
  }

  observeTocFetch(seconds: number): void {
    this.tocFetchDuration.observe(seconds);
  }

  countFallback(category: FallbackCategory): void {
    this.fallbacks.inc({ reason: category });
  }

  /** The mounted layers, listed at each scrape; a layer no longer listed loses its series. */
  watchLayers(list: () => Iterable<WatchedLayer>): void {
    this.layers.watch(list);
  }

  /** The chunk cache's cumulative statistics, read at each scrape. */
  watchCache(stats: () => DetailedChunkCacheStats): void {
    this.cache.watch(stats);
  }
}
