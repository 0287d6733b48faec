/**
 * Which paths a workload touched through a layer mount, for `lazypull optimize` (the prefetch profiler).
 * Like the observer, a wrapper around the operations: a mount without a recorder runs the bare
 * operations and pays nothing.
 */
import type { FuseOperations } from './fuse-binding.js';

/** `lookup` is libfuse2's getattr (the kernel's lookup of a name arrives as one). */
export type AccessKind = 'lookup' | 'open' | 'read' | 'readlink';

export interface AccessRecorder {
  /**
   * Called after the kernel was answered, for successful operations only (a failed lookup is not an
   * access of anything in the layer). `read` gives the byte range served. Must not throw (a throw is swallowed).
   */
  onAccess(kind: AccessKind, path: string, offset?: number, length?: number): void;
}

/** `ops` with every successful lookup, open, read and readlink reported to `recorder`. */
export function recordAccesses(ops: FuseOperations, recorder: AccessRecorder): FuseOperations {
  const report = (kind: AccessKind, path: string, offset?: number, length?: number): void => {
    try {
      recorder.onAccess(kind, path, offset, length);
    } catch {
      // A recording bug must never fail or hang a filesystem operation.
    }
  };
  return {
    ...ops,
    getattr: (path, cb) =>
      ops.getattr(path, (err, stat) => {
        cb(err, stat);
        if (err === 0) report('lookup', path);
      }),
    readlink: (path, cb) =>
      ops.readlink(path, (err, target) => {
        cb(err, target);
        if (err === 0) report('readlink', path);
      }),
    open: (path, flags, cb) =>
      ops.open(path, flags, (err, fd) => {
        cb(err, fd);
        if (err === 0) report('open', path);
      }),
    read: (path, fd, buf, len, pos, cb) =>
      ops.read(path, fd, buf, len, pos, (bytesOrErr) => {
        cb(bytesOrErr);
        if (bytesOrErr >= 0) report('read', path, pos, bytesOrErr);
      }),
  };
}
