/**
 * Compatibility with the reference tools from Debian's stargz-snapshotter 0.12 (ctr-remote), run
 * against a real containerd started for this file:
 *
 *  1. layers that `ctr-remote images convert --oci --estargz|--zstdchunked` makes from a tar.gz we
 *     generate are read correctly by lazypull: every file's content (whole and across chunk boundaries)
 *     and metadata equals the original tar, checked against the tree's own spec (an oracle independent
 *     of any tar or TOC code), with the TOC digest and zstd manifest checksum verified against
 *     ctr-remote's annotations;
 *  2. for layers lazypull writes (default chunking: ctr-remote 0.12 predates innerOffset),
 *     `ctr-remote images get-toc-digest` prints exactly lazypull's TOC digest, ctr-remote's own parse
 *     of the TOC (`--dump-toc`) equals lazypull's, and the blob is a valid tar.gz / tar.zst whose
 *     decompressed digest is lazypull's diffID.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { link, lutimes, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile, chmod, lchown } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLayer, type OpenOptions } from '../../src/estargz/open.js';
import { convertLayerFile } from '../../src/estargz/writer.js';
import { FileSource } from '../../src/io/random-access.js';
import type { LayerEntry, LayerIndex } from '../../src/layer/layer-index.js';
import { readFileRange } from '../../src/layer/read.js';
import type { Digest } from '../../src/util/digest.js';
import { run, startContainerd, type Containerd } from '../helpers/containerd.js';
import { buildAndImportImage, fileDigest, getContent, getImage, MediaType } from '../helpers/oci-image.js';

const MiB = 1 << 20;
const TOC_DIGEST = 'containerd.io/snapshot/stargz/toc.digest';
const UNCOMPRESSED_SIZE = 'io.containers.estargz.uncompressed-size';
const ZSTD_CHECKSUM = 'io.containers.zstd-chunked.manifest-checksum';
const ZSTD_POSITION = 'io.containers.zstd-chunked.manifest-position';

// ---------------------------------------------------------------------------------------------------
// The source tree: a spec that is both what we materialize on disk (and tar with GNU tar) and the
// oracle every read through lazypull is compared with.

interface SpecEntry {
  path: string;
  type: 'dir' | 'reg' | 'symlink' | 'fifo' | 'char';
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  content?: Buffer;
  linkName?: string;
  /** A hardlink to this earlier path (the tar and the TOC record this one as a `hardlink` entry). */
  hardlinkOf?: string;
  xattrs?: Record<string, Buffer>;
  dev?: [number, number];
}

/** Deterministic incompressible bytes (an AES-CTR keystream). */
function pseudoRandom(size: number, seed: number): Buffer {
  const key = Buffer.alloc(16, seed);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

function textLines(size: number): Buffer {
  const lines: string[] = [];
  let total = 0;
  for (let i = 0; total < size; i++) {
    const line = `line ${String(i).padStart(8, '0')}: the quick brown fox jumps over the lazy dog ${i % 97}\n`;
    lines.push(line);
    total += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, size);
}

const LONG_NAME = `data/${'long-name-'.repeat(12)}end.txt`; // > 100 bytes: a PAX path record

function treeSpec(): SpecEntry[] {
  let t = 1_600_000_000;
  const next = () => (t += 3_607);
  const d = (path: string, mode = 0o755, uid = 0, gid = 0): SpecEntry => ({ path, type: 'dir', mode, uid, gid, mtime: next() });
  const f = (path: string, content: Buffer | string, mode = 0o644, uid = 0, gid = 0): SpecEntry => ({
    path,
    type: 'reg',
    mode,
    uid,
    gid,
    mtime: next(),
    content: Buffer.isBuffer(content) ? content : Buffer.from(content),
  });
  const spec: SpecEntry[] = [
    d('', 0o750),
    d('bin'),
    f('bin/tool', '#!/bin/sh\necho tool\n', 0o4755),
    d('data', 0o700, 1234, 5678),
    f('data/random.bin', pseudoRandom(9 * MiB + 12_345, 7), 0o644, 1234, 5678), // 3 chunks
    f('data/text.log', textLines(6 * MiB + 99), 0o640, 1234, 5678), // 2 chunks, compressible
    f('data/zeros.bin', Buffer.alloc(5 * MiB)), // 2 chunks of zeros
    f('data/exactly-4m.bin', pseudoRandom(4 * MiB, 9)), // exactly one chunk
    f('data/hard', 'shared by two names\n', 0o600, 1000, 1000),
    d('data/sub'),
    d('data/sub/deep'),
    f('data/sub/deep/file', 'deep\n'),
    f(LONG_NAME, 'long\n'),
    d('etc'),
    { ...f('etc/config.txt', ''), hardlinkOf: 'data/hard' },
    f('etc/empty', ''),
    { ...f('etc/xattr.txt', 'has xattrs\n'), xattrs: { 'user.lazypull': Buffer.from('hello'), 'user.bin': Buffer.from([0, 1, 2, 0xff]) } },
    d('shared', 0o2775, 0, 70_000),
    f('shared/big-ids', 'ids above 65535\n', 0o644, 100_000, 70_000),
    d('tmp', 0o1777),
    { path: 'dev-null', type: 'char', mode: 0o600, uid: 0, gid: 0, mtime: next(), dev: [1, 3] },
    { path: 'fifo', type: 'fifo', mode: 0o640, uid: 0, gid: 0, mtime: next() },
    { path: 'link-rel', type: 'symlink', mode: 0o777, uid: 0, gid: 0, mtime: next(), linkName: 'etc/config.txt' },
    { path: 'link-abs', type: 'symlink', mode: 0o777, uid: 0, gid: 0, mtime: next(), linkName: '/etc/passwd' },
    { path: 'link-dangling', type: 'symlink', mode: 0o777, uid: 1, gid: 1, mtime: next(), linkName: '../nowhere' },
    d('über'),
    f('über/ñame-日本.txt', 'non-ascii\n'),
  ];
  // Two names of one inode share all metadata.
  return spec.map((e) => {
    if (e.hardlinkOf === undefined) return e;
    const target = spec.find((t) => t.path === e.hardlinkOf)!;
    return { ...target, path: e.path, hardlinkOf: e.hardlinkOf };
  });
}

async function materialize(root: string, spec: SpecEntry[]): Promise<void> {
  const xattrCalls: [string, string, string][] = [];
  for (const e of spec) {
    const p = join(root, e.path);
    switch (e.type) {
      case 'dir':
        await mkdir(p, { recursive: true });
        break;
      case 'reg':
        if (e.hardlinkOf !== undefined) await link(join(root, e.hardlinkOf), p);
        else await writeFile(p, e.content!);
        break;
      case 'symlink':
        await symlink(e.linkName!, p);
        break;
      case 'fifo':
        await run('mkfifo', [p]);
        break;
      case 'char':
        await run('mknod', [p, 'c', String(e.dev![0]), String(e.dev![1])]);
        break;
    }
    await lchown(p, e.uid, e.gid);
    if (e.type !== 'symlink') await chmod(p, e.mode); // after chown, which clears setuid/setgid
    for (const [k, v] of Object.entries(e.xattrs ?? {})) xattrCalls.push([p, k, v.toString('hex')]);
  }
  // Node has no xattr API: python3's os.setxattr (no extra package needed).
  if (xattrCalls.length > 0) {
    await run('python3', ['-c', 'import os,sys,json\nfor p,k,v in json.load(sys.stdin): os.setxattr(p,k,bytes.fromhex(v))'], {
      input: JSON.stringify(xattrCalls),
    });
  }
  // Deepest first, so setting a child's time never disturbs its parent's afterwards.
  for (const e of [...spec].reverse()) await lutimes(join(root, e.path), e.mtime, e.mtime);
}

const sh = async (script: string) => (await run('bash', ['-c', `set -euo pipefail\n${script}`])).stdout;

const cleanTarName = (n: string) => n.replace(/^\.\//, '').replace(/\/$/, '').replace(/^\.$/, '');

// ---------------------------------------------------------------------------------------------------
// The comparison of a layer read through lazypull with the spec.

function expectEntryMatches(index: LayerIndex, e: SpecEntry, label: string): LayerEntry {
  const entry = e.path === '' ? index.root : index.lookup(e.path);
  expect(entry, `${label}: ${e.path} missing`).toBeDefined();
  const got = entry!;
  const where = `${label}: ${JSON.stringify(e.path)}`;
  expect(got.type, where).toBe(e.type);
  expect(got.mode, `${where} mode`).toBe(e.mode);
  expect([got.uid, got.gid], `${where} uid/gid`).toEqual([e.uid, e.gid]);
  // The TOC's modtime is RFC3339 with whole seconds; the tree's mtimes are whole seconds too.
  expect([got.mtimeSec, got.mtimeNsec], `${where} mtime`).toEqual([e.mtime, 0]);
  expect([got.userName, got.groupName], `${where} owner names (tar made with --numeric-owner)`).toEqual(['', '']);
  const xattrs = Object.fromEntries([...got.xattrs].map(([k, v]) => [k, Buffer.from(v).toString('hex')]));
  const wantXattrs = Object.fromEntries(Object.entries(e.xattrs ?? {}).map(([k, v]) => [k, v.toString('hex')]));
  expect(xattrs, `${where} xattrs`).toEqual(wantXattrs);
  if (e.type === 'reg') expect(got.size, `${where} size`).toBe(e.content!.length);
  if (e.type === 'symlink') expect(got.linkName, `${where} target`).toBe(e.linkName);
  if (e.type === 'char') expect([got.devMajor, got.devMinor], `${where} device`).toEqual(e.dev);
  return got;
}

async function expectLayerMatchesTree(blobPath: string, spec: SpecEntry[], options: OpenOptions, label: string) {
  const source = await FileSource.open(blobPath);
  try {
    const index = await openLayer(source, options);
    expect(index.verified, `${label}: chunk digests are verified`).toBe(true);
    expect(index.root.type).toBe('dir');

    // Exactly the spec's paths, nothing lost and nothing invented (landmarks are flagged, not files).
    const paths = [...index.entries.entries()].filter(([p, e]) => p !== '' && e.special !== 'landmark').map(([p]) => p);
    expect(paths.sort(), `${label}: entry names`).toEqual(spec.map((e) => e.path).filter((p) => p !== '').sort());

    for (const e of spec) {
      const entry = expectEntryMatches(index, e, label);
      if (e.type !== 'reg') continue;
      const whole = await readFileRange(index, source, entry, 0, entry.size);
      expect(whole.length, `${label}: ${e.path} length read`).toBe(e.content!.length);
      expect(whole.equals(e.content!), `${label}: ${e.path} content`).toBe(true);
    }

    // Hardlinks across directories resolve to one object with two links.
    const hard = index.lookup('data/hard');
    expect(hard, `${label}: hardlink`).toBe(index.lookup('etc/config.txt'));
    expect(hard!.nlink).toBe(2);
    expect(index.lookup('etc/empty')!.nlink).toBe(1);

    // Multi-chunk files: the default 4 MiB chunking, and reads that cross chunk boundaries.
    const random = spec.find((e) => e.path === 'data/random.bin')!.content!;
    const randomEntry = index.lookup('data/random.bin')!;
    expect(randomEntry.chunks.map((c) => [c.fileOffset, c.size])).toEqual([
      [0, 4 * MiB],
      [4 * MiB, 4 * MiB],
      [8 * MiB, random.length - 8 * MiB],
    ]);
    const ranges: [number, number][] = [
      [0, 1],
      [4 * MiB - 10, 20],
      [4 * MiB - 1, 4 * MiB + 2], // touches all three chunks
      [8 * MiB, 1],
      [random.length - 5, 5],
      [123_457, 2 * MiB],
    ];
    for (const [off, len] of ranges) {
      const got = await readFileRange(index, source, randomEntry, off, len);
      expect(got.equals(random.subarray(off, off + len)), `${label}: random.bin [${off}, +${len})`).toBe(true);
    }
    return index;
  } finally {
    await source.close();
  }
}

/** Drops fields a Go `omitempty` re-marshal would drop, so two TOCs compare by meaning. */
function normalizeToc(json: string): unknown {
  const toc = JSON.parse(json) as { version: number; entries: Record<string, unknown>[] };
  return {
    version: toc.version,
    entries: toc.entries.map((e) =>
      Object.fromEntries(Object.entries(e).filter(([, v]) => v !== 0 && v !== '' && v !== null && !(typeof v === 'object' && Object.keys(v as object).length === 0))),
    ),
  };
}

// ---------------------------------------------------------------------------------------------------

interface Format {
  name: 'estargz' | 'zstd:chunked';
  convertFlag: string;
  mediaType: string;
  getTocFlags: string[];
  decompress: string;
}

const FORMATS: Format[] = [
  { name: 'estargz', convertFlag: '--estargz', mediaType: MediaType.layerGzip, getTocFlags: [], decompress: 'gzip -dc' },
  { name: 'zstd:chunked', convertFlag: '--zstdchunked', mediaType: MediaType.layerZstd, getTocFlags: ['--zstdchunked'], decompress: 'zstd -dcq' },
];

describe('compatibility with ctr-remote 0.12 (stargz-snapshotter) on a real containerd', () => {
  let cd: Containerd | undefined;
  let work: string;
  let spec: SpecEntry[];
  let tgzPath: string;
  const SRC = 'example.com/lazypull/compat-src:v1';

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'lazypull-compat-'));
    spec = treeSpec();
    const root = join(work, 'tree');
    await mkdir(root);
    await materialize(root, spec);
    const tarPath = join(work, 'layer.tar');
    tgzPath = join(work, 'layer.tar.gz');
    await run('tar', [
      '--format=pax', '--xattrs', '--xattrs-include=user.*', '--pax-option=delete=atime,delete=ctime',
      '--sort=name', '--numeric-owner', '-C', root, '-cf', tarPath, '.',
    ]);
    await sh(`gzip -n -6 -c ${tarPath} > ${tgzPath}`);
    const diffID = (await fileDigest(tarPath)).digest;

    // The tar is the original the spec describes: same names, GNU tar agrees.
    const names = (await run('tar', ['-tf', tarPath])).stdout.split('\n').filter(Boolean).map(cleanTarName);
    expect(names.sort()).toEqual(spec.map((e) => e.path).sort());

    cd = await startContainerd();
    await buildAndImportImage(cd, join(work, 'src-layout'), [{ path: tgzPath, mediaType: MediaType.layerGzip, diffID }], { name: SRC });
  });

  afterAll(async () => {
    await cd?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  describe.each(FORMATS)('$name', (fmt) => {
    it(`reads every file of a layer made by ctr-remote images convert --oci ${fmt.convertFlag}`, async () => {
      const dst = `example.com/lazypull/compat-ref-${fmt.name.replace(':', '-')}:v1`;
      await cd!.ctrRemote(['images', 'convert', '--oci', fmt.convertFlag, SRC, dst]);
      const image = await getImage(cd!, dst);
      expect(image.manifest.layers).toHaveLength(1);
      const layer = image.manifest.layers[0]!;
      expect(layer.mediaType).toBe(fmt.mediaType);
      const tocDigest = layer.annotations?.[TOC_DIGEST] as Digest | undefined;
      expect(tocDigest).toMatch(/^sha256:[0-9a-f]{64}$/);

      const blobPath = join(work, `ref-${fmt.name.replace(':', '-')}.blob`);
      await getContent(cd!, layer.digest, blobPath);
      expect((await fileDigest(blobPath)).digest).toBe(layer.digest);

      const options: OpenOptions = { expectedTocDigest: tocDigest };
      if (fmt.name === 'zstd:chunked') options.expectedManifestChecksum = layer.annotations?.[ZSTD_CHECKSUM] as Digest;
      const index = await expectLayerMatchesTree(blobPath, spec, options, `ctr-remote ${fmt.name}`);
      expect(index.format).toBe(fmt.name);
      expect(index.tocDigest).toBe(tocDigest);
      expect(index.noPrefetch, 'ctr-remote writes .no.prefetch.landmark without a record').toBe(true);

      // The digest chain is enforced, not just computed.
      const source = await FileSource.open(blobPath);
      try {
        await expect(openLayer(source, { expectedTocDigest: `sha256:${'0'.repeat(64)}` })).rejects.toThrow(/TOC digest/);
      } finally {
        await source.close();
      }
    });

    it(`ctr-remote images get-toc-digest${fmt.getTocFlags.map((f) => ` ${f}`).join('')} prints the TOC digest of a layer lazypull wrote`, async () => {
      const slug = fmt.name.replace(':', '-');
      const out = join(work, `lazypull-${slug}.blob`);
      const res = await convertLayerFile(tgzPath, out, { format: fmt.name });

      // What lazypull reports matches the bytes it wrote and the reference decompressors.
      expect(res.mediaType).toBe(fmt.mediaType);
      expect(await fileDigest(out)).toEqual({ digest: res.digest, size: res.size });
      expect(res.annotations[TOC_DIGEST]).toBe(res.tocDigest);
      expect(res.annotations[UNCOMPRESSED_SIZE]).toBe(String(res.uncompressedSize));
      const tarOut = join(work, `lazypull-${slug}.tar`);
      await sh(`${fmt.decompress} ${out} > ${tarOut}`);
      expect(await fileDigest(tarOut), `${fmt.decompress} of the blob hashes to the diffID`).toEqual({ digest: res.diffID, size: res.uncompressedSize });
      if (fmt.name === 'zstd:chunked') {
        const [off, len] = String(res.annotations[ZSTD_POSITION]).split(':').map(Number) as [number, number];
        const blob = await readFile(out);
        expect(res.annotations[ZSTD_CHECKSUM]).toBe(`sha256:${createHash('sha256').update(blob.subarray(off, off + len)).digest('hex')}`);
      }

      // containerd and ctr-remote accept it, and ctr-remote computes the same TOC digest.
      const name = `example.com/lazypull/compat-lp-${slug}:v1`;
      const layers = [{ path: out, mediaType: res.mediaType, diffID: res.diffID, annotations: res.annotations, digest: res.digest, size: res.size }];
      await buildAndImportImage(cd!, join(work, `lp-${slug}-layout`), layers, { name });
      expect((await getImage(cd!, name)).manifest.layers[0]!.annotations?.[TOC_DIGEST]).toBe(res.tocDigest);
      const printed = (await cd!.ctrRemote(['images', 'get-toc-digest', ...fmt.getTocFlags, res.digest])).stdout.trim();
      expect(printed).toBe(res.tocDigest);

      // ctr-remote's own parse of the TOC (re-marshalled by Go) means the same as lazypull's TOC.
      const dumped = (await cd!.ctrRemote(['images', 'get-toc-digest', '--dump-toc', ...fmt.getTocFlags, res.digest])).stdout;
      const source = await FileSource.open(out);
      let ours: Buffer;
      try {
        ours = (await openLayer(source, { expectedTocDigest: res.tocDigest as Digest })).tocJson;
      } finally {
        await source.close();
      }
      expect(normalizeToc(dumped)).toEqual(normalizeToc(ours.toString('utf8')));

      // And lazypull reads back its own blob exactly (default chunking).
      const index = await expectLayerMatchesTree(out, spec, { expectedTocDigest: res.tocDigest as Digest }, `lazypull ${fmt.name}`);
      expect(index.format).toBe(fmt.name);
      expect((await stat(out)).size).toBe(res.size);
    });
  });
});
