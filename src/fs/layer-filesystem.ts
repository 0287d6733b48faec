import type { FileType, LayerIndex } from '../layer/layer-index.js';
import { overlapsAny, type ByteRange } from '../layer/prefetch-ranges.js';
import type { ChunkFetcher } from './chunk-fetcher.js';
import { Errno, type FuseOperations, type FuseStat, type FuseStatfs } from './fuse-binding.js';
import type { FsNode, LayerView } from './layer-view.js';
import { ReadAhead } from './read-ahead.js';

const TYPE_BITS: Record<FileType, number> = {
  dir: 0o040000,
  reg: 0o100000,
  symlink: 0o120000,
  char: 0o020000,
  block: 0o060000,
  fifo: 0o010000,
};

const O_ACCMODE = 0o3;
const BLOCK = 4096;

/**
 * glibc's makedev. fuse-native passes st_rdev as 32 bits, which holds majors below 4096 and minors below
 * 2^20: every device a container image carries in practice.
 */
export function makeDev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

export function toStat(node: FsNode): FuseStat {
  return {
    mode: TYPE_BITS[node.type] | node.mode,
    uid: node.uid,
    gid: node.gid,
    size: node.type === 'symlink' ? Buffer.byteLength(node.linkName) : node.size,
    nlink: node.nlink,
    ino: node.ino,
    rdev: node.type === 'char' || node.type === 'block' ? makeDev(node.devMajor, node.devMinor) : 0,
    blksize: BLOCK,
    blocks: Math.ceil(node.size / 512),
    atime: node.mtimeMs,
    mtime: node.mtimeMs,
    ctime: node.mtimeMs,
  };
}

interface OpenFile {
  readonly node: FsNode;
  /** Absent for a file the layer's range profile covers. */
  readonly readAhead: ReadAhead | undefined;
}

export interface LayerFilesystemOptions {
  /** Bytes fetched ahead of a sequential reader (0: none). */
  readAheadBytes: number;
  /**
   * The layer's range-granular prefetch profile, if it has one. Files it covers are not read ahead:
   * it was recorded under the kernel's own read-ahead, so it already names the chunks of those files a
   * workload reads, and guessing further (8 MiB past each sequential run of page faults in a mapped
   * binary) only puts bytes nobody reads on the link before the ones the workload waits for.
   */
  profiledRanges?: readonly ByteRange[];
  /** Called with every failed read (the reader sees EIO). */
  onReadError?: (path: string, error: unknown) => void;
}

/**
 * The FUSE operations of one read-only layer. Metadata answers come from the LayerView without I/O;
 * reads go through the ChunkFetcher and answer EIO on any failure (deadline, registry, verification).
 */
export class LayerFilesystem {
  private readonly files = new Map<number, OpenFile>();
  private nextFd = 1;
  private bytesServed = 0;
  private totalFileBytes: number | undefined;

  constructor(
    private readonly view: LayerView,
    private readonly index: LayerIndex,
    private readonly fetcher: ChunkFetcher,
    private readonly options: LayerFilesystemOptions,
  ) {}

  /** Bytes handed to readers (for bytes fetched / bytes read). */
  get servedBytes(): number {
    return this.bytesServed;
  }

  get openFiles(): number {
    return this.files.size;
  }

  operations(): FuseOperations {
    return {
      getattr: (path, cb) => this.withNode(path, cb, (node) => cb(0, toStat(node))),
      readdir: (path, cb) => this.readdir(path, cb),
      readlink: (path, cb) => this.withNode(path, cb, (node) => (node.type === 'symlink' ? cb(0, node.linkName) : cb(Errno.EINVAL))),
      open: (path, flags, cb) => this.open(path, flags, cb),
      read: (path, fd, buf, len, pos, cb) => this.read(path, fd, buf, len, pos, cb),
      release: (_path, fd, cb) => {
        this.files.delete(fd);
        cb(0);
      },
      statfs: (_path, cb) => cb(0, this.statfs()),
      getxattr: (path, name, _position, cb) => this.withNode(path, cb, (node) => cb(0, node.xattrs.get(name))),
      listxattr: (path, cb) => this.withNode(path, cb, (node) => cb(0, [...node.xattrs.keys()])),
    };
  }

  private withNode(path: string, fail: (err: number) => void, answer: (node: FsNode) => void): void {
    const node = this.view.get(path);
    if (node === undefined) fail(Errno.ENOENT);
    else answer(node);
  }

  private readdir(path: string, cb: (err: number, names?: string[], stats?: FuseStat[]) => void): void {
    const node = this.view.get(path);
    if (node === undefined) return cb(Errno.ENOENT);
    if (node.childNames === undefined) return cb(-20); // ENOTDIR
    // Stats give each name its d_type: overlayfs recognises whiteouts in a lower layer by DT_CHR.
    const parent = this.view.get(path === '/' ? '/' : path.slice(0, path.lastIndexOf('/')) || '/') ?? node;
    const prefix = path === '/' ? '/' : `${path}/`;
    const stats = [toStat(node), toStat(parent), ...node.childNames.map((name) => toStat(this.view.get(prefix + name)!))];
    cb(0, ['.', '..', ...node.childNames], stats);
  }

  private open(path: string, flags: number, cb: (err: number, fd?: number) => void): void {
    const node = this.view.get(path);
    if (node === undefined) return cb(Errno.ENOENT);
    if ((flags & O_ACCMODE) !== 0) return cb(Errno.EROFS);
    const fd = this.nextFd++;
    this.files.set(fd, { node, readAhead: this.inProfile(node) ? undefined : new ReadAhead(this.options.readAheadBytes) });
    cb(0, fd);
  }

  private read(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void {
    const file = this.files.get(fd);
    const node = file?.node ?? this.view.get(path);
    const entry = node?.entry;
    if (entry === undefined) return cb(node === undefined ? Errno.EBADF : Errno.EINVAL);
    if (pos >= entry.size || len === 0) return cb(0);
    const slices = this.index.plan(entry, pos, len);
    this.fetcher.readInto(slices, buf).then(
      (copied) => {
        this.bytesServed += copied;
        cb(copied);
        const ahead = file?.readAhead?.next(pos, copied, entry.size);
        if (ahead) this.prefetchAhead(entry, ahead.offset, ahead.length);
      },
      (err: unknown) => {
        this.options.onReadError?.(path, err);
        cb(Errno.EIO);
      },
    );
  }

  private inProfile(node: FsNode): boolean {
    const ranges = this.options.profiledRanges;
    if (ranges === undefined || ranges.length === 0) return false;
    return node.entry?.chunks.some((chunk) => chunk.encoding !== 'zeros' && overlapsAny(ranges, chunk.compressedOffset, chunk.compressedEnd)) ?? false;
  }

  /** Fetches what a sequential reader will ask for next; failures surface when it does. */
  private prefetchAhead(entry: NonNullable<FsNode['entry']>, offset: number, length: number): void {
    const chunks = this.index.plan(entry, offset, length).map((s) => s.chunk);
    // Chunks already cached are left alone: reading them ahead would only load them into the heap.
    if (chunks.length > 0) this.fetcher.fetchMissing(chunks, 'foreground').catch(() => undefined);
  }

  private statfs(): FuseStatfs {
    const root = this.view.get('/');
    this.totalFileBytes ??= [...new Set(this.index.entries.values())].reduce((sum, entry) => sum + entry.size, 0);
    const bytes = this.totalFileBytes;
    return {
      bsize: BLOCK,
      frsize: BLOCK,
      blocks: Math.ceil(bytes / BLOCK),
      bfree: 0,
      bavail: 0,
      files: this.view.size,
      ffree: 0,
      favail: 0,
      fsid: root?.ino ?? 0,
      flag: 1, // ST_RDONLY
      namemax: 255,
    };
  }
}
