/**
 * Builds the zTOC of one layer blob in a single streaming pass: the blob is inflated once (recording
 * checkpoints and span digests, see ./checkpoints.ts) and the tar inside is parsed as it comes out
 * (src/tar/reader.ts), one FileMetadata per entry. Uncompressed tar layers get fixed spans instead.
 */
import type { RandomAccessSource } from '../io/random-access.js';
import { BLOCK, TypeFlag, paddingFor, parseNumeric } from '../tar/header.js';
import { TarReader, parsePaxRecords, type TarEntry } from '../tar/reader.js';
import { Digester, sha256, type Digest } from '../util/digest.js';
import { DEFAULT_SPAN_SIZE, GzipCheckpointBuilder, encodeGzipZinfo } from './checkpoints.js';
import { DEFAULT_BUILD_TOOL_IDENTIFIER, ZTOC_VERSION, writeTarZinfo, writeZtoc, type Ztoc, type ZtocAlgorithm, type ZtocFile, type ZtocXattr } from './ztoc.js';

/** The soci CLI's default: smaller layers are pulled whole, an index would not pay for itself. */
export const DEFAULT_MIN_LAYER_SIZE = 10 << 20;
const READ_SIZE = 1 << 20;

export interface BuildZtocOptions {
  /** Uncompressed bytes per span (default 4 MiB). */
  spanSize?: number;
  /** Layers whose compressed size is below this get no zTOC (default 10 MiB; 0 indexes everything). */
  minLayerSize?: number;
  buildToolIdentifier?: string;
}

export interface BuiltZtoc {
  readonly ztoc: Ztoc;
  /** The serialized zTOC, and its digest (the SOCI index's layer descriptor). */
  readonly bytes: Buffer;
  readonly digest: Digest;
}

export class UnsupportedLayerError extends Error {
  override name = 'UnsupportedLayerError';
}

/** A zTOC for the blob, or undefined when it is smaller than the minimum layer size. */
export async function buildZtoc(input: RandomAccessSource | AsyncIterable<Uint8Array>, options: BuildZtocOptions = {}): Promise<BuiltZtoc | undefined> {
  const minLayerSize = options.minLayerSize ?? DEFAULT_MIN_LAYER_SIZE;
  if ('readAt' in input && input.size < minLayerSize) return undefined;
  const stream = 'readAt' in input ? readSequentially(input) : input;
  const ztoc = await indexStream(stream, options.spanSize ?? DEFAULT_SPAN_SIZE, options.buildToolIdentifier ?? DEFAULT_BUILD_TOOL_IDENTIFIER);
  if (ztoc.compressedArchiveSize < minLayerSize) return undefined;
  const bytes = writeZtoc(ztoc);
  return { ztoc, bytes, digest: sha256(bytes) };
}

async function* readSequentially(source: RandomAccessSource): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < source.size; offset += READ_SIZE) yield await source.readAt(offset, Math.min(READ_SIZE, source.size - offset));
}

async function indexStream(input: AsyncIterable<Uint8Array>, spanSize: number, buildToolIdentifier: string): Promise<Ztoc> {
  const iterator = input[Symbol.asyncIterator]();
  const head = await readHead(iterator, SNIFF_LENGTH);
  const all = prepend(head, iterator);
  const algorithm = sniff(head);
  const common = { version: ZTOC_VERSION, buildToolIdentifier };
  if (algorithm === 'gzip') {
    const builder = new GzipCheckpointBuilder(spanSize);
    const files = await listEntries(builder.inflate(all));
    const r = builder.result();
    return {
      ...common,
      compressedArchiveSize: r.compressedSize,
      uncompressedArchiveSize: r.uncompressedSize,
      files,
      algorithm,
      maxSpanId: r.zinfo.checkpoints.length - 1,
      spanDigests: r.spanDigests,
      checkpoints: encodeGzipZinfo(r.zinfo),
    };
  }
  const hasher = new FixedSpanHasher(spanSize);
  const files = await listEntries(hasher.pass(all));
  const size = hasher.size;
  return { ...common, compressedArchiveSize: size, uncompressedArchiveSize: size, files, algorithm, maxSpanId: hasher.digests.length - 1, spanDigests: hasher.digests, checkpoints: writeTarZinfo(spanSize, size) };
}

const SNIFF_LENGTH = 4;

/** At least `length` bytes from the start of the stream (fewer only when it is shorter), to sniff the format. */
async function readHead(iterator: AsyncIterator<Uint8Array>, length: number): Promise<Uint8Array> {
  const pieces: Uint8Array[] = [];
  let total = 0;
  while (total < length) {
    const next = await iterator.next();
    if (next.done) break;
    pieces.push(next.value);
    total += next.value.length;
  }
  return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
}

async function* prepend(head: Uint8Array, rest: AsyncIterator<Uint8Array>): AsyncGenerator<Uint8Array> {
  if (head.length) yield head;
  for (let r = await rest.next(); !r.done; r = await rest.next()) yield r.value;
}

function sniff(head: Uint8Array): ZtocAlgorithm {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) throw new UnsupportedLayerError('zstd layers cannot be indexed by SOCI (the soci CLI does not index them either)');
  return 'uncompressed';
}

/** Passes an uncompressed tar through while hashing it in fixed spans. */
class FixedSpanHasher {
  readonly digests: Digest[] = [];
  size = 0;
  private hash = new Digester();
  private inSpan = 0;

  constructor(private readonly spanSize: number) {}

  async *pass(input: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    for await (const chunk of input) {
      for (let at = 0; at < chunk.length; ) {
        const take = Math.min(chunk.length - at, this.spanSize - this.inSpan);
        this.hash.update(chunk.subarray(at, at + take));
        at += take;
        this.inSpan += take;
        if (this.inSpan === this.spanSize) this.closeSpan();
      }
      this.size += chunk.length;
      yield chunk;
    }
    if (this.inSpan > 0 || this.digests.length === 0) this.closeSpan();
  }

  private closeSpan(): void {
    this.digests.push(this.hash.digest());
    this.hash = new Digester();
    this.inSpan = 0;
  }
}

async function listEntries(tar: AsyncIterable<Uint8Array>): Promise<ZtocFile[]> {
  const reader = new TarReader(tar);
  const files: ZtocFile[] = [];
  for (let entry = await reader.next(); entry; entry = await reader.next()) files.push(fileMetadata(entry));
  // Everything after the EOF marker still has to pass through the inflater: checkpoints and sizes cover the whole blob.
  await reader.drain();
  return files;
}

function fileMetadata(entry: TarEntry): ZtocFile {
  const h = entry.header;
  return {
    name: h.name,
    type: h.kind,
    uncompressedOffset: entry.payloadOffset,
    uncompressedSize: h.kind === 'reg' ? h.size : 0,
    linkName: h.linkName,
    mode: h.mode,
    uid: h.uid,
    gid: h.gid,
    userName: h.userName,
    groupName: h.groupName,
    modTime: formatRfc3339Nano(h.mtimeSec, h.mtimeNsec),
    devMajor: h.devMajor,
    devMinor: h.devMinor,
    xattrs: localPaxRecords(entry.rawHeader),
  };
}

/** The entry's own PAX records in stored order (Go's Header.PAXRecords, which soci stores as xattrs). */
export function localPaxRecords(rawHeader: Buffer): ZtocXattr[] {
  const records: ZtocXattr[] = [];
  for (let at = 0; at + BLOCK <= rawHeader.length; ) {
    const size = parseNumeric(rawHeader, at + 124, 12, 'size');
    const typeflag = rawHeader[at + 156];
    const isExtension = typeflag === TypeFlag.PaxLocal || typeflag === TypeFlag.PaxGlobal || typeflag === TypeFlag.GnuLongName || typeflag === TypeFlag.GnuLongLink;
    if (!isExtension) break;
    if (typeflag === TypeFlag.PaxLocal) {
      for (const [key, value] of parsePaxRecords(rawHeader.subarray(at + BLOCK, at + BLOCK + size))) records.push({ key, value });
    }
    at += BLOCK + size + paddingFor(size);
  }
  return records;
}

/** Go's time.RFC3339Nano in UTC: trailing zeros of the fraction dropped, no fraction for whole seconds. */
export function formatRfc3339Nano(sec: number, nsec: number): string {
  const base = new Date(sec * 1000).toISOString().slice(0, 19);
  const fraction = nsec ? `.${String(nsec).padStart(9, '0').replace(/0+$/, '')}` : '';
  return `${base}${fraction}Z`;
}
