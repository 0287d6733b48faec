/**
 * What reporting every FUSE operation to the daemon's metrics costs per operation, without FUSE or I/O
 * around it: a getattr and a read answered synchronously, called directly, bare and wrapped.
 *
 * Run: npx vite-node benchmarks/fs/observer.ts   (env OBSERVER_BENCH_OPS, default 2000000)
 */
import { Errno, type FuseOperations, type FuseStat } from '../../src/fs/fuse-binding.js';
import { observeOperations } from '../../src/fs/fuse-observer.js';
import { DaemonMetrics } from '../../src/metrics/index.js';

const OPS = Number(process.env.OBSERVER_BENCH_OPS ?? 2_000_000);
const STAT: FuseStat = { mode: 0o100644, uid: 0, gid: 0, size: 1, nlink: 1, ino: 2, rdev: 0, blocks: 1, atime: 0, mtime: 0, ctime: 0 };
const nop = (): void => undefined;

const bare: FuseOperations = {
  getattr: (path, cb) => (path.length === 3 ? cb(Errno.ENOENT) : cb(0, STAT)),
  readdir: (_path, cb) => cb(0, [], []),
  readlink: (_path, cb) => cb(Errno.EINVAL),
  open: (_path, _flags, cb) => cb(0, 1),
  read: (_path, _fd, _buf, len, _pos, cb) => cb(len),
  release: (_path, _fd, cb) => cb(0),
  statfs: (_path, cb) => cb(Errno.ENOSYS),
  getxattr: (_path, _name, _position, cb) => cb(0, undefined),
  listxattr: (_path, cb) => cb(0, []),
};

function nsPerOp(ops: FuseOperations): { getattr: number; getattrEnoent: number; read: number } {
  const buf = Buffer.alloc(4096);
  const time = (body: (i: number) => void): number => {
    const started = performance.now();
    for (let i = 0; i < OPS; i++) body(i);
    return ((performance.now() - started) * 1e6) / OPS;
  };
  return {
    getattr: time(() => ops.getattr('/a/file', nop)),
    getattrEnoent: time(() => ops.getattr('/no', nop)),
    read: time((i) => ops.read('/a/file', 1, buf, 4096, i * 4096, nop)),
  };
}

const variants: [string, FuseOperations][] = [
  ['no observer (the wrapper is not installed)', bare],
  ['empty observer', observeOperations(bare, { onOperation: nop })],
  ['DaemonMetrics.fuseObserver', observeOperations(bare, new DaemonMetrics().fuseObserver)],
];
for (const [, ops] of variants) nsPerOp(ops); // warm up the JIT
console.log('| observer | getattr ns/op | getattr ENOENT ns/op | read ns/op |');
console.log('|---|---|---|---|');
for (const [name, ops] of variants) {
  const r = nsPerOp(ops);
  console.log(`| ${name} | ${r.getattr.toFixed(0)} | ${r.getattrEnoent.toFixed(0)} | ${r.read.toFixed(0)} |`);
}
