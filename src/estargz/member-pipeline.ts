import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { Digester, type Digest } from '../util/digest.js';

/** Where compressed bytes go, in order. */
export interface ByteSink {
  write(data: Uint8Array): Promise<void>;
}

export interface PipelineOptions {
  codec: 'gzip' | 'zstd';
  level: number;
  /** Worker threads compressing members (default: one per core). */
  workers?: number;
}

export type OffsetListener = (compressedOffset: number) => void;
export type DigestListener = (digest: Digest) => void;

interface Batch {
  data: Buffer[];
  bytes: number;
  memberLengths: number[];
  digestRanges: number[];
  offsetListeners: OffsetListener[][];
  digestListeners: DigestListener[];
}

interface Dispatched {
  result: Promise<WorkerResult>;
  offsetListeners: OffsetListener[][];
  digestListeners: DigestListener[];
}

interface WorkerResult {
  compressed: Uint8Array;
  compressedLengths: number[];
  digests: string[];
}

/** Batches below this size wait for more members: one worker round trip per tiny file would dominate. */
const BATCH_BYTES = 1 << 20;
const BATCH_MEMBERS = 1024;

/**
 * Compresses members (independent gzip members or zstd frames) on a worker pool while keeping the output
 * in submission order, so the blob is byte-for-byte the same whatever the scheduling. Memory is bounded
 * by the number of batches in flight.
 */
export class MemberPipeline {
  private readonly pool: Piscina;
  private readonly inFlight: Dispatched[] = [];
  private readonly maxInFlight: number;
  private batch: Batch = emptyBatch();
  private currentMember: Buffer[] = [];
  private currentMemberBytes = 0;
  private currentDigestRanges: number[] = [];
  private currentDigestListeners: DigestListener[] = [];
  private currentOffsetListeners: OffsetListener[] = [];
  private readonly blobDigester = new Digester();
  /** Bytes written to the sink so far. */
  written = 0;

  constructor(
    private readonly sink: ByteSink,
    private readonly options: PipelineOptions,
  ) {
    const threads = Math.max(1, options.workers ?? availableParallelism());
    this.pool = new Piscina({
      filename: new URL('./compress-worker.js', import.meta.url).href,
      minThreads: 0, // see WorkerDecoder: no worker may still be loading when the pool is destroyed
      maxThreads: threads,
      idleTimeout: 1000,
    });
    this.maxInFlight = threads * 3;
  }

  /** Uncompressed bytes in the current member. */
  get memberBytes(): number {
    return this.currentMemberBytes;
  }

  append(data: Buffer): void {
    if (data.length === 0) return;
    this.currentMember.push(data);
    this.currentMemberBytes += data.length;
  }

  /** Calls `listener` with the current member's compressed offset once it is written. */
  whenWritten(listener: OffsetListener): void {
    this.currentOffsetListeners.push(listener);
  }

  /** Starts a range of the current member whose sha256 `listener` receives once it is computed. */
  openDigest(listener: DigestListener): void {
    this.currentDigestRanges.push(this.currentMemberBytes, -1);
    this.currentDigestListeners.push(listener);
  }

  closeDigest(): void {
    this.currentDigestRanges[this.currentDigestRanges.length - 1] = this.currentMemberBytes;
  }

  /** Ends the current member (if it has bytes) so the next append starts a new one. */
  async endMember(): Promise<void> {
    if (this.currentMemberBytes === 0) return;
    const base = this.batch.bytes;
    this.batch.data.push(...this.currentMember);
    this.batch.bytes += this.currentMemberBytes;
    this.batch.memberLengths.push(this.currentMemberBytes);
    for (const r of this.currentDigestRanges) this.batch.digestRanges.push(base + r);
    this.batch.digestListeners.push(...this.currentDigestListeners);
    this.batch.offsetListeners.push(this.currentOffsetListeners);
    this.currentMember = [];
    this.currentMemberBytes = 0;
    this.currentDigestRanges = [];
    this.currentDigestListeners = [];
    this.currentOffsetListeners = [];
    if (this.batch.bytes >= BATCH_BYTES || this.batch.memberLengths.length >= BATCH_MEMBERS) await this.dispatch();
  }

  private async dispatch(): Promise<void> {
    const batch = this.batch;
    if (batch.memberLengths.length === 0) return;
    this.batch = emptyBatch();
    const data = Buffer.allocUnsafeSlow(batch.bytes);
    let pos = 0;
    for (const part of batch.data) {
      part.copy(data, pos);
      pos += part.length;
    }
    const task = { codec: this.options.codec, level: this.options.level, data, memberLengths: batch.memberLengths, digestRanges: batch.digestRanges };
    const result = this.pool.run(task, { transferList: [data.buffer as ArrayBuffer] }) as Promise<WorkerResult>;
    this.inFlight.push({ result, offsetListeners: batch.offsetListeners, digestListeners: batch.digestListeners });
    while (this.inFlight.length >= this.maxInFlight) await this.writeOldest();
  }

  private async writeOldest(): Promise<void> {
    const batch = this.inFlight.shift()!;
    const result = await batch.result;
    const compressed = Buffer.from(result.compressed.buffer, result.compressed.byteOffset, result.compressed.byteLength);
    result.compressedLengths.forEach((length, member) => {
      for (const listener of batch.offsetListeners[member]!) listener(this.written);
      this.written += length;
    });
    result.digests.forEach((hex, i) => batch.digestListeners[i]!(`sha256:${hex}`));
    await this.writeRaw(compressed, false);
  }

  /** Writes bytes that are not part of a member (TOC, footer) after everything queued. */
  async writeRaw(data: Uint8Array, countsAsMemberData = true): Promise<void> {
    if (countsAsMemberData) this.written += data.length;
    this.blobDigester.update(data);
    await this.sink.write(data);
  }

  /** Ends the current member and waits until every member is written. */
  async flush(): Promise<void> {
    await this.endMember();
    await this.dispatch();
    while (this.inFlight.length > 0) await this.writeOldest();
  }

  blobDigest(): Digest {
    return this.blobDigester.digest();
  }

  async close(): Promise<void> {
    // Settle what is still queued (after an error) so no worker result arrives on a destroyed pool.
    await Promise.allSettled(this.inFlight.splice(0).map((d) => d.result));
    await this.pool.destroy();
  }
}

function emptyBatch(): Batch {
  return { data: [], bytes: 0, memberLengths: [], digestRanges: [], offsetListeners: [], digestListeners: [] };
}
