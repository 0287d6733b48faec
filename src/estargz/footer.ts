/**
 * Footers: the fixed-size tails that locate a layer's TOC. A reader fetches the tail once and tries
 * every kind; the first that matches wins. Sizes and bytes follow the reference writers exactly.
 */

export type FooterKind = 'estargz' | 'stargz-legacy' | 'estargz-external-toc' | 'zstd:chunked' | 'zstd:chunked-containers';

export interface TocLocation {
  readonly offset: number;
  readonly compressedSize: number;
  /** Known for zstd footers; gzip TOCs learn it from the tar header inside. */
  readonly uncompressedSize?: number;
}

export interface FooterInfo {
  readonly kind: FooterKind;
  readonly footerSize: number;
  readonly toc: TocLocation;
  /** containers/storage zstd:chunked only. */
  readonly tarSplit?: TocLocation;
}

export const ESTARGZ_FOOTER_SIZE = 51;
export const LEGACY_FOOTER_SIZE = 47;
export const EXTERNAL_TOC_FOOTER_SIZE = 46;
export const ZSTD_FOOTER_SIZE = 48;
export const ZSTD_CONTAINERS_FOOTER_SIZE = 72;
export const MAX_FOOTER_SIZE = ZSTD_CONTAINERS_FOOTER_SIZE;

const GZIP_FOOTER_TRAILER = Buffer.from([0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
export const SKIPPABLE_FRAME_MAGIC = Buffer.from([0x50, 0x2a, 0x4d, 0x18]);
/** stargz-snapshotter's zstd:chunked ends with "GnUlInUx"; containers/storage's with "GNUlInUx". */
const STARGZ_ZSTD_MAGIC = Buffer.from('GnUlInUx', 'latin1');
const CONTAINERS_ZSTD_MAGIC = Buffer.from('GNUlInUx', 'latin1');
const MANIFEST_TYPE_CRFS = 1;

export class FooterError extends Error {
  override name = 'FooterError';
}

/** The gzip member that carries `extra` in its FEXTRA field and no data: how eStargz marks its tail. */
function gzipFooter(extra: Buffer): Buffer {
  const header = Buffer.from([0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0x00, 0xff, 0, 0]);
  header.writeUInt16LE(extra.length, 10);
  return Buffer.concat([header, extra, GZIP_FOOTER_TRAILER]);
}

function sgSubfield(payload: string): Buffer {
  const body = Buffer.from(payload, 'latin1');
  const head = Buffer.from([0x53, 0x47, 0, 0]); // 'S' 'G' LEN
  head.writeUInt16LE(body.length, 2);
  return Buffer.concat([head, body]);
}

function hexOffset(offset: number): string {
  return offset.toString(16).padStart(16, '0');
}

export function estargzFooter(tocOffset: number): Buffer {
  return gzipFooter(sgSubfield(`${hexOffset(tocOffset)}STARGZ`));
}

export function legacyStargzFooter(tocOffset: number): Buffer {
  return gzipFooter(Buffer.from(`${hexOffset(tocOffset)}STARGZ`, 'latin1'));
}

export function externalTocFooter(): Buffer {
  return gzipFooter(sgSubfield('STARGZEXTERNALTOC'));
}

function putU64(buf: Buffer, value: number, at: number): void {
  buf.writeBigUInt64LE(BigInt(value), at);
}

function skippableFrame(payload: Buffer): Buffer {
  const head = Buffer.alloc(8);
  SKIPPABLE_FRAME_MAGIC.copy(head);
  head.writeUInt32LE(payload.length, 4);
  return Buffer.concat([head, payload]);
}

export function zstdChunkedFooter(toc: Required<TocLocation>): Buffer {
  const payload = Buffer.alloc(40);
  putU64(payload, toc.offset, 0);
  putU64(payload, toc.compressedSize, 8);
  putU64(payload, toc.uncompressedSize, 16);
  putU64(payload, MANIFEST_TYPE_CRFS, 24);
  STARGZ_ZSTD_MAGIC.copy(payload, 32);
  return skippableFrame(payload);
}

export function zstdChunkedContainersFooter(toc: Required<TocLocation>, tarSplit: Required<TocLocation>): Buffer {
  const payload = Buffer.alloc(64);
  putU64(payload, toc.offset, 0);
  putU64(payload, toc.compressedSize, 8);
  putU64(payload, toc.uncompressedSize, 16);
  putU64(payload, MANIFEST_TYPE_CRFS, 24);
  putU64(payload, tarSplit.offset, 32);
  putU64(payload, tarSplit.compressedSize, 40);
  putU64(payload, tarSplit.uncompressedSize, 48);
  CONTAINERS_ZSTD_MAGIC.copy(payload, 56);
  return skippableFrame(payload);
}

export { skippableFrame };

/** Parses the gzip FEXTRA of a footer-sized member; undefined when the bytes are not such a member. */
function gzipFooterExtra(footer: Buffer): Buffer | undefined {
  if (footer.length < 12 + 13) return undefined;
  if (footer[0] !== 0x1f || footer[1] !== 0x8b || footer[2] !== 0x08 || !(footer[3]! & 0x04)) return undefined;
  const xlen = footer.readUInt16LE(10);
  if (12 + xlen + GZIP_FOOTER_TRAILER.length !== footer.length) return undefined;
  if (!footer.subarray(12 + xlen).equals(GZIP_FOOTER_TRAILER)) return undefined;
  return footer.subarray(12, 12 + xlen);
}

function parseHexOffset(text: string): number | undefined {
  if (!/^[0-9a-f]{16}$/.test(text)) return undefined;
  const value = parseInt(text, 16);
  return Number.isSafeInteger(value) ? value : undefined;
}

function readU64(buf: Buffer, at: number, field: string): number {
  const value = buf.readBigUInt64LE(at);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new FooterError(`zstd:chunked footer field ${field} is out of range`);
  return Number(value);
}

function tryZstd(tail: Buffer, size: number, payloadSize: number, magic: Buffer): Buffer | undefined {
  if (tail.length < size) return undefined;
  const footer = tail.subarray(tail.length - size);
  if (!footer.subarray(0, 4).equals(SKIPPABLE_FRAME_MAGIC) || footer.readUInt32LE(4) !== payloadSize) return undefined;
  if (!footer.subarray(size - 8).equals(magic)) return undefined;
  return footer.subarray(8);
}

function gzipTocLocation(offset: number, blobSize: number, footerSize: number, kind: FooterKind): TocLocation {
  const compressedSize = blobSize - footerSize - offset;
  if (compressedSize <= 0) throw new FooterError(`${kind} footer points at TOC offset ${offset}, past the data (blob size ${blobSize})`);
  return { offset, compressedSize };
}

/**
 * Identifies the footer at the end of `tail` (the last bytes of a blob of `blobSize` bytes).
 * Throws FooterError when nothing matches: the layer is not lazily readable.
 */
export function detectFooter(tail: Buffer, blobSize: number): FooterInfo {
  const containers = tryZstd(tail, ZSTD_CONTAINERS_FOOTER_SIZE, 64, CONTAINERS_ZSTD_MAGIC);
  if (containers) {
    const toc = { offset: readU64(containers, 0, 'manifest offset'), compressedSize: readU64(containers, 8, 'manifest length'), uncompressedSize: readU64(containers, 16, 'manifest size') };
    const type = readU64(containers, 24, 'manifest type');
    if (type !== MANIFEST_TYPE_CRFS) throw new FooterError(`zstd:chunked manifest type ${type} is not supported (only 1)`);
    const tarSplit = { offset: readU64(containers, 32, 'tar-split offset'), compressedSize: readU64(containers, 40, 'tar-split length'), uncompressedSize: readU64(containers, 48, 'tar-split size') };
    checkWithin(toc, blobSize - ZSTD_CONTAINERS_FOOTER_SIZE, 'manifest');
    return { kind: 'zstd:chunked-containers', footerSize: ZSTD_CONTAINERS_FOOTER_SIZE, toc, tarSplit };
  }
  const zstd = tryZstd(tail, ZSTD_FOOTER_SIZE, 40, STARGZ_ZSTD_MAGIC);
  if (zstd) {
    const toc = { offset: readU64(zstd, 0, 'TOC offset'), compressedSize: readU64(zstd, 8, 'TOC length'), uncompressedSize: readU64(zstd, 16, 'TOC size') };
    const type = readU64(zstd, 24, 'manifest type');
    if (type !== MANIFEST_TYPE_CRFS) throw new FooterError(`zstd:chunked manifest type ${type} is not supported (only 1)`);
    checkWithin(toc, blobSize - ZSTD_FOOTER_SIZE, 'TOC');
    return { kind: 'zstd:chunked', footerSize: ZSTD_FOOTER_SIZE, toc };
  }
  const estargz = tail.length >= ESTARGZ_FOOTER_SIZE ? gzipFooterExtra(tail.subarray(tail.length - ESTARGZ_FOOTER_SIZE)) : undefined;
  if (estargz && estargz.length === 26 && estargz.toString('latin1', 0, 2) === 'SG' && estargz.readUInt16LE(2) === 22 && estargz.toString('latin1', 20) === 'STARGZ') {
    const offset = parseHexOffset(estargz.toString('latin1', 4, 20));
    if (offset === undefined) throw new FooterError('eStargz footer has a malformed TOC offset');
    return { kind: 'estargz', footerSize: ESTARGZ_FOOTER_SIZE, toc: gzipTocLocation(offset, blobSize, ESTARGZ_FOOTER_SIZE, 'estargz') };
  }
  const legacy = tail.length >= LEGACY_FOOTER_SIZE ? gzipFooterExtra(tail.subarray(tail.length - LEGACY_FOOTER_SIZE)) : undefined;
  if (legacy && legacy.length === 22 && legacy.toString('latin1', 16) === 'STARGZ') {
    const offset = parseHexOffset(legacy.toString('latin1', 0, 16));
    if (offset === undefined) throw new FooterError('legacy stargz footer has a malformed TOC offset');
    return { kind: 'stargz-legacy', footerSize: LEGACY_FOOTER_SIZE, toc: gzipTocLocation(offset, blobSize, LEGACY_FOOTER_SIZE, 'stargz-legacy') };
  }
  const external = tail.length >= EXTERNAL_TOC_FOOTER_SIZE ? gzipFooterExtra(tail.subarray(tail.length - EXTERNAL_TOC_FOOTER_SIZE)) : undefined;
  if (external && external.length === 21 && external.toString('latin1') === 'SG\x11\x00STARGZEXTERNALTOC') {
    return { kind: 'estargz-external-toc', footerSize: EXTERNAL_TOC_FOOTER_SIZE, toc: { offset: 0, compressedSize: 0 } };
  }
  throw new FooterError('no eStargz, stargz or zstd:chunked footer at the end of the blob');
}

function checkWithin(toc: TocLocation, dataEnd: number, what: string): void {
  if (toc.compressedSize <= 0 || toc.offset + toc.compressedSize > dataEnd) {
    throw new FooterError(`zstd:chunked footer puts the ${what} at ${toc.offset}+${toc.compressedSize}, outside the blob's ${dataEnd} data bytes`);
  }
}
