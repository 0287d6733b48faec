/**
 * The tail of a lazy layer's blob: from the start of its TOC to the end (TOC, footer). It is all a
 * LayerIndex is built from, so it is fetched once per blob digest, shared by every image that has the
 * layer, kept on disk for restarts (a restore with a warm cache needs no network), and fetched ahead
 * for the layers after the one being prepared, so their Prepare needs no round trip.
 *
 * A stored tail is not trusted on its own: the TOC built from it is checked against the TOC digest of
 * the layer's labels and every chunk against the TOC, as when it comes from the registry.
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { detectFooter, MAX_FOOTER_SIZE, type FooterInfo } from '../estargz/footer.js';
import { checkRange, type RandomAccessSource } from '../io/random-access.js';
import { writeFileAtomically } from '../util/atomic-file.js';
import type { Digest } from '../util/digest.js';
import { NotLazyFormatError } from './fallback.js';
import { FooterError } from '../estargz/footer.js';

export interface LayerTail {
  /** The whole blob's size. */
  size: number;
  /** Where `bytes` start in the blob. */
  offset: number;
  bytes: Buffer;
}

/** Bytes read from the end first; a TOC that fits needs no second read. */
const FIRST_READ_BYTES = 64 * 1024;
const FILE_MAGIC = Buffer.from('LPTAIL1\0', 'latin1');
const HEADER_BYTES = FILE_MAGIC.length + 16;

/** Bytes read from the end of a blob first: the footer, and a TOC that fits needs no second read. */
export const TAIL_FIRST_READ_BYTES = Math.max(MAX_FOOTER_SIZE, FIRST_READ_BYTES);

/**
 * Reads the footer, then whatever of the TOC the first read missed. `lastBytes`: the blob's last bytes
 * when the caller has them already (read along with the blob's size).
 */
export async function fetchTail(blob: RandomAccessSource, maxTocBytes: number, signal?: AbortSignal, lastBytes?: Buffer): Promise<LayerTail> {
  const first = lastBytes ?? (await blob.readAt(blob.size - Math.min(blob.size, TAIL_FIRST_READ_BYTES), Math.min(blob.size, TAIL_FIRST_READ_BYTES), signal));
  const firstOffset = blob.size - first.length;
  const start = tailStart(first, blob.size);
  if (blob.size - start > maxTocBytes) throw new NotLazyFormatError(`the layer's TOC region is ${blob.size - start} bytes, more than the ${maxTocBytes}-byte limit`);
  if (start >= firstOffset) return { size: blob.size, offset: start, bytes: first.subarray(start - firstOffset) };
  const missing = await blob.readAt(start, firstOffset - start, signal);
  return { size: blob.size, offset: start, bytes: Buffer.concat([missing, first]) };
}

function tailStart(lastBytes: Buffer, size: number): number {
  let footer: FooterInfo;
  try {
    footer = detectFooter(lastBytes, size);
  } catch (err) {
    if (err instanceof FooterError) throw new NotLazyFormatError(`not an eStargz or zstd:chunked layer: ${err.message}`);
    throw err;
  }
  if (footer.kind === 'estargz-external-toc') return size - footer.footerSize;
  const tocStart = footer.kind === 'zstd:chunked-containers' && footer.tarSplit ? Math.min(footer.toc.offset, footer.tarSplit.offset) : footer.toc.offset;
  // zstd:chunked TOCs sit in a skippable frame whose 8-byte header precedes them.
  return footer.kind.startsWith('zstd') ? Math.max(0, tocStart - 8) : tocStart;
}

/** A blob of which only the tail is at hand; reading before it is an error (openLayer never does). */
export class TailSource implements RandomAccessSource {
  constructor(private readonly tail: LayerTail) {}

  get size(): number {
    return this.tail.size;
  }

  async readAt(offset: number, length: number): Promise<Buffer> {
    checkRange(offset, length, this.tail.size);
    if (offset < this.tail.offset) throw new RangeError(`read at ${offset} is before the stored layer tail (${this.tail.offset})`);
    return this.tail.bytes.subarray(offset - this.tail.offset, offset - this.tail.offset + length);
  }
}

/** Tails on disk, one file per blob digest: written to a temp file and renamed, so never half there. */
export class TailStore {
  constructor(private readonly dir: string) {}

  private pathOf(digest: Digest): string {
    return join(this.dir, digest.replace(/^sha256:/, ''));
  }

  /** The stored tail, or undefined when there is none or it is damaged (then it is removed). */
  async get(digest: Digest): Promise<LayerTail | undefined> {
    let file: Buffer;
    try {
      file = await readFile(this.pathOf(digest));
    } catch {
      return undefined;
    }
    const tail = decodeTailFile(file);
    if (!tail) await this.delete(digest);
    return tail;
  }

  async put(digest: Digest, tail: LayerTail): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const header = Buffer.alloc(HEADER_BYTES);
    FILE_MAGIC.copy(header);
    header.writeBigUInt64BE(BigInt(tail.size), FILE_MAGIC.length);
    header.writeBigUInt64BE(BigInt(tail.offset), FILE_MAGIC.length + 8);
    await writeFileAtomically(this.pathOf(digest), [header, tail.bytes]);
  }

  async delete(digest: Digest): Promise<void> {
    await rm(this.pathOf(digest), { force: true });
  }
}

function decodeTailFile(file: Buffer): LayerTail | undefined {
  if (file.length < HEADER_BYTES || !file.subarray(0, FILE_MAGIC.length).equals(FILE_MAGIC)) return undefined;
  const size = Number(file.readBigUInt64BE(FILE_MAGIC.length));
  const offset = Number(file.readBigUInt64BE(FILE_MAGIC.length + 8));
  const bytes = file.subarray(HEADER_BYTES);
  if (!Number.isSafeInteger(size) || offset + bytes.length !== size) return undefined;
  return { size, offset, bytes };
}
