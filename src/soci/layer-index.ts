/**
 * SOCI's LayerIndex: the entry tree comes from the zTOC (built by the same tree builder as eStargz, so
 * paths, implicit parents, hardlinks and whiteouts behave identically), and each regular file's chunks
 * are its slices of spans. A read fetches the span's compressed range, checks the span digest, inflates
 * from the span's checkpoint and slices. Several small files share one span; a large file spans several.
 */
import { CorruptDataError } from '../compression/codec.js';
import { DEFAULT_TOC_LIMITS, buildTocTree, type TocLimits } from '../estargz/toc-index.js';
import type { TocEntryJson } from '../estargz/toc.js';
import { ChunkVerificationError, ChunkedLayerIndex } from '../layer/chunked-index.js';
import type { ChunkRef } from '../layer/layer-index.js';
import { Digester, sha256, type Digest } from '../util/digest.js';
import { SpanDecodeError, inflateSpan, type Span } from './checkpoints.js';
import { ZtocError, readZtoc, type ParsedZtoc, type ZtocFile } from './ztoc.js';

const XATTR_PREFIX = 'SCHILY.xattr.';

export interface OpenSociLayerOptions {
  /** Digest the zTOC bytes must have (the SOCI index's layer descriptor). */
  expectedZtocDigest?: Digest;
  /** Size of the layer blob the zTOC claims to index; a mismatch means it indexes another blob. */
  layerSize?: number;
  limits?: TocLimits;
}

export class SociLayerIndex extends ChunkedLayerIndex {
  private readonly spansByStart: ReadonlyMap<number, Span>;

  constructor(readonly parsed: ParsedZtoc, ztocDigest: Digest, limits: TocLimits = DEFAULT_TOC_LIMITS) {
    const spansByStart = indexSpans(parsed.spans, limits.maxChunkSize);
    const keys = spanCacheKeys(parsed);
    const tree = buildTocTree(parsed.ztoc.files.map(tocEntry), {
      format: 'soci',
      dataEnd: parsed.ztoc.compressedArchiveSize,
      encoding: 'gzip', // unused: chunksOf supplies every chunk
      requireDigests: true,
      limits,
      chunksOf: (_entry, i) => spanChunks(parsed, keys, parsed.ztoc.files[i]!),
    });
    // Landmarks only mean something to eStargz readers; a SOCI layer says nothing about prefetching.
    super({ format: 'soci', tocDigest: ztocDigest, root: tree.root, entries: tree.entries, noPrefetch: false, verified: true });
    this.spansByStart = spansByStart;
  }

  /** The verified piece of a span a chunk names. */
  override decode(chunk: ChunkRef, compressed: Buffer): Buffer {
    const span = this.decodeSpan(chunk, compressed);
    if (chunk.innerOffset + chunk.size > span.length) throw new CorruptDataError(`chunk [${chunk.innerOffset}, +${chunk.size}) lies outside its ${span.length}-byte span`);
    return span.subarray(chunk.innerOffset, chunk.innerOffset + chunk.size);
  }

  /** The whole span holding a chunk, its compressed bytes verified against the span digest before inflating. */
  decodeSpan(chunk: ChunkRef, compressed: Buffer): Buffer {
    const span = this.spansByStart.get(chunk.compressedOffset);
    if (chunk.encoding !== 'soci-span' || !span || span.compressedEnd !== chunk.compressedEnd) {
      throw new Error(`chunk at compressed offset ${chunk.compressedOffset} is not a span of this SOCI layer`);
    }
    const expected = this.parsed.ztoc.spanDigests[span.id]!;
    const actual = sha256(compressed);
    if (actual !== expected) throw new ChunkVerificationError(`span ${span.id} at compressed offset ${span.compressedStart} has digest ${actual}, expected ${expected}`);
    const length = span.uncompressedEnd - span.uncompressedStart;
    if (!this.parsed.gzip) return compressed;
    try {
      return inflateSpan(compressed, this.parsed.gzip.checkpoints[span.id]!, length);
    } catch (err) {
      if (err instanceof SpanDecodeError) throw new CorruptDataError(`span ${span.id}: ${err.message}`);
      throw err;
    }
  }

  /** The spans of this layer, in order (for prefetch and `soci ztoc info`). */
  get spans(): readonly Span[] {
    return this.parsed.spans;
  }
}

/** Validates the zTOC bytes and builds the index. Every problem is a ZtocError (or TocValidationError for entry rules). */
export function openSociLayer(ztocBytes: Buffer, options: OpenSociLayerOptions = {}): SociLayerIndex {
  const digest = sha256(ztocBytes);
  if (options.expectedZtocDigest && digest !== options.expectedZtocDigest) throw new ZtocError(`zTOC has digest ${digest}, expected ${options.expectedZtocDigest}`);
  const parsed = readZtoc(ztocBytes);
  if (options.layerSize !== undefined && options.layerSize !== parsed.ztoc.compressedArchiveSize) {
    throw new ZtocError(`zTOC indexes a ${parsed.ztoc.compressedArchiveSize}-byte layer, but the layer blob has ${options.layerSize} bytes`);
  }
  return new SociLayerIndex(parsed, digest, options.limits);
}

/** Spans by compressed start (how decode finds a chunk's span), each small enough to inflate into memory. */
function indexSpans(spans: readonly Span[], maxSpanSize: number): Map<number, Span> {
  const byStart = new Map<number, Span>();
  for (const span of spans) {
    if (span.compressedEnd < span.compressedStart) throw new ZtocError(`invalid zTOC: span ${span.id} ends before it starts`);
    const size = span.uncompressedEnd - span.uncompressedStart;
    if (size > maxSpanSize) throw new ZtocError(`invalid zTOC: span ${span.id} inflates to ${size} bytes, over the ${maxSpanSize}-byte limit`);
    // An empty span (an empty layer) holds no file data: it is never read, so it needs no unique start.
    if (span.uncompressedEnd === span.uncompressedStart) continue;
    if (byStart.has(span.compressedStart)) throw new ZtocError(`invalid zTOC: spans ${byStart.get(span.compressedStart)!.id} and ${span.id} start at the same compressed offset`);
    byStart.set(span.compressedStart, span);
  }
  return byStart;
}

/**
 * A content address per span for the shared chunk cache: the decoded bytes depend on the compressed
 * bytes (the zTOC span digest, verified on every fetch), the checkpoint's bits and window, and the length.
 * Uncompressed spans are their own bytes, so the span digest is already their address.
 */
function spanCacheKeys(parsed: ParsedZtoc): Digest[] {
  return parsed.spans.map((span) => {
    const spanDigest = parsed.ztoc.spanDigests[span.id]!;
    const checkpoint = parsed.gzip?.checkpoints[span.id];
    if (!checkpoint) return spanDigest;
    const header = `soci-span\0${spanDigest}\0${checkpoint.bits}\0${span.uncompressedEnd - span.uncompressedStart}\0`;
    return new Digester().update(Buffer.from(header)).update(checkpoint.window).digest();
  });
}

/** The zTOC entry in the TOC JSON shape the shared tree builder validates. */
function tocEntry(f: ZtocFile): TocEntryJson {
  const xattrs: Record<string, string> = {};
  for (const x of f.xattrs) if (x.key.startsWith(XATTR_PREFIX)) xattrs[x.key.slice(XATTR_PREFIX.length)] = x.value.toString('base64');
  return {
    name: f.name,
    type: f.type,
    size: f.type === 'reg' ? f.uncompressedSize : 0,
    modtime: f.modTime,
    linkName: f.linkName,
    mode: f.mode,
    uid: f.uid,
    gid: f.gid,
    userName: f.userName,
    groupName: f.groupName,
    devMajor: f.devMajor,
    devMinor: f.devMinor,
    xattrs,
  };
}

/** The pieces of the spans that hold [uncompressedOffset, + size) of the tar stream, in file order. */
function spanChunks(parsed: ParsedZtoc, cacheKeys: readonly Digest[], f: ZtocFile): ChunkRef[] {
  const chunks: ChunkRef[] = [];
  const start = f.uncompressedOffset;
  const end = start + f.uncompressedSize;
  for (let i = spanAt(parsed.spans, start); i < parsed.spans.length && parsed.spans[i]!.uncompressedStart < end; i++) {
    const span = parsed.spans[i]!;
    const from = Math.max(start, span.uncompressedStart);
    const to = Math.min(end, span.uncompressedEnd);
    chunks.push({
      fileOffset: from - start,
      size: to - from,
      compressedOffset: span.compressedStart,
      compressedEnd: span.compressedEnd,
      innerOffset: from - span.uncompressedStart,
      encoding: 'soci-span',
      maxInflated: span.uncompressedEnd - span.uncompressedStart,
      digest: cacheKeys[span.id],
    });
  }
  return chunks;
}

/** Index of the span holding uncompressed offset `offset` (binary search). */
function spanAt(spans: readonly Span[], offset: number): number {
  let lo = 0;
  let hi = spans.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (spans[mid]!.uncompressedStart <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
