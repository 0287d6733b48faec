/**
 * The SOCI zTOC: a flatbuffer (schema ./ztoc.fbs, code in ./generated) listing a layer's tar entries with
 * their uncompressed data offsets, and the span digests and checkpoints that give random access into the
 * unmodified layer blob. `writeZtoc` and `readZtoc` round-trip byte for byte; `readZtoc` checks the
 * structure itself before the generated readers touch it, then validates every rule a reader relies on,
 * and reports problems as ZtocError.
 */
import * as flatbuffers from 'flatbuffers';
import { isDigest, type Digest } from '../util/digest.js';
import { CheckpointError, decodeGzipZinfo, gzipSpans, tarSpans, type GzipZinfo, type Span } from './checkpoints.js';
import { FlatbufferShapeError, FlatbufferVerifier, type VerifiedTable } from './flatbuffer-verifier.js';
import { TarZinfo } from './generated/tar-zinfo.js';
import { CompressionAlgorithm, CompressionInfo, FileMetadata, TOC, Xattr, Ztoc as ZtocTable } from './generated/ztoc.js';

export const ZTOC_VERSION = '0.9';
export const TAR_ZINFO_VERSION = 2;
export const DEFAULT_BUILD_TOOL_IDENTIFIER = 'lazypull';

export class ZtocError extends Error {
  override name = 'ZtocError';
}

export type ZtocFileType = 'reg' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';
const FILE_TYPES: ReadonlySet<string> = new Set<ZtocFileType>(['reg', 'dir', 'symlink', 'hardlink', 'char', 'block', 'fifo']);

/** One PAX record of a tar entry (`SCHILY.xattr.*` keys are the file's xattrs); values are bytes. */
export interface ZtocXattr {
  readonly key: string;
  readonly value: Buffer;
}

export interface ZtocFile {
  /** The tar member name as stored (may start with './' or end with '/'). */
  readonly name: string;
  readonly type: ZtocFileType;
  /** Offset of the entry's data in the uncompressed tar stream (after all its headers). */
  readonly uncompressedOffset: number;
  readonly uncompressedSize: number;
  readonly linkName: string;
  /** The tar mode field as stored. */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly userName: string;
  readonly groupName: string;
  /** RFC 3339 with nanoseconds. */
  readonly modTime: string;
  readonly devMajor: number;
  readonly devMinor: number;
  readonly xattrs: readonly ZtocXattr[];
}

export type ZtocAlgorithm = 'gzip' | 'uncompressed';

export interface Ztoc {
  readonly version: string;
  readonly buildToolIdentifier: string;
  readonly compressedArchiveSize: number;
  readonly uncompressedArchiveSize: number;
  readonly files: readonly ZtocFile[];
  readonly algorithm: ZtocAlgorithm;
  readonly maxSpanId: number;
  readonly spanDigests: readonly Digest[];
  /** The gzip checkpoint blob, or the TarZinfo flatbuffer of an uncompressed layer. */
  readonly checkpoints: Buffer;
}

/** A validated zTOC with its checkpoints decoded and its spans laid out. */
export interface ParsedZtoc {
  readonly ztoc: Ztoc;
  readonly spans: readonly Span[];
  /** Present for gzip layers. */
  readonly gzip?: GzipZinfo;
}

// ---------------------------------------------------------------------------------------------------
// Writing

export function writeZtoc(ztoc: Ztoc): Buffer {
  const b = new flatbuffers.Builder(1024 + ztoc.checkpoints.length + ztoc.files.length * 160);
  const metadata = TOC.createMetadataVector(b, ztoc.files.map((f) => writeFile(b, f)));
  const toc = TOC.createTOC(b, metadata);
  const digests = CompressionInfo.createSpanDigestsVector(b, ztoc.spanDigests.map((d) => b.createString(d)));
  // createByteVector copies in one go; the generated createCheckpointsVector adds byte by byte.
  const checkpoints = b.createByteVector(ztoc.checkpoints);
  const algorithm = ztoc.algorithm === 'gzip' ? CompressionAlgorithm.Gzip : CompressionAlgorithm.Uncompressed;
  const info = CompressionInfo.createCompressionInfo(b, algorithm, ztoc.maxSpanId, digests, checkpoints);
  const version = b.createString(ztoc.version);
  const tool = b.createString(ztoc.buildToolIdentifier);
  ZtocTable.startZtoc(b);
  ZtocTable.addVersion(b, version);
  ZtocTable.addBuildToolIdentifier(b, tool);
  ZtocTable.addCompressedArchiveSize(b, BigInt(ztoc.compressedArchiveSize));
  ZtocTable.addUncompressedArchiveSize(b, BigInt(ztoc.uncompressedArchiveSize));
  ZtocTable.addToc(b, toc);
  ZtocTable.addCompressionInfo(b, info);
  ZtocTable.finishZtocBuffer(b, ZtocTable.endZtoc(b));
  return Buffer.from(b.asUint8Array());
}

function writeFile(b: flatbuffers.Builder, f: ZtocFile): flatbuffers.Offset {
  const xattrs = f.xattrs.length ? FileMetadata.createXattrsVector(b, f.xattrs.map((x) => Xattr.createXattr(b, b.createString(x.key), b.createString(x.value)))) : 0;
  return FileMetadata.createFileMetadata(
    b,
    b.createString(f.name),
    b.createString(f.type),
    BigInt(f.uncompressedOffset),
    BigInt(f.uncompressedSize),
    b.createString(f.linkName),
    BigInt(f.mode),
    f.uid,
    f.gid,
    b.createString(f.userName),
    b.createString(f.groupName),
    b.createString(f.modTime),
    BigInt(f.devMajor),
    BigInt(f.devMinor),
    xattrs,
  );
}

/** The checkpoints field of an uncompressed layer's zTOC. */
export function writeTarZinfo(spanSize: number, size: number): Buffer {
  const b = new flatbuffers.Builder(64);
  TarZinfo.finishTarZinfoBuffer(b, TarZinfo.createTarZinfo(b, TAR_ZINFO_VERSION, BigInt(spanSize), BigInt(size)));
  return Buffer.from(b.asUint8Array());
}

// ---------------------------------------------------------------------------------------------------
// Reading

export function readZtoc(bytes: Uint8Array): ParsedZtoc {
  try {
    verifyZtocShape(bytes);
    const ztoc = decodeZtoc(bytes);
    return validate(ztoc);
  } catch (err) {
    if (err instanceof ZtocError) throw err;
    if (err instanceof FlatbufferShapeError || err instanceof CheckpointError) throw new ZtocError(`invalid zTOC: ${err.message}`);
    // The generated readers throw RangeError and friends on shapes the verifier did not foresee.
    throw new ZtocError(`invalid zTOC: ${(err as Error).message}`);
  }
}

/** Field ids follow ztoc.fbs. */
function verifyZtocShape(bytes: Uint8Array): void {
  const v = new FlatbufferVerifier(bytes);
  const root = v.root('Ztoc');
  root.string(0, 'version');
  root.string(1, 'build_tool_identifier');
  root.scalar(2, 8);
  root.scalar(3, 8);
  const toc = root.table(4, 'toc');
  for (const file of v.tables(toc?.vector(0, 4, 'metadata'), 'metadata')) verifyFileShape(v, file);
  const info = root.table(5, 'compression_info');
  if (info) {
    info.scalar(0, 1);
    info.scalar(1, 4);
    v.strings(info.vector(2, 4, 'span_digests'), 'span_digests');
    info.vector(3, 1, 'checkpoints');
  }
}

function verifyFileShape(v: FlatbufferVerifier, file: VerifiedTable): void {
  const strings: [number, string][] = [[0, 'name'], [1, 'type'], [4, 'linkname'], [8, 'uname'], [9, 'gname'], [10, 'mod_time']];
  for (const [id, name] of strings) file.string(id, name);
  for (const id of [2, 3, 5, 11, 12]) file.scalar(id, 8);
  file.scalar(6, 4);
  file.scalar(7, 4);
  for (const x of v.tables(file.vector(13, 4, 'xattrs'), `${file.what}.xattrs`)) {
    x.string(0, 'key');
    x.string(1, 'value');
  }
}

const decoder = new TextDecoder();
const text = (value: string | Uint8Array | null): string => (value === null ? '' : typeof value === 'string' ? value : decoder.decode(value));
const bytesOf = (value: string | Uint8Array | null): Buffer => (value === null ? Buffer.alloc(0) : typeof value === 'string' ? Buffer.from(value) : Buffer.from(value));

function safe(value: bigint | number, what: string): number {
  if (value < 0 || value > Number.MAX_SAFE_INTEGER) throw new ZtocError(`invalid zTOC: ${what} is ${value}, outside [0, 2^53)`);
  return Number(value);
}

function decodeZtoc(bytes: Uint8Array): Ztoc {
  const bb = new flatbuffers.ByteBuffer(bytes);
  const root = ZtocTable.getRootAsZtoc(bb);
  const toc = root.toc();
  const info = root.compressionInfo();
  if (!toc) throw new ZtocError('invalid zTOC: no toc');
  if (!info) throw new ZtocError('invalid zTOC: no compression_info');
  const files: ZtocFile[] = [];
  for (let i = 0; i < toc.metadataLength(); i++) files.push(decodeFile(toc.metadata(i)!, i));
  const spanDigests: string[] = [];
  for (let i = 0; i < info.spanDigestsLength(); i++) spanDigests.push(text(info.spanDigests(i, flatbuffers.Encoding.UTF8_BYTES)));
  const algorithm = info.compressionAlgorithm();
  if (algorithm !== CompressionAlgorithm.Gzip && algorithm !== CompressionAlgorithm.Uncompressed) {
    throw new ZtocError(`invalid zTOC: unknown compression algorithm ${algorithm} (1 gzip and 2 uncompressed are supported)`);
  }
  spanDigests.forEach((d, i) => {
    if (!isDigest(d)) throw new ZtocError(`invalid zTOC: span digest ${i} ${JSON.stringify(d.slice(0, 80))} is not sha256:<64 hex>`);
  });
  return {
    version: text(root.version(flatbuffers.Encoding.UTF8_BYTES)),
    buildToolIdentifier: text(root.buildToolIdentifier(flatbuffers.Encoding.UTF8_BYTES)),
    compressedArchiveSize: safe(root.compressedArchiveSize(), 'compressed_archive_size'),
    uncompressedArchiveSize: safe(root.uncompressedArchiveSize(), 'uncompressed_archive_size'),
    files,
    algorithm: algorithm === CompressionAlgorithm.Gzip ? 'gzip' : 'uncompressed',
    maxSpanId: info.maxSpanId(),
    spanDigests: spanDigests as Digest[],
    checkpoints: Buffer.from(info.checkpointsArray() ?? new Uint8Array(0)),
  };
}

function decodeFile(m: FileMetadata, i: number): ZtocFile {
  const name = text(m.name(flatbuffers.Encoding.UTF8_BYTES));
  const type = text(m.type(flatbuffers.Encoding.UTF8_BYTES));
  const where = `file ${i} ${JSON.stringify(name)}`;
  if (!FILE_TYPES.has(type)) throw new ZtocError(`invalid zTOC: ${where} has unknown type ${JSON.stringify(type)}`);
  const xattrs: ZtocXattr[] = [];
  for (let x = 0; x < m.xattrsLength(); x++) {
    const record = m.xattrs(x)!;
    xattrs.push({ key: text(record.key(flatbuffers.Encoding.UTF8_BYTES)), value: bytesOf(record.value(flatbuffers.Encoding.UTF8_BYTES)) });
  }
  return {
    name,
    type: type as ZtocFileType,
    uncompressedOffset: safe(m.uncompressedOffset(), `${where} uncompressed_offset`),
    uncompressedSize: safe(m.uncompressedSize(), `${where} uncompressed_size`),
    linkName: text(m.linkname(flatbuffers.Encoding.UTF8_BYTES)),
    mode: safe(m.mode(), `${where} mode`),
    uid: m.uid(),
    gid: m.gid(),
    userName: text(m.uname(flatbuffers.Encoding.UTF8_BYTES)),
    groupName: text(m.gname(flatbuffers.Encoding.UTF8_BYTES)),
    modTime: text(m.modTime(flatbuffers.Encoding.UTF8_BYTES)),
    devMajor: safe(m.devmajor(), `${where} devmajor`),
    devMinor: safe(m.devminor(), `${where} devminor`),
    xattrs,
  };
}

function validate(ztoc: Ztoc): ParsedZtoc {
  if (ztoc.version !== ZTOC_VERSION) throw new ZtocError(`unsupported zTOC version ${JSON.stringify(ztoc.version)} (expected ${ZTOC_VERSION})`);
  checkFileOffsets(ztoc);
  const spanCount = ztoc.maxSpanId + 1;
  if (ztoc.maxSpanId < 0) throw new ZtocError(`invalid zTOC: max_span_id ${ztoc.maxSpanId} is negative`);
  if (ztoc.spanDigests.length !== spanCount) throw new ZtocError(`invalid zTOC: ${ztoc.spanDigests.length} span digests for max_span_id ${ztoc.maxSpanId}`);
  if (ztoc.algorithm === 'gzip') {
    const gzip = decodeGzipZinfo(ztoc.checkpoints);
    if (gzip.checkpoints.length !== spanCount) throw new ZtocError(`invalid zTOC: ${gzip.checkpoints.length} checkpoints for max_span_id ${ztoc.maxSpanId}`);
    return { ztoc, gzip, spans: gzipSpans(gzip.checkpoints, ztoc.compressedArchiveSize, ztoc.uncompressedArchiveSize) };
  }
  const { spanSize, size } = readTarZinfo(ztoc.checkpoints);
  if (size !== ztoc.uncompressedArchiveSize) throw new ZtocError(`invalid zTOC: TarZinfo size ${size} differs from uncompressed_archive_size ${ztoc.uncompressedArchiveSize}`);
  if (ztoc.compressedArchiveSize !== size) throw new ZtocError(`invalid zTOC: an uncompressed layer's compressed size ${ztoc.compressedArchiveSize} differs from its size ${size}`);
  const spans = tarSpans(spanSize, size);
  if (spans.length !== spanCount) throw new ZtocError(`invalid zTOC: ${spans.length} spans of ${spanSize} bytes for max_span_id ${ztoc.maxSpanId}`);
  return { ztoc, spans };
}

/** Entries come in tar order: each one's data starts after the previous one's and ends inside the tar. */
function checkFileOffsets(ztoc: Ztoc): void {
  let previousEnd = 0;
  ztoc.files.forEach((f, i) => {
    const end = f.uncompressedOffset + f.uncompressedSize;
    if (f.uncompressedOffset < previousEnd) throw new ZtocError(`invalid zTOC: file ${i} ${JSON.stringify(f.name)} starts at ${f.uncompressedOffset}, before the end of the previous entry (${previousEnd})`);
    if (end > ztoc.uncompressedArchiveSize) throw new ZtocError(`invalid zTOC: file ${i} ${JSON.stringify(f.name)} ends at ${end}, past the ${ztoc.uncompressedArchiveSize}-byte tar`);
    previousEnd = end;
  });
}

export function readTarZinfo(bytes: Uint8Array): { spanSize: number; size: number } {
  try {
    const table = new FlatbufferVerifier(bytes).root('TarZinfo');
    table.scalar(0, 4);
    table.scalar(1, 8);
    table.scalar(2, 8);
  } catch (err) {
    if (err instanceof FlatbufferShapeError) throw new ZtocError(`invalid zTOC: uncompressed layer checkpoints: ${err.message}`);
    throw err;
  }
  const zinfo = TarZinfo.getRootAsTarZinfo(new flatbuffers.ByteBuffer(bytes));
  if (zinfo.version() !== TAR_ZINFO_VERSION) throw new ZtocError(`invalid zTOC: TarZinfo version ${zinfo.version()} (expected ${TAR_ZINFO_VERSION})`);
  const spanSize = safe(zinfo.spanSize(), 'TarZinfo span_size');
  if (spanSize === 0) throw new ZtocError('invalid zTOC: TarZinfo span_size is 0');
  return { spanSize, size: safe(zinfo.size(), 'TarZinfo size') };
}
