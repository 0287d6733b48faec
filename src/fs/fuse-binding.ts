/**
 * A typed wrapper over fuse-native 2.2.6 (which ships no types), with two fixes its JS layer needs:
 * getxattr and listxattr answer ERANGE when the caller's buffer is too small (fuse-native would copy a
 * truncated value and report the full length, which the kernel rejects), so tools that probe with a
 * small buffer first (python's os.getxattr starts at 128 bytes) see large xattrs.
 *
 * Its FUSE threads start with every signal blocked (see startFuseThreadsWithSignalsBlocked).
 *
 * fuse-native must run on the main thread (it segfaults in a worker) and answers from JS callbacks.
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { isMountpoint } from './mountinfo.js';

const execFileAsync = promisify(execFile);

/** Negative errno values, as fuse-native expects them. */
export const Errno = {
  EPERM: -1,
  ENOENT: -2,
  EIO: -5,
  EBADF: -9,
  EACCES: -13,
  EINVAL: -22,
  EROFS: -30,
  ERANGE: -34,
  ENOSYS: -38,
  ENODATA: -61,
  ENOTSUP: -95,
} as const;

/**
 * What getattr answers. fuse-native carries times as unsigned milliseconds: nanoseconds are truncated
 * to milliseconds and times before 1970 cannot be represented (callers clamp them).
 */
export interface FuseStat {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  dev?: number;
  nlink: number;
  ino: number;
  rdev: number;
  blksize?: number;
  blocks: number;
  atime: number;
  mtime: number;
  ctime: number;
}

export interface FuseStatfs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  fsid: number;
  flag: number;
  namemax: number;
}

type Done = (err: number) => void;
type DoneWith<T> = (err: number, value?: T) => void;

/** The subset of operations lazypull implements (a read-only filesystem). Callbacks take 0 or a negative errno. */
export interface FuseOperations {
  init?(cb: Done): void;
  getattr(path: string, cb: DoneWith<FuseStat>): void;
  readdir(path: string, cb: (err: number, names?: string[], stats?: FuseStat[]) => void): void;
  readlink(path: string, cb: DoneWith<string>): void;
  open(path: string, flags: number, cb: DoneWith<number>): void;
  read(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void;
  release(path: string, fd: number, cb: Done): void;
  statfs(path: string, cb: DoneWith<FuseStatfs>): void;
  /** The value, or undefined for "no such attribute". */
  getxattr(path: string, name: string, position: number, cb: DoneWith<Buffer | undefined>): void;
  listxattr(path: string, cb: DoneWith<string[]>): void;
}

export interface FuseMountOptions {
  /** Per-operation timeout of fuse-native; false: none (lazypull bounds its own fetches). */
  timeout: false | number;
  force?: boolean;
  mkdir?: boolean;
  debug?: boolean;
  allowOther?: boolean;
  defaultPermissions?: boolean;
  kernelCache?: boolean;
  entryTimeout?: number;
  attrTimeout?: number;
  maxRead?: number;
  /** Joined into `-o` verbatim: other libfuse2 options ride after the name (`name,use_ino,ro`). */
  fsname?: string;
  subtype?: string;
}

interface FuseInstance {
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
}

type Signal = (code: number, ...rest: unknown[]) => void;

interface FuseClass {
  new (mountpoint: string, ops: object, options: object): FuseInstance;
  unmount(mountpoint: string, cb: (err: Error | null) => void): void;
  prototype: object;
}

const requireCommonJs = createRequire(import.meta.url);
const FuseNative = requireCommonJs('fuse-native') as FuseClass;

type SignalMask = typeof import('lazypull-signal-mask');

/**
 * A mount's FUSE thread, and the libfuse workers it starts, inherit the signal mask of the thread
 * that calls fuse_native_mount (the main thread). With SIGCHLD open to them, a child exiting while
 * libfuse cancels the workers of a mount going away (fuse-native's own unmount runs `fusermount -uz`
 * in a child, so that is the common case) runs libuv's signal handler in a worker being cancelled:
 * the handler holds libuv's signal lock when the cancellation ends it, and the daemon's main thread
 * hangs for good at its next signal (seen in a full test run: read() of libuv's lock pipe, in gdb).
 * Blocking every signal in the calling thread while fuse-native creates the thread keeps signals on
 * Node's own threads. (Wrapping twice would only block twice.)
 */
function startFuseThreadsWithSignalsBlocked(): void {
  const fuseNativeDir = dirname(requireCommonJs.resolve('fuse-native/package.json'));
  const loadBinding = createRequire(join(fuseNativeDir, 'index.js'))('node-gyp-build') as (dir: string) => { fuse_native_mount: (...args: unknown[]) => unknown };
  const binding = loadBinding(fuseNativeDir);
  const { callWithSignalsBlocked } = loadSignalMask();
  const mount = binding.fuse_native_mount;
  binding.fuse_native_mount = (...args: unknown[]) => callWithSignalsBlocked(() => mount(...args));
}
startFuseThreadsWithSignalsBlocked();

function loadSignalMask(): SignalMask {
  try {
    return requireCommonJs('lazypull-signal-mask') as SignalMask;
  } catch (err) {
    throw new Error(`lazypull's native addon native/signal-mask is not built (${(err as Error).message.split('\n')[0]}): run npm ci, which builds it with node-gyp (needs make, a C compiler and python3)`);
  }
}

/** fuse-native's handlers with correct ERANGE behaviour for undersized xattr buffers. */
class XattrSafeFuse extends FuseNative {
  private readonly lazypullOps: FuseOperations;

  constructor(mountpoint: string, ops: FuseOperations, options: FuseMountOptions) {
    super(mountpoint, ops, options);
    this.lazypullOps = ops;
  }

  // Names match fuse-native's private dispatch table (`_op_<name>`).
  _op_getxattr(signal: Signal, path: string, name: string, valueBuf: Buffer, position: number): void {
    this.lazypullOps.getxattr(path, name, position, (err, value) => {
      if (err) return signal(err, valueBuf.buffer);
      if (value === undefined) return signal(Errno.ENODATA, valueBuf.buffer);
      if (valueBuf.length === 0) return signal(value.length, valueBuf.buffer);
      if (value.length > valueBuf.length) return signal(Errno.ERANGE, valueBuf.buffer);
      value.copy(valueBuf);
      return signal(value.length, valueBuf.buffer);
    });
  }

  _op_listxattr(signal: Signal, path: string, listBuf: Buffer): void {
    this.lazypullOps.listxattr(path, (err, names) => {
      if (err) return signal(err, listBuf.buffer);
      const list = Buffer.concat((names ?? []).map((n) => Buffer.from(`${n}\0`)));
      if (listBuf.length === 0) return signal(list.length, listBuf.buffer);
      if (list.length > listBuf.length) return signal(Errno.ERANGE, listBuf.buffer);
      list.copy(listBuf);
      return signal(list.length, listBuf.buffer);
    });
  }
}

/** A mounted fuse-native filesystem. */
export interface FuseMount {
  readonly mountpoint: string;
  unmount(): Promise<void>;
}

export async function mountFuse(mountpoint: string, ops: FuseOperations, options: FuseMountOptions): Promise<FuseMount> {
  const fuse = new XattrSafeFuse(mountpoint, ops, options);
  await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())));
  return {
    mountpoint,
    unmount: () => boundedUnmount(fuse, mountpoint),
  };
}

/** fuse-native never calls back when the mount was already removed from outside (umount -l, a deleted dir). */
const UNMOUNT_TIMEOUT_MS = 10_000;

/**
 * fuse-native's unmount (`fusermount -uz`, then joining its FUSE thread), bounded. When it fails or
 * does not call back in time, what counts is whether the mount is gone: a mount removed from outside
 * makes fusermount fail, and a full test run once saw the call time out for a mount nothing used.
 * Gone, or gone after a lazy umount of our own, is success.
 */
async function boundedUnmount(fuse: FuseInstance, mountpoint: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const unmounted = new Promise<void>((resolve, reject) => fuse.unmount((err) => (err ? reject(err) : resolve())));
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`unmount of ${mountpoint} did not finish within ${UNMOUNT_TIMEOUT_MS} ms`)), UNMOUNT_TIMEOUT_MS);
  });
  unmounted.catch(() => undefined); // a late failure after the timeout is not an unhandled rejection
  try {
    await Promise.race([unmounted, timedOut]);
  } catch (error) {
    if (await isMountpoint(mountpoint)) await execFileAsync('umount', ['-l', mountpoint], { timeout: UNMOUNT_TIMEOUT_MS }).catch(() => undefined);
    if (await isMountpoint(mountpoint)) throw error;
  } finally {
    clearTimeout(timer);
  }
}
