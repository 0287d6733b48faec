import { Piscina } from 'piscina';
import type { ChunkRef, LayerIndex } from '../layer/layer-index.js';
import type { ChunkDecoder } from './chunk-decoder.js';

export class ChunkDecodeError extends Error {
  override name = 'ChunkDecodeError';
  constructor(
    message: string,
    readonly kind: 'corrupt' | 'verification',
  ) {
    super(message);
  }
}

type DecodeResult = Uint8Array | { error: string; kind: 'corrupt' | 'verification' };

export interface WorkerDecoderOptions {
  /**
   * Chunks that inflate to at least this many bytes go to a worker; smaller ones stay inline, where the
   * round trip costs more than the work. Default 512 KiB (benchmarks/fs/decode.ts: below it inline is
   * faster and stalls the main thread under 10 ms; a 4 MiB chunk inline stalls it about 100 ms).
   */
  minWorkerBytes: number;
  threads: number;
  /**
   * Start the workers at once and keep them (a long-running daemon): the first chunks a pull fetches
   * then neither wait for nor share the CPU with workers loading their modules, about 100 ms of CPU
   * each here. Otherwise workers start with the first task and leave after 5 s idle.
   */
  keepWarm?: boolean;
}

export const DEFAULT_WORKER_DECODER: WorkerDecoderOptions = { minWorkerBytes: 512 * 1024, threads: 2 };

/**
 * Decodes large chunks on worker threads so inflating and hashing a 4 MiB chunk (15-100 ms of gzip)
 * does not hold up every other FUSE answer on the main thread; small chunks stay inline, where a
 * worker round trip would cost more than the work. Only the shared encodings (gzip, zstd) with the
 * layer's verification on go to workers; everything else uses the format's own decode.
 */
export class WorkerDecoder implements ChunkDecoder {
  private readonly pool: Piscina;
  private readonly warming: Promise<void> | undefined;

  constructor(private readonly options: WorkerDecoderOptions = DEFAULT_WORKER_DECODER) {
    this.pool = new Piscina({
      filename: new URL('./decode-worker.js', import.meta.url).href,
      // Workers start with the first task, never at construction: destroying a pool whose worker is
      // still loading its module aborts the whole process on Node 20.19+ (a fatal error inside
      // require(esm), seen in full test runs where a mount manager was made and shut down at once).
      minThreads: options.keepWarm ? Math.max(1, options.threads) : 0,
      maxThreads: Math.max(1, options.threads),
      idleTimeout: 5000,
    });
    // A task per worker: close() waits for it, so no worker is destroyed while still loading.
    if (options.keepWarm) this.warming = Promise.all(Array.from({ length: Math.max(1, options.threads) }, () => this.pool.run({ warm: true }))).then(() => undefined, () => undefined);
  }

  async decode(index: LayerIndex, chunk: ChunkRef, compressed: Buffer): Promise<Buffer> {
    const offload = (chunk.encoding === 'gzip' || chunk.encoding === 'zstd') && chunk.innerOffset + chunk.size >= this.options.minWorkerBytes && (!index.verified || chunk.digest !== undefined);
    if (!offload) return index.decode(chunk, compressed);
    // The member gets its own buffer, moved to the worker: posting a view would copy the whole buffer
    // behind it (a batch response, 4.4 MB for python's prefetch in benchmarks/hello) for every chunk.
    const member = new Uint8Array(compressed.byteLength);
    member.set(compressed);
    const task = { encoding: chunk.encoding, compressed: member, innerOffset: chunk.innerOffset, size: chunk.size, maxInflated: chunk.maxInflated, digest: index.verified ? chunk.digest : undefined };
    const result = (await this.pool.run(task, { transferList: [member.buffer] })) as DecodeResult;
    if (!(result instanceof Uint8Array)) throw new ChunkDecodeError(`chunk at compressed offset ${chunk.compressedOffset}: ${result.error}`, result.kind);
    return Buffer.from(result.buffer, result.byteOffset, result.byteLength);
  }

  /** Worker threads alive now (status and tests). */
  get liveWorkers(): number {
    return this.pool.threads.length;
  }

  /** Resolves once the workers a `keepWarm` decoder starts have loaded (at once for the others). */
  get ready(): Promise<void> {
    return this.warming ?? Promise.resolve();
  }

  async close(): Promise<void> {
    // A worker still loading its module must not be destroyed (see minThreads above).
    await this.warming;
    await this.pool.destroy();
  }
}
