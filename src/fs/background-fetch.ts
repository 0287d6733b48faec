import type { ChunkRef, LayerIndex } from '../layer/layer-index.js';
import { overlapsAny, type ByteRange } from '../layer/prefetch-ranges.js';
import type { ChunkFetcher, FetchPriority } from './chunk-fetcher.js';

export interface BackgroundFetchOptions {
  /** Fetch the prioritized region (landmark) at mount. Default true. */
  prefetch: boolean;
  /** Without a landmark: prefetch chunks starting in the first this many compressed bytes (0: none). */
  prefetchBytes: number;
  /**
   * A range-granular profile (normalized compressed byte ranges): prefetch exactly the chunks these
   * touch, instead of the landmark region or `prefetchBytes`.
   */
  prefetchRanges?: readonly ByteRange[];
  /**
   * A layer whose chunks come to at most this many compressed bytes is prefetched whole at mount,
   * landmark or not (a range profile still says exactly what to fetch): a few large requests for all
   * of it cost less than a round trip per file a starting workload opens. 0: off.
   */
  prefetchWholeLayerBytes: number;
  /**
   * Files the prefetch takes along with whatever else it takes, as layer paths; not when a range
   * profile says exactly what to take, nor from a layer marked "prefetch nothing". Default: STARTUP_FILES.
   */
  prefetchFiles: readonly string[];
  /** After the prefetch, fetch the rest of the layer at low priority. */
  background: boolean;
  /** Compressed bytes per prefetch request. */
  batchBytes: number;
  /**
   * Prefetch requests in flight at once: while one batch is decoded and cached the next ones are on
   * the wire, so the link stays busy and the CPU work spreads over the transfer instead of following it.
   */
  prefetchConcurrency: number;
  /** Compressed bytes per background request: small, so an on-demand read never waits long behind one. */
  backgroundBatchBytes: number;
  /** The background pass runs only after on-demand reads have not gone to the registry for this long. */
  quietMs: number;
  /** Pause after a failed batch before retrying it; doubles up to 32x. */
  retryDelayMs: number;
}

/**
 * Read at every container start before its process runs: containerd looks the user and its groups up
 * when it creates the container (WithUser, WithAdditionalGIDs) and runc again when it starts it. Without
 * a profile each cost a round trip in the middle of the start (80 ms of python's create in benchmarks/hello).
 */
export const STARTUP_FILES: readonly string[] = ['etc/passwd', 'etc/group'];

export const DEFAULT_BACKGROUND_FETCH: BackgroundFetchOptions = {
  prefetch: true,
  prefetchBytes: 0,
  prefetchWholeLayerBytes: 0,
  prefetchFiles: STARTUP_FILES,
  background: true,
  // python's 4.4 MB prefetch in benchmarks/hello as one 8 MiB batch: all of it decoded at the end, in
  // a burst that held up containerd's calls to the daemon for ~150 ms; 1 MiB batches, 3 at a time, spread it.
  batchBytes: 1024 * 1024,
  prefetchConcurrency: 3,
  backgroundBatchBytes: 2 * 1024 * 1024,
  quietMs: 1500,
  retryDelayMs: 500,
};

export interface LayerProgress {
  /** Compressed bytes of all distinct chunk members of the layer. */
  totalBytes: number;
  /** Compressed bytes this mount received from the registry (on demand, prefetch, background). */
  fetchedBytes: number;
  /** Compressed bytes the prefetch and background passes have handed to the cache (the background pass: once on disk). */
  completedBytes: number;
  /** Uncompressed bytes handed to readers. */
  servedBytes: number;
  prefetchBytes: number;
  prefetchDone: boolean;
  backgroundDone: boolean;
  /** The last background failure, if any (on-demand reads still fetch what is missing). */
  lastError?: string;
}

interface Batch {
  chunks: ChunkRef[];
  bytes: number;
}

/**
 * Mount-time prefetch of the prioritized region, then a low-priority pass over the rest of the layer
 * that waits whenever an on-demand read is in progress. Chunks already cached are skipped, so a
 * remount with a warm cache costs only cache lookups.
 */
export class BackgroundFetch {
  private stopped = false;
  private completed = 0;
  private prefetchFinished = false;
  private backgroundFinished = false;
  private lastError: string | undefined;
  private readonly prefetchChunks: ChunkRef[];
  private readonly restChunks: ChunkRef[];
  private readonly total: number;
  private readonly prefetchTotal: number;
  readonly prefetched: Promise<void>;
  readonly finished: Promise<void>;

  constructor(
    index: LayerIndex,
    private readonly fetcher: ChunkFetcher,
    private readonly options: BackgroundFetchOptions,
  ) {
    const all = distinctChunks(index, fetcher);
    this.total = memberBytes(all);
    const inPrefetch = prefetchSelector(index, options, this.total);
    this.prefetchChunks = all.filter(inPrefetch);
    this.restChunks = all.filter((c) => !inPrefetch(c));
    this.prefetchTotal = memberBytes(this.prefetchChunks);
    let markPrefetched!: () => void;
    this.prefetched = new Promise((resolve) => (markPrefetched = resolve));
    this.finished = this.run(markPrefetched);
  }

  stop(): void {
    this.stopped = true;
  }

  progress(servedBytes: number): LayerProgress {
    return {
      totalBytes: this.total,
      fetchedBytes: this.fetcher.counters.fetchedBytes,
      completedBytes: this.completed,
      servedBytes,
      prefetchBytes: this.prefetchTotal,
      prefetchDone: this.prefetchFinished,
      backgroundDone: this.backgroundFinished,
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
    };
  }

  private async run(markPrefetched: () => void): Promise<void> {
    try {
      await this.fetchAll(this.prefetchChunks, 'prefetch');
      await this.fetcher.writesSettled();
    } finally {
      this.prefetchFinished = !this.stopped;
      markPrefetched();
    }
    if (!this.options.background) return;
    await this.fetchAll(this.restChunks, 'background');
    this.backgroundFinished = !this.stopped;
  }

  private async fetchAll(chunks: ChunkRef[], priority: FetchPriority): Promise<void> {
    const background = priority === 'background';
    const queue = batches(chunks, background ? this.options.backgroundBatchBytes : this.options.batchBytes);
    const lane = async () => {
      for (let next = queue.next(); !next.done; next = queue.next()) {
        if (this.stopped) return;
        if (background) await this.fetcher.whenQuiet(this.options.quietMs);
        await this.fetchWithRetry(next.value, priority);
      }
    };
    // Background work stays one request at a time: it must leave the link to on-demand reads.
    const lanes = background ? 1 : Math.max(1, this.options.prefetchConcurrency);
    await Promise.all(Array.from({ length: lanes }, lane));
  }

  private async fetchWithRetry(batch: Batch, priority: FetchPriority): Promise<void> {
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        await this.fetcher.fetchMissing(batch.chunks, priority);
        // The prefetch goes on while its chunks are written (a write hold may keep them in memory until
        // a pull is through) and waits for the writes once, at its end; the background pass keeps to
        // the pace of the disk.
        if (priority === 'background') await this.fetcher.writesSettled();
        this.completed += batch.bytes;
        return;
      } catch (err) {
        this.lastError = (err as Error).message;
        if (attempt >= 5) return; // leave it to on-demand reads; the pass goes on
        await sleep(this.options.retryDelayMs * 2 ** Math.min(attempt, 5));
      }
    }
  }
}

/**
 * Which chunks the mount-time prefetch takes: the profile's ranges (none for a profiled layer the
 * workload never read), else all of a small layer, else the landmark region, else the first prefetchBytes.
 */
function prefetchSelector(index: LayerIndex, options: BackgroundFetchOptions, layerBytes: number): (chunk: ChunkRef) => boolean {
  if (!options.prefetch) return () => false;
  const ranges = options.prefetchRanges;
  if (ranges !== undefined) return (c) => overlapsAny(ranges, c.compressedOffset, c.compressedEnd);
  if (layerBytes <= options.prefetchWholeLayerBytes) return () => true;
  if (index.noPrefetch) return () => false;
  const limit = index.prefetchRange?.end ?? options.prefetchBytes;
  const members = new Set(options.prefetchFiles.flatMap((path) => index.lookup(path)?.chunks.map((c) => c.compressedOffset) ?? []));
  return (c) => c.compressedOffset < limit || members.has(c.compressedOffset);
}

/** Every chunk of the layer once (chunks shared by several files, e.g. hardlinks, included once), in blob order. */
function distinctChunks(index: LayerIndex, fetcher: ChunkFetcher): ChunkRef[] {
  const byKey = new Map<string, ChunkRef>();
  for (const chunk of index.fetchUnits()) {
    if (chunk.encoding === 'zeros') continue;
    const key = fetcher.keyOf(chunk);
    if (!byKey.has(key)) byKey.set(key, chunk);
  }
  return [...byKey.values()];
}

function memberBytes(chunks: readonly ChunkRef[]): number {
  const members = new Map<number, number>();
  for (const c of chunks) members.set(c.compressedOffset, c.compressedEnd - c.compressedOffset);
  let sum = 0;
  for (const size of members.values()) sum += size;
  return sum;
}

/** Runs of chunks in blob order up to `maxBytes` of compressed span each (one coalesced request). */
function* batches(chunks: readonly ChunkRef[], maxBytes: number): Generator<Batch> {
  let current: ChunkRef[] = [];
  for (const chunk of chunks) {
    const start = current[0]?.compressedOffset ?? chunk.compressedOffset;
    if (current.length > 0 && chunk.compressedEnd - start > maxBytes) {
      yield { chunks: current, bytes: memberBytes(current) };
      current = [];
    }
    current.push(chunk);
  }
  if (current.length > 0) yield { chunks: current, bytes: memberBytes(current) };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
