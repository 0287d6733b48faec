/**
 * Timing and outcome of every FUSE operation a layer mount answers, for the daemon's metrics (src/fs
 * does not depend on them: the daemon passes an observer in). The wrapper costs one closure and two
 * `performance.now()` calls per operation, and nothing at all when no observer is given.
 */
import { Errno, type FuseOperations } from './fuse-binding.js';

/** The operations lazypull answers; libfuse2's lookup arrives as `getattr`. */
export type FuseOperationName = Exclude<keyof FuseOperations, 'init'>;

export interface FuseObserver {
  /**
   * Called once per operation, after the kernel was answered. `errno` is the positive errno the kernel
   * got (2 for ENOENT), undefined on success. Must be cheap and must not throw (a throw is swallowed).
   */
  onOperation(op: FuseOperationName, durationMs: number, errno?: number): void;
}

/** `ops` with every operation reported to `observer`. */
export function observeOperations(ops: FuseOperations, observer: FuseObserver): FuseOperations {
  const report = (op: FuseOperationName, started: number, result: number): void => {
    try {
      observer.onOperation(op, performance.now() - started, result < 0 ? -result : undefined);
    } catch {
      // A metrics bug must never fail or hang a filesystem operation.
    }
  };
  return {
    ...ops,
    getattr: (path, cb) => {
      const t = performance.now();
      ops.getattr(path, (err, stat) => {
        cb(err, stat);
        report('getattr', t, err);
      });
    },
    readdir: (path, cb) => {
      const t = performance.now();
      ops.readdir(path, (err, names, stats) => {
        cb(err, names, stats);
        report('readdir', t, err);
      });
    },
    readlink: (path, cb) => {
      const t = performance.now();
      ops.readlink(path, (err, target) => {
        cb(err, target);
        report('readlink', t, err);
      });
    },
    open: (path, flags, cb) => {
      const t = performance.now();
      ops.open(path, flags, (err, fd) => {
        cb(err, fd);
        report('open', t, err);
      });
    },
    read: (path, fd, buf, len, pos, cb) => {
      const t = performance.now();
      ops.read(path, fd, buf, len, pos, (bytesOrErr) => {
        cb(bytesOrErr);
        report('read', t, bytesOrErr);
      });
    },
    release: (path, fd, cb) => {
      const t = performance.now();
      ops.release(path, fd, (err) => {
        cb(err);
        report('release', t, err);
      });
    },
    statfs: (path, cb) => {
      const t = performance.now();
      ops.statfs(path, (err, statfs) => {
        cb(err, statfs);
        report('statfs', t, err);
      });
    },
    getxattr: (path, name, position, cb) => {
      const t = performance.now();
      // An absent attribute reaches the kernel as ENODATA (fuse-binding answers it), so count it as one.
      ops.getxattr(path, name, position, (err, value) => {
        cb(err, value);
        report('getxattr', t, err === 0 && value === undefined ? Errno.ENODATA : err);
      });
    },
    listxattr: (path, cb) => {
      const t = performance.now();
      ops.listxattr(path, (err, names) => {
        cb(err, names);
        report('listxattr', t, err);
      });
    },
  };
}
