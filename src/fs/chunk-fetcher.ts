import { unverifiedChunkKey, type ChunkCache } from '../cache/chunk-cache.js';
import type { RandomAccessSource } from '../io/random-access.js';
import type { ChunkRef, ChunkSlice, LayerIndex } from '../layer/layer-index.js';
import { inlineDecoder, type ChunkDecoder } from './chunk-decoder.js';
import { deadlineSignal } from './deadline.js';
import { FetchActivity } from './fetch-activity.js';

/** A source that can fetch several ranges in one go (RegistryBlobSource: coalesced, multi-range requests). */
export interface RangeSource extends RandomAccessSource {
  readRanges?(ranges: readonly { start: number; length: number }[], signal?: AbortSignal): Promise<Buffer[]>;
}

/**
 * foreground: a reader is waiting (short deadline; background work pauses meanwhile). prefetch: the
 * mount-time landmark region (long deadline, does not pause anything). background: the rest of the layer.
 */
export type FetchPriority = 'foreground' | 'prefetch' | 'background';

export interface ChunkFetcherOptions {
  index: LayerIndex;
  source: RangeSource;
  cache: ChunkCache;
  /** The blob digest: keys chunks that have no digest of their own. */
  layerDigest: string;
  /** An on-demand read that cannot get its chunks in this time fails (EIO), whatever the registry does. */
  deadlineMs: number;
  decoder?: ChunkDecoder;
  /**
   * On an on-demand fetch, the members of small files (one chunk each) that follow the fetched chunk
   * in the blob, up to this many compressed bytes past it, come in the same request: files of one
   * directory sit together in a layer, and a workload that opens one usually opens its neighbours
   * next (python's imports), each otherwise a round trip. 0: off (the default here; mounts turn it on).
   */
  smallFileReadAheadBytes?: number;
  /** Shared by the mounts of one daemon so that no layer's background work slows another's reads. Default: this fetcher's own. */
  activity?: FetchActivity;
}

export interface FetchCounters {
  /** Compressed bytes received from the source. */
  fetchedBytes: number;
  /** Range reads sent to the source (one readRanges call counts once). */
  requests: number;
  /** Chunks decoded and verified. */
  decodedChunks: number;
  /** Chunks that failed to fetch or verify. */
  failures: number;
}

const BACKGROUND_DEADLINE_FACTOR = 4;

export class FetchFailedError extends Error {
  override name = 'FetchFailedError';
}

/**
 * Turns chunk references into verified bytes: memory and disk through the ChunkCache, then the source.
 * All chunks one call needs that are not cached travel in one coalesced request; a chunk already on its
 * way (another reader, read-ahead, prefetch) is awaited, never fetched twice. Bytes are verified before
 * they are cached or returned. Background work waits while on-demand reads are in progress.
 */
export class ChunkFetcher {
  readonly counters: FetchCounters = { fetchedBytes: 0, requests: 0, decodedChunks: 0, failures: 0 };
  private readonly inflight = new Map<string, Promise<Buffer>>();
  /** Built on the first on-demand fetch: the fetch units that hold a whole small file, in blob order. */
  private smallFileUnits: readonly ChunkRef[] | undefined;
  private readonly activity: FetchActivity;
  private readonly pendingWrites = new Set<Promise<void>>();
  private readonly decoder: ChunkDecoder;

  constructor(private readonly options: ChunkFetcherOptions) {
    this.decoder = options.decoder ?? inlineDecoder;
    this.activity = options.activity ?? new FetchActivity();
    this.activity.noteFetch(); // a new mount: its reader is about to start
  }

  keyOf(chunk: ChunkRef): string {
    // A digest names cache content only when decode checked the bytes against it; otherwise an unverified
    // layer could plant bytes under another layer's chunk digest.
    if (chunk.digest && this.options.index.verified) return chunk.digest;
    return unverifiedChunkKey(this.options.layerDigest, chunk.compressedOffset, chunk.innerOffset);
  }

  /** On-demand reads and prefetches in progress, of every layer sharing the activity (background waits for 0). */
  get foregroundPending(): number {
    return this.activity.pending;
  }

  /**
   * Fills `target` with the bytes of the slices, in order, and returns how many that is. Cached chunks are
   * copied from the cache, where a disk hit reads only the blocks a slice covers (a 128 KiB FUSE read of a
   * cached 4 MiB chunk costs one 128 KiB pread, not a 4 MiB read into the heap); the rest are fetched.
   * The deadline bounds only the fetching: a cache read may be writing into `target` (the kernel's
   * buffer), so it is always awaited before the caller answers.
   */
  async readInto(slices: readonly ChunkSlice[], target: Buffer): Promise<number> {
    const offsets: number[] = [];
    let total = 0;
    for (const slice of slices) {
      offsets.push(total);
      total += slice.end - slice.start;
    }
    const copied = await Promise.all(slices.map((slice, i) => this.copyCached(slice, target, offsets[i]!)));
    const missing = slices.flatMap((slice, i) => (copied[i] ? [] : [{ slice, at: offsets[i]! }]));
    if (missing.length > 0) {
      const chunks = await this.getChunks(missing.map((m) => m.slice.chunk), 'foreground');
      missing.forEach(({ slice, at }, i) => chunks[i]!.copy(target, at, slice.start, slice.end));
    }
    return total;
  }

  /** Fetches those of the chunks the cache does not hold yet (prefetch, read-ahead); cached ones stay unread. */
  async fetchMissing(chunks: readonly ChunkRef[], priority: FetchPriority): Promise<void> {
    const present = await Promise.all(chunks.map((c) => c.encoding === 'zeros' || this.options.cache.has(this.keyOf(c)).catch(() => false)));
    const missing = chunks.filter((_, i) => !present[i]);
    if (missing.length > 0) await this.getChunks(missing, priority);
  }

  /** Whole chunks, verified; foreground calls are bounded by the deadline. */
  async getChunks(chunks: readonly ChunkRef[], priority: FetchPriority): Promise<Buffer[]> {
    const foreground = priority === 'foreground';
    const endUrgent = priority === 'background' ? undefined : this.activity.begin();
    const requestsBefore = this.counters.requests;
    // Background work may take longer (large ranges) but must not hang forever on a stalled registry either.
    const deadline = deadlineSignal(foreground ? this.options.deadlineMs : this.options.deadlineMs * BACKGROUND_DEADLINE_FACTOR);
    try {
      return await deadline.race(this.load(chunks, deadline.signal, foreground));
    } finally {
      deadline.clear();
      endUrgent?.(this.counters.requests > requestsBefore);
    }
  }

  /** Resolves when every chunk fetched so far has been handed to the cache (disk writes done). */
  async writesSettled(): Promise<void> {
    while (this.pendingWrites.size > 0) await Promise.all(this.pendingWrites);
  }

  private trackWrite(write: Promise<void>): Promise<void> {
    this.pendingWrites.add(write);
    return write.finally(() => this.pendingWrites.delete(write));
  }

  /** Resolves when no on-demand read or prefetch is in progress. */
  whenIdle(): Promise<void> {
    return this.activity.whenIdle();
  }

  /**
   * Resolves once no on-demand read or prefetch is in progress and none has gone to the registry for
   * `quietMs`: while a workload is starting and fetching, background traffic would only slow its reads down.
   */
  whenQuiet(quietMs: number): Promise<void> {
    return this.activity.whenQuiet(quietMs);
  }

  private async copyCached(slice: ChunkSlice, target: Buffer, targetOffset: number): Promise<boolean> {
    const length = slice.end - slice.start;
    if (slice.chunk.encoding === 'zeros') {
      target.fill(0, targetOffset, targetOffset + length);
      return true;
    }
    try {
      return await this.options.cache.readRange(this.keyOf(slice.chunk), slice.start, length, target, targetOffset);
    } catch {
      return false; // a cache failure is a miss: the source still has the bytes
    }
  }

  private async load(chunks: readonly ChunkRef[], signal: AbortSignal | undefined, onDemand: boolean): Promise<Buffer[]> {
    const mine: PendingChunk[] = [];
    const results = chunks.map((chunk): Promise<Buffer> => {
      if (chunk.encoding === 'zeros') return Promise.resolve(Buffer.alloc(chunk.size));
      const pending = this.inflight.get(this.keyOf(chunk));
      if (pending) return pending;
      const item = this.startPending(chunk);
      mine.push(item);
      return item.settle.promise;
    });
    if (mine.length > 0) void this.fillFromCacheOrSource(mine, signal, onDemand);
    return Promise.all(results);
  }

  /** Registers a chunk as on its way, so that other readers wait for it instead of fetching it again. */
  private startPending(chunk: ChunkRef): PendingChunk {
    const key = this.keyOf(chunk);
    const settle = deferred();
    this.inflight.set(key, settle.promise);
    settle.promise.then(
      () => this.inflight.delete(key),
      () => this.inflight.delete(key),
    );
    return { chunk, settle };
  }

  private async fillFromCacheOrSource(work: PendingChunk[], signal: AbortSignal | undefined, onDemand: boolean): Promise<void> {
    const missing: PendingChunk[] = [];
    await Promise.all(
      work.map(async (item) => {
        try {
          const cached = await this.options.cache.get(this.keyOf(item.chunk));
          if (cached !== undefined) item.settle.resolve(cached);
          else missing.push(item);
        } catch {
          missing.push(item); // a cache failure is a miss: the source still has the bytes
        }
      }),
    );
    if (missing.length === 0) return;
    if (onDemand) missing.push(...(await this.smallFilesAfter(missing)));
    try {
      await this.fetchAndDecode(missing, signal);
    } catch (err) {
      this.counters.failures += missing.length;
      const failure = new FetchFailedError(`fetching ${missing.length} chunk(s) failed: ${(err as Error).message}`, { cause: err });
      for (const item of missing) item.settle.reject(failure);
    }
  }

  /** Small-file units following the missing chunks (see `smallFileReadAheadBytes`) that are neither cached nor on their way. */
  private async smallFilesAfter(missing: readonly PendingChunk[]): Promise<PendingChunk[]> {
    const window = this.options.smallFileReadAheadBytes ?? 0;
    if (window <= 0) return [];
    this.smallFileUnits ??= smallFileUnitsOf(this.options.index, (chunk) => this.keyOf(chunk));
    const units = this.smallFileUnits;
    const candidates = new Map<string, ChunkRef>();
    for (const { chunk } of missing) {
      const limit = chunk.compressedEnd + window;
      for (let i = firstStartingAtOrAfter(units, chunk.compressedEnd); i < units.length && units[i]!.compressedEnd <= limit; i++) {
        const key = this.keyOf(units[i]!);
        if (!this.inflight.has(key)) candidates.set(key, units[i]!);
      }
    }
    const uncached = await Promise.all([...candidates].map(async ([key, chunk]) => ((await this.options.cache.has(key).catch(() => true)) ? undefined : chunk)));
    // Checked again after the awaits: a reader may have started one of them meanwhile.
    return uncached.filter((chunk): chunk is ChunkRef => chunk !== undefined && !this.inflight.has(this.keyOf(chunk))).map((chunk) => this.startPending(chunk));
  }

  private async fetchAndDecode(missing: PendingChunk[], signal: AbortSignal | undefined): Promise<void> {
    missing.sort((a, b) => a.chunk.compressedOffset - b.chunk.compressedOffset);
    const members = distinctMembers(missing.map((m) => m.chunk));
    const payloads = await this.fetchRanges(members, signal);
    const byMember = new Map(members.map((m, i) => [`${m.start}:${m.length}`, payloads[i]!]));
    await Promise.all(
      missing.map(async ({ chunk, settle }) => {
        const key = this.keyOf(chunk);
        const release = this.options.cache.pin(key);
        try {
          const compressed = byMember.get(`${chunk.compressedOffset}:${chunk.compressedEnd - chunk.compressedOffset}`)!;
          const data = await this.decoder.decode(this.options.index, chunk, compressed);
          this.counters.decodedChunks++;
          settle.resolve(data);
          // Only verified bytes get here: decode throws on a digest mismatch. Readers do not wait for the
          // disk write; writesSettled() does.
          await this.trackWrite(this.options.cache.put(key, data).catch(() => undefined));
        } catch (err) {
          this.counters.failures++;
          settle.reject(err);
        } finally {
          release();
        }
      }),
    );
  }

  private async fetchRanges(ranges: { start: number; length: number }[], signal: AbortSignal | undefined): Promise<Buffer[]> {
    const { source } = this.options;
    this.counters.requests++;
    const payloads = source.readRanges ? await source.readRanges(ranges, signal) : await Promise.all(ranges.map((r) => source.readAt(r.start, r.length, signal)));
    for (const p of payloads) this.counters.fetchedBytes += p.length;
    return payloads;
  }
}

interface PendingChunk {
  chunk: ChunkRef;
  settle: Deferred;
}

/** The fetch units that hold a whole regular file each, in blob order (SOCI spans never qualify). */
function smallFileUnitsOf(index: LayerIndex, keyOf: (chunk: ChunkRef) => string): ChunkRef[] {
  const wholeFiles = new Set<string>();
  for (const entry of index.entries.values()) {
    if (entry.type === 'reg' && entry.chunks.length === 1) wholeFiles.add(keyOf(entry.chunks[0]!));
  }
  return index.fetchUnits().filter((chunk) => chunk.encoding !== 'zeros' && wholeFiles.has(keyOf(chunk)));
}

/** Index of the first unit whose member starts at or after `offset` (units are in blob order). */
function firstStartingAtOrAfter(units: readonly ChunkRef[], offset: number): number {
  let lo = 0;
  let hi = units.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (units[mid]!.compressedOffset < offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

interface Deferred {
  promise: Promise<Buffer>;
  resolve(data: Buffer): void;
  reject(err: unknown): void;
}

function deferred(): Deferred {
  let resolve!: (data: Buffer) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<Buffer>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Callers that gave up (deadline) must not turn a later failure into an unhandled rejection.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/** Compressed ranges to fetch, each once even when several chunks share a member. */
function distinctMembers(chunks: readonly ChunkRef[]): { start: number; length: number }[] {
  const seen = new Set<string>();
  const out: { start: number; length: number }[] = [];
  for (const c of chunks) {
    const key = `${c.compressedOffset}:${c.compressedEnd - c.compressedOffset}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ start: c.compressedOffset, length: c.compressedEnd - c.compressedOffset });
  }
  return out;
}
