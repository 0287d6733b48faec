/**
 * What `lazypull status` shows: every image layer the snapshotter has seen, lazy or not and why, with
 * fetch progress for the mounted ones, and the cache's use. Built from the metadata (which survives
 * restarts) and the live mounts.
 */
import type { DetailedChunkCacheStats } from '../cache/index.js';
import { REMOTE_LABEL, REMOTE_LAYER_LABELS as L } from '../snapshot/remote-layer.js';
import type { LayerSnapshot, RestoreFailure } from '../snapshot/snapshotter.js';
import type { MountedLayer } from './lazy-layers.js';

export type LayerState = 'lazy' | 'fallback' | 'unavailable';

export interface LayerStatus {
  image: string;
  digest: string;
  snapshot: string;
  state: LayerState;
  reason: string;
  format: string;
  fetched_bytes: number;
  total_bytes: number;
  prefetch_bytes: number;
  prefetch_done: boolean;
  completed_bytes: number;
  background_done: boolean;
  served_bytes: number;
  warning: string;
}

export interface CacheStatus {
  dir: string;
  disk_bytes: number;
  max_disk_bytes: number;
  disk_entries: number;
  memory_bytes: number;
  max_memory_bytes: number;
  hits: number;
  misses: number;
  evictions: number;
}

export interface DaemonStatus {
  layers: LayerStatus[];
  cache: CacheStatus;
}

export interface StatusSources {
  snapshots(): LayerSnapshot[];
  restoreFailures: readonly RestoreFailure[];
  mounted(mountpoint: string): MountedLayer | undefined;
  cacheDir: string;
  cacheStats(): DetailedChunkCacheStats;
}

export function collectStatus(sources: StatusSources): DaemonStatus {
  const failures = new Map(sources.restoreFailures.map((f) => [f.chainId, f.reason]));
  const layers = sources.snapshots().map((snapshot) => layerStatus(snapshot, sources.mounted(snapshot.mountpoint), failures.get(snapshot.key)));
  return { layers, cache: cacheStatus(sources.cacheDir, sources.cacheStats()) };
}

function layerStatus(snapshot: LayerSnapshot, layer: MountedLayer | undefined, restoreFailure: string | undefined): LayerStatus {
  const base = {
    image: layer?.image ?? snapshot.labels[L.criImageRef] ?? snapshot.labels[L.stargzReference] ?? '',
    digest: layer?.digest ?? snapshot.labels[L.criLayerDigest] ?? snapshot.labels[L.stargzDigest] ?? '',
    snapshot: snapshot.key,
  };
  const empty = { format: '', fetched_bytes: 0, total_bytes: 0, prefetch_bytes: 0, prefetch_done: false, completed_bytes: 0, background_done: false, served_bytes: 0, warning: '' };
  if (snapshot.labels[REMOTE_LABEL] === undefined) {
    return { ...base, ...empty, state: 'fallback', reason: snapshot.fallbackReason ?? '' };
  }
  if (!layer) return { ...base, ...empty, state: 'unavailable', reason: restoreFailure ?? 'not mounted' };
  const progress = layer.mount.progress();
  return {
    ...base,
    state: 'lazy',
    reason: '',
    format: layer.format,
    fetched_bytes: progress.fetchedBytes,
    total_bytes: progress.totalBytes,
    prefetch_bytes: progress.prefetchBytes,
    prefetch_done: progress.prefetchDone,
    completed_bytes: progress.completedBytes,
    background_done: progress.backgroundDone,
    served_bytes: progress.servedBytes,
    warning: layer.warning ?? progress.lastError ?? '',
  };
}

function cacheStatus(dir: string, stats: DetailedChunkCacheStats): CacheStatus {
  return {
    dir,
    disk_bytes: stats.diskBytes,
    max_disk_bytes: stats.maxDiskBytes,
    disk_entries: stats.diskEntries,
    memory_bytes: stats.memoryBytes,
    max_memory_bytes: stats.maxMemoryBytes,
    hits: stats.hits.memory + stats.hits.disk,
    misses: stats.misses,
    evictions: stats.evictions,
  };
}
