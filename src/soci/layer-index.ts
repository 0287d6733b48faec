/**
 * SOCI's LayerIndex: the entry tree comes from the zTOC (built by the same tree builder as eStargz, so
 * paths, implicit parents, hardlinks and whiteouts behave identically), and each regular file's chunks
 * are its pieces of spans. A read fetches the span's compressed range, checks the span digest, inflates
 * from the span's checkpoint and slices. Several small files share one span; a large file spans several.
 *
 * Like every format, a chunk's `digest` names exactly what `decode` returns for it, because the read
 * path caches decode output under it. A file's pieces (entry.chunks) therefore each have their own key,
 * while `plan` hands out whole-span chunks (one shared key per span): reads through `plan` cache and
 * share whole spans between all the files in them.
 */
import { CorruptDataError } from '../compression/codec.js';
import { DEFAULT_TOC_LIMITS, buildTocTree, type TocLimits } from '../estargz/toc-index.js';
import type { TocEntryJson } from '../estargz/toc.js';
import { ChunkVerificationError, ChunkedLayerIndex } from '../layer/chunked-index.js';
import type { ChunkRef, ChunkSlice, LayerEntry } from '../layer/layer-index.js';
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
  /** One chunk per span covering all of it, keyed by the span's cache key. */
  private readonly wholeSpans: readonly ChunkRef[];

  constructor(readonly parsed: ParsedZtoc, ztocDigest: Digest, limits: TocLimits = DEFAULT_TOC_LIMITS) {
    const spansByStart = indexSpans(parsed.spans, limits.maxChunkSize);
    const keys = spanCacheKeys(parsed);
    const tree = buildTocTree(parsed.ztoc.files.map(tocEntry), {
      format: 'soci',
      dataEnd: parsed.ztoc.compressedArchiveSize,
      encoding: 'gzip', // unused: chunksOf supplies every chunk
      requireDigests: true,
      limits,
      chunksOf: (_entry, i) => filePieces(parsed, keys, parsed.ztoc.files[i]!),
    });
    // Landmarks only mean something to eStargz readers; a SOCI layer says nothing about prefetching.
    super({ format: 'soci', tocDigest: ztocDigest, root: tree.root, entries: tree.entries, noPrefetch: false, verified: true });
    this.spansByStart = spansByStart;
    this.wholeSpans = parsed.spans.map((span) => spanPiece(span, keys[span.id]!, span.uncompressedStart, span.uncompressedEnd, 0));
  }

  /**
   * Slices of whole-span chunks, so that the read path caches each span once for every file in it. The
   * whole-span chunks are shared between files: their fileOffset is 0 and means nothing.
   */
  override plan(entry: LayerEntry, offset: number, length: number): ChunkSlice[] {
    return super.plan(entry, offset, length).map((slice) => {
      const span = this.spansByStart.get(slice.chunk.compressedOffset)!;
      return { chunk: this.wholeSpans[span.id]!, start: slice.chunk.innerOffset + slice.start, end: slice.chunk.innerOffset + slice.end };
    });
  }

  /** Every span as a whole-span chunk, in blob order: a prefetch caches each span once, under the key reads use. */
  override fetchUnits(): readonly ChunkRef[] {
    return this.wholeSpans.filter((c) => c.size > 0);
  }

  /** The verified bytes of a span piece (or of a whole span). */
  override decode(chunk: ChunkRef, compressed: Buffer): Buffer {
    const span = this.decodeSpan(chunk, compressed);
    if (chunk.innerOffset + chunk.size > span.length) throw new CorruptDataError(`chunk [${chunk.innerOffset}, +${chunk.size}) lies outside its ${span.length}-byte span`);
    return span.subarray(chunk.innerOffset, chunk.innerOffset + chunk.size);
  }

  /** The whole span holding a chunk, its compressed bytes verified against the span digest before inflating. */
  private decodeSpan(chunk: ChunkRef, compressed: Buffer): Buffer {
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
 * A key per span for the shared chunk cache: the decoded bytes depend on the compressed
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
function filePieces(parsed: ParsedZtoc, cacheKeys: readonly Digest[], f: ZtocFile): ChunkRef[] {
  const chunks: ChunkRef[] = [];
  const start = f.uncompressedOffset;
  const end = start + f.uncompressedSize;
  for (let i = spanAt(parsed.spans, start); i < parsed.spans.length && parsed.spans[i]!.uncompressedStart < end; i++) {
    const span = parsed.spans[i]!;
    chunks.push(spanPiece(span, cacheKeys[span.id]!, Math.max(start, span.uncompressedStart), Math.min(end, span.uncompressedEnd), start));
  }
  return chunks;
}

/**
 * The chunk for uncompressed bytes [from, to) of a span, in a file whose data starts at fileStart. Its key
 * is the span's key when it covers the whole span, else derived from the span key and the piece's place.
 */
function spanPiece(span: Span, spanKey: Digest, from: number, to: number, fileStart: number): ChunkRef {
  const innerOffset = from - span.uncompressedStart;
  const size = to - from;
  const spanLength = span.uncompressedEnd - span.uncompressedStart;
  const whole = innerOffset === 0 && size === spanLength;
  return {
    fileOffset: from - fileStart,
    size,
    compressedOffset: span.compressedStart,
    compressedEnd: span.compressedEnd,
    innerOffset,
    encoding: 'soci-span',
    maxInflated: spanLength,
    digest: whole ? spanKey : new Digester().update(Buffer.from(`soci-span-piece\0${spanKey}\0${innerOffset}\0${size}`)).digest(),
  };
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
