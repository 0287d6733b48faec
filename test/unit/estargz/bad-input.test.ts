import { RecordingSource } from '../../helpers/recording-source.js';
/**
 * Bad input: every malformed blob fails with its own clear error (class and message), never a crash,
 * never wrong bytes, never unbounded memory. The blobs are assembled here from the exported pieces
 * (tar headers, codecs, footers, TOC serializer) so that each one is broken in exactly one way.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { constants as zc, crc32, deflateRawSync, gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CorruptDataError, DecompressionBombError, gzipCodec, zstdCodec } from '../../../src/compression/codec.js';
import { FooterError, estargzFooter, skippableFrame, zstdChunkedFooter } from '../../../src/estargz/footer.js';
import { openLayer, TocError, type OpenedLayer, type OpenOptions } from '../../../src/estargz/open.js';
import { TocValidationError } from '../../../src/estargz/toc-index.js';
import { TOC_TAR_NAME, serializeToc, type TocEntryJson } from '../../../src/estargz/toc.js';
import { BufferSource, FileSource, OutOfRangeError } from '../../../src/io/random-access.js';
import { ChunkVerificationError } from '../../../src/layer/chunked-index.js';
import { readFileRange } from '../../../src/layer/read.js';
import { TAR_EOF, TypeFlag, paddingFor, ustarHeader } from '../../../src/tar/header.js';
import { TarReader } from '../../../src/tar/reader.js';
import { sha256 } from '../../../src/util/digest.js';

const KiB = 1 << 10;
const MiB = 1 << 20;
const REPO = new URL('../../../', import.meta.url).pathname;

// ---------------------------------------------------------------------------------------------
// Blob assembly
// ---------------------------------------------------------------------------------------------

type Format = 'estargz' | 'zstd:chunked';

interface FileSpec {
  name: string;
  data: Buffer;
  /** What is actually compressed into the blob (same length as data); the TOC digests describe `data`. */
  stored?: Buffer;
  /** Split the payload into chunks of this many bytes, each its own member. */
  chunkSize?: number;
}

interface BuildOptions {
  format?: Format;
  /** Replace the compressed bytes of payload member `index` (0 holds the first headers). */
  member?: (index: number, compressed: Buffer) => Buffer;
  /** Edit the TOC entries (offsets already resolved) before they are serialized. */
  editToc?: (entries: TocEntryJson[]) => void;
  /** Raw TOC bytes instead of the serialized entries. */
  tocJson?: Buffer;
  /** eStargz: the TOC member's compressed bytes, from the TOC tar. */
  tocMember?: (tocTar: Buffer) => Buffer;
  /** zstd:chunked: the uncompressed TOC size the footer declares. */
  declaredTocSize?: number;
  /** The footer, given the TOC offset. */
  footer?: (tocOffset: number) => Buffer;
}

interface Built {
  blob: Buffer;
  entries: TocEntryJson[];
  tocJson: Buffer;
  tocOffset: number;
  /** Compressed offset of each payload member. */
  memberOffsets: number[];
}

const LEVEL = { estargz: 6, 'zstd:chunked': 3 } as const;

/**
 * An eStargz (or stargz-style zstd:chunked) blob laid out as the reference writer does: member 0 holds
 * the first headers, each payload chunk starts a member, padding and the next headers follow it there.
 */
function build(files: FileSpec[], o: BuildOptions = {}): Built {
  const format = o.format ?? 'estargz';
  const codec = format === 'estargz' ? gzipCodec : zstdCodec;
  const segments: Buffer[][] = [[]];
  const entries: TocEntryJson[] = [];
  const payloadSegment = new Map<TocEntryJson, number>();
  for (const f of files) {
    const stored = f.stored ?? f.data;
    expect(stored.length).toBe(f.data.length);
    segments.at(-1)!.push(ustarHeader({ name: f.name, size: f.data.length, mode: 0o644, typeflag: TypeFlag.Reg }));
    let entry: TocEntryJson = { name: f.name, type: 'reg', size: f.data.length, mode: 0o644, digest: sha256(f.data) };
    const chunkSize = f.chunkSize ?? Math.max(1, f.data.length);
    if (f.data.length === 0) entries.push(entry);
    for (let at = 0; at < f.data.length; at += chunkSize) {
      const end = Math.min(f.data.length, at + chunkSize);
      if (end < f.data.length) entry.chunkSize = end - at;
      entry.chunkOffset = at;
      entry.chunkDigest = sha256(f.data.subarray(at, end));
      segments.push([stored.subarray(at, end)]);
      payloadSegment.set(entry, segments.length - 1);
      entries.push(entry);
      entry = { name: f.name, type: 'chunk' };
    }
    segments.at(-1)!.push(Buffer.alloc(paddingFor(f.data.length)));
  }
  if (format === 'zstd:chunked') segments.push([TAR_EOF]);

  const memberOffsets: number[] = [];
  const members: Buffer[] = [];
  let written = 0;
  segments.forEach((parts, i) => {
    const plain = codec.compress(Buffer.concat(parts), LEVEL[format]);
    const member = o.member ? o.member(i, plain) : plain;
    memberOffsets.push(written);
    members.push(member);
    written += member.length;
  });
  for (const [entry, segment] of payloadSegment) entry.offset = memberOffsets[segment];
  o.editToc?.(entries);
  const tocJson = o.tocJson ?? serializeToc(entries);

  let tail: Buffer[];
  let tocOffset: number;
  if (format === 'estargz') {
    const tocTar = Buffer.concat([ustarHeader({ name: TOC_TAR_NAME, size: tocJson.length, mode: 0o644, typeflag: TypeFlag.Reg }), tocJson, Buffer.alloc(paddingFor(tocJson.length)), TAR_EOF]);
    const tocMember = o.tocMember ? o.tocMember(tocTar) : gzipCodec.compress(tocTar, 6);
    tocOffset = written;
    tail = [tocMember, o.footer ? o.footer(tocOffset) : estargzFooter(tocOffset)];
  } else {
    const compressed = zstdCodec.compress(tocJson, 3);
    tocOffset = written + 8;
    const location = { offset: tocOffset, compressedSize: compressed.length, uncompressedSize: o.declaredTocSize ?? tocJson.length };
    tail = [skippableFrame(compressed), o.footer ? o.footer(tocOffset) : zstdChunkedFooter(location)];
  }
  return { blob: Buffer.concat([...members, ...tail]), entries, tocJson, tocOffset, memberOffsets };
}

/** Deterministic incompressible bytes. */
function pseudoRandom(length: number, seed: string): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0, block = 0; i < length; block++) {
    const digest = createHash('sha256').update(`${seed}:${block}`).digest();
    i += digest.copy(out, i);
  }
  return out;
}

function text(length: number, seed: string): Buffer {
  const words = ['layer', 'chunk', 'toc', 'footer', 'member', 'gzip', 'zstd', 'verify'];
  let s = '';
  for (let i = 0; s.length < length; i++) s += `${words[(i * 7 + seed.length) % words.length]} ${i}\n`;
  return Buffer.from(s.slice(0, length));
}

const FILES: FileSpec[] = [
  { name: 'a.txt', data: text(300, 'a') },
  { name: 'empty', data: Buffer.alloc(0) },
  { name: 'b.txt', data: text(5000, 'b') },
  { name: 'c.bin', data: pseudoRandom(3 * 64 * KiB + 100, 'c'), chunkSize: 64 * KiB },
];

const withStored = (name: string, mutate: (data: Buffer) => Buffer): FileSpec[] =>
  FILES.map((f) => (f.name === name ? { ...f, stored: mutate(Buffer.from(f.data)) } : f));

function flipByte(at: number): (data: Buffer) => Buffer {
  return (data) => {
    data[at] = data[at]! ^ 0x20;
    return data;
  };
}

async function open(blob: Buffer, options: OpenOptions = {}): Promise<OpenedLayer> {
  return openLayer(new BufferSource(blob), options);
}

async function readWhole(layer: OpenedLayer, blob: Buffer, name: string): Promise<Buffer> {
  const entry = layer.lookup(name);
  expect(entry?.type).toBe('reg');
  return readFileRange(layer, new BufferSource(blob), entry!, 0, entry!.size);
}

/** The rejection of `promise`, which must reject with an instance of `type` whose message matches. */
async function rejection<T extends Error>(promise: Promise<unknown>, type: new (...args: never[]) => T, message: RegExp): Promise<T> {
  let error: unknown;
  try {
    await promise;
  } catch (err) {
    error = err;
  }
  expect(error, 'expected a rejection').toBeInstanceOf(type);
  expect((error as Error).message).toMatch(message);
  return error as T;
}

/** A read failure from readFileRange: the message names the file and offset, the class says what failed. */
async function readFailure(promise: Promise<unknown>, type: new (...args: never[]) => Error, message: RegExp): Promise<Error> {
  return rejection(promise, type, message);
}


/**
 * A gzip member inflating to `mib` MiB of zeros without ever holding them: one 1 MiB deflate run ending
 * in a full flush (which resets the compressor, so every repetition is byte-identical), repeated, then
 * an empty final block and the real CRC32/ISIZE trailer. About 1 KiB per MiB.
 */
const gzipBombs = new Map<number, Buffer>();
function gzipZeroBomb(mib: number): Buffer {
  const cached = gzipBombs.get(mib);
  if (cached) return cached;
  const zeros = Buffer.alloc(MiB);
  const run = deflateRawSync(zeros, { level: 9, finishFlush: zc.Z_FULL_FLUSH });
  let crc = 0;
  for (let i = 0; i < mib; i++) crc = crc32(zeros, crc);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE((mib * MiB) >>> 0, 4);
  const header = Buffer.from([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff]);
  const bomb = Buffer.concat([header, ...Array<Buffer>(mib).fill(run), Buffer.from([0x03, 0x00]), trailer]);
  gzipBombs.set(mib, bomb);
  return bomb;
}

/** A zstd frame of `mib` MiB of zeros made of 128 KiB RLE blocks: 4 bytes per block, 32 KiB per GiB. */
function zstdZeroBomb(mib: number): Buffer {
  const blockSize = 128 * KiB;
  const blocks = (mib * MiB) / blockSize;
  const frame = Buffer.alloc(6 + blocks * 4);
  frame.writeUInt32LE(0xfd2fb528, 0);
  frame[4] = 0x00; // frame header descriptor: no content size, no checksum, no dictionary
  frame[5] = (17 - 10) << 3; // window descriptor: 128 KiB
  for (let i = 0; i < blocks; i++) {
    const header = (i === blocks - 1 ? 1 : 0) | (1 << 1) /* RLE */ | (blockSize << 3);
    frame.writeUIntLE(header, 6 + i * 4, 3);
    frame[6 + i * 4 + 3] = 0x00;
  }
  return frame;
}

function peakRssReset(): void {
  try {
    writeFileSync('/proc/self/clear_refs', '5'); // resets VmHWM to the current RSS
  } catch {
    // without it the peak below is the process's lifetime peak: still an upper bound
  }
}

function peakRss(): number {
  const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return match ? Number(match[1]) * KiB : process.memoryUsage.rss();
}

// ---------------------------------------------------------------------------------------------

describe('the blob builder (baseline for every broken variant below)', () => {
  it.each(['estargz', 'zstd:chunked'] as const)('%s: a well-formed blob opens, verifies and reads back every file', async (format) => {
    const { blob, tocJson } = build(FILES, { format });
    const layer = await open(blob, { expectedTocDigest: sha256(tocJson) });
    expect(layer.verified).toBe(true);
    for (const f of FILES) expect((await readWhole(layer, blob, f.name)).equals(f.data)).toBe(true);
    expect(layer.lookup('c.bin')!.chunks).toHaveLength(4);
  });

  it('the gzip blob is still one valid tar.gz whose last entry is the TOC', async () => {
    const { blob } = build(FILES);
    const reader = new TarReader([gunzipSync(blob)]);
    const names: string[] = [];
    for (let e = await reader.next(); e; e = await reader.next()) names.push(e.header.name);
    expect(names).toEqual([...FILES.map((f) => f.name), TOC_TAR_NAME]);
  });
});

describe('truncated blob', () => {
  const built = build(FILES);
  const { blob, tocOffset, memberOffsets } = built;
  const cChunk = memberOffsets[memberOffsets.length - 2]!; // a member in the middle of c.bin

  it.each<[string, number]>([
    ['inside the footer', blob.length - 20],
    ['inside the TOC member', tocOffset + Math.floor((blob.length - 51 - tocOffset) / 2)],
    ['inside a chunk member', cChunk + 10],
    ['right after the first member', memberOffsets[1]!],
    ['to fewer bytes than any footer', 10],
    ['to nothing', 0],
  ])('cut %s: no footer is found', async (_where, cut) => {
    await rejection(open(blob.subarray(0, cut)), FooterError, /^no eStargz, stargz or zstd:chunked footer at the end of the blob$/);
  });

  it('a TOC member cut short (footer intact) is not valid compressed data', async () => {
    const { blob: cutToc } = build(FILES, { tocMember: (tar) => gzipSync(tar).subarray(0, 40) });
    await rejection(open(cutToc), TocError, /^TOC is not valid compressed data: invalid gzip data: unexpected end of file/);
  });

  it('a TOC tar entry shorter than its header says is reported as truncated', async () => {
    const json = serializeToc([]);
    const { blob: short } = build(FILES, {
      tocMember: () => gzipSync(Buffer.concat([ustarHeader({ name: TOC_TAR_NAME, size: json.length + 4096, mode: 0o644, typeflag: TypeFlag.Reg }), json])),
    });
    await rejection(open(short), TocError, /^TOC is truncated: unexpected end of input/);
  });

  it('a chunk member cut short (TOC intact) fails that read, not the open', async () => {
    const last = memberOffsets.length - 1; // c.bin's last chunk: its range ends at the TOC
    const { blob: cut } = build(FILES, { member: (i, m) => (i === last ? m.subarray(0, Math.floor(m.length / 2)) : m) });
    const layer = await open(cut);
    expect((await readWhole(layer, cut, 'a.txt')).equals(FILES[0]!.data)).toBe(true);
    const entry = layer.lookup('c.bin')!;
    const lastChunk = entry.chunks.at(-1)!;
    await readFailure(readFileRange(layer, new BufferSource(cut), entry, lastChunk.fileOffset, 10), CorruptDataError, new RegExp(`^reading "c.bin" at ${lastChunk.fileOffset}: invalid gzip data: unexpected end of file`));
    // the chunks before the damaged one still read correctly
    expect((await readFileRange(layer, new BufferSource(cut), entry, 0, lastChunk.fileOffset)).equals(FILES[3]!.data.subarray(0, lastChunk.fileOffset))).toBe(true);
  });

  it('a blob that shrinks after it was opened fails reads past the new end with OutOfRangeError', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lazypull-bad-input-'));
    const path = join(dir, 'layer.blob');
    let source: FileSource | undefined;
    try {
      await writeFile(path, blob);
      source = await FileSource.open(path);
      const layer = await openLayer(source);
      await truncate(path, cChunk + 10);
      const entry = layer.lookup('c.bin')!;
      const chunk = entry.chunks.find((c) => c.compressedOffset === cChunk)!;
      await rejection(readFileRange(layer, source, entry, chunk.fileOffset, 1), OutOfRangeError, /is outside the blob/);
      // a file whose member lies before the cut still reads
      expect((await readFileRange(layer, source, layer.lookup('b.txt')!, 0, 5000)).equals(FILES[2]!.data)).toBe(true);
    } finally {
      await source?.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('wrong footer', () => {
  const { blob, tocOffset } = build(FILES);
  const body = blob.subarray(0, blob.length - 51);

  it('random bytes', async () => {
    await rejection(open(pseudoRandom(4096, 'random')), FooterError, /^no eStargz, stargz or zstd:chunked footer/);
  });

  it('a valid blob whose footer is replaced by random bytes', async () => {
    await rejection(open(Buffer.concat([body, pseudoRandom(51, 'footer')])), FooterError, /^no eStargz, stargz or zstd:chunked footer/);
  });

  it('a plain tar.gz (a gzip member without any FEXTRA)', async () => {
    const targz = gzipSync(Buffer.concat([ustarHeader({ name: 'x', size: 0, mode: 0o644, typeflag: TypeFlag.Reg }), TAR_EOF]));
    await rejection(open(targz), FooterError, /^no eStargz, stargz or zstd:chunked footer/);
    await rejection(open(Buffer.concat([body, gzipSync(Buffer.alloc(0))])), FooterError, /^no eStargz, stargz or zstd:chunked footer/);
  });

  it('a 51-byte gzip member whose FEXTRA subfield is not SG', async () => {
    const footer = estargzFooter(tocOffset);
    footer.write('XY', 12, 'latin1');
    expect(gunzipSync(footer).length).toBe(0); // still a valid, empty gzip member
    await rejection(open(Buffer.concat([body, footer])), FooterError, /^no eStargz, stargz or zstd:chunked footer/);
  });

  it('an SG footer whose TOC offset is not hex', async () => {
    const footer = estargzFooter(tocOffset);
    footer.write('zzzzzzzzzzzzzzzz', 16, 'latin1');
    await rejection(open(Buffer.concat([body, footer])), FooterError, /^eStargz footer has a malformed TOC offset$/);
  });

  it('a footer pointing past the data', async () => {
    await rejection(open(Buffer.concat([body, estargzFooter(blob.length + 100)])), FooterError, /points at TOC offset \d+, past the data/);
  });

  it('a footer pointing at a file member instead of the TOC', async () => {
    await rejection(open(Buffer.concat([body, estargzFooter(0)])), TocError, /^TOC member does not start with stargz\.index\.json$/);
  });

  it('a zstd:chunked footer with an unknown manifest type', async () => {
    const z = build(FILES, { format: 'zstd:chunked' });
    const footer = Buffer.from(z.blob.subarray(z.blob.length - 48));
    footer.writeBigUInt64LE(7n, 8 + 24);
    await rejection(open(Buffer.concat([z.blob.subarray(0, z.blob.length - 48), footer])), FooterError, /^zstd:chunked manifest type 7 is not supported/);
  });
});

describe('TOC that is not JSON', () => {
  it.each(['estargz', 'zstd:chunked'] as const)('%s: plain text', async (format) => {
    const { blob } = build(FILES, { format, tocJson: Buffer.from('this is not a table of contents') });
    await rejection(open(blob), TocError, /^TOC is not JSON: /);
  });

  it('JSON cut in the middle', async () => {
    const whole = serializeToc(build(FILES).entries);
    const { blob } = build(FILES, { tocJson: whole.subarray(0, Math.floor(whole.length / 2)) });
    await rejection(open(blob), TocError, /^TOC is not JSON: /);
  });

  it('JSON without an entries array, or of another version', async () => {
    await rejection(open(build(FILES, { tocJson: Buffer.from('[1,2,3]') }).blob), TocError, /^TOC JSON has no "entries" array$/);
    await rejection(open(build(FILES, { tocJson: Buffer.from('{"version":1,"entries":{}}') }).blob), TocError, /^TOC JSON has no "entries" array$/);
    await rejection(open(build(FILES, { tocJson: Buffer.from('{"version":2,"entries":[]}') }).blob), TocError, /^TOC version 2 is not supported/);
  });

  it('entries that are not objects name the entry', async () => {
    await rejection(open(build(FILES, { tocJson: Buffer.from('{"version":1,"entries":[42]}') }).blob), TocValidationError, /^TOC entry 0 \(no name\): is not an object$/);
  });

  it('a TOC member that is not gzip', async () => {
    const { blob } = build(FILES, { tocMember: () => pseudoRandom(500, 'toc') });
    await rejection(open(blob), TocError, /^TOC is not valid compressed data: invalid gzip data/);
  });
});

describe('TOC over the size limit', () => {
  it('a compressed TOC larger than maxTocSize is refused before it is read', async () => {
    const { blob, tocOffset } = build(FILES);
    const tocSize = blob.length - 51 - tocOffset;
    const source = new RecordingSource(new BufferSource(blob));
    await rejection(openLayer(source, { maxTocSize: 100, tailSize: 64 }), TocError, new RegExp(`^TOC of ${tocSize} compressed bytes exceeds the 100-byte limit$`));
    expect(source.reads).toEqual([{ offset: blob.length - 72, length: 72 }]); // only the tail
    await expect(open(blob, { maxTocSize: tocSize })).resolves.toBeDefined();
  });

  it('a small gzip TOC that inflates past the limit stops at the limit', async () => {
    const entries = build(FILES).entries;
    const padded = Buffer.from(serializeToc(entries).toString().replace('"entries"', `${' '.repeat(2 * MiB)}"entries"`));
    const { blob, tocOffset } = build(FILES, { tocJson: padded });
    expect(blob.length - tocOffset).toBeLessThan(16 * KiB); // compresses well: only the inflated size is over
    await rejection(open(blob, { maxTocSize: MiB }), TocError, /^TOC exceeds the size limit when decompressed$/);
    expect((await open(blob, { maxTocSize: 4 * MiB })).lookup('b.txt')?.size).toBe(5000);
  });

  it('a TOC member that is a 1 GiB gzip bomb is refused with the default limit and bounded memory', async () => {
    const { blob } = build(FILES, { tocMember: () => gzipZeroBomb(1024) });
    peakRssReset();
    const before = peakRss();
    await rejection(open(blob), TocError, /^TOC exceeds the size limit when decompressed$/);
    expect(peakRss() - before).toBeLessThan(200 * MiB);
  });

  it('zstd:chunked: a declared TOC size over the limit is refused without inflating', async () => {
    const { blob, tocJson } = build(FILES, { format: 'zstd:chunked' });
    const limit = tocJson.length - 1; // the compressed TOC is well under it: only the declared size is over
    await rejection(open(blob, { maxTocSize: limit }), TocError, new RegExp(`^TOC of ${tocJson.length} bytes exceeds the ${limit}-byte limit$`));
    await expect(open(blob, { maxTocSize: tocJson.length })).resolves.toBeDefined();
    const big = build(FILES, { format: 'zstd:chunked', declaredTocSize: 100 * MiB });
    await rejection(open(big.blob), TocError, new RegExp(`^TOC of ${100 * MiB} bytes exceeds the ${64 * MiB}-byte limit$`));
  });

  it('zstd:chunked: a TOC that inflates past its declared size is a bomb, one that falls short is truncated', async () => {
    const { tocJson } = build(FILES, { format: 'zstd:chunked' });
    await rejection(open(build(FILES, { format: 'zstd:chunked', declaredTocSize: 100 }).blob), TocError, /^TOC exceeds the size limit when decompressed$/);
    await rejection(open(build(FILES, { format: 'zstd:chunked', declaredTocSize: tocJson.length + 10 }).blob), TocError,
      new RegExp(`^TOC inflates to ${tocJson.length} bytes, not the ${tocJson.length + 10} the footer declares$`));
  });
});

describe.each(['estargz', 'zstd:chunked'] as const)('%s: chunk digest mismatch', (format) => {
  it('a member that inflates fine but to different bytes is refused, and only with verification on', async () => {
    const files = withStored('b.txt', flipByte(1234));
    const { blob, entries } = build(files, { format });
    const layer = await open(blob);
    const expected = entries.find((e) => e.name === 'b.txt')!.chunkDigest!;
    const actual = sha256(files[2]!.stored!);
    const err = await readFailure(readWhole(layer, blob, 'b.txt'), ChunkVerificationError,
      new RegExp(`^reading "b.txt" at 0: chunk at compressed offset \\d+ has digest ${actual}, expected ${expected}$`));
    expect(err.message).not.toContain('\n');
    // the same bytes are served only when the caller turned verification off
    const unverified = await open(blob, { verify: false });
    expect((await readWhole(unverified, blob, 'b.txt')).equals(files[2]!.stored!)).toBe(true);
    expect((await readWhole(layer, blob, 'a.txt')).equals(FILES[0]!.data)).toBe(true);
  });

  it('a corrupt chunk fails only the reads that touch it', async () => {
    const files = withStored('c.bin', flipByte(64 * KiB + 5)); // inside the second chunk
    const { blob } = build(files, { format });
    const layer = await open(blob);
    const entry = layer.lookup('c.bin')!;
    const src = new BufferSource(blob);
    expect((await readFileRange(layer, src, entry, 0, 64 * KiB)).equals(FILES[3]!.data.subarray(0, 64 * KiB))).toBe(true);
    expect((await readFileRange(layer, src, entry, 128 * KiB, 1000)).equals(FILES[3]!.data.subarray(128 * KiB, 128 * KiB + 1000))).toBe(true);
    await readFailure(readFileRange(layer, src, entry, 64 * KiB - 10, 20), ChunkVerificationError, new RegExp(`^reading "c.bin" at ${64 * KiB}: chunk at compressed offset \\d+ has digest`));
    await readFailure(readWhole(layer, blob, 'c.bin'), ChunkVerificationError, /has digest sha256:[0-9a-f]{64}, expected sha256:[0-9a-f]{64}$/);
  });

  it('a TOC edited to carry another chunk digest is refused the same way', async () => {
    const wrong = sha256(Buffer.from('something else'));
    const { blob } = build(FILES, { format, editToc: (entries) => void (entries.find((e) => e.name === 'a.txt')!.chunkDigest = wrong) });
    const layer = await open(blob);
    await readFailure(readWhole(layer, blob, 'a.txt'), ChunkVerificationError, new RegExp(`expected ${wrong}$`));
  });

  it('a TOC that does not hash to the expected digest is refused at open', async () => {
    const { blob, tocJson } = build(FILES, { format });
    const other = sha256(Buffer.concat([tocJson, Buffer.from(' ')]));
    await rejection(open(blob, { expectedTocDigest: other }), TocError, new RegExp(`^TOC digest ${sha256(tocJson)} does not match the expected ${other}$`));
    await expect(open(blob, { expectedTocDigest: sha256(tocJson) })).resolves.toBeDefined();
  });

  it('missing or malformed chunk digests are refused at open when verifying', async () => {
    const noDigest = build(FILES, { format, editToc: (entries) => {
      const b = entries.find((e) => e.name === 'b.txt')!;
      delete b.chunkDigest;
      delete b.digest;
    } });
    await rejection(open(noDigest.blob), TocValidationError, /^TOC entry 2 "b.txt": chunk has no chunkDigest \(required for verification\)$/);
    const malformed = build(FILES, { format, editToc: (entries) => void (entries.find((e) => e.name === 'b.txt')!.chunkDigest = 'sha256:xyz') });
    await rejection(open(malformed.blob), TocValidationError, /^TOC entry 2 "b.txt": chunkDigest is not a sha256 digest$/);
  });
});

describe.each(['estargz', 'zstd:chunked'] as const)('%s: offsets past the end', (format) => {
  const dataEnd = (built: Built): number => (format === 'estargz' ? built.tocOffset : built.tocOffset - 8);

  it('a file offset at or past the end of the data region names the entry', async () => {
    for (const shift of [0, 1, 10 * MiB]) {
      const probe = build(FILES, { format });
      const offset = dataEnd(probe) + shift;
      const { blob } = build(FILES, { format, editToc: (entries) => void (entries.find((e) => e.name === 'b.txt')!.offset = offset) });
      await rejection(open(blob), TocValidationError, new RegExp(`^TOC entry 2 "b.txt": offset ${offset} is outside the data region \\(which ends at ${dataEnd(probe)}\\)$`));
    }
  });

  it('a chunk entry offset past the end names the chunk entry', async () => {
    const { blob } = build(FILES, { format, editToc: (entries) => void (entries.at(-1)!.offset = 2 ** 40) });
    await rejection(open(blob), TocValidationError, new RegExp(`^TOC entry ${build(FILES).entries.length - 1} "c.bin": offset ${2 ** 40} is outside the data region`));
  });

  it('offsets that are negative or not integers', async () => {
    for (const offset of [-1, 1e300, 1.5]) {
      const { blob } = build(FILES, { format, editToc: (entries) => void (entries[0]!.offset = offset) });
      await rejection(open(blob), TocValidationError, /^TOC entry 0 "a.txt": offset must be a non-negative integer$/);
    }
  });

  it('a size or innerOffset past the end of its member fails the read as short data', async () => {
    const bigger = build(FILES, { format, editToc: (entries) => void Object.assign(entries[0]!, { size: 200_000, chunkDigest: undefined, digest: undefined }) });
    const layer = await open(bigger.blob, { verify: false });
    await readFailure(readWhole(layer, bigger.blob, 'a.txt'), CorruptDataError, /^reading "a.txt" at 0: member at \d+ inflates to \d+ bytes, short of the chunk's 200000$/);
    const inner = build(FILES, { format, editToc: (entries) => void (entries[0]!.innerOffset = 100_000) });
    const layer2 = await open(inner.blob);
    await readFailure(readWhole(layer2, inner.blob, 'a.txt'), CorruptDataError, /^reading "a.txt" at 0: member at \d+ inflates to \d+ bytes, short of the chunk's 100300$/);
  });
});

const BOMB_FILE: FileSpec = { name: 'bomb.bin', data: Buffer.from('0123456789') };

describe('decompression bomb', () => {
  it.each([
    ['estargz', () => gzipZeroBomb(1024)],
    ['zstd:chunked', () => zstdZeroBomb(1024)],
  ] as const)('%s: a 10-byte chunk whose member inflates to 1 GiB stops at its bound', async (format, bomb) => {
    const files = [FILES[0]!, BOMB_FILE, FILES[2]!];
    const { blob } = build(files, { format, member: (i, m) => (i === 2 ? bomb() : m) });
    expect(blob.length).toBeLessThan(2 * MiB);
    const layer = await open(blob);
    const entry = layer.lookup('bomb.bin')!;
    expect(entry.size).toBe(10);
    const chunk = entry.chunks[0]!;
    expect(chunk.maxInflated).toBeLessThan(MiB);

    peakRssReset();
    const before = peakRss();
    const started = Date.now();
    const err = await readFailure(readWhole(layer, blob, 'bomb.bin'), DecompressionBombError, new RegExp(`^reading "bomb.bin" at 0: compressed data inflates past the ${chunk.maxInflated}-byte bound$`));
    expect(err).toBeInstanceOf(DecompressionBombError);
    const compressed = blob.subarray(chunk.compressedOffset, chunk.compressedEnd);
    expect(() => layer.decode(chunk, compressed)).toThrow(DecompressionBombError);
    expect(peakRss() - before).toBeLessThan(200 * MiB);
    expect(Date.now() - started).toBeLessThan(5000);
    // the neighbours are unaffected
    expect((await readWhole(layer, blob, 'b.txt')).equals(FILES[2]!.data)).toBe(true);
  });

  it('the bomb builders make real streams (checked on a small instance)', () => {
    const zeros = Buffer.alloc(4 * MiB);
    expect(gunzipSync(gzipZeroBomb(4)).equals(zeros)).toBe(true); // gunzip checks the CRC32 and ISIZE too
    expect(zstdCodec.decompress(zstdZeroBomb(4), 4 * MiB).equals(zeros)).toBe(true);
    expect(gzipZeroBomb(1024).length).toBeLessThan(1100 * KiB);
    expect(zstdZeroBomb(1024).length).toBeLessThan(33 * KiB);
  });
});

// ---------------------------------------------------------------------------------------------
// The CLI: a non-zero exit and one `lazypull: ...` line on stderr, no stack trace, no wrong bytes.
// ---------------------------------------------------------------------------------------------

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: REPO, encoding: 'buffer', maxBuffer: 64 * MiB }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr: stderr.toString() });
    });
  });
}

// The processes run concurrently: each is mostly Node start-up.
describe.concurrent('CLI', () => {
  let dir = '';

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lazypull-bad-cli-'));
    const main = join(REPO, 'dist/src/cli/main.js');
    let built = 0;
    try {
      built = statSync(main).mtimeMs;
    } catch {
      // not built yet
    }
    if (built < newestMtime(join(REPO, 'src'))) {
      const result = await run('npm', ['run', '--silent', 'build']);
      expect(result.code, result.stderr).toBe(0);
    }
  }, 180_000);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function cli(blob: Buffer, ...args: string[]): Promise<{ code: number; stdout: Buffer; stderr: string }> {
    const path = join(dir, `blob-${Math.random().toString(36).slice(2)}`);
    await writeFile(path, blob);
    return run(process.execPath, [join(REPO, 'bin/lazypull.js'), args[0]!, path, ...args.slice(1)]);
  }

  function expectOneLineError(result: { code: number; stderr: string }, message: RegExp): void {
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/^lazypull: [^\n]+\n$/);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  }

  it('cat of a good blob prints the file (the baseline the failures are measured against)', async () => {
    const result = await cli(build(FILES).blob, 'cat', 'b.txt');
    expect(result.code).toBe(0);
    expect(result.stdout.equals(FILES[2]!.data)).toBe(true);
  });

  it('random bytes: no footer', async () => {
    const result = await cli(pseudoRandom(4096, 'cli'), 'cat', 'a.txt');
    expectOneLineError(result, /^lazypull: no eStargz, stargz or zstd:chunked footer at the end of the blob\n$/);
    expect(result.stdout.length).toBe(0);
  });

  it('TOC that is not JSON', async () => {
    const result = await cli(build(FILES, { tocJson: Buffer.from('not json') }).blob, 'toc');
    expectOneLineError(result, /^lazypull: TOC is not JSON: /);
    expect(result.stdout.length).toBe(0);
  });

  it('chunk digest mismatch: nothing reaches stdout', async () => {
    const result = await cli(build(withStored('b.txt', flipByte(10))).blob, 'cat', 'b.txt');
    expectOneLineError(result, /^lazypull: reading "b.txt" at 0: chunk at compressed offset \d+ has digest sha256:[0-9a-f]{64}, expected sha256:[0-9a-f]{64}\n$/);
    expect(result.stdout.length).toBe(0);
  });

  it('decompression bomb', async () => {
    const result = await cli(build([BOMB_FILE, FILES[2]!], { member: (i, m) => (i === 1 ? gzipZeroBomb(256) : m) }).blob, 'cat', 'bomb.bin');
    expectOneLineError(result, /^lazypull: reading "bomb.bin" at 0: compressed data inflates past the \d+-byte bound\n$/);
    expect(result.stdout.length).toBe(0);
  });
});
