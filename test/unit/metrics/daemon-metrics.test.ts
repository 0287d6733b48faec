/**
 * DaemonMetrics through its HTTP endpoint: every series the daemon reports, scraped as Prometheus
 * would, after each kind of event.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DetailedChunkCacheStats } from '../../../src/cache/stats.js';
import type { LayerProgress } from '../../../src/fs/background-fetch.js';
import { DaemonMetrics, FALLBACK_CATEGORIES, serveMetrics, type MetricsServer, type WatchedLayer } from '../../../src/metrics/index.js';
import { scrape } from '../../helpers/prometheus.js';

let metrics: DaemonMetrics;
let server: MetricsServer;

beforeEach(async () => {
  metrics = new DaemonMetrics();
  server = await serveMetrics('127.0.0.1:0', metrics);
});

afterEach(async () => {
  await server.close();
});

function progress(overrides: Partial<LayerProgress>): LayerProgress {
  return { totalBytes: 0, fetchedBytes: 0, completedBytes: 0, servedBytes: 0, prefetchBytes: 0, prefetchDone: false, backgroundDone: false, ...overrides };
}

function cacheStats(overrides: Partial<DetailedChunkCacheStats>): DetailedChunkCacheStats {
  return {
    memoryBytes: 0, diskBytes: 0, diskEntries: 0, hits: { memory: 0, disk: 0 }, misses: 0, evictions: 0, memoryEntries: 0, memoryEvictions: 0,
    maxMemoryBytes: 0, maxDiskBytes: 0, pinnedKeys: 0, corruptEntries: 0, diskWriteErrors: 0, diskReadErrors: 0, orphanedTempFilesRemoved: 0,
    ...overrides,
  };
}

describe('the endpoint', () => {
  it('answers GET /metrics on the port it chose, 404 elsewhere, 405 for other methods', async () => {
    expect(server.address).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
    const page = await scrape(server.address);
    expect(page.value('process_cpu_user_seconds_total')).toBeGreaterThanOrEqual(0);
    expect(page.type('nodejs_heap_size_used_bytes')).toBe('gauge');
    expect((await fetch(`http://${server.address}/`)).status).toBe(404);
    expect((await fetch(`http://${server.address}/metricsx`)).status).toBe(404);
    expect((await fetch(`http://${server.address}/metrics?debug=1`)).status).toBe(200);
    const post = await fetch(`http://${server.address}/metrics`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('keeps two daemons apart (own registries) and closes with a scraper connected', async () => {
    const other = new DaemonMetrics();
    const otherServer = await serveMetrics('127.0.0.1:0', other);
    other.countFallback('auth');
    expect((await scrape(otherServer.address)).value('lazypull_layer_fallbacks_total', { reason: 'auth' })).toBe(1);
    expect((await scrape(server.address)).value('lazypull_layer_fallbacks_total', { reason: 'auth' })).toBe(0);
    await otherServer.close();
    await otherServer.close(); // idempotent
    await expect(fetch(`http://${otherServer.address}/metrics`)).rejects.toThrow();
  });

  it('reports a port in use instead of listening elsewhere', async () => {
    await expect(serveMetrics(server.address, new DaemonMetrics())).rejects.toThrow(/EADDRINUSE/);
  });
});

describe('mounts, TOC fetches and fallbacks', () => {
  it('counts fallbacks per reason, every reason present from the start', async () => {
    let page = await scrape(server.address);
    for (const reason of FALLBACK_CATEGORIES) expect(page.value('lazypull_layer_fallbacks_total', { reason })).toBe(0);
    expect(page.type('lazypull_layer_fallbacks_total')).toBe('counter');
    metrics.countFallback('not-lazy-format');
    metrics.countFallback('not-lazy-format');
    metrics.countFallback('timeout');
    page = await scrape(server.address);
    expect(page.value('lazypull_layer_fallbacks_total', { reason: 'not-lazy-format' })).toBe(2);
    expect(page.value('lazypull_layer_fallbacks_total', { reason: 'timeout' })).toBe(1);
    expect(page.value('lazypull_layer_fallbacks_total', { reason: 'auth' })).toBe(0);
  });

  it('puts mount durations by outcome and TOC fetch durations in histograms', async () => {
    metrics.observeMount(0.2, 'lazy');
    metrics.observeMount(0.3, 'lazy');
    metrics.observeMount(7, 'fallback');
    metrics.observeTocFetch(0.04);
    const page = await scrape(server.address);
    expect(page.type('lazypull_layer_mount_duration_seconds')).toBe('histogram');
    expect(page.value('lazypull_layer_mount_duration_seconds_count', { outcome: 'lazy' })).toBe(2);
    expect(page.value('lazypull_layer_mount_duration_seconds_sum', { outcome: 'lazy' })).toBeCloseTo(0.5);
    expect(page.value('lazypull_layer_mount_duration_seconds_bucket', { outcome: 'lazy', le: '0.25' })).toBe(1);
    expect(page.value('lazypull_layer_mount_duration_seconds_bucket', { outcome: 'lazy', le: '0.5' })).toBe(2);
    expect(page.value('lazypull_layer_mount_duration_seconds_bucket', { outcome: 'fallback', le: '5' })).toBe(0);
    expect(page.value('lazypull_layer_mount_duration_seconds_bucket', { outcome: 'fallback', le: '10' })).toBe(1);
    expect(page.value('lazypull_toc_fetch_duration_seconds_count')).toBe(1);
    expect(page.value('lazypull_toc_fetch_duration_seconds_bucket', { le: '0.05' })).toBe(1);
  });
});

describe('layers', () => {
  it('fills per-layer gauges at scrape time and drops layers no longer mounted', async () => {
    const layers: WatchedLayer[] = [
      { layerDigest: 'sha256:aaa', progress: progress({ totalBytes: 1000, fetchedBytes: 300, completedBytes: 200, servedBytes: 900 }) },
      { layerDigest: 'sha256:bbb', progress: progress({ totalBytes: 50, fetchedBytes: 50, completedBytes: 50, servedBytes: 10 }) },
    ];
    metrics.watchLayers(() => layers);
    let page = await scrape(server.address);
    expect(page.type('lazypull_layer_fetched_bytes')).toBe('gauge');
    expect(page.value('lazypull_layer_size_bytes', { digest: 'sha256:aaa' })).toBe(1000);
    expect(page.value('lazypull_layer_fetched_bytes', { digest: 'sha256:aaa' })).toBe(300);
    expect(page.value('lazypull_layer_prefetched_bytes', { digest: 'sha256:aaa' })).toBe(200);
    expect(page.value('lazypull_layer_served_bytes', { digest: 'sha256:aaa' })).toBe(900);
    expect(page.value('lazypull_layer_fetched_bytes', { digest: 'sha256:bbb' })).toBe(50);

    layers[0] = { layerDigest: 'sha256:aaa', progress: progress({ totalBytes: 1000, fetchedBytes: 1000, completedBytes: 1000, servedBytes: 950 }) };
    layers.pop();
    page = await scrape(server.address);
    expect(page.value('lazypull_layer_fetched_bytes', { digest: 'sha256:aaa' })).toBe(1000);
    for (const name of ['fetched', 'prefetched', 'size', 'served']) expect(page.find(`lazypull_layer_${name}_bytes`, { digest: 'sha256:bbb' })).toEqual([]);
  });

  it('adds the traffic of two mounts of one layer; its size stays the size', async () => {
    const one = progress({ totalBytes: 1000, fetchedBytes: 100, completedBytes: 0, servedBytes: 10 });
    metrics.watchLayers(() => [{ layerDigest: 'sha256:ccc', progress: one }, { layerDigest: 'sha256:ccc', progress: one }]);
    const page = await scrape(server.address);
    expect(page.value('lazypull_layer_size_bytes', { digest: 'sha256:ccc' })).toBe(1000);
    expect(page.value('lazypull_layer_fetched_bytes', { digest: 'sha256:ccc' })).toBe(200);
    expect(page.value('lazypull_layer_served_bytes', { digest: 'sha256:ccc' })).toBe(20);
  });
});

describe('chunk cache', () => {
  it('mirrors the cumulative statistics (not adding them up scrape after scrape)', async () => {
    let page = await scrape(server.address);
    expect(page.value('lazypull_cache_hits_total', { tier: 'memory' })).toBe(0);
    expect(page.value('lazypull_cache_misses_total')).toBe(0);

    let stats = cacheStats({ hits: { memory: 5, disk: 2 }, misses: 3, evictions: 1, corruptEntries: 1, memoryBytes: 4096, diskBytes: 8192 });
    metrics.watchCache(() => stats);
    page = await scrape(server.address);
    page = await scrape(server.address);
    expect(page.type('lazypull_cache_hits_total')).toBe('counter');
    expect(page.value('lazypull_cache_hits_total', { tier: 'memory' })).toBe(5);
    expect(page.value('lazypull_cache_hits_total', { tier: 'disk' })).toBe(2);
    expect(page.value('lazypull_cache_misses_total')).toBe(3);
    expect(page.value('lazypull_cache_evictions_total')).toBe(1);
    expect(page.value('lazypull_cache_corrupt_entries_total')).toBe(1);
    expect(page.type('lazypull_cache_bytes')).toBe('gauge');
    expect(page.value('lazypull_cache_bytes', { tier: 'memory' })).toBe(4096);
    expect(page.value('lazypull_cache_bytes', { tier: 'disk' })).toBe(8192);

    stats = cacheStats({ ...stats, hits: { memory: 9, disk: 2 }, misses: 4, diskBytes: 0 });
    page = await scrape(server.address);
    expect(page.value('lazypull_cache_hits_total', { tier: 'memory' })).toBe(9);
    expect(page.value('lazypull_cache_misses_total')).toBe(4);
    expect(page.value('lazypull_cache_bytes', { tier: 'disk' })).toBe(0);
  });
});

describe('registry observer', () => {
  it('times requests by kind and status and counts bytes by kind', async () => {
    const observer = metrics.remoteObserver;
    observer.onExchange?.({ host: 'r.example', method: 'GET', kind: 'blob', blob: 'sha256:aaa', status: 206, bytes: 4096, durationMs: 12 });
    observer.onExchange?.({ host: 'r.example', method: 'GET', kind: 'blob', blob: 'sha256:aaa', status: 206, bytes: 1000, durationMs: 3 });
    observer.onExchange?.({ host: 'r.example', method: 'GET', kind: 'manifest', status: 200, bytes: 500, durationMs: 1 });
    observer.onExchange?.({ host: 'r.example', method: 'GET', kind: 'token', status: 401, bytes: 0, durationMs: 2 });
    observer.onExchange?.({ host: 'r.example', method: 'GET', kind: 'blob', bytes: 0, durationMs: 5000, error: 'ECONNRESET' });
    observer.onRead?.({ blob: 'sha256:aaa', host: 'r.example', bytes: 10, durationMs: 1, ok: true });
    const page = await scrape(server.address);
    expect(page.type('lazypull_registry_request_duration_seconds')).toBe('histogram');
    expect(page.value('lazypull_registry_request_duration_seconds_count', { kind: 'blob', code: '206' })).toBe(2);
    expect(page.value('lazypull_registry_request_duration_seconds_sum', { kind: 'blob', code: '206' })).toBeCloseTo(0.015);
    expect(page.value('lazypull_registry_request_duration_seconds_bucket', { kind: 'blob', code: '206', le: '0.005' })).toBe(1);
    expect(page.value('lazypull_registry_request_duration_seconds_count', { kind: 'manifest', code: '200' })).toBe(1);
    expect(page.value('lazypull_registry_request_duration_seconds_count', { kind: 'token', code: '401' })).toBe(1);
    expect(page.value('lazypull_registry_request_duration_seconds_count', { kind: 'blob', code: 'error' })).toBe(1);
    expect(page.value('lazypull_registry_bytes_total', { kind: 'blob' })).toBe(5096);
    expect(page.value('lazypull_registry_bytes_total', { kind: 'manifest' })).toBe(500);
  });
});

describe('FUSE observer', () => {
  it('counts operations and errors by errno name and times reads', async () => {
    const observer = metrics.fuseObserver;
    observer.onOperation('getattr', 0.01);
    observer.onOperation('getattr', 0.01, 2);
    observer.onOperation('getattr', 0.01, 2);
    observer.onOperation('read', 0.05);
    observer.onOperation('read', 40, 5);
    observer.onOperation('getxattr', 0.01, 61);
    const page = await scrape(server.address);
    expect(page.type('lazypull_fuse_operations_total')).toBe('counter');
    expect(page.value('lazypull_fuse_operations_total', { op: 'getattr' })).toBe(3);
    expect(page.value('lazypull_fuse_operations_total', { op: 'read' })).toBe(2);
    expect(page.value('lazypull_fuse_errors_total', { op: 'getattr', errno: 'ENOENT' })).toBe(2);
    expect(page.value('lazypull_fuse_errors_total', { op: 'read', errno: 'EIO' })).toBe(1);
    expect(page.value('lazypull_fuse_errors_total', { op: 'getxattr', errno: 'ENODATA' })).toBe(1);
    expect(page.value('lazypull_ondemand_read_duration_seconds_count')).toBe(2);
    expect(page.value('lazypull_ondemand_read_duration_seconds_bucket', { le: '0.0001' })).toBe(1);
    expect(page.value('lazypull_ondemand_read_duration_seconds_bucket', { le: '0.025' })).toBe(1);
    expect(page.value('lazypull_ondemand_read_duration_seconds_bucket', { le: '0.05' })).toBe(2);
  });
});
