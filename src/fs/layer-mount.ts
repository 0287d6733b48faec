import type { ChunkCache } from '../cache/chunk-cache.js';
import type { LayerIndex } from '../layer/layer-index.js';
import type { ByteRange } from '../layer/prefetch-ranges.js';
import { BackgroundFetch, DEFAULT_BACKGROUND_FETCH, type BackgroundFetchOptions, type LayerProgress } from './background-fetch.js';
import type { ChunkDecoder } from './chunk-decoder.js';
import { ChunkFetcher, type FetchCounters, type RangeSource } from './chunk-fetcher.js';
import type { FetchActivity } from './fetch-activity.js';
import { mountFuse, type FuseMount } from './fuse-binding.js';
import { recordAccesses, type AccessRecorder } from './access-recorder.js';
import { observeOperations, type FuseObserver } from './fuse-observer.js';
import { LayerFilesystem } from './layer-filesystem.js';
import { LayerView } from './layer-view.js';

/** What a layer's fetching needs: it can start before, and apart from, the layer's FUSE mount. */
export interface LayerFetchOptions {
  index: LayerIndex;
  /** The blob: RegistryBlobSource (its readRanges coalesces) or any RandomAccessSource. */
  source: RangeSource;
  cache: ChunkCache;
  /** The layer's blob digest (names the mount; keys chunks without digests). */
  layerDigest: string;
  /** A read that cannot get its bytes in this time answers EIO. Default 30 s. */
  fetchDeadlineMs?: number;
  /** On an on-demand fetch, the small files that follow it within this many compressed bytes come along. Default 64 KiB; 0: off. */
  smallFileReadAheadBytes?: number;
  /** Prefetch and background fetch settings; `{ background: false }` for on-demand only. */
  fetch?: Partial<BackgroundFetchOptions>;
  /** Decompression and hashing (default: on the main thread). */
  decoder?: ChunkDecoder;
  /** Urgent fetching shared with other mounts (MountManager), which background fetching yields to. Default: this mount's own. */
  activity?: FetchActivity;
}

export interface LayerMountOptions extends LayerFetchOptions {
  /** An existing empty directory. */
  mountpoint: string;
  /** Fetching of this same index that began before the mount (LayerFetch.start); the fetch options above are then its own. */
  started?: LayerFetch;
  /** Fetched ahead of sequential readers (not of files a range profile covers). Default 8 MiB. */
  readAheadBytes?: number;
  /** Kernel entry/attr cache lifetime in seconds (layers are immutable). Default 1 day. */
  kernelCacheSeconds?: number;
  /** Let other users (and containers' non-root processes) use the mount. Default true. */
  allowOther?: boolean;
  debug?: boolean;
  onReadError?: (path: string, error: unknown) => void;
  /** Told the duration and errno of every FUSE operation (the daemon's metrics). */
  observer?: FuseObserver;
  /** Told every successful lookup, open, read and readlink (`lazypull optimize`); none by default. */
  recorder?: AccessRecorder;
}

export const DEFAULT_FETCH_DEADLINE_MS = 30_000;
export const DEFAULT_READ_AHEAD_BYTES = 8 * 1024 * 1024;
/**
 * benchmarks/fs, cat of 2000 small files in blob order from a registry on loopback: 122 -> 797 files/s,
 * bytes fetched unchanged (1.06x of bytes read); python's start in benchmarks/hello did not change.
 */
export const DEFAULT_SMALL_FILE_READ_AHEAD_BYTES = 64 * 1024;
export const DEFAULT_KERNEL_CACHE_SECONDS = 86_400;
/** mountinfo shows lazypull mounts as this type. */
export const FUSE_SUBTYPE = 'lazypull';

/**
 * A layer's chunk fetcher with its prefetch and background passes, running from `start` on. The daemon
 * starts it for the layers after the one being prepared, so their prefetch overlaps the pull, and hands
 * it to the layer's mount; a LayerMount not given one starts its own.
 */
export class LayerFetch {
  private constructor(
    readonly index: LayerIndex,
    readonly fetcher: ChunkFetcher,
    readonly background: BackgroundFetch,
    /** The range-granular prefetch profile this fetching follows, if any. */
    readonly prefetchRanges: readonly ByteRange[] | undefined,
  ) {}

  static start(options: LayerFetchOptions): LayerFetch {
    const fetcher = new ChunkFetcher({
      index: options.index,
      source: options.source,
      cache: options.cache,
      layerDigest: options.layerDigest,
      deadlineMs: options.fetchDeadlineMs ?? DEFAULT_FETCH_DEADLINE_MS,
      ...(options.decoder ? { decoder: options.decoder } : {}),
      ...(options.activity ? { activity: options.activity } : {}),
      smallFileReadAheadBytes: options.smallFileReadAheadBytes ?? DEFAULT_SMALL_FILE_READ_AHEAD_BYTES,
    });
    const fetch = { ...DEFAULT_BACKGROUND_FETCH, ...options.fetch };
    // A profile the prefetch does not follow (prefetch off) must not turn read-ahead off either.
    return new LayerFetch(options.index, fetcher, new BackgroundFetch(options.index, fetcher, fetch), fetch.prefetch ? fetch.prefetchRanges : undefined);
  }

  /** Stops the prefetch and background passes (reads in progress finish). */
  stop(): void {
    this.background.stop();
  }
}

/** One mounted layer. */
export class LayerMount {
  private unmounted?: Promise<void>;

  private constructor(
    readonly mountpoint: string,
    readonly layerDigest: string,
    private readonly fuse: FuseMount,
    private readonly filesystem: LayerFilesystem,
    private readonly fetcher: ChunkFetcher,
    private readonly backgroundFetch: BackgroundFetch,
  ) {}

  static async mount(options: LayerMountOptions): Promise<LayerMount> {
    if (options.started && options.started.index !== options.index) throw new Error('the fetching handed to a mount is of another layer index');
    const started = options.started ?? LayerFetch.start(options);
    try {
      return await LayerMount.mountWith(options, started);
    } catch (err) {
      started.stop();
      throw err;
    }
  }

  private static async mountWith(options: LayerMountOptions, { fetcher, background, prefetchRanges }: LayerFetch): Promise<LayerMount> {
    const view = new LayerView(options.index);
    const filesystem = new LayerFilesystem(view, options.index, fetcher, {
      readAheadBytes: options.readAheadBytes ?? DEFAULT_READ_AHEAD_BYTES,
      ...(prefetchRanges ? { profiledRanges: prefetchRanges } : {}),
      ...(options.onReadError ? { onReadError: options.onReadError } : {}),
    });
    const kernelCache = options.kernelCacheSeconds ?? DEFAULT_KERNEL_CACHE_SECONDS;
    const answered = filesystem.operations();
    const recorded = options.recorder ? recordAccesses(answered, options.recorder) : answered;
    const fuse = await mountFuse(options.mountpoint, options.observer ? observeOperations(recorded, options.observer) : recorded, {
      timeout: false,
      force: true,
      allowOther: options.allowOther ?? true,
      defaultPermissions: true,
      kernelCache: true,
      entryTimeout: kernelCache,
      attrTimeout: kernelCache,
      debug: options.debug ?? false,
      // fuse-native has no option for these; its fsname is pasted into -o verbatim.
      fsname: `${fsName(options.layerDigest)},ro,use_ino,negative_timeout=${kernelCache}`,
      subtype: FUSE_SUBTYPE,
    });
    return new LayerMount(options.mountpoint, options.layerDigest, fuse, filesystem, fetcher, background);
  }

  progress(): LayerProgress {
    return this.backgroundFetch.progress(this.filesystem.servedBytes);
  }

  /** Resolves when the mount-time prefetch has finished (or given up); bound it with your own timeout. */
  whenPrefetched(): Promise<void> {
    return this.backgroundFetch.prefetched;
  }

  /** Resolves when the background pass has gone over the whole layer. */
  whenFetched(): Promise<void> {
    return this.backgroundFetch.finished;
  }

  get counters(): Readonly<FetchCounters> {
    return this.fetcher.counters;
  }

  /** Stops background work and unmounts (lazily: a busy mount detaches now, goes when released). */
  unmount(): Promise<void> {
    this.unmounted ??= (async () => {
      this.backgroundFetch.stop();
      await this.fuse.unmount();
    })();
    return this.unmounted;
  }
}

/** `lazypull:<first 12 hex digits>`: what mount(8) shows as the source. No commas: they would split -o. */
function fsName(layerDigest: string): string {
  const hex = layerDigest.replace(/^sha256:/, '').replace(/[^0-9a-zA-Z]/g, '').slice(0, 12);
  return `lazypull:${hex}`;
}
