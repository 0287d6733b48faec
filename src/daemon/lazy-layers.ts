/**
 * The RemoteLayerResolver that makes layers lazy: labels -> layer target -> TOC (verified against the
 * layer's TOC digest) -> LayerIndex -> FUSE mount through the shared chunk cache. Anything that goes
 * wrong becomes a fallback with a reason and a category; nothing here may throw at containerd.
 */
import type { ChunkCache } from '../cache/index.js';
import type { RandomAccessSource } from '../io/random-access.js';
import { openLayer, TocError } from '../estargz/open.js';
import type { BackgroundFetchOptions, LayerFetch, LayerMount, LayerProgress, MountManager, RangeSource } from '../fs/index.js';
import type { LayerIndex } from '../layer/layer-index.js';
import { PREFETCH_RANGES_ANNOTATION, parsePrefetchRanges, type ByteRange } from '../layer/prefetch-ranges.js';
import type { Descriptor, ImageManifest, ImageReference, RegistryClient } from '../remote/index.js';
import type { SociZtocRef } from '../soci/index-manifest.js';
import { openSociLayer } from '../soci/layer-index.js';
import { ZtocError } from '../soci/ztoc.js';
import type { RemoteLayerRequest, RemoteLayerResolution, RemoteLayerResolver } from '../snapshot/remote-layer.js';
import type { Logger } from '../snapshot/snapshotter.js';
import type { Labels } from '../snapshot/types.js';
import { isDigest, type Digest } from '../util/digest.js';
import { classifyFailure, MissingTocDigestError, NotLazyFormatError, ResolveTimeoutError, type FallbackCategory } from './fallback.js';
import { layerTargetOf, type LayerTarget } from './layer-labels.js';
import { fetchTail, TAIL_FIRST_READ_BYTES, TailSource, type LayerTail, type TailStore } from './layer-tails.js';
import { SociDiscovery, type SociFound } from './soci-discovery.js';
import type { ZtocStore } from './ztoc-store.js';

/** What the resolver reports to metrics (DaemonMetrics implements it). */
export interface ResolverMetrics {
  observeMount(seconds: number, outcome: 'lazy' | 'fallback'): void;
  observeTocFetch(seconds: number): void;
  countFallback(category: FallbackCategory): void;
}

export interface LazyLayerOptions {
  client: RegistryClient;
  mounts: MountManager;
  cache: ChunkCache;
  tails: TailStore;
  /** zTOCs of mounted SOCI layers, for restores without the network. */
  ztocs: ZtocStore;
  /** SOCI discovery: off, or on with or without the v1 lookup through referrers. Default on, without referrers. */
  soci?: false | { referrers: boolean };
  log: Logger;
  metrics?: ResolverMetrics;
  /** A layer not mounted within this time falls back. Default 30 s. */
  resolveTimeoutMs?: number;
  /** Largest TOC region accepted. Default 64 MiB. */
  maxTocBytes?: number;
  /** Serve only layers whose TOC digest is known and matches (default true; `stargz.skipverify` opts a layer out). */
  verify?: boolean;
  /** Prefetch and background fetch of every mount. */
  fetch?: Partial<BackgroundFetchOptions>;
  /** FUSE read deadline (then EIO). */
  fetchDeadlineMs?: number;
  /** Small files fetched along with an on-demand fetch (see LayerMountOptions). */
  smallFileReadAheadBytes?: number;
  /** Before a container starts, wait this long at most for its layers' prefetch. Default 0 (see DEFAULT_PREFETCH_WAIT_MS). */
  prefetchWaitMs?: number;
  /** A prefetch larger than this is not waited for: the container starts and reads on demand. Default 128 MiB. */
  prefetchWaitMaxBytes?: number;
}

/** A remote snapshot a container is about to use. */
export interface LayerInUse {
  chainId: string;
  labels: Labels;
  mountpoint: string;
}

/** A layer this daemon has mounted. */
export interface MountedLayer {
  mountpoint: string;
  chainId: string;
  image: string;
  digest: Digest;
  format: string;
  tocDigest: Digest;
  mountedAt: Date;
  mount: LayerMount;
  source: RandomAccessSource;
  /** How long finding and opening its index (TOC or zTOC) took, in ms: the rest of a mount is the FUSE mount and the blob's size. */
  indexMs: number;
  /** The last health check's finding, when it found a problem. */
  warning?: string;
}

export const DEFAULT_RESOLVE_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_TOC_BYTES = 64 << 20;
/**
 * No wait by default: reads of chunks the prefetch is fetching join it anyway, and starting the
 * container (runc, the shim) meanwhile hides part of the transfer. benchmarks/hello, python over
 * 100 Mbit/s + 20 ms, 3 runs: plain eStargz 2.41 -> 2.20 s, optimized 2.25 -> 1.95 s against a 10 s wait.
 */
export const DEFAULT_PREFETCH_WAIT_MS = 0;
export const DEFAULT_PREFETCH_WAIT_MAX_BYTES = 128 << 20;
const REACHABILITY_TIMEOUT_MS = 5_000;
const STARGZ_TOC_ANNOTATION = 'containerd.io/snapshot/stargz/toc.digest';
const ZSTD_CHUNKED_CHECKSUM_ANNOTATION = 'io.github.containers.zstd-chunked.manifest-checksum';

interface Expected {
  tocDigest?: Digest;
  manifestChecksum?: Digest;
}

/** A layer's index and the size of its blob. */
interface OpenedIndex {
  index: LayerIndex;
  size: number;
}

/**
 * A layer after the one being prepared, opened ahead (TOC verified against the manifest's annotation)
 * with its prefetch already running, for its own Prepare to mount. Dropped if that Prepare does not
 * come within WARM_LAYER_TTL_MS or asks for something else.
 */
interface WarmLayer extends ReadyLayer {
  image: string;
  manifestDigest: Digest;
  fetch: LayerFetch;
}

/** What a mount needs: the index, the blob, the profile, and the fetching if it began already. */
interface ReadyLayer {
  opened: OpenedIndex;
  source: RandomAccessSource & RangeSource;
  prefetchRanges: ByteRange[] | undefined;
  fetch?: LayerFetch;
}

const WARM_LAYER_TTL_MS = 60_000;
/**
 * A warm layer whose tail is at most this big is opened as soon as it is in, not after the layers
 * before it: python's 15-entry python layer of benchmarks/hello parses in about a millisecond, and
 * its 4.4 MB prefetch then starts 0.2 s sooner (while the 5,700-entry distro TOC parses).
 */
const QUICK_PARSE_TAIL_BYTES = 64 << 10;

export class LazyLayerResolver implements RemoteLayerResolver {
  private readonly layers = new Map<string, MountedLayer>();
  private readonly tailFetches = new Map<Digest, Promise<LayerTail>>();
  private readonly warmLayers = new Map<Digest, { layer: Promise<WarmLayer | undefined>; expiry: NodeJS.Timeout; manifestDigest: Digest }>();
  /** Tails read from the TailStore rather than the registry. */
  private readonly storedTails = new WeakSet<LayerTail>();
  private readonly manifests = new Map<Digest, Promise<ImageManifest>>();
  /** FUSE mounts being made: a warm layer's TOC parse waits for them (see warmUp). */
  private readonly fuseMounts = new Set<Promise<void>>();
  private readonly ztocFetches = new Map<Digest, Promise<Buffer>>();
  private readonly soci: SociDiscovery | undefined;
  private readonly resolveTimeoutMs: number;
  private readonly maxTocBytes: number;
  private readonly verify: boolean;

  constructor(private readonly options: LazyLayerOptions) {
    this.resolveTimeoutMs = options.resolveTimeoutMs ?? DEFAULT_RESOLVE_TIMEOUT_MS;
    this.maxTocBytes = options.maxTocBytes ?? DEFAULT_MAX_TOC_BYTES;
    this.verify = options.verify ?? true;
    this.soci = options.soci === false ? undefined : new SociDiscovery({ client: options.client, referrers: options.soci?.referrers ?? false });
  }

  async resolve(request: RemoteLayerRequest): Promise<RemoteLayerResolution> {
    const started = performance.now();
    try {
      const target = layerTargetOf(request.labels);
      const mounting = this.withDeadline((signal) => this.mountTarget(target, request.chainId, request.mountpoint, signal, { profile: true }));
      this.warmNeighbours(target, mounting);
      const layer = await mounting;
      this.options.metrics?.observeMount(seconds(started), 'lazy');
      this.options.log.info('layer mounted lazily', { chainId: request.chainId, image: layer.image, digest: layer.digest, format: layer.format, ms: Math.round(performance.now() - started), index_ms: layer.indexMs });
      return { mounted: request.mountpoint };
    } catch (err) {
      const fallback = classifyFailure(err);
      this.options.metrics?.observeMount(seconds(started), 'fallback');
      this.options.metrics?.countFallback(fallback.category);
      return { fallback: `${fallback.category}: ${fallback.reason}` };
    }
  }

  /** Mounts a layer committed before a restart again; throws with the reason when it cannot. */
  async restore(request: { chainId: string; labels: Labels; mountpoint: string }): Promise<MountedLayer> {
    const existing = this.layers.get(request.mountpoint);
    if (existing) return existing;
    const target = layerTargetOf(request.labels);
    // A restore may run without the network: it reads no prefetch profile (the cache is usually warm).
    return this.withDeadline((signal) => this.mountTarget(target, request.chainId, request.mountpoint, signal, { profile: false }));
  }

  /**
   * Before a container starts on these layers: mount again what could not be restored (or fail with
   * the reason), start checking for layers that are neither fully cached nor reachable, and wait a
   * bounded time for their prefetch (none by default). The check only warns, and the container starts
   * either way, so it runs beside the start instead of before it (a registry round trip saved: 68 ms
   * of python's Prepare in benchmarks/hello).
   */
  async beforeUse(layers: readonly LayerInUse[]): Promise<void> {
    const started = performance.now();
    const mounted = await Promise.all(layers.map((layer) => this.restore(layer)));
    const restored = performance.now();
    void Promise.all(mounted.map((layer) => this.checkHealth(layer).catch(() => undefined))).then(() =>
      this.options.log.debug('remote layers checked', { layers: mounted.length, health_ms: Math.round(performance.now() - restored) }),
    );
    await this.waitForPrefetch(mounted);
    this.options.log.debug('remote layers ready for a container', { layers: mounted.length, restore_ms: Math.round(restored - started), prefetch_wait_ms: Math.round(performance.now() - restored) });
  }

  private async checkHealth(layer: MountedLayer): Promise<void> {
    const progress = layer.mount.progress();
    if (progress.completedBytes >= progress.totalBytes) {
      delete layer.warning;
      return;
    }
    try {
      await layer.source.readAt(layer.source.size - 1, 1, AbortSignal.timeout(REACHABILITY_TIMEOUT_MS));
      delete layer.warning;
    } catch (err) {
      layer.warning = `registry unreachable (${(err as Error).message}) and the layer is not fully cached: reads of uncached files fail with EIO until it is back`;
      this.options.log.warn('remote layer not healthy', { chainId: layer.chainId, digest: layer.digest, warning: layer.warning });
    }
  }

  private async waitForPrefetch(layers: readonly MountedLayer[]): Promise<void> {
    const maxBytes = this.options.prefetchWaitMaxBytes ?? DEFAULT_PREFETCH_WAIT_MAX_BYTES;
    const waits = layers.filter((layer) => layer.mount.progress().prefetchBytes <= maxBytes).map((layer) => layer.mount.whenPrefetched());
    if (waits.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.options.prefetchWaitMs ?? DEFAULT_PREFETCH_WAIT_MS)));
    await Promise.race([Promise.all(waits), timeout]);
    clearTimeout(timer);
  }

  async release(mountpoint: string): Promise<void> {
    const layer = this.layers.get(mountpoint);
    if (!layer) return;
    this.layers.delete(mountpoint);
    await this.options.mounts.unmount(mountpoint);
    // The stored tail or zTOC only serves restores of this layer's snapshots; the last one is gone.
    if (![...this.layers.values()].some((other) => other.digest === layer.digest)) {
      await Promise.all([this.options.tails.delete(layer.digest), this.options.ztocs.delete(layer.digest)]);
    }
  }

  mounted(mountpoint: string): MountedLayer | undefined {
    return this.layers.get(mountpoint);
  }

  list(): MountedLayer[] {
    return [...this.layers.values()];
  }

  progressOf(mountpoint: string): LayerProgress | undefined {
    return this.layers.get(mountpoint)?.mount.progress();
  }

  private async withDeadline<T>(operation: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        controller.abort(new ResolveTimeoutError(`the layer was not ready within ${this.resolveTimeoutMs} ms`));
        reject(controller.signal.reason as Error);
      }, this.resolveTimeoutMs);
    });
    try {
      return await Promise.race([operation(controller.signal), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async mountTarget(target: LayerTarget, chainId: string, mountpoint: string, signal: AbortSignal, options: { profile: boolean }): Promise<MountedLayer> {
    const manifest = target.manifestDigest && (options.profile || !target.tocDigest) ? this.manifest(target.image, target.manifestDigest, signal) : undefined;
    // Without a TOC digest label the manifest is needed to find one; otherwise it only carries the profile.
    manifest?.catch(() => undefined);
    const indexStarted = performance.now();
    const ready = (options.profile ? await this.takeWarmLayer(target) : undefined) ?? (await this.openReady(target, manifest, options.profile, signal));
    const indexMs = Math.round(performance.now() - indexStarted);
    if (signal.aborted) ready.fetch?.stop();
    signal.throwIfAborted();
    const { opened, source, prefetchRanges } = ready;
    const mounting = this.options.mounts.mount({
      ...(ready.fetch ? { started: ready.fetch } : {}),
      mountpoint,
      index: opened.index,
      source,
      cache: this.options.cache,
      layerDigest: target.digest,
      fetch: { ...this.options.fetch, ...(target.prefetchBytes !== undefined ? { prefetchBytes: target.prefetchBytes } : {}), ...(prefetchRanges ? { prefetchRanges } : {}) },
      ...(this.options.fetchDeadlineMs !== undefined ? { fetchDeadlineMs: this.options.fetchDeadlineMs } : {}),
      ...(this.options.smallFileReadAheadBytes !== undefined ? { smallFileReadAheadBytes: this.options.smallFileReadAheadBytes } : {}),
      onReadError: (path, error) => this.options.log.warn('read failed', { digest: target.digest, path, error: error instanceof Error ? error.message : String(error) }),
    });
    const settled = mounting.then(() => undefined, () => undefined);
    this.fuseMounts.add(settled);
    void settled.then(() => this.fuseMounts.delete(settled));
    const mount = await mounting;
    if (signal.aborted) {
      await this.options.mounts.unmount(mountpoint).catch(() => undefined);
      signal.throwIfAborted();
    }
    const layer: MountedLayer = {
      mountpoint,
      chainId,
      image: target.image.toString(),
      digest: target.digest,
      format: opened.index.format,
      tocDigest: opened.index.tocDigest,
      mountedAt: new Date(),
      mount,
      source,
      indexMs,
    };
    this.layers.set(mountpoint, layer);
    return layer;
  }

  /** Opens the layer's index now (no warm layer was waiting), with its profile and blob. */
  private async openReady(target: LayerTarget, manifest: Promise<ImageManifest> | undefined, profile: boolean, signal: AbortSignal): Promise<ReadyLayer> {
    const opened = await this.openIndex(target, target.tocDigest ? undefined : manifest, signal);
    const prefetchRanges = profile ? this.prefetchProfile(target, await manifest?.catch(() => undefined), opened.size) : undefined;
    const source = await this.options.client.openBlob(target.image, { digest: target.digest, size: opened.size }, { signal });
    return { opened, source, prefetchRanges };
  }

  /**
   * The layer's index: a zTOC stored by an earlier mount; else eStargz / zstd:chunked when the layer has
   * a TOC digest; else a SOCI index's zTOC when one lists the layer; else whatever the blob's tail says
   * (a plain layer falls back with the reasons of both).
   */
  private async openIndex(target: LayerTarget, manifestFetch: Promise<ImageManifest> | undefined, signal: AbortSignal): Promise<OpenedIndex> {
    const stored = await this.storedSociIndex(target.digest);
    if (stored) return stored;
    const manifest = await manifestFetch;
    const expected: Expected = target.tocDigest ? { tocDigest: target.tocDigest } : expectedFromAnnotations(manifest?.layers.find((l) => l.digest === target.digest));
    let noSoci: string | undefined;
    if (!expected.tocDigest && !expected.manifestChecksum && this.soci) {
      const discovered = await this.soci.find(target, manifest, signal);
      if ('found' in discovered) {
        this.preFetchNeighbourZtocs(target, manifest);
        return this.fetchSociIndex(target, discovered.found, manifest, signal);
      }
      noSoci = discovered.missing;
    }
    try {
      return await this.openTocIndex(target, expected, signal);
    } catch (err) {
      if (err instanceof NotLazyFormatError && noSoci) throw new NotLazyFormatError(`${err.message}; ${noSoci}`);
      throw err;
    }
  }

  private async openTocIndex(target: LayerTarget, expected: Expected, signal: AbortSignal): Promise<OpenedIndex> {
    const verifyToc = this.verify && !target.skipVerify;
    // The tail first: it tells a plain layer (the common fallback) from a lazy one with a missing annotation.
    const tail = await this.tail(target.image, target.digest, signal);
    if (verifyToc && !expected.tocDigest && !expected.manifestChecksum) {
      throw new MissingTocDigestError(`layer ${target.digest} has no ${STARGZ_TOC_ANNOTATION} annotation to verify its TOC against (convert it with lazypull convert or ctr-remote, or set stargz.skipverify)`);
    }
    // Chunk digests are checked even when the TOC is not (skipverify): a chunk's bytes must hash to the
    // digest that keys it in the shared cache. Only legacy stargz, which has none, is read unverified.
    return this.openTail(target, tail, expected, true, signal).catch((err: unknown) => {
      if (verifyToc || !(err instanceof TocError) || !/legacy stargz/.test(err.message)) throw err;
      return this.openTail(target, tail, expected, false, signal);
    });
  }

  /** The layer's range-granular prefetch profile from its manifest annotation; a malformed one is ignored with a warning. */
  private prefetchProfile(target: LayerTarget, manifest: ImageManifest | undefined, blobSize: number): ByteRange[] | undefined {
    const text = manifest?.layers.find((l) => l.digest === target.digest)?.annotations?.[PREFETCH_RANGES_ANNOTATION];
    if (text === undefined) return undefined;
    try {
      return parsePrefetchRanges(text, blobSize);
    } catch (err) {
      this.options.log.warn('ignoring the layer prefetch profile', { digest: target.digest, error: (err as Error).message });
      return undefined;
    }
  }

  /** Fetches the zTOC a SOCI index names (checked against its digest), opens it and keeps it for restarts. */
  private async fetchSociIndex(target: LayerTarget, found: SociFound, manifest: ImageManifest | undefined, signal: AbortSignal): Promise<OpenedIndex> {
    const { ztoc } = found;
    if (ztoc.size > this.maxTocBytes) throw new ZtocError(`the zTOC of layer ${target.digest} is ${ztoc.size} bytes, more than the ${this.maxTocBytes}-byte limit`);
    const bytes = await this.fetchZtoc(target.image, ztoc, signal);
    const layerSize = manifest?.layers.find((l) => l.digest === target.digest)?.size;
    const index = openSociLayer(bytes, { expectedZtocDigest: ztoc.digest, ...(layerSize !== undefined ? { layerSize } : {}) });
    this.options.log.debug('SOCI zTOC found', { digest: target.digest, ztoc: ztoc.digest, index: found.indexDigest, via: found.via });
    await this.options.ztocs.put(target.digest, { digest: ztoc.digest, bytes }).catch((err: Error) => this.options.log.warn('could not store zTOC', { digest: target.digest, error: err.message }));
    return { index, size: index.parsed.ztoc.compressedArchiveSize };
  }

  /** A zTOC kept by an earlier mount of this layer; one that no longer opens is dropped (and found again). */
  private async storedSociIndex(layerDigest: Digest): Promise<OpenedIndex | undefined> {
    const stored = await this.options.ztocs.get(layerDigest);
    if (!stored) return undefined;
    try {
      const index = openSociLayer(stored.bytes, { expectedZtocDigest: stored.digest });
      return { index, size: index.parsed.ztoc.compressedArchiveSize };
    } catch (err) {
      this.options.log.warn('dropping a stored zTOC that does not open', { digest: layerDigest, error: (err as Error).message });
      await this.options.ztocs.delete(layerDigest);
      return undefined;
    }
  }

  /**
   * Stores the zTOCs the SOCI index lists for the layers after this one, so their Prepares (one after
   * another) find them on disk. Failures are left to each layer's own Prepare.
   */
  private preFetchNeighbourZtocs(target: LayerTarget, manifest: ImageManifest | undefined): void {
    const store = async (ztoc: SociZtocRef) => {
      if (ztoc.size > this.maxTocBytes || (await this.options.ztocs.get(ztoc.layerDigest))) return;
      const bytes = await this.fetchZtoc(target.image, ztoc);
      await this.options.ztocs.put(ztoc.layerDigest, { digest: ztoc.digest, bytes });
    };
    this.soci
      ?.listed(target, manifest)
      .then((ztocs) => Promise.all(ztocs.filter((z) => z.layerDigest !== target.digest).map((z) => store(z).catch(() => undefined))))
      .catch(() => undefined);
  }

  /** One fetch per zTOC digest at a time (a layer shared by images, pre-resolving). */
  private fetchZtoc(image: ImageReference, ztoc: SociZtocRef, signal?: AbortSignal): Promise<Buffer> {
    let pending = this.ztocFetches.get(ztoc.digest);
    if (!pending) {
      const started = performance.now();
      pending = this.options.client.fetchBlob(image, { digest: ztoc.digest, size: ztoc.size }, signal);
      pending.then(() => this.options.metrics?.observeTocFetch(seconds(started))).catch(() => undefined);
      this.ztocFetches.set(ztoc.digest, pending);
      const forget = () => this.ztocFetches.delete(ztoc.digest);
      pending.then(forget, forget);
    }
    return pending;
  }

  /** Builds the index from the layer's tail; a stored tail that does not open is dropped and fetched again. */
  private async openTail(target: LayerTarget, tail: LayerTail, expected: Expected, verify: boolean, signal: AbortSignal): Promise<OpenedIndex> {
    const open = (from: LayerTail) =>
      openLayer(new TailSource(from), {
        verify,
        tailSize: from.bytes.length,
        maxTocSize: this.maxTocBytes,
        ...(expected.tocDigest ? { expectedTocDigest: expected.tocDigest } : {}),
        ...(expected.manifestChecksum ? { expectedManifestChecksum: expected.manifestChecksum } : {}),
        signal,
      });
    try {
      const started = performance.now();
      const index = await open(tail);
      this.options.log.debug('layer index opened', { digest: target.digest, tail_bytes: tail.bytes.length, ms: Math.round(performance.now() - started) });
      return { index, size: tail.size };
    } catch (err) {
      // A stored tail is a cache: one that no longer opens (damaged on disk) is dropped and fetched again.
      if (!this.storedTails.has(tail) || signal.aborted) throw err;
      this.tailFetches.delete(target.digest);
      await this.options.tails.delete(target.digest);
      const fresh = await this.tail(target.image, target.digest, signal);
      return { index: await open(fresh), size: fresh.size };
    }
  }

  /** One fetch per blob digest at a time: from memory, the tail store, then the registry (and stored). */
  private tail(image: ImageReference, digest: Digest, signal?: AbortSignal): Promise<LayerTail> {
    let pending = this.tailFetches.get(digest);
    if (!pending) {
      pending = this.loadTail(image, digest, signal);
      this.tailFetches.set(digest, pending);
      // Only the in-flight fetch is shared; the bytes live on disk, so memory holds no TOC per layer.
      const forget = () => this.tailFetches.delete(digest);
      pending.then(forget, forget);
    }
    return pending;
  }

  private async loadTail(image: ImageReference, digest: Digest, signal?: AbortSignal): Promise<LayerTail> {
    const stored = await this.options.tails.get(digest);
    if (stored) {
      this.storedTails.add(stored);
      return stored;
    }
    const started = performance.now();
    // The footer comes with the blob's size in one request: no size probe first.
    const { source, tail: lastBytes } = await this.options.client.openBlobAtTail(image, { digest }, TAIL_FIRST_READ_BYTES, { ...(signal ? { signal } : {}) });
    const tail = await fetchTail(source, this.maxTocBytes, signal, lastBytes);
    this.options.metrics?.observeTocFetch(seconds(started));
    this.options.log.debug('layer tail fetched', { digest, bytes: tail.bytes.length, ms: Math.round(performance.now() - started) });
    await this.options.tails.put(digest, tail).catch((err: Error) => this.options.log.warn('could not store layer tail', { digest, error: err.message }));
    return tail;
  }

  private manifest(image: ImageReference, digest: Digest, signal?: AbortSignal): Promise<ImageManifest> {
    let pending = this.manifests.get(digest);
    if (!pending) {
      pending = this.options.client.fetchManifest(image, digest, signal).then((fetched) => {
        if (fetched.document.kind !== 'manifest') throw new TocError(`${digest} is not an image manifest`);
        return fetched.document.manifest;
      });
      this.manifests.set(digest, pending);
      pending.catch(() => this.manifests.delete(digest));
    }
    return pending;
  }

  /**
   * An image is being pulled through this daemon (lazypull.v1.Pull) and its manifest is in: every lazy
   * layer's TOC is opened and its prefetch started now, before containerd's first Prepare, whose labels
   * then find each layer warm. `image` is the pinned reference those labels carry. Layers without a TOC
   * annotation (SOCI, plain) are left to their Prepare.
   */
  expectImage(image: ImageReference, manifestDigest: Digest, manifest: ImageManifest): void {
    if (!this.manifests.has(manifestDigest)) this.manifests.set(manifestDigest, Promise.resolve(manifest));
    const lazy = manifest.layers.map((l) => l.digest).filter((d) => hasTocAnnotation(manifest, d));
    this.warmLayersOf(image, manifest, manifestDigest, this.unwarmed(lazy), Promise.resolve(), []);
  }

  /** Stops the prefetch of the warm layers of this manifest that no Prepare took (layers containerd had already). */
  dropWarmLayersOf(manifestDigest: Digest): void {
    for (const [digest, entry] of this.warmLayers) {
      if (entry.manifestDigest === manifestDigest) this.dropWarmLayer(digest);
    }
  }

  /**
   * Gets the layers after this one ready while this one opens, so their Prepares (which containerd
   * sends one after another) need neither a round trip nor a TOC parse: with the image's manifest, each
   * is opened and its prefetch started (WarmLayer); without it, only the tails are fetched. Failures are
   * left to each layer's own Prepare.
   */
  private warmNeighbours(target: LayerTarget, mounting: Promise<unknown>): void {
    const listed = this.unwarmed(target.layers.slice(1)).filter((d) => d !== target.digest);
    const listedTails = listed.map((d) => this.tail(target.image, d).catch(() => undefined));
    const manifestDigest = target.manifestDigest;
    if (!manifestDigest) return;
    this.manifest(target.image, manifestDigest)
      .then((manifest) => {
        const after = target.layersTruncated ? this.unwarmed(layersAfter(manifest, target.digest)) : listed;
        const ownTail = hasTocAnnotation(manifest, target.digest) ? [this.tail(target.image, target.digest).catch(() => undefined)] : [];
        // One TOC parse after another, after this layer's mount (and the turn that answers containerd):
        // the Prepare containerd waits for gets the CPU first.
        const afterMount = mounting.catch(() => undefined).then(() => new Promise((resolve) => setImmediate(resolve)));
        this.warmLayersOf(target.image, manifest, manifestDigest, after, afterMount, [...ownTail, ...listedTails]);
      })
      .catch(() => undefined);
  }

  /** Of these layers, those neither warm nor mounted already. */
  private unwarmed(digests: readonly Digest[]): Digest[] {
    const mounted = new Set([...this.layers.values()].map((layer) => layer.digest));
    return digests.filter((d) => !this.warmLayers.has(d) && !mounted.has(d));
  }

  /**
   * Opens `digests` of `manifest` ahead (WarmLayer), their TOCs parsed one after another from
   * `queueStart` on, their prefetches started once every tail (and `otherTails`) is in: the tails the
   * Prepares wait for come first on the link.
   */
  private warmLayersOf(image: ImageReference, manifest: ImageManifest, manifestDigest: Digest, digests: readonly Digest[], queueStart: Promise<unknown>, otherTails: readonly Promise<unknown>[]): void {
    const tailsIn = Promise.all([...otherTails, ...digests.map((d) => this.tail(image, d).catch(() => undefined))]);
    let previous = queueStart;
    for (const digest of digests) {
      const layer = this.warmUp(image, manifest, manifestDigest, digest, previous, tailsIn);
      layer.catch(() => undefined);
      // A quick parse skips the queue but does not end it: the big ones after it still wait for the
      // big ones before it, this Prepare's own among them (python's stdlib TOC once parsed beside the
      // distro's and held up the distro's mount by 120 ms).
      previous = Promise.all([previous, layer.catch(() => undefined)]);
      const expiry = setTimeout(() => this.dropWarmLayer(digest), WARM_LAYER_TTL_MS).unref();
      this.warmLayers.set(digest, { layer: layer.catch(() => undefined), expiry, manifestDigest });
    }
  }

  /** Opens a layer of `manifest` against its TOC annotation and starts its prefetch; undefined for a layer without one. */
  private async warmUp(image: ImageReference, manifest: ImageManifest, manifestDigest: Digest, digest: Digest, previous: Promise<unknown>, tailsIn: Promise<unknown>): Promise<WarmLayer | undefined> {
    if (!hasTocAnnotation(manifest, digest)) return undefined;
    const expected = expectedFromAnnotations(manifest.layers.find((l) => l.digest === digest));
    const target: LayerTarget = { image, digest, manifestDigest, layers: [digest], layersTruncated: false, skipVerify: false };
    const tail = await this.tail(image, digest);
    // A small TOC parses in a few ms: its layer's prefetch need not wait for the big parses before it.
    // A big one also lets the FUSE mounts being made finish first: one made during a parse (python's
    // distro layer beside its stdlib's TOC) took 100 ms instead of 3, and containerd waits for it.
    if (tail.bytes.length > QUICK_PARSE_TAIL_BYTES) {
      await previous;
      // A turn first, so a Prepare that was waiting for the layer before this one has begun its mount.
      await new Promise((resolve) => setImmediate(resolve));
      await Promise.all(this.fuseMounts);
    }
    const opened = await this.openTail(target, tail, expected, true, new AbortController().signal);
    const prefetchRanges = this.prefetchProfile(target, manifest, opened.size);
    const source = await this.options.client.openBlob(image, { digest, size: opened.size });
    await tailsIn;
    const fetch = this.options.mounts.startFetch({
      index: opened.index,
      source,
      cache: this.options.cache,
      layerDigest: digest,
      fetch: { ...this.options.fetch, ...(prefetchRanges ? { prefetchRanges } : {}) },
      ...(this.options.fetchDeadlineMs !== undefined ? { fetchDeadlineMs: this.options.fetchDeadlineMs } : {}),
      ...(this.options.smallFileReadAheadBytes !== undefined ? { smallFileReadAheadBytes: this.options.smallFileReadAheadBytes } : {}),
    });
    return { image: image.toString(), manifestDigest, opened, source, prefetchRanges, fetch };
  }

  /** The warm layer for this Prepare, if one was made for exactly what its labels ask. */
  private async takeWarmLayer(target: LayerTarget): Promise<WarmLayer | undefined> {
    const entry = this.warmLayers.get(target.digest);
    if (!entry) return undefined;
    this.warmLayers.delete(target.digest);
    clearTimeout(entry.expiry);
    const warm = await entry.layer;
    if (!warm) return undefined;
    const same =
      warm.image === target.image.toString() &&
      warm.manifestDigest === target.manifestDigest &&
      (target.tocDigest === undefined || target.tocDigest === warm.opened.index.tocDigest) &&
      target.prefetchBytes === undefined &&
      target.sociIndexDigest === undefined &&
      !target.skipVerify;
    if (same) return warm;
    warm.fetch.stop();
    return undefined;
  }

  private dropWarmLayer(digest: Digest): void {
    const entry = this.warmLayers.get(digest);
    if (!entry) return;
    this.warmLayers.delete(digest);
    void entry.layer.then((warm) => warm?.fetch.stop());
  }
}

function expectedFromAnnotations(descriptor: Descriptor | undefined): Expected {
  const annotations = descriptor?.annotations ?? {};
  const toc = annotations[STARGZ_TOC_ANNOTATION];
  const checksum = annotations[ZSTD_CHUNKED_CHECKSUM_ANNOTATION];
  return {
    ...(isDigest(toc) ? { tocDigest: toc } : {}),
    ...(isDigest(checksum) ? { manifestChecksum: checksum } : {}),
  };
}

/** Whether the manifest names a TOC digest for the layer (an eStargz or zstd:chunked layer to verify against it). */
function hasTocAnnotation(manifest: ImageManifest, digest: Digest): boolean {
  const expected = expectedFromAnnotations(manifest.layers.find((l) => l.digest === digest));
  return expected.tocDigest !== undefined || expected.manifestChecksum !== undefined;
}

function layersAfter(manifest: ImageManifest, digest: Digest): Digest[] {
  const digests = manifest.layers.map((layer) => layer.digest);
  const at = digests.indexOf(digest);
  return at < 0 ? [] : digests.slice(at + 1);
}

function seconds(since: number): number {
  return (performance.now() - since) / 1000;
}
