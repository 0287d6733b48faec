import { copyRange, type ChunkCache } from './chunk-cache.js';
import { MemoryTier } from './memory-tier.js';
import { PinCounts } from './pins.js';
import type { DetailedChunkCacheStats } from './stats.js';

export const DEFAULT_MAX_MEMORY_BYTES = 256 * 1024 * 1024;

/**
 * A `ChunkCache` without a disk tier, for tests of other modules and for running without a cache dir.
 * Pinned chunks are kept even past the memory bound until released (nothing else would hold them).
 * Buffers passed to `put` are kept, not copied, and `get` returns them: callers must not modify them.
 */
export class MemoryOnlyChunkCache implements ChunkCache {
  private readonly pins = new PinCounts((key) => this.memory.unpinned(key));
  private readonly memory: MemoryTier;
  private readonly hits = { memory: 0, disk: 0 };
  private misses = 0;
  private closed = false;

  constructor(options: { maxMemoryBytes?: number } = {}) {
    const maxBytes = options.maxMemoryBytes ?? DEFAULT_MAX_MEMORY_BYTES;
    if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) throw new RangeError('maxMemoryBytes must be a positive integer');
    this.memory = new MemoryTier({ maxBytes, keepPinned: true, isPinned: (key) => this.pins.has(key) });
  }

  async get(key: string): Promise<Buffer | undefined> {
    this.assertOpen();
    const data = this.memory.get(key);
    if (data === undefined) this.misses++;
    else this.hits.memory++;
    return data;
  }

  async readRange(key: string, offset: number, length: number, target: Buffer, targetOffset: number): Promise<boolean> {
    const data = await this.get(key);
    if (data === undefined) return false;
    copyRange(data, offset, length, target, targetOffset);
    return true;
  }

  async put(key: string, data: Buffer): Promise<void> {
    this.assertOpen();
    this.memory.set(key, data);
  }

  async has(key: string): Promise<boolean> {
    this.assertOpen();
    return this.memory.has(key);
  }

  pin(key: string): () => void {
    return this.pins.pin(key);
  }

  stats(): DetailedChunkCacheStats {
    return {
      memoryBytes: this.memory.bytes,
      memoryEntries: this.memory.entryCount,
      diskBytes: 0,
      diskEntries: 0,
      hits: { ...this.hits },
      misses: this.misses,
      evictions: this.memory.evictions,
      memoryEvictions: this.memory.evictions,
      maxMemoryBytes: this.maxMemoryBytes,
      maxDiskBytes: 0,
      pinnedKeys: this.pins.size,
      corruptEntries: 0,
      diskWriteErrors: 0,
      diskReadErrors: 0,
      orphanedTempFilesRemoved: 0,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.memory.clear();
  }

  private get maxMemoryBytes(): number {
    return this.memory.maxBytes;
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('chunk cache is closed');
  }
}
