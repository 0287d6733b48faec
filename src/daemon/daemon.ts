/**
 * The running daemon: metadata, chunk cache, registry client, mount manager, lazy-layer resolver and
 * snapshotter core, served on the socket (Snapshots, Status, and Pull for `lazypull rpull`) and, when configured, a metrics endpoint.
 * `lazypull serve` is this plus signal handling.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createChunkCache, type TieredChunkCache } from '../cache/index.js';
import type { DaemonConfig } from '../config/config.js';
import { cleanStaleMounts, DEFAULT_WORKER_DECODER, MountManager, WorkerDecoder } from '../fs/index.js';
import { serveSnapshots, type SnapshotsServer } from '../grpc/server.js';
import { warmMessageCodecs } from '../grpc/protos.js';
import { pullService } from '../grpc/pull-service.js';
import { statusService } from '../grpc/status-service.js';
import { DaemonMetrics, serveMetrics } from '../metrics/index.js';
import { RegistryClient } from '../remote/index.js';
import { Snapshotter, type Logger } from '../snapshot/snapshotter.js';
import { SqliteMetadataStore } from '../snapshot/sqlite-store.js';
import { DaemonPuller } from './daemon-pull.js';
import { LazyLayerResolver } from './lazy-layers.js';
import { TailStore } from './layer-tails.js';
import { ZtocStore } from './ztoc-store.js';
import { collectStatus } from './status.js';

export interface RunningDaemon {
  /** The metrics endpoint's host:port, when one is served. */
  metricsAddress?: string;
  /** Stops serving, unmounts every layer, closes cache, registry connections and database. */
  close(): Promise<void>;
}

/** Closes what was opened so far, newest first, even when one of them fails. */
class Closers {
  private readonly steps: (() => Promise<void> | void)[] = [];

  add(step: () => Promise<void> | void): void {
    this.steps.unshift(step);
  }

  async run(log: Logger): Promise<void> {
    for (const step of this.steps.splice(0)) {
      await Promise.resolve()
        .then(step)
        .catch((err: Error) => log.warn('shutdown step failed', { error: err.message }));
    }
  }
}

export async function startDaemon(config: DaemonConfig, log: Logger): Promise<RunningDaemon> {
  const closers = new Closers();
  try {
    return await assemble(config, log, closers);
  } catch (err) {
    await closers.run(log);
    throw err;
  }
}

async function assemble(config: DaemonConfig, log: Logger, closers: Closers): Promise<RunningDaemon> {
  await mkdir(config.root, { recursive: true, mode: 0o700 });
  const stale = await cleanStaleMounts(join(config.root, 'snapshots'));
  if (stale.length > 0) log.info('unmounted layers a previous run left mounted', { count: stale.length });

  const store = new SqliteMetadataStore(join(config.root, 'metadata.db'));
  closers.add(() => store.close());
  const metrics = new DaemonMetrics();
  const cacheDir = config.cache.dir || join(config.root, 'cache');
  const cache: TieredChunkCache = await createChunkCache({
    dir: cacheDir,
    maxDiskBytes: config.cache.maxDiskBytes,
    maxMemoryBytes: config.cache.maxMemoryBytes,
    onError: (err) => log.warn('chunk cache disk error', { error: err instanceof Error ? err.message : String(err) }),
  });
  closers.add(() => cache.close());
  const registryOptions = { hostsDir: config.registry.hostsDir || null, observer: metrics.remoteObserver };
  const client = new RegistryClient(registryOptions);
  closers.add(() => client.close());
  const mounts = new MountManager({ observer: metrics.fuseObserver, decoder: new WorkerDecoder({ ...DEFAULT_WORKER_DECODER, keepWarm: true }) });
  closers.add(() => mounts.shutdown());

  const resolver = new LazyLayerResolver({
    client,
    mounts,
    cache,
    tails: new TailStore(join(config.root, 'tails')),
    ztocs: new ZtocStore(join(config.root, 'ztocs')),
    soci: config.soci.enable && { referrers: config.soci.referrers },
    log,
    metrics,
    verify: config.layers.verify,
    resolveTimeoutMs: config.layers.resolveTimeoutSec * 1000,
    fetchDeadlineMs: config.fetch.readTimeoutSec * 1000,
    smallFileReadAheadBytes: config.fetch.smallFileReadAheadBytes,
    prefetchWaitMs: config.fetch.prefetchWaitSec * 1000,
    prefetchWaitMaxBytes: config.fetch.prefetchWaitMaxBytes,
    fetch: { prefetch: config.fetch.prefetch, prefetchBytes: config.fetch.prefetchBytes, prefetchWholeLayerBytes: config.fetch.prefetchWholeLayerBytes, background: config.fetch.background },
  });
  const core = await Snapshotter.open({ root: config.root, store, remote: resolver, logger: log, restoreFailure: config.layers.restoreFailure });
  metrics.watchLayers(() => resolver.list().map((layer) => ({ layerDigest: layer.digest, progress: layer.mount.progress() })));
  metrics.watchCache(() => cache.stats());

  const status = statusService(
    () =>
      collectStatus({
        snapshots: () => core.layerSnapshots(),
        restoreFailures: core.restoreFailures,
        mounted: (mountpoint) => resolver.mounted(mountpoint),
        cacheDir,
        cacheStats: () => cache.stats(),
      }),
    log,
  );
  const puller = new DaemonPuller({ registry: client, plainHttpRegistry: registryOptions, warmer: resolver, log, holdCacheWrites: (ms) => cache.holdDiskWrites(ms) });
  closers.add(() => puller.close());
  const server: SnapshotsServer = await serveSnapshots(core, config.address, log, [status, pullService(puller.run, log)]);
  closers.add(() => server.close());
  const metricsServer = config.metricsAddress ? await serveMetrics(config.metricsAddress, metrics) : undefined;
  if (metricsServer) closers.add(() => metricsServer.close());
  log.info('serving containerd snapshots', { address: config.address, root: config.root, cache: cacheDir, ...(metricsServer ? { metrics: `http://${metricsServer.address}/metrics` } : {}) });
  // After the socket is up, while nothing waits yet: the first pull then finds its message codecs made.
  setImmediate(() => {
    const started = performance.now();
    const methods = warmMessageCodecs();
    log.debug('gRPC message codecs ready', { methods, ms: Math.round(performance.now() - started) });
  });
  return {
    ...(metricsServer ? { metricsAddress: metricsServer.address } : {}),
    close: () => closers.run(log),
  };
}
