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

interface Batch {
  data: Buffer[];
  bytes: number;
  memberLengths: number[];
  digestRanges: number[];
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
  private readonly inFlight: Promise<WorkerResult>[] = [];
  private readonly maxInFlight: number;
  private batch: Batch = emptyBatch();
  private currentMember: Buffer[] = [];
  private currentMemberBytes = 0;
  private currentDigestRanges: number[] = [];
  private membersStarted = 0;
  private readonly blobDigester = new Digester();
  /** Compressed offset of each member, known once it is written. */
  readonly memberOffsets: number[] = [];
  /** Hex digests of the digest ranges, in the order the ranges were opened. */
  readonly digests: string[] = [];
  /** Bytes written to the sink so far. */
  written = 0;

  constructor(
    private readonly sink: ByteSink,
    private readonly options: PipelineOptions,
  ) {
    const threads = Math.max(1, options.workers ?? availableParallelism());
    this.pool = new Piscina({
      filename: new URL('./compress-worker.js', import.meta.url).href,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: 1000,
    });
    this.maxInFlight = threads * 3;
  }

  /** Id of the member that bytes are currently appended to. */
  get memberId(): number {
    return this.membersStarted;
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

  /** Starts a range of the current member whose sha256 is wanted; returns its slot in `digests`. */
  private digestSlots = 0;
  openDigest(): number {
    this.currentDigestRanges.push(this.currentMemberBytes, -1);
    return this.digestSlots++;
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
    this.currentMember = [];
    this.currentMemberBytes = 0;
    this.currentDigestRanges = [];
    this.membersStarted++;
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
    this.inFlight.push(this.pool.run(task, { transferList: [data.buffer as ArrayBuffer] }) as Promise<WorkerResult>);
    while (this.inFlight.length >= this.maxInFlight) await this.writeOldest();
  }

  private async writeOldest(): Promise<void> {
    const result = await this.inFlight.shift()!;
    const compressed = Buffer.from(result.compressed.buffer, result.compressed.byteOffset, result.compressed.byteLength);
    for (const length of result.compressedLengths) {
      this.memberOffsets.push(this.written);
      this.written += length;
    }
    this.digests.push(...result.digests);
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
    await Promise.allSettled(this.inFlight.splice(0));
    await this.pool.destroy();
  }
}

function emptyBatch(): Batch {
  return { data: [], bytes: 0, memberLengths: [], digestRanges: [] };
}
