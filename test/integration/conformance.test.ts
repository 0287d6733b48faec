/**
 * Format conformance: one suite, run for every layer format in FORMATS. A real directory tree with every
 * tricky case (test/helpers/fixture-tree.ts) becomes a GNU tar layer; each format turns that layer into
 * its blob under several writer options; the opened index must then reproduce the tree exactly: same
 * paths, same metadata, same hardlink identity, and every byte of every file, read through the chunk
 * locator whole and in pieces that cross chunk boundaries. The expected values come from the
 * filesystem, never from lazypull's own tar reader.
 *
 * A new format (SOCI) joins by adding a row to FORMATS.
 *
 * Runs as root (mknod, chown to large ids, security.capability). It lives with the integration tests
 * because it converts the layer a dozen times and extracts it with GNU tar: about 30 s of CPU.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLayer } from '../../src/estargz/open.js';
import { convertLayerFile } from '../../src/estargz/writer.js';
import { FileSource, type RandomAccessSource } from '../../src/io/random-access.js';
import type { LayerFormat, LayerIndex } from '../../src/layer/layer-index.js';
import { readFileRange } from '../../src/layer/read.js';
import { SociLayerIndex } from '../../src/soci/layer-index.js';
import { buildSociLayer, checkSociLayer, type SociVariant } from './soci/soci-layers.js';
import {
  IMPLICIT_PARENTS,
  KiB64,
  MiB4,
  buildFixture,
  diffOracles,
  extractTar,
  run,
  scanTree,
  type ExpectedEntry,
  type Fixture,
  type LayerVariantOptions,
} from '../helpers/fixture-tree.js';

// ---------------------------------------------------------------------------------------------------
// The table: every format the suite runs for.

/** Options a writer case may set; each format maps them to its own builder. */
interface WriterOptions {
  chunkSize?: number;
  minChunkSize?: number;
  prioritizedFiles?: string[];
}

/** What a format hands the suite after building a layer from the fixture tar. */
interface BuiltLayer {
  readonly blobPath: string;
  readonly index: LayerIndex;
  readonly source: RandomAccessSource;
  /** Writer results that describe the blob (digests, sizes, annotations), when the format has a writer. */
  readonly written?: {
    tocDigest: string;
    diffID: string;
    uncompressedSize: number;
    digest: string;
    size: number;
    mediaType: string;
    annotations: Record<string, string>;
  };
  readonly tocJson?: Buffer;
}

interface FormatUnderTest {
  readonly name: string;
  /** What the opened index must report as its format. */
  readonly layerFormat: LayerFormat;
  /** Builds and opens a layer from `input` (tar, tar.gz or tar.zst), writing files under `workDir`. */
  build(input: string, workDir: string, options: WriterOptions): Promise<BuiltLayer>;
  /**
   * Command that decompresses the whole blob to a tar stream on stdout, for formats whose blob stays a
   * valid compressed tar and whose writer reports digests; formats without a writer leave it out.
   */
  readonly decompress?: readonly string[];
  readonly mediaType: string;
  /** Members the format adds to the tar stream, which are not part of the layer. */
  readonly addedMembers: readonly string[];
  /** Whether regular files carry a whole-file digest. */
  readonly fileDigests: boolean;
  /** Whether the format honours WriterOptions (chunk size, min-chunk-size, prioritized files). */
  readonly chunkingFollowsOptions: boolean;
  /** Format-specific checks of the writer's annotations against the blob. */
  checkAnnotations?(annotations: Record<string, string>, blob: Buffer, tocJson: Buffer): void;
  /** The writer cases that apply; formats without writer options skip cases that only change options. */
  appliesTo?(wcase: WriterCase): boolean;
  /** Format-specific checks of a built layer (what makes the row worth running). */
  checkLayer?(layer: BuiltLayer): void;
}

function chunkedFormat(
  name: string,
  format: 'estargz' | 'zstd:chunked',
  decompress: string[],
  mediaType: string,
  addedMembers: string[],
  checkAnnotations?: FormatUnderTest['checkAnnotations'],
): FormatUnderTest {
  return {
    name,
    layerFormat: format,
    ...(checkAnnotations ? { checkAnnotations } : {}),
    decompress,
    mediaType,
    addedMembers,
    fileDigests: true,
    chunkingFollowsOptions: true,
    async build(input, workDir, options) {
      const blobPath = join(workDir, 'blob');
      const written = await convertLayerFile(input, blobPath, { format, ...options });
      const source = await FileSource.open(blobPath);
      try {
        const index = await openLayer(source, { expectedTocDigest: written.tocDigest });
        return { blobPath, index, source, written, tocJson: index.tocJson };
      } catch (err) {
        await source.close();
        throw err;
      }
    },
  };
}

const LANDMARKS = ['.prefetch.landmark', '.no.prefetch.landmark'];

/** SOCI indexes an unmodified layer: the writer options do not apply, only the input does. */
function sociFormat(variant: SociVariant): FormatUnderTest {
  return {
    name: `soci (${variant})`,
    layerFormat: 'soci',
    mediaType: variant === 'uncompressed' ? 'application/vnd.oci.image.layer.v1.tar' : 'application/vnd.oci.image.layer.v1.tar+gzip',
    addedMembers: [],
    fileDigests: false,
    chunkingFollowsOptions: false,
    appliesTo: (wcase) => wcase.options.prioritizedFiles === undefined && wcase.options.minChunkSize === undefined,
    build: (input, workDir) => buildSociLayer(input, workDir, variant),
    checkLayer: ({ index }) => checkSociLayer(variant, index as SociLayerIndex),
  };
}

const FORMATS: readonly FormatUnderTest[] = [
  chunkedFormat('estargz', 'estargz', ['gzip', '-dc'], 'application/vnd.oci.image.layer.v1.tar+gzip', ['stargz.index.json', ...LANDMARKS]),
  chunkedFormat('zstd:chunked', 'zstd:chunked', ['zstd', '-dcq'], 'application/vnd.oci.image.layer.v1.tar+zstd', LANDMARKS, (annotations, blob, tocJson) => {
    // OFFSET:COMPRESSED_LEN:UNCOMPRESSED_LEN:1, and the checksum is the digest of those compressed bytes.
    const position = annotations['io.containers.zstd-chunked.manifest-position'] ?? '';
    const m = /^(\d+):(\d+):(\d+):1$/.exec(position);
    expect(m, position).not.toBeNull();
    const [offset, length, uncompressed] = [Number(m![1]), Number(m![2]), Number(m![3])];
    expect(uncompressed).toBe(tocJson.length);
    expect(offset + length).toBeLessThanOrEqual(blob.length);
    expect(annotations['io.containers.zstd-chunked.manifest-checksum']).toBe(`sha256:${sha256(blob.subarray(offset, offset + length))}`);
  }),
  sociFormat('gzip'),
  sociFormat('pigz-members'),
  sociFormat('uncompressed'),
];

/** Writer options the suite runs each format under, with the input encoding each case feeds it. */
interface WriterCase {
  readonly name: string;
  readonly input: LayerVariantOptions;
  readonly options: WriterOptions;
}

const PRIORITIZED = ['names/日本語.txt', 'big/random.bin', 'links/b/hard.txt', 'perms/setgid/child'];

const CASES: readonly WriterCase[] = [
  { name: 'default options, plain tar', input: {}, options: {} },
  { name: '64 KiB chunks, tar.gz input', input: { compression: 'gzip' }, options: { chunkSize: KiB64 } },
  { name: 'min-chunk-size packing, tar.zst input', input: { compression: 'zstd' }, options: { chunkSize: KiB64, minChunkSize: 16 * 1024 } },
  { name: 'prioritized files', input: {}, options: { prioritizedFiles: PRIORITIZED } },
  { name: "'./' member names with a root entry", input: { dotSlash: true }, options: {} },
];

// ---------------------------------------------------------------------------------------------------

let fixture: Fixture;

beforeAll(async () => {
  fixture = await buildFixture();
}, 120_000);

afterAll(async () => {
  await fixture?.cleanup();
});

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const show = (p: string) => JSON.stringify(p);
const parentOf = (p: string) => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');
const baseOf = (p: string) => p.slice(p.lastIndexOf('/') + 1);

describe('fixture', () => {
  it('holds every tricky case the suite claims to cover', () => {
    const e = [...fixture.expected.values()];
    const types = new Set(e.map((x) => x.type));
    expect([...types].sort()).toEqual(['block', 'char', 'dir', 'fifo', 'reg', 'symlink']);
    expect(e.some((x) => x.type === 'reg' && x.size === 0)).toBe(true);
    expect(e.some((x) => x.size > MiB4)).toBe(true);
    expect(e.some((x) => x.hardlinkGroup !== undefined && x.linkCount === 3)).toBe(true);
    expect(e.filter((x) => x.type === 'dir').map((x) => x.mode)).toEqual(expect.arrayContaining([0o700, 0o1777, 0o2775]));
    expect(e.some((x) => x.xattrs.has('security.capability'))).toBe(true);
    expect(e.some((x) => [...x.xattrs.keys()].some((k) => k.startsWith('user.')))).toBe(true);
    expect(e.some((x) => x.special === 'whiteout')).toBe(true);
    expect(e.some((x) => x.opaque)).toBe(true);
    expect(e.some((x) => Buffer.byteLength(baseOf(x.path)) > 100)).toBe(true);
    expect(e.some((x) => Buffer.byteLength(x.linkName) > 100)).toBe(true);
    expect(e.some((x) => Buffer.byteLength(x.path) !== x.path.length)).toBe(true);
    expect(e.some((x) => x.uid > 65535 && x.gid > 65535)).toBe(true);
    expect(e.some((x) => x.mtimeNsec !== 0)).toBe(true);
    expect(e.some((x) => x.mtimeSec < 0)).toBe(true);
    expect(e.filter((x) => x.implicit).map((x) => x.path)).toEqual(['', ...IMPLICIT_PARENTS]);
  });

  it('notices every kind of difference between two oracles', () => {
    const base = new Map(fixture.expected);
    const change = (path: string, patch: Partial<ExpectedEntry>) => new Map([...base, [path, { ...base.get(path)!, ...patch }]]);
    expect(diffOracles(base, base)).toEqual([]);
    expect(diffOracles(base, change('files/hello.txt', { mtimeNsec: 1 }))).toHaveLength(1);
    expect(diffOracles(base, change('files/hello.txt', { sha256: '00' }))).toHaveLength(1);
    expect(diffOracles(base, change('files/xattrs.txt', { xattrs: new Map() }))).toHaveLength(1);
    expect(diffOracles(base, change('links/c/hard2.txt', { hardlinkGroup: undefined }))).not.toEqual([]);
    const missing = new Map(base);
    missing.delete('devices/fifo');
    expect(diffOracles(base, missing)).toEqual(['missing "devices/fifo"']);
    expect(diffOracles(missing, base)).toEqual(['unexpected "devices/fifo"']);
  });

  it('GNU tar round-trips the oracle (the layer tar holds what the oracle says)', async () => {
    const variants: LayerVariantOptions[] = [{}, { dotSlash: true, compression: 'zstd' }];
    for (const variant of variants) {
      const layer = await fixture.layer(variant);
      const dest = await fixture.tempDir('gnu-extract');
      await extractTar(layer.path, dest, variant.compression);
      const extracted = await scanTree(dest);
      expect(diffOracles(layer.expected, extracted)).toEqual([]);
    }
  });
});

// ---------------------------------------------------------------------------------------------------
// The checks, shared by every format and case.

function xattrText(m: ReadonlyMap<string, Buffer>): string {
  return [...m].map(([k, v]) => `${k}=${v.toString('hex')}`).sort().join(',');
}

/** Every metadata mismatch between the index and the oracle, one line each. */
function metadataProblems(index: LayerIndex, expected: ReadonlyMap<string, ExpectedEntry>, fmt: FormatUnderTest): string[] {
  const problems: string[] = [];
  const check = (path: string, field: string, want: unknown, got: unknown) => {
    if (want !== got) problems.push(`${show(path)}: ${field} expected ${String(want)}, got ${String(got)}`);
  };
  for (const [path, exp] of expected) {
    const entry = index.entries.get(path);
    if (!entry) continue; // reported by the path-set test
    check(path, 'type', exp.type, entry.type);
    if (exp.implicit && path !== '') {
      // Not in the tar: the reader creates it as the reference reader does (0755, root-owned).
      check(path, 'mode', 0o755, entry.mode);
      check(path, 'uid', 0, entry.uid);
      check(path, 'gid', 0, entry.gid);
      continue;
    }
    if (exp.implicit) continue; // the root without a tar entry: any sane defaults
    if (exp.hardlinkGroup === undefined) check(path, 'name', path, entry.name);
    check(path, 'mode', exp.mode.toString(8), entry.mode.toString(8));
    check(path, 'uid', exp.uid, entry.uid);
    check(path, 'gid', exp.gid, entry.gid);
    check(path, 'size', exp.size, entry.size);
    check(path, 'mtimeSec', exp.mtimeSec, entry.mtimeSec);
    check(path, 'mtimeNsec', exp.mtimeNsec, entry.mtimeNsec);
    check(path, 'linkName', exp.linkName, entry.linkName);
    check(path, 'devMajor', exp.devMajor, entry.devMajor);
    check(path, 'devMinor', exp.devMinor, entry.devMinor);
    check(path, 'xattrs', xattrText(exp.xattrs), xattrText(entry.xattrs));
    check(path, 'special', exp.special, entry.special);
    check(path, 'opaque', exp.opaque, entry.opaque === true);
    if (exp.type === 'reg') {
      check(path, 'nlink', exp.linkCount, entry.nlink);
      if (fmt.fileDigests) check(path, 'digest', `sha256:${exp.sha256}`, entry.digest);
    }
  }
  return problems;
}

interface Suite {
  fixture(): Fixture;
  layer(): BuiltLayer;
  expected(): ReadonlyMap<string, ExpectedEntry>;
  original(path: string): Promise<Buffer>;
}

function regularFiles(expected: ReadonlyMap<string, ExpectedEntry>): ExpectedEntry[] {
  return [...expected.values()].filter((e) => e.type === 'reg');
}

function sharedChecks(fmt: FormatUnderTest, wcase: WriterCase, s: Suite): void {
  it('has exactly the paths of the layer (landmarks flagged, nothing missing or extra)', () => {
    const { index } = s.layer();
    const expected = s.expected();
    const landmarks = [...index.entries].filter(([, e]) => e.special === 'landmark').map(([p]) => p);
    const actual = [...index.entries.keys()].filter((p) => !landmarks.includes(p)).sort();
    expect(actual).toEqual([...expected.keys()].sort());
    for (const p of landmarks) expect(LANDMARKS).toContain(p);
    if (fmt.chunkingFollowsOptions) {
      if (wcase.options.prioritizedFiles?.length) {
        expect(landmarks).toEqual(['.prefetch.landmark']);
        expect(index.noPrefetch).toBe(false);
        expect(index.prefetchRange).toBeDefined();
      } else {
        expect(landmarks).toEqual(['.no.prefetch.landmark']);
        expect(index.noPrefetch).toBe(true);
        expect(index.prefetchRange).toBeUndefined();
      }
    }
    expect(index.format).toBe(fmt.layerFormat);
    expect(index.verified).toBe(true);
    expect(index.lookup('')).toBe(index.root);
    expect(index.root.name).toBe('');
    for (const p of expected.keys()) expect(index.lookup(p), show(p)).toBe(index.entries.get(p));
  });

  it('reproduces every entry: type, mode, owner, size, mtime (ns), link target, device, xattrs, flags', () => {
    expect(metadataProblems(s.layer().index, s.expected(), fmt)).toEqual([]);
  });

  it('links every entry into its parent directory, implicit parents included', () => {
    const { index } = s.layer();
    const expected = s.expected();
    const problems: string[] = [];
    for (const [path, exp] of expected) {
      const entry = index.entries.get(path);
      if (!entry || path === '') continue;
      const parent = index.entries.get(parentOf(path));
      if (parent?.type !== 'dir') problems.push(`${show(path)}: parent is not a directory`);
      else if (parent.children?.get(baseOf(path)) !== entry) problems.push(`${show(path)}: not (or not the same object) in its parent's children`);
      if (exp.type === 'dir') {
        const want = [...expected.keys()].filter((p) => p !== '' && parentOf(p) === path).map(baseOf).sort();
        const got = [...(entry.children?.keys() ?? [])].filter((n) => !LANDMARKS.includes(n) || path !== '').sort();
        if (want.join('\0') !== got.join('\0')) problems.push(`${show(path)}: children ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
        // st_nlink of a directory: 2 + subdirectories.
        if (entry.nlink !== exp.linkCount) problems.push(`${show(path)}: dir nlink ${entry.nlink}, expected ${exp.linkCount}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('shares one LayerEntry (one inode) between all names of a hardlinked file and counts them', () => {
    const { index } = s.layer();
    const groups = new Map<string, ExpectedEntry[]>();
    for (const e of s.expected().values()) if (e.hardlinkGroup) groups.set(e.hardlinkGroup, [...(groups.get(e.hardlinkGroup) ?? []), e]);
    expect(groups.size).toBeGreaterThanOrEqual(4);
    for (const members of groups.values()) {
      const objects = new Set(members.map((m) => index.entries.get(m.path)));
      expect(objects.size, members.map((m) => m.path).join(', ')).toBe(1);
      const [entry] = objects;
      expect(entry?.nlink).toBe(members.length);
      expect(members.map((m) => m.path)).toContain(entry?.name);
    }
    // Distinct files have distinct inode numbers.
    const distinct = new Set(index.entries.values());
    expect(new Set([...distinct].map((e) => e.ino)).size).toBe(distinct.size);
    expect(index.root.ino).toBe(1);
  });

  it('flags whiteouts and opaque markers and marks opaque directories', () => {
    const { index } = s.layer();
    const lookup = (p: string) => index.entries.get(p);
    expect(lookup('.wh.rootgone')?.special).toBe('whiteout');
    expect(lookup('whiteouts/.wh.gone')?.special).toBe('whiteout');
    expect(lookup('whiteouts/sub/.wh.gone-dir')?.special).toBe('whiteout');
    expect(lookup('whiteouts/opaque/.wh..wh..opq')?.special).toBe('opaque-marker');
    expect(lookup('whiteouts/opaque')?.opaque).toBe(true);
    expect(lookup('whiteouts/opaque-empty')?.opaque).toBe(true);
    expect(lookup('whiteouts/sub')?.opaque ?? false).toBe(false);
    expect(lookup('whiteouts/opaque/new.txt')?.special).toBeUndefined();
  });

  it('serves every regular file whole, byte for byte', async () => {
    const { index, source } = s.layer();
    const problems: string[] = [];
    for (const exp of regularFiles(s.expected())) {
      const entry = index.entries.get(exp.path)!;
      const data = await readFileRange(index, source, entry, 0, exp.size);
      if (data.length !== exp.size || sha256(data) !== exp.sha256) problems.push(`${show(exp.path)}: ${data.length} bytes, sha256 ${sha256(data)}, expected ${exp.size} bytes ${exp.sha256}`);
    }
    expect(problems).toEqual([]);
  });

  it('serves odd-sized pieces that cross chunk boundaries, byte for byte', async () => {
    const { index, source } = s.layer();
    const problems: string[] = [];
    let boundaryReads = 0;
    for (const exp of regularFiles(s.expected())) {
      if (exp.size === 0) {
        const entry = index.entries.get(exp.path)!;
        const none = await readFileRange(index, source, entry, 0, 0);
        if (none.length !== 0) problems.push(`${show(exp.path)}: empty file read gave ${none.length} bytes`);
        continue;
      }
      const original = await s.original(exp.path);
      const entry = index.entries.get(exp.path)!;
      const largestChunk = Math.max(...entry.chunks.map((c) => c.size));
      const piece = Math.max(1, Math.floor(largestChunk * 0.61)) | 1; // odd, never aligned with a chunk
      const parts: Buffer[] = [];
      for (let off = 0; off < exp.size; off += piece) parts.push(await readFileRange(index, source, entry, off, Math.min(piece, exp.size - off)));
      const joined = Buffer.concat(parts);
      if (!joined.equals(original)) problems.push(`${show(exp.path)}: ${piece}-byte pieces differ from the original`);
      // A few bytes either side of every chunk boundary.
      for (const c of entry.chunks.slice(1)) {
        const start = Math.max(0, c.fileOffset - 3);
        const end = Math.min(exp.size, c.fileOffset + 4);
        const got = await readFileRange(index, source, entry, start, end - start);
        boundaryReads++;
        if (!got.equals(original.subarray(start, end))) problems.push(`${show(exp.path)}: bytes [${start}, ${end}) across the chunk boundary at ${c.fileOffset} differ`);
      }
      const last = await readFileRange(index, source, entry, exp.size - 1, 1);
      if (last[0] !== original[exp.size - 1]) problems.push(`${show(exp.path)}: last byte differs`);
    }
    expect(problems).toEqual([]);
    expect(boundaryReads).toBeGreaterThan(0);
  });

  if (fmt.chunkingFollowsOptions) {
    it('chunks files as the options say', () => {
      const { index } = s.layer();
      const chunkSize = wcase.options.chunkSize ?? MiB4;
      const problems: string[] = [];
      let shared = 0;
      for (const exp of regularFiles(s.expected())) {
        const entry = index.entries.get(exp.path)!;
        let covered = 0;
        for (const c of entry.chunks) {
          if (c.fileOffset !== covered) problems.push(`${show(exp.path)}: chunk at ${c.fileOffset}, expected ${covered}`);
          if (c.size > chunkSize) problems.push(`${show(exp.path)}: chunk of ${c.size} bytes exceeds ${chunkSize}`);
          if (c.digest === undefined) problems.push(`${show(exp.path)}: chunk at ${c.fileOffset} has no digest`);
          if (c.innerOffset > 0) shared++;
          covered += c.size;
        }
        if (covered !== exp.size) problems.push(`${show(exp.path)}: chunks cover ${covered} of ${exp.size}`);
        if (entry.chunks.length !== Math.ceil(exp.size / chunkSize)) problems.push(`${show(exp.path)}: ${entry.chunks.length} chunks, expected ${Math.ceil(exp.size / chunkSize)}`);
      }
      expect(problems).toEqual([]);
      // Packing puts later small files inside an earlier file's member; without it every chunk starts one.
      if (wcase.options.minChunkSize) expect(shared).toBeGreaterThan(10);
      else expect(shared).toBe(0);
    });
  }

  if (wcase.options.prioritizedFiles?.length) {
    it('puts the prioritized files (and what they need) inside the prefetch range', () => {
      const { index } = s.layer();
      const range = index.prefetchRange!;
      for (const p of wcase.options.prioritizedFiles!) {
        for (const c of index.entries.get(p)!.chunks) expect(c.compressedEnd, p).toBeLessThanOrEqual(range.end);
      }
      // The target of a prioritized hardlink moves along with it.
      for (const c of index.entries.get('links/a/target.txt')!.chunks) expect(c.compressedEnd).toBeLessThanOrEqual(range.end);
      // Something not prioritized stays after it.
      expect(index.entries.get('sizes/text-1m')!.chunks[0]!.compressedOffset).toBeGreaterThanOrEqual(range.end);
    });
  }
}

/** For formats with a writer whose blob stays a compressed tar: the writer's report and the tar inside. */
function blobChecks(fmt: FormatUnderTest, decompress: readonly string[], s: Suite): void {
  it('describes the blob it wrote (digest, size, TOC digest, media type, annotations)', async () => {
    const { written, blobPath, index, tocJson } = s.layer();
    expect(written).toBeDefined();
    const blob = await readFile(blobPath);
    expect(written!.digest).toBe(`sha256:${sha256(blob)}`);
    expect(written!.size).toBe(blob.length);
    expect(written!.mediaType).toBe(fmt.mediaType);
    expect(index.tocDigest).toBe(written!.tocDigest);
    expect(`sha256:${sha256(tocJson!)}`).toBe(written!.tocDigest);
    expect(written!.annotations['containerd.io/snapshot/stargz/toc.digest']).toBe(written!.tocDigest);
    expect(written!.annotations['io.containers.estargz.uncompressed-size']).toBe(String(written!.uncompressedSize));
    fmt.checkAnnotations?.(written!.annotations, blob, tocJson!);
  });

  it('decompresses to a tar (diffID, uncompressed size) that GNU tar extracts to the original tree', async () => {
    const { written, blobPath } = s.layer();
    const [cmd, ...args] = decompress;
    const { stdout: tar } = await run(cmd!, [...args, blobPath]);
    expect(`sha256:${sha256(tar)}`).toBe(written!.diffID);
    expect(tar.length).toBe(written!.uncompressedSize);
    const dest = await s.fixture().tempDir('blob-extract');
    await extractTar(tar, dest);
    const extracted = await scanTree(dest, { ignore: (p) => fmt.addedMembers.includes(p) });
    expect(diffOracles(s.expected(), extracted)).toEqual([]);
  });
}

// ---------------------------------------------------------------------------------------------------

describe.each(FORMATS.map((f) => [f.name, f] as const))('%s', (_name, fmt) => {
  // One build per (input, options), shared by the cases and the same-bytes check, closed at the end.
  const builds = new Map<string, Promise<BuiltLayer>>();
  const buildOnce = (input: LayerVariantOptions, options: WriterOptions): Promise<BuiltLayer> => {
    const key = JSON.stringify([input, options]);
    let b = builds.get(key);
    if (!b) {
      b = fixture.layer(input).then(async (variant) => fmt.build(variant.path, await fixture.tempDir('blob'), options));
      builds.set(key, b);
    }
    return b;
  };
  afterAll(async () => {
    for (const b of builds.values()) await (await b.catch(() => undefined))?.source.close?.();
  });

  describe.each(CASES.filter((c) => fmt.appliesTo?.(c) ?? true).map((c) => [c.name, c] as const))('%s', (_caseName, wcase) => {
    let built: BuiltLayer | undefined;
    let expected: ReadonlyMap<string, ExpectedEntry>;
    const originals = new Map<string, Buffer>();

    beforeAll(async () => {
      expected = (await fixture.layer(wcase.input)).expected;
      built = await buildOnce(wcase.input, wcase.options);
    }, 120_000);

    const suite: Suite = {
      fixture: () => fixture,
      layer: () => {
        if (!built) throw new Error('layer was not built');
        return built;
      },
      expected: () => expected,
      async original(path) {
        let b = originals.get(path);
        if (!b) {
          b = await readFile(expected.get(path)!.sourcePath);
          if (b.length > 1 << 20) originals.clear();
          originals.set(path, b);
        }
        return b;
      },
    };
    sharedChecks(fmt, wcase, suite);
    if (fmt.decompress) blobChecks(fmt, fmt.decompress, suite);
    if (fmt.checkLayer) it("passes the format's own checks", () => fmt.checkLayer!(suite.layer()));
  });

  if (fmt.decompress) {
    it('converts tar, tar.gz and tar.zst inputs of the same layer to the same bytes', async () => {
      const digests: string[] = [];
      for (const compression of ['none', 'gzip', 'zstd'] as const) digests.push((await buildOnce(compression === 'none' ? {} : { compression }, {})).written!.digest);
      expect(new Set(digests).size).toBe(1);
    });
  }
});
