/**
 * observeOperations (src/fs): the wrapper the daemon's FUSE metrics hang on. Each operation is answered
 * first and reported once, with the errno the kernel saw; a throwing observer changes nothing.
 */
import { describe, expect, it } from 'vitest';
import { Errno, type FuseOperations, type FuseStat } from '../../../src/fs/fuse-binding.js';
import { observeOperations, type FuseOperationName } from '../../../src/fs/fuse-observer.js';

const STAT = { mode: 0o100644, uid: 0, gid: 0, size: 1, nlink: 1, ino: 2, rdev: 0, blocks: 1, atime: 0, mtime: 0, ctime: 0 } satisfies FuseStat;

/** A filesystem with one file, /f; reads at offset 13 fail with EIO. */
const fake: FuseOperations = {
  getattr: (path, cb) => (path === '/f' ? cb(0, STAT) : cb(Errno.ENOENT)),
  readdir: (_path, cb) => cb(0, ['f'], [STAT]),
  readlink: (_path, cb) => cb(Errno.EINVAL),
  open: (_path, _flags, cb) => cb(0, 7),
  read: (_path, _fd, buf, _len, pos, cb) => setImmediate(() => cb(pos === 13 ? Errno.EIO : buf.write('x'))),
  release: (_path, _fd, cb) => cb(0),
  statfs: (_path, cb) => cb(Errno.ENOSYS),
  getxattr: (_path, name, _position, cb) => cb(0, name === 'user.a' ? Buffer.from('1') : undefined),
  listxattr: (_path, cb) => cb(0, ['user.a']),
};

type Call = [FuseOperationName, number | undefined];

function observed(): { ops: FuseOperations; calls: Call[] } {
  const calls: Call[] = [];
  const ops = observeOperations(fake, { onOperation: (op, ms, errno) => (expect(ms).toBeGreaterThanOrEqual(0), calls.push([op, errno])) });
  return { ops, calls };
}

describe('observeOperations', () => {
  it('reports each operation once, with the positive errno of a failure, after answering it', async () => {
    const { ops, calls } = observed();
    const answers: unknown[] = [];
    ops.getattr('/f', (err, stat) => answers.push([err, stat?.ino]));
    ops.getattr('/missing', (err) => answers.push(err));
    ops.readdir('/', (err, names) => answers.push([err, names]));
    ops.readlink('/f', (err) => answers.push(err));
    ops.open('/f', 0, (err, fd) => answers.push([err, fd]));
    ops.release('/f', 7, (err) => answers.push(err));
    ops.statfs('/', (err) => answers.push(err));
    ops.getxattr('/f', 'user.a', 0, (err, value) => answers.push([err, value?.toString()]));
    ops.getxattr('/f', 'user.none', 0, (err, value) => answers.push([err, value]));
    ops.listxattr('/f', (err, names) => answers.push([err, names]));
    const buf = Buffer.alloc(4);
    await new Promise<void>((resolve) => ops.read('/f', 7, buf, 4, 0, (n) => (answers.push(n), resolve())));
    await new Promise<void>((resolve) => ops.read('/f', 7, buf, 4, 13, (n) => (answers.push(n), resolve())));

    expect(answers).toEqual([[0, 2], Errno.ENOENT, [0, ['f']], Errno.EINVAL, [0, 7], 0, Errno.ENOSYS, [0, '1'], [0, undefined], [0, ['user.a']], 1, Errno.EIO]);
    expect(calls).toEqual([
      ['getattr', undefined],
      ['getattr', 2],
      ['readdir', undefined],
      ['readlink', 22],
      ['open', undefined],
      ['release', undefined],
      ['statfs', 38],
      ['getxattr', undefined],
      ['getxattr', 61], // answered ENODATA by fuse-binding
      ['listxattr', undefined],
      ['read', undefined],
      ['read', 5],
    ]);
  });

  it('still answers when the observer throws', () => {
    const ops = observeOperations(fake, {
      onOperation: () => {
        throw new Error('metrics bug');
      },
    });
    let answer: number | undefined;
    ops.getattr('/missing', (err) => (answer = err));
    expect(answer).toBe(Errno.ENOENT);
  });
});
