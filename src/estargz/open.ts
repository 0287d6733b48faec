import { isAscii } from 'node:buffer';
import { gzipCodec, zstdCodec } from '../compression/codec.js';
import type { RandomAccessSource } from '../io/random-access.js';
import { ChunkedLayerIndex } from '../layer/chunked-index.js';
import type { LayerFormat, LayerIndex } from '../layer/layer-index.js';
import { TarReader } from '../tar/reader.js';
import { sha256, type Digest } from '../util/digest.js';
import { detectFooter, MAX_FOOTER_SIZE, type FooterInfo } from './footer.js';
import { buildTocTreeYielding, DEFAULT_TOC_LIMITS, type TocLimits } from './toc-index.js';
import { TOC_TAR_NAME } from './toc.js';

export interface OpenOptions {
  /** The layer's `containerd.io/snapshot/stargz/toc.digest` annotation: the TOC must hash to it. */
  expectedTocDigest?: Digest;
  /** containers/storage zstd:chunked: `io.github.containers.zstd-chunked.manifest-checksum` (of the compressed TOC). */
  expectedManifestChecksum?: Digest;
  /** Verify chunk digests (default true). Legacy stargz has none and opens only with this off. */
  verify?: boolean;
  /** Largest TOC accepted, compressed or not (default 64 MiB). */
  maxTocSize?: number;
  /** Bytes fetched from the end of the blob in the first read; a TOC inside them needs no second read. */
  tailSize?: number;
  limits?: Partial<TocLimits>;
  signal?: AbortSignal;
}

export interface OpenedLayer extends LayerIndex {
  readonly tocJson: Buffer;
  readonly footer: FooterInfo;
}

export const DEFAULT_MAX_TOC_SIZE = 64 << 20;
export const DEFAULT_TAIL_SIZE = 64 << 10;

export class TocError extends Error {
  override name = 'TocError';
}

const FORMAT_OF: Record<FooterInfo['kind'], LayerFormat | undefined> = {
  estargz: 'estargz',
  'stargz-legacy': 'stargz-legacy',
  'zstd:chunked': 'zstd:chunked',
  'zstd:chunked-containers': 'zstd:chunked',
  'estargz-external-toc': undefined,
};

/**
 * Opens an eStargz, legacy stargz or zstd:chunked blob: one tail read finds the footer (and usually the
 * TOC), the TOC is checked against its expected digest, validated, and turned into a LayerIndex.
 */
export async function openLayer(source: RandomAccessSource, options: OpenOptions = {}): Promise<OpenedLayer> {
  const maxTocSize = options.maxTocSize ?? DEFAULT_MAX_TOC_SIZE;
  const verify = options.verify ?? true;
  const tailLength = Math.min(source.size, Math.max(MAX_FOOTER_SIZE, options.tailSize ?? DEFAULT_TAIL_SIZE));
  const tailStart = source.size - tailLength;
  const tail = await source.readAt(tailStart, tailLength, options.signal);
  const footer = detectFooter(tail, source.size);
  const format = FORMAT_OF[footer.kind];
  if (!format) throw new TocError('the layer keeps its TOC in a separate image (external TOC), which lazypull does not read yet');
  if (format === 'stargz-legacy' && verify) throw new TocError('legacy stargz layers carry no chunk digests: they can only be read with verification turned off');
  if (footer.toc.compressedSize > maxTocSize) throw new TocError(`TOC of ${footer.toc.compressedSize} compressed bytes exceeds the ${maxTocSize}-byte limit`);

  const { offset, compressedSize } = footer.toc;
  const compressedToc = offset >= tailStart
    ? tail.subarray(offset - tailStart, offset - tailStart + compressedSize)
    : await source.readAt(offset, compressedSize, options.signal);
  if (options.expectedManifestChecksum && sha256(compressedToc) !== options.expectedManifestChecksum) {
    throw new TocError(`compressed TOC digest ${sha256(compressedToc)} does not match the manifest checksum ${options.expectedManifestChecksum}`);
  }
  const tocJson = footer.kind.startsWith('zstd') ? inflateZstdToc(compressedToc, footer, maxTocSize) : await inflateGzipToc(compressedToc, maxTocSize);
  const tocDigest = sha256(tocJson);
  if (options.expectedTocDigest && tocDigest !== options.expectedTocDigest) {
    throw new TocError(`TOC digest ${tocDigest} does not match the expected ${options.expectedTocDigest}`);
  }
  // Inflating and parsing a big TOC take a few ms each: other work gets a turn between them.
  await nextTurn();
  const entries = parseTocJson(tocJson);
  const tree = await buildTocTreeYielding(entries, {
    format,
    dataEnd: dataRegionEnd(footer),
    encoding: footer.kind.startsWith('zstd') ? 'zstd' : 'gzip',
    requireDigests: verify,
    limits: { ...DEFAULT_TOC_LIMITS, ...options.limits },
  });
  const index = new ChunkedLayerIndex({ format, tocDigest, ...tree, verified: verify });
  return Object.assign(index, { tocJson, footer });
}

function dataRegionEnd(footer: FooterInfo): number {
  if (footer.kind === 'zstd:chunked') return footer.toc.offset - 8; // the TOC's skippable frame header
  if (footer.kind === 'zstd:chunked-containers') return Math.min(footer.toc.offset, footer.tarSplit!.offset) - 8;
  return footer.toc.offset;
}

function inflateZstdToc(compressed: Buffer, footer: FooterInfo, maxTocSize: number): Buffer {
  const declared = footer.toc.uncompressedSize ?? 0;
  if (declared > maxTocSize) throw new TocError(`TOC of ${declared} bytes exceeds the ${maxTocSize}-byte limit`);
  const json = decompressToc(() => zstdCodec.decompress(compressed, declared));
  if (json.length !== declared) throw new TocError(`TOC inflates to ${json.length} bytes, not the ${declared} the footer declares`);
  return json;
}

async function inflateGzipToc(compressed: Buffer, maxTocSize: number): Promise<Buffer> {
  // The TOC member holds a tar: the TOC's header (maybe with PAX), the JSON, padding and the EOF blocks.
  const tar = decompressToc(() => gzipCodec.decompress(compressed, maxTocSize + 8 * 1024));
  const reader = new TarReader([tar]);
  const entry = await reader.next().catch((err: Error) => {
    throw new TocError(`TOC member is not a tar: ${err.message}`);
  });
  if (!entry || entry.header.name !== TOC_TAR_NAME) throw new TocError(`TOC member does not start with ${TOC_TAR_NAME}`);
  const json = await reader.readPayload(entry.header.size).catch((err: Error) => {
    throw new TocError(`TOC is truncated: ${err.message}`);
  });
  if (json.length !== entry.header.size) throw new TocError('TOC is truncated');
  return json;
}

function decompressToc(inflate: () => Buffer): Buffer {
  try {
    return inflate();
  } catch (err) {
    const e = err as Error;
    if (e.name === 'DecompressionBombError') throw new TocError('TOC exceeds the size limit when decompressed');
    throw new TocError(`TOC is not valid compressed data: ${e.message}`);
  }
}

function parseTocJson(json: Buffer): unknown {
  let toc: unknown;
  try {
    // An ASCII TOC (nearly all are) read as latin1 is the same text, and V8 parses a one-byte string faster.
    toc = JSON.parse(isAscii(json) ? json.toString('latin1') : json.toString('utf8'));
  } catch (err) {
    throw new TocError(`TOC is not JSON: ${(err as Error).message}`);
  }
  if (typeof toc !== 'object' || toc === null || !Array.isArray((toc as { entries?: unknown }).entries)) throw new TocError('TOC JSON has no "entries" array');
  const version = (toc as { version?: unknown }).version;
  if (version !== undefined && version !== 1) throw new TocError(`TOC version ${String(version)} is not supported (only 1)`);
  return (toc as { entries: unknown }).entries;
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
