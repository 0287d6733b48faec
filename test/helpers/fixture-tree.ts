/**
 * The conformance fixture: a real directory tree holding every case a layer format must carry
 * faithfully, the layer tar GNU tar makes from it, and an independent oracle of what each path must
 * look like after a round trip through a format.
 *
 * The oracle is read back from the filesystem (lstat with nanosecond times, readlink, getxattr through
 * python3, inode identity for hardlinks), never from lazypull's own tar reader, so a bug shared by
 * lazypull's reader and writer cannot hide. `scanTree` is exported so a test can compare any tree (for
 * example one GNU tar extracted from a converted blob) against the same oracle.
 *
 * Needs root (mknod, chown to large ids, security.capability), GNU tar, gzip, zstd, touch, mknod and
 * python3 (the `attr` tools are not required). Everything lives under one temp dir that `cleanup()`
 * removes; a failure while building removes it too.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { chmod, lchown, link, lstat, mkdir, mkdtemp, open, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type ExpectedType = 'dir' | 'reg' | 'symlink' | 'char' | 'block' | 'fifo';

/** What one path of the layer must look like, read from the filesystem the tar was made from. */
export interface ExpectedEntry {
  /** Clean layer path: no leading './' or '/', no trailing '/'; '' is the root. */
  readonly path: string;
  readonly type: ExpectedType;
  /** mode & 0o7777: permission bits with setuid, setgid and sticky. */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Content length of regular files; 0 for everything else. */
  readonly size: number;
  /** Seconds since the epoch (may be negative) and 0..999999999 nanoseconds. */
  readonly mtimeSec: number;
  readonly mtimeNsec: number;
  /** Symlink target, exactly as stored; '' otherwise. */
  readonly linkName: string;
  readonly devMajor: number;
  readonly devMinor: number;
  /** Every extended attribute, exact bytes (user.* and security.capability). */
  readonly xattrs: ReadonlyMap<string, Buffer>;
  /** Hex sha256 of the content of regular files. */
  readonly sha256?: string;
  /** Set on every name of an inode that has more than one name in the layer; equal within the group. */
  readonly hardlinkGroup?: string;
  /** How many names this inode has in the layer (1 unless hardlinked); for directories st_nlink (2 + subdirectories). */
  readonly linkCount: number;
  /**
   * True for directories that are NOT in the tar (the root, unless `dotSlash`, and a chain of parents
   * left out on purpose): a reader has to create them. Their other fields are the filesystem's and say
   * nothing about the layer.
   */
  readonly implicit: boolean;
  /** `.wh.NAME` files and `.wh..wh..opq` markers, which readers flag for overlayfs. */
  readonly special?: 'whiteout' | 'opaque-marker';
  /** A directory holding `.wh..wh..opq`. */
  readonly opaque: boolean;
  /** Absolute path of the file on disk (to read the original content). */
  readonly sourcePath: string;
}

export type TarCompression = 'none' | 'gzip' | 'zstd';

export interface LayerVariantOptions {
  /** Input compression: plain tar (default), tar.gz or tar.zst. */
  readonly compression?: TarCompression;
  /** Name members './x' and include the root './' (as `tar -C dir .` does); default: 'x', no root. */
  readonly dotSlash?: boolean;
}

export interface LayerVariant {
  readonly path: string;
  /** The oracle for this variant (only the root's `implicit` differs between variants). */
  readonly expected: ReadonlyMap<string, ExpectedEntry>;
}

export interface Fixture {
  /** The tree's root directory. */
  readonly dir: string;
  /** Plain pax tar of the tree, member names without './', root and IMPLICIT_PARENTS left out. */
  readonly tarPath: string;
  /** The oracle for `tarPath`, by clean path. */
  readonly expected: ReadonlyMap<string, ExpectedEntry>;
  /** Other encodings of the same layer (cached; made on first use). */
  layer(options?: LayerVariantOptions): Promise<LayerVariant>;
  /** A fresh directory under the fixture's temp dir (removed by cleanup). */
  tempDir(prefix: string): Promise<string>;
  /** Removes everything the fixture made. Safe to call twice. */
  cleanup(): Promise<void>;
}

/** Directories on the way to `implicit/a/b/deep.txt` that the tar leaves out. */
export const IMPLICIT_PARENTS: readonly string[] = ['implicit', 'implicit/a', 'implicit/a/b'];
/** Sizes around a 64 KiB chunk boundary and the default 4 MiB one. */
export const KiB64 = 64 * 1024;
export const MiB4 = 4 * 1024 * 1024;

/** The GNU tar flags that keep everything the oracle records. */
export const GNU_TAR_CREATE_FLAGS: readonly string[] = [
  // pax: arbitrary-length names and link targets, ids past 2^21, nanosecond mtimes, SCHILY.xattr.*.
  '--format=pax',
  // With --format=pax GNU tar already stores sub-second mtimes; drop atime/ctime (not part of a layer)
  // and the pid in extended header names so the same tree always makes the same bytes.
  '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime',
  // Without --xattrs nothing is stored; with it GNU tar stores every namespace, security.capability included.
  '--xattrs',
  "--xattrs-include=*",
  '--numeric-owner',
  '--no-recursion',
  '--null',
];

// ---------------------------------------------------------------------------------------------------
// The tree

type Owner = { uid: number; gid: number };
type Time = { sec: number; nsec: number };
interface Common {
  path: string;
  owner?: Owner;
  mode?: number;
  time?: Time;
  xattrs?: Record<string, Buffer>;
}
type Node =
  | (Common & { kind: 'dir' })
  | (Common & { kind: 'file'; content?: Buffer; layout?: ZeroRunLayout })
  | (Common & { kind: 'symlink'; target: string })
  | (Common & { kind: 'char' | 'block'; major: number; minor: number })
  | (Common & { kind: 'fifo' })
  | { kind: 'hardlink'; path: string; target: string };

/** Data pieces at offsets, zeros (holes) elsewhere, `size` bytes in all. */
interface ZeroRunLayout {
  size: number;
  pieces: { offset: number; data: Buffer }[];
}

/** Deterministic bytes (xorshift32): different seeds give different, incompressible content. */
export function pseudoRandom(seed: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let x = (seed * 2654435761 + 1) >>> 0 || 1;
  let i = 0;
  for (; i + 4 <= length; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    buf.writeUInt32LE(x, i);
  }
  for (; i < length; i++) buf[i] = (i * 31 + seed) & 0xff;
  return buf;
}

function text(lines: number, seed: number): Buffer {
  const out: string[] = [];
  for (let i = 0; i < lines; i++) out.push(`line ${i} of a compressible file, seed ${seed}, ${'lorem ipsum '.repeat(i % 7)}`);
  return Buffer.from(out.join('\n') + '\n');
}

/** security.capability v2 (VFS_CAP_REVISION_2 | effective) granting cap_net_bind_service (bit 10). */
const CAP_NET_BIND_SERVICE = Buffer.from([
  0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
]);

const LONG_NAME = 'a'.repeat(150); // one component over 100 bytes
const LONG_MB_NAME = '日'.repeat(40); // 40 characters, 120 bytes: byte length, not characters, decides
const DEEP_DIRS = ['d'.repeat(60), 'e'.repeat(60), 'f'.repeat(60), 'g'.repeat(60), 'h'.repeat(60)];
const DEEP_PATH = ['names', ...DEEP_DIRS].join('/');
const LONG_TARGET = 'long-target/' + 'segment-'.repeat(40) + 'end'; // 335 bytes

function nodes(): Node[] {
  const n: Node[] = [
    { kind: 'dir', path: '', mode: 0o755 },
    { kind: 'file', path: 'top.txt', content: Buffer.from('at the root\n'), mode: 0o644 },
    { kind: 'file', path: '.wh.rootgone', content: Buffer.alloc(0), mode: 0o000 },

    // Regular files: sizes, modes, owners, times, xattrs.
    { kind: 'dir', path: 'files', mode: 0o755 },
    { kind: 'file', path: 'files/empty.txt', content: Buffer.alloc(0), mode: 0o644 },
    { kind: 'file', path: 'files/hello.txt', content: Buffer.from('hello\n'), mode: 0o644 },
    { kind: 'file', path: 'files/one-byte', content: Buffer.from('x'), mode: 0o600 },
    { kind: 'file', path: 'files/setuid-bin', content: pseudoRandom(1, 777), mode: 0o4755 },
    { kind: 'file', path: 'files/all-mode-bits', content: pseudoRandom(2, 100), mode: 0o7777 },
    { kind: 'file', path: 'files/no-perms', content: Buffer.from('locked\n'), mode: 0o000 },
    {
      kind: 'file',
      path: 'files/xattrs.txt',
      content: Buffer.from('has xattrs\n'),
      mode: 0o644,
      // No empty value: GNU tar writes `SCHILY.xattr.user.x=`, but an empty pax record means "delete"
      // (POSIX; Go's archive/tar and lazypull's tar reader both drop it), so it cannot survive a layer.
      xattrs: {
        'user.comment': Buffer.from('plain text'),
        'user.binary': Buffer.from([0x00, 0x01, 0xff, 0x0a, 0x00, 0x80, 0x3d]),
        'user.big': pseudoRandom(3, 1500),
        'user.ünï': Buffer.from('non-ASCII attribute name'),
      },
    },
    { kind: 'file', path: 'files/cap-bin', content: pseudoRandom(4, 4096), mode: 0o755, xattrs: { 'security.capability': CAP_NET_BIND_SERVICE } },
    {
      kind: 'file',
      path: 'files/cap-bin-owned',
      content: pseudoRandom(5, 10),
      mode: 0o750,
      owner: { uid: 100000, gid: 100001 },
      xattrs: { 'security.capability': CAP_NET_BIND_SERVICE, 'user.also': Buffer.from('both') },
    },
    { kind: 'file', path: 'files/owner-70000', content: Buffer.from('big ids\n'), mode: 0o644, owner: { uid: 70000, gid: 65536 } },
    // Past 2^21 - 1: does not fit ustar's octal field, GNU tar writes pax uid/gid.
    { kind: 'file', path: 'files/owner-3000000', content: Buffer.from('huge ids\n'), mode: 0o644, owner: { uid: 3000000, gid: 4000000 } },
    // Past 2^31: breaks anything that keeps ids in a signed 32-bit integer.
    { kind: 'file', path: 'files/owner-2147483653', content: Buffer.from('int32\n'), mode: 0o644, owner: { uid: 2147483653, gid: 4294967294 } },
    { kind: 'file', path: 'files/mtime-epoch', content: Buffer.from('epoch\n'), mode: 0o644, time: { sec: 0, nsec: 0 } },
    { kind: 'file', path: 'files/mtime-whole-second', content: Buffer.from('whole\n'), mode: 0o644, time: { sec: 1700000000, nsec: 0 } },
    { kind: 'file', path: 'files/mtime-1ns', content: Buffer.from('1ns\n'), mode: 0o644, time: { sec: 1700000001, nsec: 1 } },
    { kind: 'file', path: 'files/mtime-max-ns', content: Buffer.from('max ns\n'), mode: 0o644, time: { sec: 1700000002, nsec: 999999999 } },
    { kind: 'file', path: 'files/mtime-half', content: Buffer.from('half\n'), mode: 0o644, time: { sec: 1700000003, nsec: 500000000 } },
    { kind: 'file', path: 'files/mtime-1959', content: Buffer.from('before the epoch\n'), mode: 0o644, time: { sec: -315619201, nsec: 750000000 } },
    { kind: 'file', path: 'files/mtime-2100', content: Buffer.from('after 2038\n'), mode: 0o644, time: { sec: 4102444800, nsec: 123456789 } },

    // Chunk boundaries and large files.
    { kind: 'dir', path: 'sizes', mode: 0o755 },
    { kind: 'file', path: 'sizes/64k-minus-1', content: pseudoRandom(10, KiB64 - 1), mode: 0o644 },
    { kind: 'file', path: 'sizes/64k', content: pseudoRandom(11, KiB64), mode: 0o644 },
    { kind: 'file', path: 'sizes/64k-plus-1', content: pseudoRandom(12, KiB64 + 1), mode: 0o644 },
    { kind: 'file', path: 'sizes/text-1m', content: text(12000, 13), mode: 0o644 },
    { kind: 'dir', path: 'big', mode: 0o755 },
    // Two 4 MiB chunks by default, 67 at 64 KiB; the odd tail ends inside a chunk.
    { kind: 'file', path: 'big/random.bin', content: pseudoRandom(20, MiB4 + 100 * 1024 + 7), mode: 0o644 },
    // Exactly one default chunk of zeros (a hole on disk).
    { kind: 'file', path: 'big/zeros-4m', layout: { size: MiB4, pieces: [] }, mode: 0o644 },
    // Data, a 2 MiB zero run, data, then a zero tail that is not a multiple of anything.
    {
      kind: 'file',
      path: 'big/zero-runs.bin',
      layout: {
        size: 4096 + 2 * 1024 * 1024 + 4096 + 1024 * 1024 + 3,
        pieces: [
          { offset: 0, data: pseudoRandom(21, 4096) },
          { offset: 4096 + 2 * 1024 * 1024, data: pseudoRandom(22, 4096) },
        ],
      },
      mode: 0o644,
    },

    // Many small files: what min-chunk-size packs into shared members.
    { kind: 'dir', path: 'small', mode: 0o755 },

    // Hardlinks across directories (a plain file, a multi-chunk file, an empty file, a long name).
    { kind: 'dir', path: 'links', mode: 0o755 },
    { kind: 'dir', path: 'links/a', mode: 0o755 },
    { kind: 'dir', path: 'links/b', mode: 0o755 },
    { kind: 'dir', path: 'links/c', mode: 0o755 },
    {
      kind: 'file',
      path: 'links/a/target.txt',
      content: Buffer.from('one inode, three names\n'),
      mode: 0o640,
      owner: { uid: 1000, gid: 1000 },
      xattrs: { 'user.linked': Buffer.from('shared') },
    },
    { kind: 'hardlink', path: 'links/b/hard.txt', target: 'links/a/target.txt' },
    { kind: 'hardlink', path: 'links/c/hard2.txt', target: 'links/a/target.txt' },
    { kind: 'hardlink', path: 'links/big-hard.bin', target: 'big/random.bin' },
    { kind: 'hardlink', path: 'links/empty-hard', target: 'files/empty.txt' },
    { kind: 'hardlink', path: 'links/to-long-name', target: `names/${LONG_NAME}` },

    // Symlinks.
    { kind: 'dir', path: 'symlinks', mode: 0o755 },
    { kind: 'symlink', path: 'symlinks/absolute', target: '/etc/passwd' },
    { kind: 'symlink', path: 'symlinks/relative', target: '../files/hello.txt' },
    { kind: 'symlink', path: 'symlinks/dangling', target: 'does/not/exist' },
    { kind: 'symlink', path: 'symlinks/to-dir', target: '../files' },
    { kind: 'symlink', path: 'symlinks/escaping', target: '../../../../outside/the/layer' },
    { kind: 'symlink', path: 'symlinks/self-loop', target: 'self-loop' },
    { kind: 'symlink', path: 'symlinks/long-target', target: LONG_TARGET },
    { kind: 'symlink', path: 'symlinks/non-ascii', target: '../names/日本語.txt' },
    { kind: 'symlink', path: 'symlinks/owned', target: 'owned-target', owner: { uid: 100000, gid: 3000000 } },

    // Directory modes.
    { kind: 'dir', path: 'perms', mode: 0o755 },
    { kind: 'dir', path: 'perms/private', mode: 0o700 },
    { kind: 'file', path: 'perms/private/secret', content: Buffer.from('secret\n'), mode: 0o600 },
    { kind: 'dir', path: 'perms/tmp', mode: 0o1777 },
    { kind: 'dir', path: 'perms/setgid', mode: 0o2775, owner: { uid: 0, gid: 50 } },
    { kind: 'file', path: 'perms/setgid/child', content: Buffer.from('child\n'), mode: 0o664, owner: { uid: 0, gid: 50 } },
    { kind: 'dir', path: 'perms/setgid/subdir', mode: 0o2755, owner: { uid: 0, gid: 50 } },
    { kind: 'dir', path: 'perms/all-bits', mode: 0o7777 },
    { kind: 'dir', path: 'perms/none', mode: 0o000 },
    { kind: 'dir', path: 'perms/xattr-dir', mode: 0o755, xattrs: { 'user.dir': Buffer.from('on a directory') } },
    { kind: 'dir', path: 'perms/empty-dir', mode: 0o755 },

    // Devices and fifos.
    { kind: 'dir', path: 'devices', mode: 0o755 },
    { kind: 'char', path: 'devices/null', major: 1, minor: 3, mode: 0o666 },
    // Minor past 255 and a 12-bit major: the split major/minor encoding of dev_t.
    { kind: 'char', path: 'devices/char-big', major: 511, minor: 1048575, mode: 0o620, owner: { uid: 0, gid: 5 } },
    { kind: 'block', path: 'devices/loop0', major: 7, minor: 0, mode: 0o660, owner: { uid: 0, gid: 6 } },
    { kind: 'block', path: 'devices/sdb1', major: 8, minor: 17, mode: 0o640 },
    { kind: 'fifo', path: 'devices/fifo', mode: 0o644 },
    { kind: 'fifo', path: 'devices/fifo-sticky', mode: 0o1600 },

    // Whiteouts and opaque directories.
    { kind: 'dir', path: 'whiteouts', mode: 0o755 },
    { kind: 'file', path: 'whiteouts/.wh.gone', content: Buffer.alloc(0), mode: 0o000 },
    { kind: 'dir', path: 'whiteouts/sub', mode: 0o755 },
    { kind: 'file', path: 'whiteouts/sub/.wh.gone-dir', content: Buffer.alloc(0), mode: 0o644 },
    { kind: 'file', path: 'whiteouts/sub/kept', content: Buffer.from('kept\n'), mode: 0o644 },
    { kind: 'dir', path: 'whiteouts/opaque', mode: 0o755 },
    { kind: 'file', path: 'whiteouts/opaque/.wh..wh..opq', content: Buffer.alloc(0), mode: 0o000 },
    { kind: 'file', path: 'whiteouts/opaque/new.txt', content: Buffer.from('replaces the lower dir\n'), mode: 0o644 },
    { kind: 'dir', path: 'whiteouts/opaque/nested', mode: 0o755 },
    { kind: 'dir', path: 'whiteouts/opaque-empty', mode: 0o755 },
    { kind: 'file', path: 'whiteouts/opaque-empty/.wh..wh..opq', content: Buffer.alloc(0), mode: 0o644 },

    // Names: long (PAX path and linkpath), deep, non-ASCII, unnormalized Unicode, odd bytes.
    { kind: 'dir', path: 'names', mode: 0o755 },
    { kind: 'file', path: `names/${LONG_NAME}`, content: Buffer.from('150-byte name\n'), mode: 0o644 },
    { kind: 'file', path: `names/${LONG_MB_NAME}`, content: Buffer.from('120 bytes, 40 characters\n'), mode: 0o644 },
    ...DEEP_DIRS.map((_, i): Node => ({ kind: 'dir', path: ['names', ...DEEP_DIRS.slice(0, i + 1)].join('/'), mode: 0o755 })),
    { kind: 'file', path: `${DEEP_PATH}/${'z'.repeat(120)}`, content: pseudoRandom(30, 5000), mode: 0o644 },
    { kind: 'file', path: 'names/日本語.txt', content: Buffer.from('こんにちは\n'), mode: 0o644 },
    { kind: 'dir', path: 'names/ünïcödé', mode: 0o755 },
    { kind: 'file', path: 'names/ünïcödé/🚀 rocket.bin', content: pseudoRandom(31, 300), mode: 0o644 },
    { kind: 'file', path: 'names/caf\u00e9', content: Buffer.from('NFC\n'), mode: 0o644 },
    { kind: 'file', path: 'names/cafe\u0301', content: Buffer.from('NFD\n'), mode: 0o644 },
    { kind: 'file', path: 'names/with space', content: Buffer.from('space\n'), mode: 0o644 },
    { kind: 'file', path: 'names/quote"back\\slash', content: Buffer.from('quote\n'), mode: 0o644 },
    { kind: 'file', path: 'names/tab\tand\nnewline', content: Buffer.from('control characters\n'), mode: 0o644 },
    { kind: 'file', path: 'names/-dash', content: Buffer.from('dash\n'), mode: 0o644 },
    { kind: 'file', path: 'names/..dots', content: Buffer.from('two dots, not a parent\n'), mode: 0o644 },
    { kind: 'file', path: 'names/stargz.index.json', content: Buffer.from('{"not":"the TOC"}\n'), mode: 0o644 },

    // Parents left out of the tar.
    { kind: 'dir', path: 'implicit', mode: 0o700 },
    { kind: 'dir', path: 'implicit/a', mode: 0o700 },
    { kind: 'dir', path: 'implicit/a/b', mode: 0o700 },
    { kind: 'file', path: 'implicit/a/b/deep.txt', content: Buffer.from('my parents are not in the tar\n'), mode: 0o644 },
  ];
  for (let i = 0; i < 40; i++) {
    n.push({ kind: 'file', path: `small/f${String(i).padStart(2, '0')}`, content: pseudoRandom(100 + i, 1 + ((i * 977) % 6000)), mode: 0o644 });
  }
  return n;
}

// ---------------------------------------------------------------------------------------------------
// Building

interface RunResult {
  stdout: Buffer;
  stderr: string;
}

/** Runs a command; rejects with its stderr when it exits non-zero. */
export function run(cmd: string, args: readonly string[], input?: Buffer | string, env?: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: env ?? process.env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const stderr = Buffer.concat(err).toString();
      if (code === 0) resolve({ stdout: Buffer.concat(out), stderr });
      else reject(new Error(`${cmd} ${args.join(' ').slice(0, 200)} exited with ${code ?? signal}: ${stderr}`));
    });
    child.stdin.on('error', () => {}); // the exit code reports failures
    child.stdin.end(input ?? '');
  });
}

/** Debian's python3 (scripts/setup.sh installs it): a version-manager shim on PATH can cost a second per call. */
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

const PY_SET_XATTRS = `
import json, os, sys
for path, name, value in json.loads(sys.stdin.buffer.read().decode('utf-8')):
    os.setxattr(path, name, bytes.fromhex(value), follow_symlinks=False)
`;
const PY_GET_XATTRS = `
import json, os, sys
out = {}
for path in json.loads(sys.stdin.buffer.read().decode('utf-8')):
    out[path] = {n: os.getxattr(path, n, follow_symlinks=False).hex() for n in os.listxattr(path, follow_symlinks=False)}
sys.stdout.write(json.dumps(out))
`;

async function writeZeroRun(path: string, layout: ZeroRunLayout): Promise<void> {
  const fh = await open(path, 'w');
  try {
    for (const p of layout.pieces) await fh.write(p.data, 0, p.data.length, p.offset);
    await fh.truncate(layout.size);
  } finally {
    await fh.close();
  }
}

function defaultTime(i: number): Time {
  return { sec: 1600000000 + i * 86413, nsec: (i * 987654321 + 123456789) % 1_000_000_000 || 1 };
}

async function buildTree(dir: string, list: Node[]): Promise<void> {
  const abs = (p: string) => (p === '' ? dir : join(dir, p));
  // 1. Create (parents come before children in the list; hardlink targets may come later).
  for (const node of list) {
    const p = abs(node.path);
    switch (node.kind) {
      case 'dir':
        await mkdir(p, { recursive: true });
        break;
      case 'file':
        if (node.layout) await writeZeroRun(p, node.layout);
        else await writeFile(p, node.content ?? Buffer.alloc(0));
        break;
      case 'symlink':
        await symlink(node.target, p);
        break;
      case 'char':
      case 'block':
        await run('mknod', [p, node.kind === 'char' ? 'c' : 'b', String(node.major), String(node.minor)]);
        break;
      case 'fifo':
        await run('mknod', [p, 'p']);
        break;
      case 'hardlink':
        break;
    }
  }
  for (const node of list) if (node.kind === 'hardlink') await link(abs(node.target), abs(node.path));
  const owned = list.filter((n): n is Exclude<Node, { kind: 'hardlink' }> => n.kind !== 'hardlink');
  // 2. Owner before mode (chown clears setuid/setgid) and before xattrs (chown clears security.capability).
  for (const node of owned) await lchown(abs(node.path), node.owner?.uid ?? 0, node.owner?.gid ?? 0);
  for (const node of owned) if (node.kind !== 'symlink') await chmod(abs(node.path), node.mode ?? 0o644);
  const xattrs: [string, string, string][] = [];
  for (const node of owned) for (const [k, v] of Object.entries(node.xattrs ?? {})) xattrs.push([abs(node.path), k, v.toString('hex')]);
  await run(PYTHON, ['-c', PY_SET_XATTRS], JSON.stringify(xattrs));
  // 3. Times last: creating entries changes the parent's mtime, xattrs and chmod do not.
  const byTime = new Map<string, string[]>();
  owned.forEach((node, i) => {
    const t = node.time ?? defaultTime(i);
    const key = `@${t.sec}.${String(t.nsec).padStart(9, '0')}`;
    byTime.set(key, [...(byTime.get(key) ?? []), abs(node.path)]);
  });
  for (const [stamp, paths] of byTime) await run('touch', ['-h', '-d', stamp, '--', ...paths]);
}

// ---------------------------------------------------------------------------------------------------
// The oracle

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Every path under `dir` ('' first), depth first, names in byte order (what `tar --sort=name` does). */
export async function walk(dir: string): Promise<string[]> {
  const out: string[] = [''];
  const visit = async (rel: string): Promise<void> => {
    const names = (await readdir(rel === '' ? dir : join(dir, rel))).sort(compareBytes);
    for (const name of names) {
      const p = rel === '' ? name : `${rel}/${name}`;
      out.push(p);
      if ((await lstat(join(dir, p))).isDirectory()) await visit(p);
    }
  };
  await visit('');
  return out;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function typeOf(mode: bigint): ExpectedType {
  switch (Number(mode & 0o170000n)) {
    case 0o040000:
      return 'dir';
    case 0o100000:
      return 'reg';
    case 0o120000:
      return 'symlink';
    case 0o020000:
      return 'char';
    case 0o060000:
      return 'block';
    case 0o010000:
      return 'fifo';
    default:
      throw new Error(`unexpected file type ${mode.toString(8)}`);
  }
}

/** glibc's gnu_dev_major / gnu_dev_minor. */
function devMajor(rdev: bigint): number {
  return Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
}
function devMinor(rdev: bigint): number {
  return Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
}

function isWhiteout(path: string): 'whiteout' | 'opaque-marker' | undefined {
  const base = path.slice(path.lastIndexOf('/') + 1);
  if (base === '.wh..wh..opq') return 'opaque-marker';
  return base.startsWith('.wh.') ? 'whiteout' : undefined;
}

export interface ScanOptions {
  /** Paths not in the layer tar: recorded with `implicit: true`. */
  readonly implicit?: ReadonlySet<string>;
  /** Paths to leave out of the result entirely (for example the TOC member of an extracted blob). */
  readonly ignore?: (path: string) => boolean;
}

/** Reads the oracle of a tree from the filesystem. */
export async function scanTree(dir: string, options: ScanOptions = {}): Promise<Map<string, ExpectedEntry>> {
  const paths = (await walk(dir)).filter((p) => !options.ignore?.(p));
  const abs = (p: string) => (p === '' ? dir : join(dir, p));
  const xattrJson = await run(PYTHON, ['-c', PY_GET_XATTRS], JSON.stringify(paths.map(abs)));
  const xattrsByPath = JSON.parse(xattrJson.stdout.toString()) as Record<string, Record<string, string>>;
  const stats = new Map(await Promise.all(paths.map(async (p) => [p, await lstat(abs(p), { bigint: true })] as const)));
  const inodeNames = new Map<string, number>();
  for (const [, st] of stats) {
    if (!st.isDirectory()) inodeNames.set(`${st.dev}:${st.ino}`, (inodeNames.get(`${st.dev}:${st.ino}`) ?? 0) + 1);
  }
  const children = new Map<string, string[]>();
  for (const p of paths) {
    if (p === '') continue;
    const parent = p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '';
    children.set(parent, [...(children.get(parent) ?? []), p.slice(p.lastIndexOf('/') + 1)]);
  }
  const out = new Map<string, ExpectedEntry>();
  for (const p of paths) {
    const st = stats.get(p)!;
    const type = typeOf(st.mode);
    const key = `${st.dev}:${st.ino}`;
    const names = type === 'dir' ? Number(st.nlink) : (inodeNames.get(key) ?? 1);
    // Floor division, so times before the epoch get a positive nanosecond part.
    let sec = st.mtimeNs / 1_000_000_000n;
    let nsec = st.mtimeNs % 1_000_000_000n;
    if (nsec < 0n) {
      sec -= 1n;
      nsec += 1_000_000_000n;
    }
    const special = type === 'reg' ? isWhiteout(p) : undefined;
    out.set(p, {
      path: p,
      type,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: type === 'reg' ? Number(st.size) : 0,
      mtimeSec: Number(sec),
      mtimeNsec: Number(nsec),
      linkName: type === 'symlink' ? await readlink(abs(p)) : '',
      devMajor: type === 'char' || type === 'block' ? devMajor(st.rdev) : 0,
      devMinor: type === 'char' || type === 'block' ? devMinor(st.rdev) : 0,
      xattrs: new Map(Object.entries(xattrsByPath[abs(p)] ?? {}).map(([k, v]) => [k, Buffer.from(v, 'hex')])),
      ...(type === 'reg' ? { sha256: await sha256File(abs(p)) } : {}),
      ...(type !== 'dir' && names > 1 ? { hardlinkGroup: key } : {}),
      linkCount: names,
      implicit: options.implicit?.has(p) ?? false,
      ...(special ? { special } : {}),
      opaque: type === 'dir' && (children.get(p) ?? []).includes('.wh..wh..opq'),
      sourcePath: abs(p),
    });
  }
  return out;
}

/**
 * Differences between two oracles, one line each ('' when they agree). Implicit entries of `expected`
 * are compared by type only; hardlink groups are compared as a partition of paths (the group keys of
 * two trees differ); `sourcePath` is ignored.
 */
export function diffOracles(expected: ReadonlyMap<string, ExpectedEntry>, actual: ReadonlyMap<string, ExpectedEntry>): string[] {
  const problems: string[] = [];
  for (const p of expected.keys()) if (!actual.has(p)) problems.push(`missing ${JSON.stringify(p)}`);
  for (const p of actual.keys()) if (!expected.has(p)) problems.push(`unexpected ${JSON.stringify(p)}`);
  const mates = (m: ReadonlyMap<string, ExpectedEntry>, e: ExpectedEntry) =>
    e.hardlinkGroup === undefined ? [e.path] : [...m.values()].filter((o) => o.hardlinkGroup === e.hardlinkGroup).map((o) => o.path).sort();
  for (const [p, e] of expected) {
    const a = actual.get(p);
    if (!a) continue;
    const fields: (keyof ExpectedEntry)[] = e.implicit
      ? ['type']
      : ['type', 'mode', 'uid', 'gid', 'size', 'mtimeSec', 'mtimeNsec', 'linkName', 'devMajor', 'devMinor', 'sha256', 'linkCount', 'special', 'opaque'];
    for (const f of fields) {
      if (e[f] !== a[f]) problems.push(`${JSON.stringify(p)}: ${f} expected ${String(e[f])}, got ${String(a[f])}`);
    }
    if (!e.implicit) {
      const ex = [...e.xattrs].map(([k, v]) => `${k}=${v.toString('hex')}`).sort().join(',');
      const ax = [...a.xattrs].map(([k, v]) => `${k}=${v.toString('hex')}`).sort().join(',');
      if (ex !== ax) problems.push(`${JSON.stringify(p)}: xattrs expected {${ex}}, got {${ax}}`);
      const em = mates(expected, e).join('|');
      const am = mates(actual, a).join('|');
      if (em !== am) problems.push(`${JSON.stringify(p)}: hardlinked with [${em}], got [${am}]`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------------
// Tars

/** The environment GNU tar runs in: a UTF-8 locale so pax names are written as they are. */
const TAR_ENV: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C.UTF-8' };

/** Makes a pax layer tar of `dir` holding `members` (clean paths, '' for the root) in the given order. */
export async function makeTar(dir: string, members: readonly string[], outPath: string, dotSlash: boolean): Promise<void> {
  const names = members.map((p) => (dotSlash ? (p === '' ? '.' : `./${p}`) : p));
  if (!dotSlash && names.includes('')) throw new Error('the root can only be a member with dotSlash');
  await run('tar', [...GNU_TAR_CREATE_FLAGS, '-C', dir, '-cf', outPath, '-T', '-'], names.map((n) => `${n}\0`).join(''), TAR_ENV);
}

/**
 * Extracts a tar into `destDir` keeping owners, modes, times, devices and xattrs: `tar` is a path to a
 * (possibly compressed) tar, or the bytes of a plain one. Directory times and modes are set at the very
 * end, so a directory whose members are not contiguous (prioritized files move ahead) still ends up
 * with the time its own entry carries.
 */
export async function extractTar(tar: string | Buffer, destDir: string, compression: TarCompression = 'none'): Promise<void> {
  const flag = compression === 'gzip' ? ['-z'] : compression === 'zstd' ? ['--zstd'] : [];
  const args = ['--xattrs', '--xattrs-include=*', '--numeric-owner', '--same-owner', '--same-permissions', '--delay-directory-restore'];
  if (typeof tar === 'string') await run('tar', [...args, ...flag, '-C', destDir, '-xf', tar], undefined, TAR_ENV);
  else await run('tar', [...args, '-C', destDir, '-xf', '-'], tar, TAR_ENV);
}

/**
 * Builds the fixture in a new temp dir (see the file comment for what it holds). Call `cleanup()` when
 * done, also when a test fails (an `afterAll` does).
 */
export async function buildFixture(): Promise<Fixture> {
  const root = await mkdtemp(join(tmpdir(), 'lazypull-fixture-'));
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    await rm(root, { recursive: true, force: true });
  };
  try {
    const dir = join(root, 'tree');
    await mkdir(dir);
    await buildTree(dir, nodes());
    const all = await walk(dir);
    const rootedImplicit = new Set(IMPLICIT_PARENTS);
    const members = all.filter((p) => p !== '' && !rootedImplicit.has(p));
    const oracleNoRoot = await scanTree(dir, { implicit: new Set(['', ...IMPLICIT_PARENTS]) });
    const oracleWithRoot = new Map([...oracleNoRoot].map(([p, e]) => [p, p === '' ? { ...e, implicit: false } : e]));
    const tarPath = join(root, 'layer.tar');
    await makeTar(dir, members, tarPath, false);

    const plain = new Map<boolean, Promise<string>>([[false, Promise.resolve(tarPath)]]);
    const plainTar = (dotSlash: boolean): Promise<string> => {
      let p = plain.get(dotSlash);
      if (!p) {
        const out = join(root, 'layer-dotslash.tar');
        p = makeTar(dir, ['', ...members], out, true).then(() => out);
        plain.set(dotSlash, p);
      }
      return p;
    };
    const variants = new Map<string, Promise<LayerVariant>>();
    const make = async (compression: TarCompression, dotSlash: boolean): Promise<LayerVariant> => {
      const expected = dotSlash ? oracleWithRoot : oracleNoRoot;
      const tar = await plainTar(dotSlash);
      if (compression === 'none') return { path: tar, expected };
      const out = `${tar}.${compression === 'gzip' ? 'gz' : 'zst'}`;
      if (compression === 'gzip') await run('gzip', ['-k', '-f', '-6', '-n', tar]);
      else await run('zstd', ['-q', '-f', '-3', tar, '-o', out]);
      return { path: out, expected };
    };
    let tempCounter = 0;
    return {
      dir,
      tarPath,
      expected: oracleNoRoot,
      layer(options = {}) {
        const compression = options.compression ?? 'none';
        const dotSlash = options.dotSlash ?? false;
        const key = `${compression}/${dotSlash}`;
        let v = variants.get(key);
        if (!v) {
          v = make(compression, dotSlash);
          variants.set(key, v);
        }
        return v;
      },
      async tempDir(prefix) {
        const d = join(root, `${prefix}-${tempCounter++}`);
        await mkdir(d);
        return d;
      },
      cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
