/**
 * The memory tier: an LRU of decompressed chunks bounded in bytes (lru-cache with maxSize).
 * With `keepPinned`, an entry the LRU pushes out while pinned moves to a side map until its last pin is
 * released, so a memory-only cache honours pins too; the tiered cache leaves that off (the disk holds
 * pinned chunks, and a large prefetch must not grow memory past its bound).
 */
import { LRUCache } from 'lru-cache';

export interface MemoryTierOptions {
  maxBytes: number;
  keepPinned: boolean;
  isPinned: (key: string) => boolean;
}

export class MemoryTier {
  private readonly lru: LRUCache<string, Buffer>;
  private readonly pinnedOverflow = new Map<string, Buffer>();
  private pinnedOverflowBytes = 0;
  evictions = 0;

  constructor(private readonly options: MemoryTierOptions) {
    this.lru = new LRUCache<string, Buffer>({
      maxSize: options.maxBytes,
      // lru-cache requires positive sizes; an empty chunk still costs its bookkeeping.
      sizeCalculation: (value) => Math.max(1, value.length),
      dispose: (value, key, reason) => {
        if (reason === 'evict') this.onEvicted(key, value);
      },
    });
  }

  get(key: string): Buffer | undefined {
    return this.lru.get(key) ?? this.pinnedOverflow.get(key);
  }

  has(key: string): boolean {
    return this.lru.has(key) || this.pinnedOverflow.has(key);
  }

  set(key: string, data: Buffer): void {
    if (this.lru.has(key) || this.pinnedOverflow.has(key)) {
      this.lru.get(key); // refresh recency; the bytes are the same content
      return;
    }
    if (data.length > this.options.maxBytes) {
      if (this.options.keepPinned && this.options.isPinned(key)) this.addOverflow(key, data);
      return;
    }
    this.lru.set(key, data);
  }

  /** Called when the last pin of `key` is released: an overflowed entry rejoins the LRU (or leaves). */
  unpinned(key: string): void {
    const data = this.pinnedOverflow.get(key);
    if (data === undefined) return;
    this.pinnedOverflow.delete(key);
    this.pinnedOverflowBytes -= data.length;
    if (data.length <= this.options.maxBytes) this.lru.set(key, data);
    else this.evictions++;
  }

  get maxBytes(): number {
    return this.options.maxBytes;
  }

  get bytes(): number {
    return this.lru.calculatedSize + this.pinnedOverflowBytes;
  }

  get entryCount(): number {
    return this.lru.size + this.pinnedOverflow.size;
  }

  clear(): void {
    this.lru.clear();
    this.pinnedOverflow.clear();
    this.pinnedOverflowBytes = 0;
  }

  private onEvicted(key: string, data: Buffer): void {
    if (this.options.keepPinned && this.options.isPinned(key)) this.addOverflow(key, data);
    else this.evictions++;
  }

  private addOverflow(key: string, data: Buffer): void {
    this.pinnedOverflow.set(key, data);
    this.pinnedOverflowBytes += data.length;
  }
}
