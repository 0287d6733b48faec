import { RecordingSource } from '../../helpers/recording-source.js';
import { padding, sealHeader } from '../../../src/tar/header.js';
/**
 * zstd:chunked as containers/storage writes it (Podman, Buildah): every non-empty regular file's content
 * in its own zstd frame(s) (one per rolling-checksum chunk), tar headers in the frames between them, the
 * manifest as one zstd frame in a skippable frame, the tar-split JSON lines in another, and the 72-byte
 * footer. The generator below follows containers/storage's compressor; the tests read its blobs.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { zstdCodec } from '../../../src/compression/codec.js';
import { openLayer, TocError } from '../../../src/estargz/open.js';
import { BufferSource } from '../../../src/io/random-access.js';
import type { LayerEntry } from '../../../src/layer/layer-index.js';
import { readFileRange } from '../../../src/layer/read.js';
import { sha256, type Digest } from '../../../src/util/digest.js';

const KiB = 1 << 10;

// ---------------------------------------------------------------------------------------------
// Tar
// ---------------------------------------------------------------------------------------------

interface Mtime {
  sec: number;
  nsec: number;
  /** The writer's local zone, minutes east of UTC (Go marshals times in the zone they carry). */
  zoneMinutes?: number;
}

interface InputFile {
  name: string;
  type: 'dir' | 'reg' | 'symlink' | 'hardlink';
  data?: Buffer;
  linkName?: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: Mtime;
  /** Rolling-checksum chunk sizes (they sum to the size); one chunk when absent. */
  chunks?: number[];
}

const TYPEFLAG = { reg: '0', hardlink: '1', symlink: '2', dir: '5' } as const;

function octal(block: Buffer, value: number, at: number, length: number): void {
  block.write(value.toString(8).padStart(length - 1, '0') + '\0', at, length, 'latin1');
}

function ustar(name: string, typeflag: string, size: number, f: { mode: number; uid: number; gid: number; mtime: number; linkName?: string }): Buffer {
  const block = Buffer.alloc(512);
  block.write(name, 0, 100, 'utf8');
  octal(block, f.mode, 100, 8);
  octal(block, f.uid, 108, 8);
  octal(block, f.gid, 116, 8);
  octal(block, size, 124, 12);
  octal(block, f.mtime, 136, 12);
  block.write(typeflag, 156, 1, 'latin1');
  block.write(f.linkName ?? '', 157, 100, 'utf8');
  block.write('ustar\x0000', 257, 8, 'latin1');
  return sealHeader(block);
}

const pad = padding;

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return `${len}${body}`;
}

/** The header blocks of one entry: a PAX header first when the mtime has nanoseconds (as GNU tar and Go write). */
function rawHeader(f: InputFile): Buffer {
  const size = f.type === 'reg' ? f.data!.length : 0;
  const main = ustar(f.name, TYPEFLAG[f.type], size, { ...f, mtime: f.mtime.sec });
  if (!f.mtime.nsec) return main;
  const records = Buffer.from(paxRecord('mtime', `${f.mtime.sec}.${String(f.mtime.nsec).padStart(9, '0')}`));
  const paxName = `PaxHeaders.0/${f.name.replace(/\/$/, '').split('/').pop()}`;
  return Buffer.concat([ustar(paxName, 'x', records.length, { mode: 0o644, uid: 0, gid: 0, mtime: f.mtime.sec }), records, pad(records.length), main]);
}

// ---------------------------------------------------------------------------------------------
// The containers/storage zstd:chunked writer, test-only
// ---------------------------------------------------------------------------------------------

/** Go's time.Time JSON: RFC 3339 with nanoseconds (trailing zeros trimmed) in the time's own zone. */
function goTime(t: Mtime): string {
  const zone = t.zoneMinutes ?? 0;
  const local = new Date((t.sec + zone * 60) * 1000).toISOString().slice(0, 19);
  const fraction = t.nsec ? `.${String(t.nsec).padStart(9, '0').replace(/0+$/, '')}` : '';
  const sign = zone < 0 ? '-' : '+';
  const abs = Math.abs(zone);
  const offset = zone === 0 ? 'Z' : `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
  return `${local}${fraction}${offset}`;
}

const ZERO_TIME = '0001-01-01T00:00:00Z';
const HOLES_THRESHOLD = 1024;

/** CRC-64/ISO as Go's hash/crc64 computes it (tar-split stores it, big-endian, as each file's payload). */
const CRC64_TABLE = (() => {
  const table: bigint[] = [];
  for (let i = 0n; i < 256n; i++) {
    let crc = i;
    for (let k = 0; k < 8; k++) crc = crc & 1n ? (crc >> 1n) ^ 0xd800000000000000n : crc >> 1n;
    table.push(crc);
  }
  return table;
})();

function crc64(data: Buffer): Buffer {
  const mask = 0xffffffffffffffffn;
  let crc = mask;
  for (const b of data) crc = CRC64_TABLE[Number((crc ^ BigInt(b)) & 0xffn)]! ^ (crc >> 8n);
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(~crc & mask);
  return out;
}

function skippable(payload: Buffer): Buffer {
  const head = Buffer.from([0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]);
  head.writeUInt32LE(payload.length, 4);
  return Buffer.concat([head, payload]);
}

interface Variant {
  /** 'old': uid/gid always written, accesstime/changetime as Go's zero time (containers/storage 1.4x). 'new': omitempty, tarSplitDigest in the TOC. */
  style: 'old' | 'new';
  /** Give chunk entries their own endOffset too. */
  chunkEndOffsets: boolean;
}

interface Generated {
  blob: Buffer;
  /** The tar the blob decompresses to. */
  tar: Buffer;
  manifest: Buffer;
  compressedManifest: Buffer;
  annotations: Record<string, string>;
  footer: { manifest: [number, number, number]; tarSplit: [number, number, number] };
  /** Where each file's frames are, and each chunk's. */
  files: Map<string, { offset: number; endOffset: number; chunks: { offset: number; endOffset: number; size: number; zeros: boolean }[] }>;
}

const ANNOTATION_CHECKSUM = 'io.github.containers.zstd-chunked.manifest-checksum';
const ANNOTATION_POSITION = 'io.github.containers.zstd-chunked.manifest-position';
const ANNOTATION_TARSPLIT = 'io.github.containers.zstd-chunked.tarsplit-position';

function generate(input: InputFile[], variant: Variant): Generated {
  const out: Buffer[] = [];
  let written = 0;
  let frame: Buffer[] = [];
  const tarParts: Buffer[] = [];
  const write = (data: Buffer): void => {
    frame.push(data);
    tarParts.push(data);
  };
  /** Closes the open frame (when it holds anything) and returns the offset where the next one starts. */
  const restart = (): number => {
    const data = Buffer.concat(frame);
    frame = [];
    if (data.length > 0) {
      const compressed = zstdCodec.compress(data, 3);
      out.push(compressed);
      written += compressed.length;
    }
    return written;
  };

  const tarSplit: string[] = [];
  let segment: Buffer[] = [];
  const flushSegment = (): void => {
    const data = Buffer.concat(segment);
    segment = [];
    if (data.length) tarSplit.push(JSON.stringify({ type: 2, payload: data.toString('base64'), position: tarSplit.length }));
  };

  const entries: Record<string, unknown>[] = [];
  const files: Generated['files'] = new Map();
  let previousPadding: Buffer = Buffer.alloc(0);
  for (const f of input) {
    const header = rawHeader(f);
    write(header);
    segment.push(previousPadding, header);
    flushSegment();
    const data = f.type === 'reg' ? f.data! : Buffer.alloc(0);
    tarSplit.push(JSON.stringify({ type: 1, name: f.name, ...(data.length ? { size: data.length } : {}), payload: data.length ? crc64(data).toString('base64') : null, position: tarSplit.length }));

    const meta: Record<string, unknown> = { type: f.type, name: f.name };
    if (f.linkName) meta.linkName = f.linkName;
    if (f.mode) meta.mode = f.mode;
    if (data.length) meta.size = data.length;
    if (variant.style === 'old' || f.uid) meta.uid = f.uid;
    if (variant.style === 'old' || f.gid) meta.gid = f.gid;
    meta.modtime = goTime(f.mtime);
    if (variant.style === 'old') Object.assign(meta, { accesstime: ZERO_TIME, changetime: ZERO_TIME });
    const fileEntries = [meta];

    if (data.length > 0) {
      const sizes = f.chunks ?? [data.length];
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(data.length);
      const start = restart();
      const chunks: { offset: number; endOffset: number; size: number; zeros: boolean; at: number }[] = [];
      let at = 0;
      for (const size of sizes) {
        const bytes = data.subarray(at, at + size);
        const offset = written;
        write(bytes);
        const endOffset = restart();
        chunks.push({ offset, endOffset, size, zeros: size >= HOLES_THRESHOLD && bytes.every((b) => b === 0), at });
        at += size;
      }
      meta.digest = sha256(data);
      meta.offset = start;
      meta.endOffset = written;
      if (chunks.length > 1) {
        chunks.forEach((c, i) => {
          const e = i === 0 ? meta : { type: 'chunk', name: f.name, chunkOffset: c.at };
          if (i > 0) {
            e.offset = c.offset;
            if (variant.chunkEndOffsets) e.endOffset = c.endOffset;
          }
          Object.assign(e, { chunkSize: c.size, chunkDigest: sha256(data.subarray(c.at, c.at + c.size)) });
          if (c.zeros) e.chunkType = 'zeros';
          if (i > 0) fileEntries.push(e);
        });
      }
      files.set(f.name, { offset: start, endOffset: written, chunks });
    }
    entries.push(...fileEntries.map(goFieldOrder));
    previousPadding = pad(data.length);
    write(previousPadding);
  }
  const eof = Buffer.alloc(1024);
  write(eof);
  segment.push(previousPadding, eof);
  flushSegment();
  restart();

  const tarSplitJson = Buffer.from(tarSplit.map((l) => `${l}\n`).join(''));
  const toc: Record<string, unknown> = { version: 1, entries };
  const compressedTarSplit = zstdCodec.compress(tarSplitJson, 3);
  if (variant.style === 'new') toc.tarSplitDigest = sha256(compressedTarSplit);
  const manifest = Buffer.from(JSON.stringify(toc));
  const compressedManifest = zstdCodec.compress(manifest, 3);
  const manifestOffset = written + 8;
  const tarSplitOffset = manifestOffset + compressedManifest.length + 8;
  const footer = Buffer.alloc(72);
  Buffer.from([0x50, 0x2a, 0x4d, 0x18]).copy(footer, 0);
  footer.writeUInt32LE(64, 4);
  const fields = [manifestOffset, compressedManifest.length, manifest.length, 1, tarSplitOffset, compressedTarSplit.length, tarSplitJson.length];
  fields.forEach((v, i) => footer.writeBigUInt64LE(BigInt(v), 8 + 8 * i));
  footer.write('GNUlInUx', 64, 'latin1');
  return {
    blob: Buffer.concat([...out, skippable(compressedManifest), skippable(compressedTarSplit), footer]),
    tar: Buffer.concat(tarParts),
    manifest,
    compressedManifest,
    annotations: {
      [ANNOTATION_CHECKSUM]: sha256(compressedManifest),
      [ANNOTATION_POSITION]: `${manifestOffset}:${compressedManifest.length}:${manifest.length}:1`,
      [ANNOTATION_TARSPLIT]: `${tarSplitOffset}:${compressedTarSplit.length}:${tarSplitJson.length}`,
    },
    footer: { manifest: [manifestOffset, compressedManifest.length, manifest.length], tarSplit: [tarSplitOffset, compressedTarSplit.length, tarSplitJson.length] },
    files,
  };
}

/** containers/storage's FileMetadata field order. */
const GO_FIELDS = ['type', 'name', 'linkName', 'mode', 'size', 'uid', 'gid', 'modtime', 'accesstime', 'changetime', 'devMajor', 'devMinor', 'xattrs', 'digest', 'offset', 'endOffset', 'chunkSize', 'chunkOffset', 'chunkDigest', 'chunkType'];

function goFieldOrder(e: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of GO_FIELDS) if (e[key] !== undefined) out[key] = e[key];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------

function pseudoRandom(length: number, seed: string): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0, block = 0; i < length; block++) i += createHash('sha256').update(`${seed}:${block}`).digest().copy(out, i);
  return out;
}

const T = 1_700_000_000;
const HOLE = 256 * KiB;
const TAIL_HOLE = 100 * KiB;
const holes = Buffer.concat([pseudoRandom(5000, 'h1'), Buffer.alloc(HOLE), pseudoRandom(3000, 'h2'), Buffer.alloc(TAIL_HOLE)]);
const ROLLING = [1000, 70_000, 3, 50_000, 1, 120_000, 59_000];
const rolling = pseudoRandom(ROLLING.reduce((a, b) => a + b, 0), 'rolling');

const INPUT: InputFile[] = [
  { name: 'usr/', type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: { sec: T, nsec: 0 } },
  { name: 'usr/bin/', type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: { sec: T, nsec: 0 } },
  { name: 'usr/bin/hello', type: 'reg', data: Buffer.from('#!/bin/sh\necho hello\n'.repeat(200)), mode: 0o755, uid: 0, gid: 0, mtime: { sec: T + 1, nsec: 123_456_789 } },
  { name: 'usr/bin/suid', type: 'reg', data: pseudoRandom(700, 'suid'), mode: 0o4755, uid: 100_000, gid: 100_001, mtime: { sec: T + 2, nsec: 500_000_000 } },
  { name: 'usr/share/doc/README', type: 'reg', data: Buffer.from('read me\n'), mode: 0o644, uid: 0, gid: 0, mtime: { sec: T + 3, nsec: 5, zoneMinutes: 120 } },
  { name: 'etc/localtime', type: 'symlink', linkName: '/usr/share/zoneinfo/UTC', mode: 0o777, uid: 0, gid: 0, mtime: { sec: T + 4, nsec: 0, zoneMinutes: -330 } },
  { name: 'empty', type: 'reg', data: Buffer.alloc(0), mode: 0o600, uid: 1000, gid: 1000, mtime: { sec: T + 5, nsec: 0 } },
  { name: 'home/u/holes.img', type: 'reg', data: holes, chunks: [5000, HOLE, 3000, TAIL_HOLE], mode: 0o644, uid: 1000, gid: 1000, mtime: { sec: T + 6, nsec: 0 } },
  { name: 'home/u/sparse-start', type: 'reg', data: Buffer.concat([Buffer.alloc(2048), Buffer.from('data after a leading hole')]), chunks: [2048, 25], mode: 0o644, uid: 1000, gid: 1000, mtime: { sec: T + 6, nsec: 0 } },
  { name: 'home/u/rolling.bin', type: 'reg', data: rolling, chunks: ROLLING, mode: 0o644, uid: 1000, gid: 1000, mtime: { sec: T + 7, nsec: 1 } },
  { name: 'home/u/hello-link', type: 'hardlink', linkName: 'usr/bin/hello', mode: 0o755, uid: 0, gid: 0, mtime: { sec: T + 1, nsec: 0 } },
];

const REGULAR = INPUT.filter((f) => f.type === 'reg');


function run(cmd: string, args: string[]): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'buffer', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr: stderr.toString() });
    });
  });
}

// ---------------------------------------------------------------------------------------------

describe('the test generator', () => {
  let dir = '';
  const gen = generate(INPUT, { style: 'old', chunkEndOffsets: false });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lazypull-zstd-containers-'));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('writes a blob that zstd decompresses to a valid tar (zstd -dc | tar -t)', async () => {
    const path = join(dir, 'layer.tar.zst');
    await writeFile(path, gen.blob);
    const plain = await run('zstd', ['-dc', path]);
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout.equals(gen.tar)).toBe(true); // skippable frames (manifest, tar-split, footer) vanish
    await writeFile(join(dir, 'layer.tar'), plain.stdout);
    const list = await run('tar', ['-tf', join(dir, 'layer.tar')]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout.toString().trim().split('\n')).toEqual(INPUT.map((f) => f.name));
    const verbose = await run('tar', ['--full-time', '--utc', '-tvf', join(dir, 'layer.tar'), 'usr/bin/hello']);
    expect(verbose.stdout.toString()).toContain('2023-11-14 22:13:21.123456789');
  });

  it("puts each file's content, and nothing else, in [offset, endOffset), and each chunk in its own frames", () => {
    for (const f of REGULAR.filter((x) => x.data!.length > 0)) {
      const where = gen.files.get(f.name)!;
      const frames = gen.blob.subarray(where.offset, where.endOffset);
      expect(zstdCodec.decompress(frames, f.data!.length + 1).equals(f.data!), f.name).toBe(true);
      let at = 0;
      for (const c of where.chunks) {
        expect(zstdCodec.decompress(gen.blob.subarray(c.offset, c.endOffset), c.size + 1).equals(f.data!.subarray(at, at + c.size))).toBe(true);
        at += c.size;
      }
    }
    expect(gen.files.get('home/u/holes.img')!.chunks.map((c) => c.zeros)).toEqual([false, true, false, true]);
  });

  it('writes the manifest, tar-split and 72-byte footer where the annotations say', () => {
    const { blob, annotations, footer } = gen;
    const tail = blob.subarray(blob.length - 72);
    expect(tail.subarray(0, 8).toString('hex')).toBe('502a4d1840000000');
    expect(tail.toString('latin1', 64)).toBe('GNUlInUx');
    const [offset, length, size] = annotations[ANNOTATION_POSITION]!.split(':').map(Number) as [number, number, number, number];
    expect(footer.manifest).toEqual([offset, length, size]);
    expect(blob.subarray(offset - 8, offset - 4).toString('hex')).toBe('502a4d18');
    const compressed = blob.subarray(offset, offset + length);
    expect(sha256(compressed)).toBe(annotations[ANNOTATION_CHECKSUM]);
    const manifest = JSON.parse(zstdCodec.decompress(compressed, size).toString()) as { version: number; entries: Record<string, unknown>[] };
    expect(manifest.version).toBe(1);
    expect(manifest.entries[0]).toEqual({ type: 'dir', name: 'usr/', mode: 0o755, uid: 0, gid: 0, modtime: '2023-11-14T22:13:20Z', accesstime: ZERO_TIME, changetime: ZERO_TIME });
    expect(manifest.entries.find((e) => e.name === 'usr/share/doc/README')!.modtime).toBe('2023-11-15T00:13:23.000000005+02:00');
    const [tsOffset, tsLength, tsSize] = footer.tarSplit;
    const lines = zstdCodec.decompress(blob.subarray(tsOffset, tsOffset + tsLength), tsSize).toString().trim().split('\n').map((l) => JSON.parse(l) as { type: number; name?: string; payload: string | null });
    expect(lines.filter((l) => l.type === 1).map((l) => l.name)).toEqual(INPUT.map((f) => f.name));
    expect(Buffer.concat(lines.filter((l) => l.type === 2).map((l) => Buffer.from(l.payload!, 'base64'))).length).toBe(gen.tar.length - REGULAR.reduce((n, f) => n + f.data!.length, 0));
    expect(crc64(Buffer.from('123456789')).toString('hex')).toBe('b90956c775a41001'); // CRC-64/GO-ISO check value
  });
});

describe.each<Variant>([
  { style: 'old', chunkEndOffsets: false },
  { style: 'old', chunkEndOffsets: true },
  { style: 'new', chunkEndOffsets: false },
])('containers/storage zstd:chunked (%o)', (variant) => {
  const gen = generate(INPUT, variant);
  const checksum = gen.annotations[ANNOTATION_CHECKSUM] as Digest;
  const open = (blob = gen.blob, expectedManifestChecksum: Digest | undefined = checksum) => openLayer(new BufferSource(blob), { expectedManifestChecksum });

  it('opens as zstd:chunked with the 72-byte containers footer', async () => {
    const layer = await open();
    expect(layer.format).toBe('zstd:chunked');
    expect(layer.footer.kind).toBe('zstd:chunked-containers');
    expect(layer.footer.footerSize).toBe(72);
    const [offset, compressedSize, uncompressedSize] = gen.footer.manifest;
    expect(layer.footer.toc).toEqual({ offset, compressedSize, uncompressedSize });
    const [tsOffset, tsCompressed, tsSize] = gen.footer.tarSplit;
    expect(layer.footer.tarSplit).toEqual({ offset: tsOffset, compressedSize: tsCompressed, uncompressedSize: tsSize });
    expect(layer.tocJson.equals(gen.manifest)).toBe(true);
    expect(layer.tocDigest).toBe(sha256(gen.manifest));
    expect(layer.verified).toBe(true);
  });

  it("reads every file's bytes exactly", async () => {
    const layer = await open();
    const source = new BufferSource(gen.blob);
    for (const f of REGULAR) {
      const entry = layer.lookup(f.name)!;
      expect(entry.size, f.name).toBe(f.data!.length);
      expect((await readFileRange(layer, source, entry, 0, entry.size)).equals(f.data!), f.name).toBe(true);
    }
  });

  it('keeps the metadata: modes, large ids, nanosecond and zoned mtimes, links, implicit parents', async () => {
    const layer = await open();
    for (const f of INPUT.filter((x) => x.type !== 'hardlink')) {
      const e = layer.lookup(f.name)!;
      expect({ type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, sec: e.mtimeSec, nsec: e.mtimeNsec, link: e.linkName }, f.name)
        .toEqual({ type: f.type, mode: f.mode, uid: f.uid, gid: f.gid, sec: f.mtime.sec, nsec: f.mtime.nsec, link: f.type === 'symlink' ? f.linkName : '' });
    }
    expect(layer.lookup('home/u/hello-link')).toBe(layer.lookup('usr/bin/hello'));
    expect(layer.lookup('usr/bin/hello')!.nlink).toBe(2);
    expect(layer.lookup('usr/share')?.type).toBe('dir');
    expect(layer.lookup('home/u')?.type).toBe('dir');
  });

  it('verifies the manifest checksum annotation and rejects a wrong one', async () => {
    await expect(open()).resolves.toBeDefined();
    const wrong = sha256(Buffer.from('another manifest'));
    await expect(open(gen.blob, wrong)).rejects.toThrow(TocError);
    await expect(open(gen.blob, wrong)).rejects.toThrow(new RegExp(`^compressed TOC digest ${checksum} does not match the manifest checksum ${wrong}$`));
    // a manifest altered in the blob no longer matches the annotation
    const tampered = Buffer.from(gen.blob);
    const at = gen.footer.manifest[0] + Math.floor(gen.footer.manifest[1] / 2);
    tampered[at] = tampered[at]! ^ 0x01;
    await expect(open(tampered)).rejects.toThrow(new RegExp(`^compressed TOC digest sha256:[0-9a-f]{64} does not match the manifest checksum ${checksum}$`));
  });

  it('reads a zeros chunk as zeros without fetching anything', async () => {
    const layer = await open();
    const entry = layer.lookup('home/u/holes.img')!;
    expect(entry.chunks.map((c) => [c.fileOffset, c.size, c.encoding])).toEqual([[0, 5000, 'zstd'], [5000, HOLE, 'zeros'], [5000 + HOLE, 3000, 'zstd'], [8000 + HOLE, TAIL_HOLE, 'zeros']]);
    const source = new RecordingSource(new BufferSource(gen.blob));
    const inHole = await readFileRange(layer, source, entry, 6000, 100 * KiB);
    expect(inHole.equals(Buffer.alloc(100 * KiB))).toBe(true);
    const tail = await readFileRange(layer, source, entry, 8000 + HOLE, TAIL_HOLE);
    expect(tail.equals(Buffer.alloc(TAIL_HOLE))).toBe(true);
    expect(source.reads).toEqual([]);
    // a file that starts with a hole: the zeros chunk is the reg entry itself
    const sparse = layer.lookup('home/u/sparse-start')!;
    expect(sparse.chunks.map((c) => c.encoding)).toEqual(['zeros', 'zstd']);
    expect((await readFileRange(layer, source, sparse, 0, 2048)).equals(Buffer.alloc(2048))).toBe(true);
    expect(source.reads).toEqual([]);
    expect((await readFileRange(layer, source, sparse, 0, sparse.size)).toString('latin1', 2040)).toBe('\0'.repeat(8) + 'data after a leading hole');
    expect(source.reads).toHaveLength(1);
  });

  it('reads the data chunks around the holes, fetching only their frames', async () => {
    const layer = await open();
    const entry = layer.lookup('home/u/holes.img')!;
    const source = new RecordingSource(new BufferSource(gen.blob));
    expect((await readFileRange(layer, source, entry, 0, entry.size)).equals(holes)).toBe(true);
    expect(source.reads).toHaveLength(2);
    const where = gen.files.get('home/u/holes.img')!;
    expect(source.reads.map((r) => r.offset)).toEqual([where.chunks[0]!.offset, where.chunks[2]!.offset]);
    // reading the first data chunk alone does not pull in the 256 KiB hole after it
    expect(source.reads[0]!.length).toBeLessThan(where.chunks[1]!.endOffset - where.chunks[0]!.offset);
  });

  it('reads a file cut into rolling-checksum chunks of very different sizes', async () => {
    const layer = await open();
    const entry: LayerEntry = layer.lookup('home/u/rolling.bin')!;
    expect(entry.chunks.map((c) => c.size)).toEqual(ROLLING);
    const where = gen.files.get('home/u/rolling.bin')!;
    expect(entry.chunks.map((c) => c.compressedOffset)).toEqual(where.chunks.map((c) => c.offset));
    const source = new RecordingSource(new BufferSource(gen.blob));
    expect((await readFileRange(layer, source, entry, 0, entry.size)).equals(rolling)).toBe(true);
    expect(source.reads).toHaveLength(ROLLING.length);
    // every boundary, read across: the bytes either side come from two chunks
    let boundary = 0;
    for (const size of ROLLING.slice(0, -1)) {
      boundary += size;
      const start = Math.max(0, boundary - 2);
      expect((await readFileRange(layer, source, entry, start, 4)).equals(rolling.subarray(start, start + 4)), `at ${boundary}`).toBe(true);
    }
    // one byte inside the 3-byte chunk fetches only that chunk's frame
    source.reads.length = 0;
    expect((await readFileRange(layer, source, entry, 71_001, 1)).equals(rolling.subarray(71_001, 71_002))).toBe(true);
    expect(source.reads).toEqual([{ offset: where.chunks[2]!.offset, length: where.chunks[2]!.endOffset - where.chunks[2]!.offset }]);
  });
});
