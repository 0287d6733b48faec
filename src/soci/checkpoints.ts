/**
 * zran-style random access into unmodified gzip streams, as SOCI stores it in a zTOC: the checkpoint blob
 * ("zinfo") in its current and legacy layouts, checkpoint creation while inflating a layer once, and span
 * extraction from a checkpoint. Byte layouts follow /work/shared/specs/soci.md.
 *
 * pako's low-level inflate is used because node:zlib can neither stop at deflate block boundaries (Z_BLOCK)
 * nor resume at a bit offset (inflatePrime); pako has no inflatePrime either, but its state keeps the bit
 * accumulator in `state.hold` / `state.bits`, which we set after init to the same effect.
 */
import {
  ZStream,
  Z_BLOCK,
  Z_BUF_ERROR,
  Z_OK,
  Z_STREAM_END,
  zlibInflate,
  zlibInflateInit2,
  zlibInflateReset,
  zlibInflateSetDictionary,
} from 'pako';
import { Digester, type Digest } from '../util/digest.js';

export const WINDOW_SIZE = 32768;
/** int64 in + int64 out + uint8 bits + the window. */
export const CHECKPOINT_SIZE = 8 + 8 + 1 + WINDOW_SIZE;
/** int32 count + int64 span size. */
const BLOB_HEADER_SIZE = 12;
export const DEFAULT_SPAN_SIZE = 4 << 20;
/** Where the first deflate block starts after a minimal 10-byte gzip header: the implied checkpoint 0 of legacy blobs. */
const LEGACY_FIRST_IN = 10;

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

/** Corrupt or inconsistent compressed span data; no bytes are returned when this is thrown. */
export class SpanDecodeError extends Error {
  override name = 'SpanDecodeError';
}

export interface Checkpoint {
  /** Compressed offset of the first full byte after the checkpoint. */
  readonly compressedOffset: number;
  /** Uncompressed offset of the checkpoint. */
  readonly uncompressedOffset: number;
  /** 0..7: how many high bits of byte compressedOffset - 1 belong to the span. */
  readonly bits: number;
  /** The 32 KiB of uncompressed data just before uncompressedOffset (zero-filled before the stream start). */
  readonly window: Buffer;
}

export interface GzipZinfo {
  readonly spanSize: number;
  readonly checkpoints: readonly Checkpoint[];
}

/** One span: compressed bytes to fetch and the uncompressed range they inflate to. */
export interface Span {
  readonly id: number;
  readonly compressedStart: number;
  readonly compressedEnd: number;
  readonly uncompressedStart: number;
  readonly uncompressedEnd: number;
}

// ---------------------------------------------------------------------------------------------------
// The blob

/** The current layout: every checkpoint, checkpoint 0 included. */
export function encodeGzipZinfo(zinfo: GzipZinfo): Buffer {
  const n = zinfo.checkpoints.length;
  const blob = Buffer.alloc(BLOB_HEADER_SIZE + n * CHECKPOINT_SIZE);
  blob.writeInt32LE(n, 0);
  blob.writeBigInt64LE(BigInt(zinfo.spanSize), 4);
  zinfo.checkpoints.forEach((c, i) => {
    const at = BLOB_HEADER_SIZE + i * CHECKPOINT_SIZE;
    blob.writeBigInt64LE(BigInt(c.compressedOffset), at);
    blob.writeBigInt64LE(BigInt(c.uncompressedOffset), at + 8);
    blob.writeUInt8(c.bits, at + 16);
    if (c.window.length !== WINDOW_SIZE) throw new CheckpointError(`checkpoint ${i} has a ${c.window.length}-byte window, not ${WINDOW_SIZE}`);
    c.window.copy(blob, at + 17);
  });
  return blob;
}

/** Reads either layout; the legacy one (no checkpoint 0) is recognised by its length. */
export function decodeGzipZinfo(blob: Uint8Array): GzipZinfo {
  const buf = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  if (buf.length < BLOB_HEADER_SIZE) throw new CheckpointError(`checkpoint blob of ${buf.length} bytes is shorter than its ${BLOB_HEADER_SIZE}-byte header`);
  const n = buf.readInt32LE(0);
  const spanSize = safeInt64(buf, 4, 'span size');
  if (n < 1) throw new CheckpointError(`checkpoint blob holds ${n} checkpoints; at least 1 is required`);
  if (spanSize <= 0) throw new CheckpointError(`checkpoint blob has span size ${spanSize}`);
  const stored = storedCheckpointCount(buf.length, n);
  const checkpoints: Checkpoint[] = stored === n - 1 ? [{ compressedOffset: LEGACY_FIRST_IN, uncompressedOffset: 0, bits: 0, window: Buffer.alloc(WINDOW_SIZE) }] : [];
  for (let i = 0; i < stored; i++) {
    const at = BLOB_HEADER_SIZE + i * CHECKPOINT_SIZE;
    const bits = buf.readUInt8(at + 16);
    if (bits > 7) throw new CheckpointError(`checkpoint ${checkpoints.length} has bits ${bits}, over 7`);
    checkpoints.push({
      compressedOffset: safeInt64(buf, at, `checkpoint ${checkpoints.length} in`),
      uncompressedOffset: safeInt64(buf, at + 8, `checkpoint ${checkpoints.length} out`),
      bits,
      window: buf.subarray(at + 17, at + CHECKPOINT_SIZE),
    });
  }
  checkMonotonic(checkpoints);
  return { spanSize, checkpoints };
}

function storedCheckpointCount(length: number, n: number): number {
  if (length === BLOB_HEADER_SIZE + n * CHECKPOINT_SIZE) return n;
  if (length === BLOB_HEADER_SIZE + (n - 1) * CHECKPOINT_SIZE) return n - 1;
  throw new CheckpointError(
    `checkpoint blob of ${length} bytes does not fit ${n} checkpoints (${BLOB_HEADER_SIZE + n * CHECKPOINT_SIZE} bytes, or ${BLOB_HEADER_SIZE + (n - 1) * CHECKPOINT_SIZE} in the legacy layout)`,
  );
}

function safeInt64(buf: Buffer, at: number, what: string): number {
  const value = buf.readBigInt64LE(at);
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) throw new CheckpointError(`${what} is ${value}, outside [0, 2^53)`);
  return Number(value);
}

/** Checkpoint 0 starts the stream; every later one must move forward in both streams. */
function checkMonotonic(checkpoints: readonly Checkpoint[]): void {
  const first = checkpoints[0]!;
  if (first.uncompressedOffset !== 0) throw new CheckpointError(`checkpoint 0 is at uncompressed offset ${first.uncompressedOffset}, not 0`);
  if (first.bits !== 0) throw new CheckpointError('checkpoint 0 does not start on a byte boundary');
  for (let i = 1; i < checkpoints.length; i++) {
    const prev = checkpoints[i - 1]!;
    const c = checkpoints[i]!;
    if (c.uncompressedOffset <= prev.uncompressedOffset) {
      throw new CheckpointError(`checkpoint ${i} is not after checkpoint ${i - 1}: uncompressed offset ${c.uncompressedOffset} <= ${prev.uncompressedOffset}`);
    }
    if (c.compressedOffset - (c.bits ? 1 : 0) < prev.compressedOffset) {
      throw new CheckpointError(`checkpoint ${i} is not after checkpoint ${i - 1}: compressed offset ${c.compressedOffset} (bits ${c.bits}) < ${prev.compressedOffset}`);
    }
  }
}

/** The spans a set of checkpoints cuts a blob into; the last span runs to the end of both streams. */
export function gzipSpans(checkpoints: readonly Checkpoint[], compressedSize: number, uncompressedSize: number): Span[] {
  return checkpoints.map((c, id) => {
    const next = checkpoints[id + 1];
    const span = {
      id,
      compressedStart: c.compressedOffset - (c.bits ? 1 : 0),
      compressedEnd: next ? next.compressedOffset : compressedSize,
      uncompressedStart: c.uncompressedOffset,
      uncompressedEnd: next ? next.uncompressedOffset : uncompressedSize,
    };
    // The last span may be empty: Go's gzip writer ends with an empty final block, and a checkpoint can fall just before it.
    if (span.compressedEnd > compressedSize || span.compressedStart > span.compressedEnd || span.uncompressedEnd > uncompressedSize || span.uncompressedStart > span.uncompressedEnd) {
      throw new CheckpointError(`checkpoint ${id} (in ${c.compressedOffset}, out ${c.uncompressedOffset}) lies outside the ${compressedSize}-byte blob or its ${uncompressedSize}-byte tar`);
    }
    return span;
  });
}

/** Uncompressed tar layers: fixed spans, the same range in both streams. */
export function tarSpans(spanSize: number, size: number): Span[] {
  const spans: Span[] = [];
  for (let id = 0, start = 0; start < size || id === 0; id++, start += spanSize) {
    const end = Math.min(size, start + spanSize);
    spans.push({ id, compressedStart: start, compressedEnd: end, uncompressedStart: start, uncompressedEnd: end });
  }
  return spans;
}

// ---------------------------------------------------------------------------------------------------
// Building checkpoints while inflating

interface InflateInternals {
  hold: number;
  bits: number;
}

/** data_type flags after inflate(Z_BLOCK) (zlib.h). */
const AT_BLOCK_BOUNDARY = 128;
const IN_LAST_BLOCK = 64;
const UNUSED_BITS_MASK = 7;
/** windowBits for a gzip wrapper, and for raw deflate. */
const GZIP_WINDOW_BITS = 16 + 15;
const RAW_WINDOW_BITS = -15;
const OUTPUT_BUFFER_SIZE = 256 << 10;

export interface CheckpointBuildResult {
  readonly zinfo: GzipZinfo;
  /** sha256 of each span's compressed bytes, in span order. */
  readonly spanDigests: readonly Digest[];
  readonly compressedSize: number;
  readonly uncompressedSize: number;
}

/**
 * Inflates a gzip stream (one member or several, as pigz or concatenation make) and yields its
 * uncompressed bytes, recording a checkpoint at the first deflate block boundary after every `spanSize`
 * uncompressed bytes, and hashing each span's compressed bytes on the fly. `result()` is available once
 * the generator has been drained.
 */
export class GzipCheckpointBuilder {
  private readonly strm = new ZStream();
  private readonly checkpoints: Checkpoint[] = [];
  private readonly digests: Digest[] = [];
  /** The last 32 KiB of output, right-aligned, zeros before the stream start. */
  private recent = Buffer.alloc(WINDOW_SIZE);
  private output = Buffer.alloc(OUTPUT_BUFFER_SIZE);
  private outputBase = 0;
  private inputBase = 0;
  private spanHash = new Digester();
  /** Compressed bytes already fed to spanHash. */
  private hashedTo = 0;
  private lastInputByte = 0;
  private memberOpen = true;
  private finished = false;

  constructor(private readonly spanSize = DEFAULT_SPAN_SIZE) {
    if (!Number.isSafeInteger(spanSize) || spanSize <= 0) throw new CheckpointError(`span size ${spanSize} is not a positive integer`);
    this.strm.output = this.output;
    this.strm.avail_out = this.output.length;
    if (zlibInflateInit2(this.strm, GZIP_WINDOW_BITS) !== Z_OK) throw new CheckpointError('cannot initialise inflate');
  }

  async *inflate(compressed: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<Buffer> {
    for await (const chunk of compressed) {
      if (chunk.length === 0) continue;
      yield* this.feed(chunk);
      this.hashInput(chunk, chunk.length);
      this.lastInputByte = chunk[chunk.length - 1]!;
      this.inputBase += chunk.length;
    }
    if (this.memberOpen) throw new SpanDecodeError(`gzip stream ends inside a member after ${this.inputBase} compressed bytes`);
    const tail = this.flush();
    if (tail.length) yield tail;
    this.digests.push(this.spanHash.digest());
    this.finished = true;
  }

  result(): CheckpointBuildResult {
    if (!this.finished) throw new CheckpointError('checkpoints are complete only after the whole stream was inflated');
    return {
      zinfo: { spanSize: this.spanSize, checkpoints: this.checkpoints },
      spanDigests: this.digests,
      compressedSize: this.inputBase,
      uncompressedSize: this.outputBase,
    };
  }

  private *feed(chunk: Uint8Array): Generator<Buffer> {
    const strm = this.strm;
    strm.input = chunk;
    strm.next_in = 0;
    strm.avail_in = chunk.length;
    while (strm.avail_in > 0) {
      if (!this.memberOpen && !this.startNextMember(chunk)) return;
      const ret = zlibInflate(strm, Z_BLOCK);
      if (ret === Z_STREAM_END) this.memberOpen = false;
      else if (ret !== Z_OK && !(ret === Z_BUF_ERROR && strm.avail_in === 0)) throw new SpanDecodeError(`gzip data is corrupt at compressed offset ${this.inputBase + strm.next_in}: ${strm.msg || `inflate returned ${ret}`}`);
      if (this.memberOpen && this.atCheckpoint()) {
        const out = this.flush(); // the window must hold everything up to the checkpoint
        if (out.length) yield out;
        this.addCheckpoint(chunk);
      }
      // Output leaves in full buffers (or at checkpoints), not per input chunk: small input pieces stay cheap.
      if (strm.avail_out === 0) yield this.flush();
    }
  }

  /** Between members: a gzip magic starts the next one; zero padding after the last member is ignored. */
  private startNextMember(chunk: Uint8Array): boolean {
    const strm = this.strm;
    if (chunk[strm.next_in] === 0) {
      for (let i = strm.next_in; i < chunk.length; i++) {
        if (chunk[i] !== 0) throw new SpanDecodeError(`data after the last gzip member at compressed offset ${this.inputBase + i}`);
      }
      strm.avail_in = 0;
      return false;
    }
    zlibInflateReset(strm);
    this.memberOpen = true;
    return true;
  }

  private atCheckpoint(): boolean {
    const type = this.strm.data_type;
    if (!(type & AT_BLOCK_BOUNDARY) || type & IN_LAST_BLOCK) return false;
    const out = this.outputBase + this.strm.next_out;
    const last = this.checkpoints[this.checkpoints.length - 1];
    return last === undefined ? out === 0 : out - last.uncompressedOffset > this.spanSize;
  }

  private addCheckpoint(chunk: Uint8Array): void {
    const bits = this.strm.data_type & UNUSED_BITS_MASK;
    const localIn = this.strm.next_in;
    const compressedOffset = this.inputBase + localIn;
    // The previous span ends at compressedOffset (checkpoint 0 has no previous span: the gzip header
    // belongs to no span); the new span starts a byte earlier when it shares that byte.
    if (this.checkpoints.length > 0) {
      this.hashInput(chunk, localIn);
      this.digests.push(this.spanHash.digest());
    }
    this.spanHash = new Digester();
    if (bits) this.spanHash.update(Uint8Array.of(localIn > 0 ? chunk[localIn - 1]! : this.lastInputByte));
    this.hashedTo = compressedOffset;
    this.checkpoints.push({ compressedOffset, uncompressedOffset: this.outputBase, bits, window: Buffer.from(this.recent) });
  }

  /** Feeds chunk bytes [hashedTo - inputBase, localEnd) to the current span's hash. */
  private hashInput(chunk: Uint8Array, localEnd: number): void {
    const from = this.hashedTo - this.inputBase;
    if (localEnd > from) this.spanHash.update(chunk.subarray(Math.max(0, from), localEnd));
    this.hashedTo = this.inputBase + localEnd;
  }

  /** Hands out the output produced so far and keeps its last 32 KiB as the next checkpoint's window. */
  private flush(): Buffer {
    const strm = this.strm;
    const produced = strm.next_out;
    if (produced === 0) return Buffer.alloc(0);
    const out = this.output.subarray(0, produced);
    this.recent = produced >= WINDOW_SIZE ? Buffer.from(out.subarray(produced - WINDOW_SIZE)) : Buffer.concat([this.recent.subarray(produced), out]);
    this.outputBase += produced;
    this.output = Buffer.alloc(OUTPUT_BUFFER_SIZE);
    strm.output = this.output;
    strm.next_out = 0;
    strm.avail_out = this.output.length;
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------
// Extracting a span

/**
 * Inflates one span: `compressed` holds the span's bytes [compressedStart, compressedEnd), `length` is
 * its uncompressed size. Crosses member boundaries (trailer + next header). Throws SpanDecodeError
 * instead of returning short or extra bytes.
 */
export function inflateSpan(compressed: Buffer, checkpoint: Checkpoint, length: number): Buffer {
  const strm = new ZStream();
  if (zlibInflateInit2(strm, RAW_WINDOW_BITS) !== Z_OK) throw new SpanDecodeError('cannot initialise inflate');
  let start = 0;
  if (checkpoint.bits) {
    if (compressed.length === 0) throw new SpanDecodeError('span is empty but its checkpoint starts mid-byte');
    // inflatePrime: the top `bits` bits of the shared byte are the first bits of this span.
    const state = strm.state as InflateInternals;
    state.hold = compressed[0]! >> (8 - checkpoint.bits);
    state.bits = checkpoint.bits;
    start = 1;
  }
  if (checkpoint.uncompressedOffset > 0 && zlibInflateSetDictionary(strm, checkpoint.window) !== Z_OK) throw new SpanDecodeError('cannot set the checkpoint window');
  const output = Buffer.alloc(length);
  strm.input = compressed;
  strm.next_in = start;
  strm.avail_in = compressed.length - start;
  strm.output = output;
  strm.next_out = 0;
  strm.avail_out = length;
  while (strm.next_out < length) {
    const ret = zlibInflate(strm, Z_BLOCK);
    if (ret === Z_STREAM_END) {
      if (strm.next_out < length) enterNextMember(strm, compressed);
    } else if (ret === Z_BUF_ERROR || (ret === Z_OK && strm.avail_in === 0 && strm.next_out < length)) {
      throw new SpanDecodeError(`span's ${compressed.length} compressed bytes inflate to ${strm.next_out} bytes, short of ${length}`);
    } else if (ret !== Z_OK) {
      throw new SpanDecodeError(`span data is corrupt at byte ${strm.next_in}: ${strm.msg || `inflate returned ${ret}`}`);
    }
  }
  return output;
}

/** After a member's last block: skip its 8-byte trailer and the next member's header, restart raw inflate. */
function enterNextMember(strm: ZStream, compressed: Buffer): void {
  const headerAt = strm.next_in + 8;
  const headerLength = gzipHeaderLength(compressed, headerAt);
  zlibInflateReset(strm);
  strm.next_in = headerAt + headerLength;
  strm.avail_in = compressed.length - strm.next_in;
}

const FHCRC = 2;
const FEXTRA = 4;
const FNAME = 8;
const FCOMMENT = 16;

/** Length of the gzip header at `at` (RFC 1952), or SpanDecodeError when it is not one or is cut short. */
export function gzipHeaderLength(buf: Uint8Array, at: number): number {
  const need = (end: number): void => {
    if (end > buf.length) throw new SpanDecodeError(`gzip header at span byte ${at} is cut short`);
  };
  need(at + 10);
  if (buf[at] !== 0x1f || buf[at + 1] !== 0x8b || buf[at + 2] !== 8) throw new SpanDecodeError(`no gzip member header at span byte ${at}`);
  const flags = buf[at + 3]!;
  let pos = at + 10;
  if (flags & FEXTRA) {
    need(pos + 2);
    pos += 2 + (buf[pos]! | (buf[pos + 1]! << 8));
  }
  for (const flag of [FNAME, FCOMMENT]) {
    if (!(flags & flag)) continue;
    while (pos < buf.length && buf[pos] !== 0) pos++;
    need(pos + 1);
    pos++;
  }
  if (flags & FHCRC) pos += 2;
  need(pos);
  return pos - at;
}
