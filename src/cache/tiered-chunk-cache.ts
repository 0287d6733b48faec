import { copyRange, type ChunkCache } from './chunk-cache.js';
import { DiskStore } from './disk-store.js';
import { entryNameForKey } from './entry-names.js';
import { DEFAULT_MAX_MEMORY_BYTES } from './memory-only-chunk-cache.js';
import { MemoryTier } from './memory-tier.js';
import { PinCounts } from './pins.js';
import type { DetailedChunkCacheStats } from './stats.js';

export const DEFAULT_MAX_DISK_BYTES = 10 * 1024 * 1024 * 1024;
export const DEFAULT_EVICTION_TARGET_RATIO = 0.9;
export const DEFAULT_ACCESS_TOUCH_INTERVAL_MS = 60_000;

export interface ChunkCacheOptions {
  /** Cache root, e.g. `/var/lib/lazypull/cache`; created (mode 0700) when missing. One process per dir. */
  dir: string;
  /** Bound on the disk tier, in bytes charged per 4 KiB block. Default 10 GiB. */
  maxDiskBytes?: number;
  /** Bound on the memory tier (decompressed chunk bytes). Default 256 MiB. */
  maxMemoryBytes?: number;
  /** Eviction frees down to this fraction of `maxDiskBytes`. Default 0.9. */
  evictionTargetRatio?: number;
  /** fsync each entry before renaming it into place. Default true; only tests should turn it off. */
  durable?: boolean;
  /** Also re-hash `sha256:` entries on every disk hit (crc32 checks always run). Default false. */
  verifyDigestOnRead?: boolean;
  /** How often at most a hit rewrites an entry's mtime, which carries LRU order across restarts. Default 60 s. */
  accessTouchIntervalMs?: number;
  /** Disk errors the cache absorbed (a failed write or read is a miss, not a failed call). */
  onError?: (error: unknown) => void;
}

/** Opens the tiered (memory, then disk) chunk cache at `options.dir`. */
export async function createChunkCache(options: ChunkCacheOptions): Promise<TieredChunkCache> {
  const maxDiskBytes = positiveInteger('maxDiskBytes', options.maxDiskBytes ?? DEFAULT_MAX_DISK_BYTES);
  const maxMemoryBytes = positiveInteger('maxMemoryBytes', options.maxMemoryBytes ?? DEFAULT_MAX_MEMORY_BYTES);
  const evictionTargetRatio = options.evictionTargetRatio ?? DEFAULT_EVICTION_TARGET_RATIO;
  if (!(evictionTargetRatio > 0 && evictionTargetRatio <= 1)) throw new RangeError('evictionTargetRatio must be in (0, 1]');
  const pins = new PinCounts(() => disk.scheduleEviction());
  const disk = await DiskStore.open({
    dir: options.dir,
    maxBytes: maxDiskBytes,
    evictionTargetRatio,
    durable: options.durable ?? true,
    verifyDigestOnRead: options.verifyDigestOnRead ?? false,
    touchIntervalMs: options.accessTouchIntervalMs ?? DEFAULT_ACCESS_TOUCH_INTERVAL_MS,
    isPinned: (name) => pins.has(name),
    onBackgroundError: options.onError,
  });
  const memory = new MemoryTier({ maxBytes: maxMemoryBytes, keepPinned: false, isPinned: () => false });
  return new TieredChunkCache(disk, memory, pins, maxDiskBytes, options.onError);
}

/**
 * Memory LRU in front of the disk store. Values are verified, decompressed chunk bytes; buffers passed to
 * `put` are kept, not copied, and `get` may return the same buffer to several callers: do not modify them.
 * Disk trouble never fails a call: a failed write leaves the chunk in memory only, a failed or damaged
 * read is a miss; both are counted in `stats()` and passed to `onError`.
 */
export class TieredChunkCache implements ChunkCache {
  private readonly hits = { memory: 0, disk: 0 };
  private misses = 0;
  private diskWriteErrors = 0;
  private diskReadErrors = 0;
  /** Concurrent gets of one chunk (e.g. 32 FUSE reads of 128 KiB in a 4 MiB chunk) share one disk read. */
  private readonly pendingDiskReads = new Map<string, Promise<Buffer | undefined>>();
  private closed = false;

  constructor(
    private readonly disk: DiskStore,
    private readonly memory: MemoryTier,
    private readonly pins: PinCounts,
    private readonly maxDiskBytes: number,
    private readonly onError: ((error: unknown) => void) | undefined,
  ) {}

  async get(key: string): Promise<Buffer | undefined> {
    const name = entryNameForKey(key);
    const cached = this.memoryHit(key, name);
    if (cached !== undefined) return cached;
    const data = await this.readFromDisk(key, name);
    if (data === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits.disk++;
    this.memory.set(key, data);
    return data;
  }

  async readRange(key: string, offset: number, length: number, target: Buffer, targetOffset: number): Promise<boolean> {
    const name = entryNameForKey(key);
    const cached = this.memoryHit(key, name);
    if (cached !== undefined) {
      copyRange(cached, offset, length, target, targetOffset);
      return true;
    }
    let found = false;
    try {
      found = await this.disk.readRange(key, name, offset, length, target, targetOffset);
    } catch (error) {
      this.diskReadErrors++;
      this.onError?.(error);
    }
    if (found) this.hits.disk++;
    else this.misses++;
    return found;
  }

  /** The chunk from the memory tier, counted as a hit and marked used on disk too. */
  private memoryHit(key: string, name: string): Buffer | undefined {
    this.assertOpen();
    const cached = this.memory.get(key);
    if (cached === undefined) return undefined;
    this.hits.memory++;
    this.disk.touch(name);
    return cached;
  }

  async put(key: string, data: Buffer): Promise<void> {
    this.assertOpen();
    this.memory.set(key, data);
    try {
      await this.disk.write(key, entryNameForKey(key), data);
    } catch (error) {
      this.diskWriteErrors++;
      this.onError?.(error);
    }
  }

  async has(key: string): Promise<boolean> {
    this.assertOpen();
    return this.memory.has(key) || this.disk.has(entryNameForKey(key));
  }

  /**
   * Holds disk writes back while the caller does latency-bound work (a pull's Prepares), at most
   * `maxMs`; new chunks stay in the memory tier meanwhile. Returns the release.
   */
  holdDiskWrites(maxMs: number): () => void {
    return this.disk.holdWrites(maxMs);
  }

  pin(key: string): () => void {
    return this.pins.pin(entryNameForKey(key));
  }

  stats(): DetailedChunkCacheStats {
    return {
      memoryBytes: this.memory.bytes,
      memoryEntries: this.memory.entryCount,
      diskBytes: this.disk.bytes,
      diskEntries: this.disk.entryCount,
      hits: { ...this.hits },
      misses: this.misses,
      evictions: this.disk.counters.evictions,
      memoryEvictions: this.memory.evictions,
      maxMemoryBytes: this.memory.maxBytes,
      maxDiskBytes: this.maxDiskBytes,
      pinnedKeys: this.pins.size,
      corruptEntries: this.disk.counters.corruptEntries,
      diskWriteErrors: this.diskWriteErrors,
      diskReadErrors: this.diskReadErrors,
      orphanedTempFilesRemoved: this.disk.counters.orphanedTempFilesRemoved,
    };
  }

  /** Resolves once no eviction pass is running (eviction runs in the background after puts and releases). */
  evictionSettled(): Promise<void> {
    return this.disk.evictionSettled();
  }

  /** Waits for in-flight writes and eviction; later calls throw. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.disk.close();
    this.memory.clear();
  }

  private readFromDisk(key: string, name: string): Promise<Buffer | undefined> {
    const pending = this.pendingDiskReads.get(name);
    if (pending !== undefined) return pending;
    const read = this.disk
      .read(key, name)
      .catch((error: unknown) => {
        this.diskReadErrors++;
        this.onError?.(error);
        return undefined;
      })
      .finally(() => this.pendingDiskReads.delete(name));
    this.pendingDiskReads.set(name, read);
    return read;
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('chunk cache is closed');
  }
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer`);
  return value;
}
