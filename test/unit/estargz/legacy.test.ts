import { padding, sealHeader } from '../../../src/tar/header.js';
/**
 * Legacy stargz (google/crfs): a 47-byte footer with a bare `%016xSTARGZ` FEXTRA, no chunk digests and
 * no TOC digest, the TOC a tar entry in its own member. The blob is assembled byte by byte the way the
 * crfs writer lays it out, independently of lazypull's own writer and footer helpers.
 */
import { createHash } from 'node:crypto';
import { crc32, deflateRawSync, gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { detectFooter, externalTocFooter, legacyStargzFooter } from '../../../src/estargz/footer.js';
import { openLayer, TocError } from '../../../src/estargz/open.js';
import { TocValidationError } from '../../../src/estargz/toc-index.js';
import { BufferSource } from '../../../src/io/random-access.js';
import { readFileRange } from '../../../src/layer/read.js';
import { TarReader } from '../../../src/tar/reader.js';

const KiB = 1 << 10;

// ---------------------------------------------------------------------------------------------
// A crfs-style writer, reduced to what the tests need
// ---------------------------------------------------------------------------------------------

interface LegacyFile {
  name: string;
  type: 'dir' | 'reg' | 'symlink' | 'hardlink';
  data?: Buffer;
  linkName?: string;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtime: number;
}

function octal(block: Buffer, value: number, at: number, length: number): void {
  block.write(value.toString(8).padStart(length - 1, '0') + '\0', at, length, 'latin1');
}

/** A ustar header as Go's archive/tar writes one for these (short names, small ids). */
function tarHeader(f: { name: string; size: number; mode: number; uid: number; gid: number; uname: string; gname: string; mtime: number; typeflag: string; linkName?: string }): Buffer {
  const block = Buffer.alloc(512);
  block.write(f.name, 0, 100, 'utf8');
  octal(block, f.mode, 100, 8);
  octal(block, f.uid, 108, 8);
  octal(block, f.gid, 116, 8);
  octal(block, f.size, 124, 12);
  octal(block, f.mtime, 136, 12);
  block.write(f.typeflag, 156, 1, 'latin1');
  block.write(f.linkName ?? '', 157, 100, 'utf8');
  block.write('ustar\x0000', 257, 8, 'latin1');
  block.write(f.uname, 265, 32, 'utf8');
  block.write(f.gname, 297, 32, 'utf8');
  return sealHeader(block);
}

const pad = padding;

/** gzip member with an FEXTRA field, as Go's gzip.Writer writes it when Header.Extra is set. */
function gzipWithExtra(data: Buffer, extra: Buffer, level: number): Buffer {
  const header = Buffer.from([0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, level === 9 ? 0x02 : 0x00, 0xff, 0, 0]);
  header.writeUInt16LE(extra.length, 10);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc32(data) >>> 0, 0);
  trailer.writeUInt32LE(data.length >>> 0, 4);
  return Buffer.concat([header, extra, level === 0 ? Buffer.from([0x01, 0x00, 0x00, 0xff, 0xff]) : deflateRawSync(data, { level }), trailer]);
}

/** The 47-byte crfs footer: an empty stored gzip member whose FEXTRA is `%016xSTARGZ` (no SG subfield). */
function crfsFooter(tocOffset: number): Buffer {
  return gzipWithExtra(Buffer.alloc(0), Buffer.from(`${tocOffset.toString(16).padStart(16, '0')}STARGZ`, 'latin1'), 0);
}

/** crfs TOCEntry field order; `Nlink` has no JSON tag, so Go writes it (always 0) under its field name. */
const CRFS_FIELDS = ['name', 'type', 'size', 'modtime', 'linkName', 'mode', 'uid', 'gid', 'userName', 'groupName', 'offset', 'devMajor', 'devMinor', 'chunkOffset', 'chunkSize'] as const;

type CrfsEntry = Partial<Record<(typeof CRFS_FIELDS)[number], string | number>>;

function crfsTocJson(entries: CrfsEntry[]): Buffer {
  const ordered = entries.map((e) => {
    const out: Record<string, unknown> = {};
    for (const key of CRFS_FIELDS) if (key === 'name' || key === 'type' || (e[key] !== undefined && e[key] !== 0 && e[key] !== '')) out[key] = e[key];
    out.Nlink = 0;
    return out;
  });
  return Buffer.from(JSON.stringify({ version: 1, entries: ordered }, null, '\t'));
}

interface LegacyBlob {
  blob: Buffer;
  tocOffset: number;
  tocJson: Buffer;
  /** The uncompressed tar the blob holds (what gunzip gives back). */
  tar: Buffer;
}

/**
 * Lays out a blob as crfs's Writer.AppendTar + Close do: headers go into the open member; every chunk
 * of a regular file (chunkSize bytes) closes it and starts a new one; padding follows in the same
 * member; user and group names are written only when they change for an id.
 */
function buildLegacy(files: LegacyFile[], chunkSize: number): LegacyBlob {
  const members: Buffer[] = [];
  let written = 0;
  let open: Buffer[] | undefined;
  const tarParts: Buffer[] = [];
  const closeGz = (): void => {
    if (!open) return;
    const member = gzipSync(Buffer.concat(open), { level: 9 });
    members.push(member);
    written += member.length;
    open = undefined;
  };
  const write = (data: Buffer): void => {
    open ??= [];
    open.push(data);
    tarParts.push(data);
  };
  const lastUname = new Map<number, string>();
  const lastGname = new Map<number, string>();
  const ifChanged = (map: Map<number, string>, id: number, name: string): string => {
    if (name === '' || map.get(id) === name) return '';
    map.set(id, name);
    return name;
  };

  const entries: CrfsEntry[] = [];
  for (const f of files) {
    const size = f.type === 'reg' ? f.data!.length : 0;
    const typeflag = { reg: '0', hardlink: '1', symlink: '2', dir: '5' }[f.type];
    let ent: CrfsEntry = {
      name: f.name, type: f.type, mode: f.mode, uid: f.uid, gid: f.gid,
      userName: ifChanged(lastUname, f.uid, f.uname), groupName: ifChanged(lastGname, f.gid, f.gname),
      modtime: new Date(f.mtime * 1000).toISOString().replace('.000Z', 'Z'), linkName: f.linkName,
    };
    write(tarHeader({ ...f, size, typeflag }));
    if (f.type === 'reg') {
      ent.size = size;
      for (let at = 0; at < size; at += chunkSize) {
        closeGz();
        const n = Math.min(chunkSize, size - at);
        if (n === chunkSize) ent.chunkSize = chunkSize;
        ent.offset = written;
        ent.chunkOffset = at;
        write(f.data!.subarray(at, at + n));
        entries.push(ent);
        ent = { name: f.name, type: 'chunk' };
      }
      if (size === 0) entries.push(ent);
      write(pad(size));
    } else {
      entries.push(ent);
    }
  }
  closeGz();
  const tocOffset = written;
  const tocJson = crfsTocJson(entries);
  const tocTar = Buffer.concat([
    tarHeader({ name: 'stargz.index.json', size: tocJson.length, mode: 0, uid: 0, gid: 0, uname: '', gname: '', mtime: 0, typeflag: '0' }),
    tocJson, pad(tocJson.length), Buffer.alloc(1024),
  ]);
  tarParts.push(tocTar);
  const tocMember = gzipWithExtra(tocTar, Buffer.from('stargz.toc'), 9);
  return { blob: Buffer.concat([...members, tocMember, crfsFooter(tocOffset)]), tocOffset, tocJson, tar: Buffer.concat(tarParts) };
}

function pseudoRandom(length: number, seed: string): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0, block = 0; i < length; block++) i += createHash('sha256').update(`${seed}:${block}`).digest().copy(out, i);
  return out;
}

const T = 1_600_000_000;
const root = { uid: 0, gid: 0, uname: 'root', gname: 'root' };
const user = { uid: 1000, gid: 1000, uname: 'user', gname: 'users' };
const FILES: LegacyFile[] = [
  { name: 'etc/', type: 'dir', mode: 0o755, mtime: T, ...root },
  { name: 'etc/hostname', type: 'reg', data: Buffer.from('lazypull\n'), mode: 0o644, mtime: T + 1, ...root },
  { name: 'etc/motd', type: 'reg', data: Buffer.from('welcome to a legacy layer\n'.repeat(40)), mode: 0o644, mtime: T + 2, ...root },
  { name: 'bin/busybox', type: 'reg', data: pseudoRandom(3000, 'busybox'), mode: 0o755, mtime: T + 3, ...root },
  { name: 'bin/sh', type: 'symlink', linkName: 'busybox', mode: 0o777, mtime: T + 4, ...root },
  { name: 'bin/ls', type: 'hardlink', linkName: 'bin/busybox', mode: 0o755, mtime: T + 3, ...root },
  { name: 'home/user/', type: 'dir', mode: 0o700, mtime: T + 5, ...user },
  { name: 'home/user/big.bin', type: 'reg', data: pseudoRandom(3 * 64 * KiB + 123, 'big'), mode: 0o600, mtime: T + 6, ...user },
  { name: 'home/user/empty', type: 'reg', data: Buffer.alloc(0), mode: 0o644, mtime: T + 7, ...user },
];
const CHUNK = 64 * KiB;
const LEGACY = buildLegacy(FILES, CHUNK);

describe('legacy stargz blob as crfs writes it', () => {
  it('is one valid tar.gz ending in the TOC, with a 47-byte footer that is an empty gzip member', async () => {
    const { blob, tocOffset, tar } = LEGACY;
    const plain = gunzipSync(blob);
    expect(plain.equals(tar)).toBe(true);
    const reader = new TarReader([plain]);
    const names: string[] = [];
    for (let e = await reader.next(); e; e = await reader.next()) names.push(e.header.name);
    expect(names).toEqual([...FILES.map((f) => f.name), 'stargz.index.json']);

    const footer = blob.subarray(blob.length - 47);
    expect(footer.subarray(0, 12).toString('hex')).toBe('1f8b08040000000000ff1600');
    expect(footer.toString('latin1', 12, 34)).toBe(`${tocOffset.toString(16).padStart(16, '0')}STARGZ`);
    expect(footer.subarray(34).toString('hex')).toBe('010000ffff' + '00'.repeat(8));
    expect(gunzipSync(footer).length).toBe(0);
    expect(footer.equals(legacyStargzFooter(tocOffset))).toBe(true);
    // big.bin was chunked crfs-style: chunk entries with no digests at all
    const toc = JSON.parse(LEGACY.tocJson.toString()) as { entries: Record<string, unknown>[] };
    expect(toc.entries.filter((e) => e.type === 'chunk')).toHaveLength(3);
    expect(LEGACY.tocJson.toString()).not.toMatch(/digest/i);
  });

  it('is detected from the tail as a 47-byte legacy footer', () => {
    const { blob, tocOffset } = LEGACY;
    const info = detectFooter(blob.subarray(blob.length - 72), blob.length);
    expect(info).toEqual({ kind: 'stargz-legacy', footerSize: 47, toc: { offset: tocOffset, compressedSize: blob.length - 47 - tocOffset } });
  });

  it('is refused with verification on (the default), saying why and how', async () => {
    const message = /^legacy stargz layers carry no chunk digests: they can only be read with verification turned off$/;
    for (const options of [{}, { verify: true }]) {
      let error: unknown;
      await openLayer(new BufferSource(LEGACY.blob), options).catch((err: unknown) => void (error = err));
      expect(error).toBeInstanceOf(TocError);
      expect((error as Error).message).toMatch(message);
    }
  });

  it('reads every file byte for byte with verify: false', async () => {
    const { blob } = LEGACY;
    const source = new BufferSource(blob);
    const layer = await openLayer(source, { verify: false });
    expect(layer.format).toBe('stargz-legacy');
    expect(layer.footer.kind).toBe('stargz-legacy');
    expect(layer.verified).toBe(false);
    expect(layer.tocJson.equals(LEGACY.tocJson)).toBe(true);
    for (const f of FILES.filter((x) => x.type === 'reg')) {
      const entry = layer.lookup(f.name)!;
      expect(entry.size).toBe(f.data!.length);
      expect((await readFileRange(layer, source, entry, 0, entry.size)).equals(f.data!), f.name).toBe(true);
    }
    const big = layer.lookup('home/user/big.bin')!;
    expect(big.chunks.map((c) => [c.fileOffset, c.size, c.digest])).toEqual([[0, CHUNK, undefined], [CHUNK, CHUNK, undefined], [2 * CHUNK, CHUNK, undefined], [3 * CHUNK, 123, undefined]]);
    const data = FILES[7]!.data!;
    for (const [offset, length] of [[CHUNK - 7, 20], [2 * CHUNK - 1, CHUNK + 2], [3 * CHUNK + 100, 100], [5, 3 * CHUNK]]) {
      expect((await readFileRange(layer, source, big, offset!, length!)).equals(data.subarray(offset!, offset! + length!)), `${offset}+${length}`).toBe(true);
    }
  });

  it('keeps the metadata: modes, owners, times, links and implicit parents', async () => {
    const layer = await openLayer(new BufferSource(LEGACY.blob), { verify: false });
    for (const f of FILES.filter((x) => x.type !== 'hardlink')) {
      const entry = layer.lookup(f.name)!;
      expect(entry, f.name).toBeDefined();
      expect({ type: entry.type, mode: entry.mode, uid: entry.uid, gid: entry.gid, mtime: entry.mtimeSec, link: entry.linkName }, f.name)
        .toEqual({ type: f.type, mode: f.mode, uid: f.uid, gid: f.gid, mtime: f.mtime, link: f.type === 'symlink' ? f.linkName : '' });
    }
    // names are written only when they change for an id (crfs and estargz nameIfChanged); readers inherit them
    expect(LEGACY.tocJson.toString().match(/"userName"/g)).toHaveLength(2);
    for (const f of FILES) expect([layer.lookup(f.name)!.userName, layer.lookup(f.name)!.groupName], f.name).toEqual([f.uname, f.gname]);
    expect(layer.lookup('bin/ls')).toBe(layer.lookup('bin/busybox'));
    expect(layer.lookup('bin/busybox')!.nlink).toBe(2);
    expect(layer.lookup('home')).toMatchObject({ type: 'dir', mode: 0o755 });
    expect([...layer.root.children!.keys()].sort()).toEqual(['bin', 'etc', 'home']);
  });

  it('behind an eStargz footer the same TOC is refused for its missing chunk digests, naming the entry', async () => {
    const { blob, tocOffset } = LEGACY;
    const esgz = Buffer.concat([blob.subarray(0, blob.length - 47), gzipWithExtra(Buffer.alloc(0), Buffer.concat([Buffer.from([0x53, 0x47, 22, 0]), Buffer.from(`${tocOffset.toString(16).padStart(16, '0')}STARGZ`)]), 0)]);
    expect(detectFooter(esgz.subarray(esgz.length - 72), esgz.length).kind).toBe('estargz');
    let error: unknown;
    await openLayer(new BufferSource(esgz)).catch((err: unknown) => void (error = err));
    expect(error).toBeInstanceOf(TocValidationError);
    expect((error as Error).message).toMatch(/^TOC entry 1 "etc\/hostname": chunk has no chunkDigest \(required for verification\)$/);
  });
});

describe('external-TOC footer', () => {
  // 46 bytes: FEXTRA of XLEN 21 holding the SG subfield (LEN 17) "STARGZEXTERNALTOC"; the TOC lives in another image.
  const footer = gzipWithExtra(Buffer.alloc(0), Buffer.concat([Buffer.from([0x53, 0x47, 17, 0]), Buffer.from('STARGZEXTERNALTOC')]), 0);
  const blob = Buffer.concat([LEGACY.blob.subarray(0, LEGACY.tocOffset), footer]);

  it('is the 46-byte footer the reference writes', () => {
    expect(footer.length).toBe(46);
    expect(footer.readUInt16LE(10)).toBe(21);
    expect(footer.equals(externalTocFooter())).toBe(true);
    expect(gunzipSync(footer).length).toBe(0);
  });

  it('is detected as such', () => {
    expect(detectFooter(blob.subarray(blob.length - 72), blob.length)).toMatchObject({ kind: 'estargz-external-toc', footerSize: 46 });
  });

  it('is reported as an external TOC by openLayer, with or without verification', async () => {
    for (const options of [{}, { verify: false }]) {
      let error: unknown;
      await openLayer(new BufferSource(blob), options).catch((err: unknown) => void (error = err));
      expect(error).toBeInstanceOf(TocError);
      expect((error as Error).message).toMatch(/^the layer keeps its TOC in a separate image \(external TOC\)/);
    }
  });
});
