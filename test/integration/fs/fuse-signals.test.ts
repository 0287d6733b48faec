/**
 * FUSE threads must not take process signals: a SIGCHLD handled by libuv in a libfuse worker that is
 * being cancelled at unmount leaves libuv's signal lock taken, and the main thread hangs for good.
 */
import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Errno, mountFuse, type FuseMount, type FuseOperations, type FuseStat } from '../../../src/fs/fuse-binding.js';
import { isMounted, forceUnmount } from '../../helpers/fuse.js';

const SIGCHLD_BIT = 1n << 16n; // signal 17
const CONTENT = Buffer.from('answered by a FUSE thread\n');

function stat(mode: number, size: number): FuseStat {
  const now = Date.now();
  return { mode, uid: 0, gid: 0, size, nlink: 1, ino: 0, rdev: 0, blocks: Math.ceil(size / 512), atime: now, mtime: now, ctime: now };
}

const operations: FuseOperations = {
  getattr: (path, cb) => (path === '/' ? cb(0, stat(0o40755, 0)) : path === '/file' ? cb(0, stat(0o100644, CONTENT.length)) : cb(Errno.ENOENT)),
  readdir: (_path, cb) => cb(0, ['file']),
  readlink: (_path, cb) => cb(Errno.EINVAL),
  open: (_path, _flags, cb) => cb(0, 1),
  // Answered a little later, so parallel reads keep several libfuse workers busy at once.
  read: (_path, _fd, buf, len, pos, cb) => setTimeout(() => cb(CONTENT.subarray(pos, pos + len).copy(buf)), 20),
  release: (_path, _fd, cb) => cb(0),
  statfs: (_path, cb) => cb(0, { bsize: 4096, frsize: 4096, blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, favail: 0, fsid: 0, flag: 0, namemax: 255 }),
  getxattr: (_path, _name, _position, cb) => cb(0, undefined),
  listxattr: (_path, cb) => cb(0, []),
};

async function threads(): Promise<Map<string, bigint>> {
  const blocked = new Map<string, bigint>();
  for (const tid of await readdir('/proc/self/task')) {
    const status = await readFile(`/proc/self/task/${tid}/status`, 'utf8').catch(() => '');
    const mask = /^SigBlk:\s*([0-9a-f]+)$/m.exec(status)?.[1];
    if (mask) blocked.set(tid, BigInt(`0x${mask}`));
  }
  return blocked;
}

let dir: string;
let mount: FuseMount | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lazypull-fuse-signals-'));
});

afterAll(async () => {
  if (mount && (await isMounted(mount.mountpoint))) await mount.unmount().catch(() => forceUnmount(mount!.mountpoint));
  await rm(dir, { recursive: true, force: true });
});

describe('FUSE threads and signals', () => {
  it('starts the FUSE thread and its workers with SIGCHLD blocked, and leaves the main thread as it was', async () => {
    const before = await threads();
    const mountpoint = join(dir, 'mnt');
    await mkdir(mountpoint);
    mount = await mountFuse(mountpoint, operations, { timeout: false, fsname: 'lazypull-signals', subtype: 'lazypull-test' });
    const reads = await Promise.all(Array.from({ length: 8 }, () => readFile(join(mountpoint, 'file'))));
    for (const read of reads) expect(read.equals(CONTENT)).toBe(true);

    const fuseThreads = [...(await threads())].filter(([tid]) => !before.has(tid));
    expect(fuseThreads.length).toBeGreaterThanOrEqual(2); // the loop thread and at least one worker
    for (const [tid, mask] of fuseThreads) expect(mask & SIGCHLD_BIT, `thread ${tid} blocks SIGCHLD`).toBe(SIGCHLD_BIT);
    expect(((await threads()).get(String(process.pid)) ?? 0n) & SIGCHLD_BIT, 'the main thread takes SIGCHLD').toBe(0n);

    await mount.unmount();
    expect(await isMounted(mountpoint)).toBe(false);
  });
});
