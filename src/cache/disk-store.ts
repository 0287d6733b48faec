/**
 * The disk tier: one file per entry (see entry-format.ts), an in-memory index rebuilt from the directory
 * at open, and LRU eviction down to a byte bound.
 *
 * Crash safety comes from the write protocol alone: write a temp file in the entry's own directory, fsync
 * it, rename it over the entry name. A kill at any moment leaves either no entry or a complete one, plus
 * perhaps a temp file, which the next open deletes. Reads still check each file's header and checksums,
 * so damage from outside the protocol (power loss without fsync, bit rot, a full disk) is a miss, never
 * data.
 *
 * The access order survives restarts through file mtimes: a hit moves the entry to the young end of the
 * in-memory order at once, and sets the file's times at most once per `touchIntervalMs`, so a hot chunk
 * costs one utimes a minute rather than one per read. At open, entries are ordered by mtime.
 */
import { readdirSync, rmSync, statSync } from 'node:fs';
import { mkdir, open, readdir, rename, rm, unlink, utimes, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { copyRange } from './chunk-cache.js';
import { ENTRY_HEADER_PROBE_BYTES, blocksMatch, decodeEntry, decodeEntryHeader, encodeEntryHeader, entryFileLength, type EntryHeader } from './entry-format.js';
import { TEMP_FILE_PREFIX, isEntryName, isShardName, newTempFileName, shardOfEntry } from './entry-names.js';
import { WriteHold } from './write-hold.js';

/** Disk usage is charged in whole filesystem blocks, so a bound holds even for many small chunks. */
export const DISK_BLOCK_BYTES = 4096;
/** Parallel unlinks while evicting: libuv has 4 threads, and reads need some of them. */
const EVICTION_CONCURRENCY = 2;
const EVICTION_BATCH = 64;
/** Entries kept open for range reads: a sequential reader moves through one 4 MiB chunk at a time. */
const OPEN_ENTRY_LIMIT = 16;
/** Bytes of entry data a write hold may keep waiting in memory; past it, writes go through. */
const MAX_HELD_WRITE_BYTES = 64 * 1024 * 1024;
/** A header claiming more block checksums than this (a 4 GiB chunk) is damage, not a chunk. */
const MAX_HEADER_BYTES = 256 * 1024;

export interface DiskStoreOptions {
  /** The cache root; entries go under `<dir>/entries`. Created when missing. */
  dir: string;
  maxBytes: number;
  /** Eviction stops once usage is at most `maxBytes * evictionTargetRatio`, so it runs in batches, not per put. */
  evictionTargetRatio: number;
  /** fsync each entry before renaming it into place (protects against power loss; kill -9 needs only the rename). */
  durable: boolean;
  /** Re-hash the data of `sha256:` keys on every disk read, on top of the crc32 checks. */
  verifyDigestOnRead: boolean;
  touchIntervalMs: number;
  isPinned: (name: string) => boolean;
  /** Told about entries found damaged on read (they are deleted and read as misses). */
  onCorruptEntry?: (name: string, reason: string) => void;
  /** Told about failures of background work (eviction) that has no caller to reject. */
  onBackgroundError?: (error: unknown) => void;
}

interface IndexedEntry {
  footprint: number;
  persistedAccessMs: number;
}

interface FoundEntry {
  name: string;
  footprint: number;
  mtimeMs: number;
}

/** An entry file opened for range reads, its header checked once. */
interface OpenEntry {
  handle: FileHandle;
  header: EntryHeader;
  /** Range reads in progress; the handle is closed only at 0. */
  readers: number;
  /** Evicted, removed or pushed out of the open set: close once the last reader is done. */
  retired: boolean;
}

class DamagedEntryError extends Error {}

export interface DiskStoreCounters {
  evictions: number;
  corruptEntries: number;
  orphanedTempFilesRemoved: number;
}

export function entryFootprint(key: string, dataLength: number): number {
  return roundUpToBlock(entryFileLength(key, dataLength));
}

export class DiskStore {
  /** Insertion order is the LRU order: the first entry is the least recently used. */
  private readonly index = new Map<string, IndexedEntry>();
  private usedBytes = 0;
  private readonly pendingWrites = new Map<string, Promise<void>>();
  private readonly pendingRemovals = new Map<string, Promise<void>>();
  private readonly pendingTouches = new Set<Promise<void>>();
  private readonly readyShards = new Set<string>();
  /** Recently range-read entries, least recently used first. */
  private readonly openEntries = new Map<string, Promise<OpenEntry>>();
  private evictionRun: Promise<void> | undefined;
  private closed = false;
  private readonly writeHold = new WriteHold(MAX_HELD_WRITE_BYTES);
  readonly counters: DiskStoreCounters = { evictions: 0, corruptEntries: 0, orphanedTempFilesRemoved: 0 };

  private constructor(
    private readonly options: DiskStoreOptions,
    private readonly entriesDir: string,
  ) {}

  /** Opens (or creates) a store: deletes orphaned temp files and indexes the entries by last access. */
  static async open(options: DiskStoreOptions): Promise<DiskStore> {
    const entriesDir = join(options.dir, 'entries');
    await mkdir(entriesDir, { recursive: true, mode: 0o700 });
    const store = new DiskStore(options, entriesDir);
    await store.loadIndex();
    store.scheduleEviction();
    return store;
  }

  get bytes(): number {
    return this.usedBytes;
  }

  get entryCount(): number {
    return this.index.size;
  }

  has(name: string): boolean {
    return this.index.has(name);
  }

  /** Marks an entry as just used (also for memory-tier hits, so hot chunks stay on disk too). */
  touch(name: string): void {
    const entry = this.index.get(name);
    if (entry === undefined) return;
    this.index.delete(name);
    this.index.set(name, entry);
    const now = Date.now();
    if (now - entry.persistedAccessMs < this.options.touchIntervalMs) return;
    entry.persistedAccessMs = now;
    const seconds = now / 1000;
    // Best effort: a lost touch only makes the entry look older after a restart.
    const touch = utimes(this.entryPath(name), seconds, seconds)
      .catch(() => undefined)
      .finally(() => this.pendingTouches.delete(touch));
    this.pendingTouches.add(touch);
  }

  /** The entry's data, or undefined when absent or damaged (a damaged entry is deleted). */
  async read(key: string, name: string): Promise<Buffer | undefined> {
    if (!this.index.has(name)) return undefined;
    let file: Buffer;
    try {
      file = await readWholeFile(this.entryPath(name));
    } catch (error) {
      if (!isMissingFile(error)) throw error;
      this.forget(name);
      return undefined;
    }
    const check = decodeEntry(file, key, this.options.verifyDigestOnRead);
    if (!check.ok) {
      this.counters.corruptEntries++;
      this.options.onCorruptEntry?.(name, check.reason);
      await this.remove(name);
      return undefined;
    }
    this.touch(name);
    return check.data;
  }

  /**
   * Copies data bytes [offset, offset + length) of an entry into `target` at `targetOffset`, reading and
   * checking only the 64 KiB blocks they fall in. False when the entry is absent or damaged (a damaged
   * entry is deleted). Block-aligned ranges are read straight into `target`; its bytes in that span are
   * undefined after a false.
   */
  async readRange(key: string, name: string, offset: number, length: number, target: Buffer, targetOffset: number): Promise<boolean> {
    if (!this.index.has(name)) return false;
    if (this.options.verifyDigestOnRead) return this.readRangeOfWholeEntry(key, name, offset, length, target, targetOffset);
    let entry: OpenEntry;
    try {
      entry = await this.openEntry(key, name);
    } catch (error) {
      return this.failedRangeRead(name, error);
    }
    entry.readers++;
    try {
      await readVerifiedRange(entry, offset, length, target, targetOffset);
      this.touch(name);
      return true;
    } catch (error) {
      return this.failedRangeRead(name, error);
    } finally {
      entry.readers--;
      if (entry.retired && entry.readers === 0) void entry.handle.close().catch(() => undefined);
    }
  }

  /** A digest covers the whole chunk: re-hashing it means reading all of it. */
  private async readRangeOfWholeEntry(key: string, name: string, offset: number, length: number, target: Buffer, targetOffset: number): Promise<boolean> {
    const data = await this.read(key, name);
    if (data === undefined) return false;
    copyRange(data, offset, length, target, targetOffset);
    return true;
  }

  private async failedRangeRead(name: string, error: unknown): Promise<boolean> {
    if (isMissingFile(error)) {
      this.forget(name);
      return false;
    }
    if (!(error instanceof DamagedEntryError)) throw error;
    this.counters.corruptEntries++;
    this.options.onCorruptEntry?.(name, error.message);
    await this.remove(name);
    return false;
  }

  private openEntry(key: string, name: string): Promise<OpenEntry> {
    const open = this.openEntries.get(name);
    if (open !== undefined) {
      this.openEntries.delete(name);
      this.openEntries.set(name, open);
      return open;
    }
    const opening = openEntryFile(this.entryPath(name), key);
    this.openEntries.set(name, opening);
    opening.catch(() => {
      if (this.openEntries.get(name) === opening) this.openEntries.delete(name);
    });
    while (this.openEntries.size > OPEN_ENTRY_LIMIT) this.retireOpenEntry(this.openEntries.keys().next().value as string);
    return opening;
  }

  /** Drops an entry from the open set; its handle closes once no range read uses it. */
  private retireOpenEntry(name: string): void {
    const open = this.openEntries.get(name);
    if (open === undefined) return;
    this.openEntries.delete(name);
    void open.then(
      (entry) => {
        entry.retired = true;
        if (entry.readers === 0) return entry.handle.close();
      },
      () => undefined,
    ).catch(() => undefined);
  }

  /** Stores an entry unless it is already there; concurrent writes of one name share one file write. */
  write(key: string, name: string, data: Uint8Array): Promise<void> {
    this.assertOpen();
    if (this.index.has(name)) {
      this.touch(name);
      return Promise.resolve();
    }
    const pending = this.pendingWrites.get(name);
    if (pending !== undefined) return pending;
    const write = this.writeEntry(key, name, data).finally(() => this.pendingWrites.delete(name));
    this.pendingWrites.set(name, write);
    return write;
  }

  /** Holds new entry writes back (see WriteHold) until released or `maxMs` have passed. */
  holdWrites(maxMs: number): () => void {
    return this.writeHold.hold(maxMs);
  }

  /** Starts an eviction pass when over the bound; one pass runs at a time, in the background. */
  scheduleEviction(): void {
    if (this.closed || this.evictionRun !== undefined || this.usedBytes <= this.options.maxBytes) return;
    this.evictionRun = this.evictUntilUnderTarget()
      .catch((error: unknown) => this.options.onBackgroundError?.(error))
      .finally(() => {
        this.evictionRun = undefined;
      });
  }

  /** Resolves when no eviction pass is running (tests and shutdown). */
  async evictionSettled(): Promise<void> {
    while (this.evictionRun !== undefined) await this.evictionRun;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.writeHold.releaseAll();
    await Promise.allSettled([...this.pendingWrites.values()]);
    await this.evictionSettled();
    await Promise.allSettled([...this.pendingRemovals.values(), ...this.pendingTouches]);
    for (const name of [...this.openEntries.keys()]) this.retireOpenEntry(name);
  }

  private async writeEntry(key: string, name: string, data: Uint8Array): Promise<void> {
    await this.writeHold.whenWritable(data.length);
    const shardDir = await this.ensureShardDir(name);
    const tempPath = join(shardDir, newTempFileName());
    try {
      await writeFileFully(tempPath, [encodeEntryHeader(key, data), data], this.options.durable);
      // An eviction of an older copy may still be unlinking this name: let it finish, or it would delete ours.
      await this.pendingRemovals.get(name);
      await rename(tempPath, this.entryPath(name));
    } catch (error) {
      await rm(tempPath, { force: true });
      throw error;
    }
    this.addToIndex(name, entryFootprint(key, data.length), Date.now());
    this.scheduleEviction();
  }

  private async evictUntilUnderTarget(): Promise<void> {
    const target = Math.floor(this.options.maxBytes * this.options.evictionTargetRatio);
    while (!this.closed && this.usedBytes > target) {
      const victims = this.oldestUnpinned(EVICTION_BATCH, this.usedBytes - target);
      if (victims.length === 0) return; // everything left is pinned; a release schedules another pass
      await forEachLimited(victims, EVICTION_CONCURRENCY, async (name) => {
        if (this.options.isPinned(name)) return; // pinned while this batch waited
        this.counters.evictions++;
        await this.remove(name);
      });
    }
  }

  /** Least recently used, unpinned entries whose footprints add up to at least `bytesNeeded`. */
  private oldestUnpinned(limit: number, bytesNeeded: number): string[] {
    const victims: string[] = [];
    let freed = 0;
    for (const [name, entry] of this.index) {
      if (victims.length >= limit || freed >= bytesNeeded) break;
      if (this.options.isPinned(name)) continue;
      victims.push(name);
      freed += entry.footprint;
    }
    return victims;
  }

  /** Drops an entry from the index at once (so it is a miss from now on) and unlinks its file. */
  private remove(name: string): Promise<void> {
    const pending = this.pendingRemovals.get(name);
    if (!this.forget(name)) return pending ?? Promise.resolve();
    const removal = unlink(this.entryPath(name))
      .catch((error: unknown) => {
        if (!isMissingFile(error)) throw error;
      })
      .finally(() => {
        if (this.pendingRemovals.get(name) === removal) this.pendingRemovals.delete(name);
      });
    this.pendingRemovals.set(name, removal);
    return removal;
  }

  private forget(name: string): boolean {
    this.retireOpenEntry(name);
    const entry = this.index.get(name);
    if (entry === undefined) return false;
    this.index.delete(name);
    this.usedBytes -= entry.footprint;
    return true;
  }

  private addToIndex(name: string, footprint: number, accessMs: number): void {
    this.forget(name);
    this.index.set(name, { footprint, persistedAccessMs: accessMs });
    this.usedBytes += footprint;
  }

  /**
   * Scans shard by shard with synchronous calls, yielding to the event loop between shards: async stat
   * costs a thread-pool round trip per file (about 36k entries/s measured), the sync scan several times
   * less, and a shard holds 1/256 of the entries, so the loop is never held for long.
   */
  private async loadIndex(): Promise<void> {
    const shards = (await readdir(this.entriesDir, { withFileTypes: true }))
      .filter((entry) => entry.isDirectory() && isShardName(entry.name))
      .map((entry) => entry.name);
    const found: FoundEntry[] = [];
    for (const shard of shards) {
      found.push(...this.scanShard(shard));
      this.readyShards.add(shard);
      await new Promise((resolve) => setImmediate(resolve));
    }
    found.sort((a, b) => a.mtimeMs - b.mtimeMs);
    for (const entry of found) this.addToIndex(entry.name, entry.footprint, entry.mtimeMs);
  }

  /** Deletes the shard's temp files and lists its entries. */
  private scanShard(shard: string): FoundEntry[] {
    const shardDir = join(this.entriesDir, shard);
    const found: FoundEntry[] = [];
    for (const name of readdirSync(shardDir)) {
      const path = join(shardDir, name);
      if (name.startsWith(TEMP_FILE_PREFIX)) {
        rmSync(path, { force: true });
        this.counters.orphanedTempFilesRemoved++;
        continue;
      }
      if (!isEntryName(name) || shardOfEntry(name) !== shard) continue; // not ours: leave it alone
      const info = statSync(path, { throwIfNoEntry: false });
      if (info?.isFile()) found.push({ name, footprint: roundUpToBlock(info.size), mtimeMs: info.mtimeMs });
    }
    return found;
  }

  private async ensureShardDir(name: string): Promise<string> {
    const shard = shardOfEntry(name);
    const shardDir = join(this.entriesDir, shard);
    if (!this.readyShards.has(shard)) {
      await mkdir(shardDir, { recursive: true, mode: 0o700 });
      this.readyShards.add(shard);
    }
    return shardDir;
  }

  private entryPath(name: string): string {
    return join(this.entriesDir, shardOfEntry(name), name);
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('chunk cache is closed');
  }
}

function roundUpToBlock(bytes: number): number {
  return Math.max(1, Math.ceil(bytes / DISK_BLOCK_BYTES)) * DISK_BLOCK_BYTES;
}

/** Writes all parts to a new file (failing if it exists) and optionally fsyncs it. */
async function writeFileFully(path: string, parts: Uint8Array[], durable: boolean): Promise<void> {
  const handle = await open(path, 'wx', 0o600);
  try {
    const expected = parts.reduce((sum, part) => sum + part.length, 0);
    const { bytesWritten } = await handle.writev(parts);
    if (bytesWritten !== expected) throw new Error(`short write: ${bytesWritten} of ${expected} bytes`);
    if (durable) await handle.datasync();
  } finally {
    await handle.close();
  }
}

/** Reads a file with one fstat and as few reads as the kernel allows (readFile reads in 512 KiB steps). */
async function readWholeFile(path: string): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    const buffer = Buffer.allocUnsafe(size);
    let filled = 0;
    while (filled < size) {
      const { bytesRead } = await handle.read(buffer, filled, size - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return buffer.subarray(0, filled);
  } finally {
    await handle.close();
  }
}

async function openEntryFile(path: string, key: string): Promise<OpenEntry> {
  const handle = await open(path, 'r');
  try {
    return { handle, header: await readEntryHeader(handle, key), readers: 0, retired: false };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

async function readEntryHeader(handle: FileHandle, key: string): Promise<EntryHeader> {
  let head = await readAt(handle, 0, ENTRY_HEADER_PROBE_BYTES);
  let check = decodeEntryHeader(head, key);
  if (!check.ok && check.needBytes !== undefined && check.needBytes > head.length && head.length === ENTRY_HEADER_PROBE_BYTES) {
    if (check.needBytes > MAX_HEADER_BYTES) throw new DamagedEntryError(`header of ${check.needBytes} bytes`);
    head = await readAt(handle, 0, check.needBytes);
    check = decodeEntryHeader(head, key);
  }
  if (!check.ok) throw new DamagedEntryError(check.reason);
  return check.header;
}

/** Reads the blocks covering [offset, offset + length) of the entry's data and checks them. */
async function readVerifiedRange(entry: OpenEntry, offset: number, length: number, target: Buffer, targetOffset: number): Promise<void> {
  const { header } = entry;
  const end = offset + length;
  if (offset < 0 || length < 0 || end > header.dataLength) throw new RangeError(`range ${offset}+${length} outside ${header.dataLength} data bytes`);
  if (length === 0) return;
  const firstBlock = Math.floor(offset / header.blockBytes);
  const spanStart = firstBlock * header.blockBytes;
  const spanEnd = Math.min(header.dataLength, Math.ceil(end / header.blockBytes) * header.blockBytes);
  const direct = spanStart === offset && spanEnd === end;
  const span = direct ? target.subarray(targetOffset, targetOffset + length) : Buffer.allocUnsafe(spanEnd - spanStart);
  const { bytesRead } = await entry.handle.read(span, 0, span.length, header.dataStart + spanStart);
  if (bytesRead !== span.length) throw new DamagedEntryError(`file ends ${span.length - bytesRead} bytes early`);
  if (!blocksMatch(header, firstBlock, span)) throw new DamagedEntryError('data checksum mismatch');
  if (!direct) span.copy(target, targetOffset, offset - spanStart, end - spanStart);
}

async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(length);
  const { bytesRead } = await handle.read(buffer, 0, length, position);
  return buffer.subarray(0, bytesRead);
}

function isMissingFile(error: unknown): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === 'ENOENT';
}

async function forEachLimited<T>(items: readonly T[], limit: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await run(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
