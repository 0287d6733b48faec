/**
 * containerd.services.content.v1: blobs written through the Write stream with their expected digest and
 * size (containerd verifies both on commit), and labels updated in place.
 */
import type { Digest } from '../util/digest.js';
import { containerdError, isAlreadyExists, isNotFound, type ContainerdConnection } from './connection.js';

export interface BlobDescriptor {
  digest: Digest;
  size: number;
}

export interface ContentInfo {
  digest: string;
  size: number;
  labels: Record<string, string>;
}

interface WriteResponse {
  action: string;
  offset: number;
  digest: string;
}

/** containerd accepts messages up to 16 MiB; 1 MiB keeps each request well below that. */
const WRITE_CHUNK_BYTES = 1 << 20;

export class ContentClient {
  constructor(private readonly connection: ContainerdConnection) {}

  /** The blob's info, or undefined when containerd (in this namespace) does not have it. */
  async info(digest: string): Promise<ContentInfo | undefined> {
    try {
      const response = await this.connection.unary<{ info: ContentInfo }>('content', 'Info', { digest }, `content info ${digest}`);
      return response.info;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Sets (or, with an empty value, removes) the given labels and leaves the others alone. */
  async setLabels(digest: string, labels: Record<string, string>): Promise<void> {
    const paths = Object.keys(labels).map((key) => `labels.${key}`);
    if (paths.length === 0) return;
    await this.connection.unary('content', 'Update', { info: { digest, labels }, update_mask: { paths } }, `label content ${digest}`);
  }

  /**
   * Stores a blob under `ref` (an ingest name; a second writer of the same ref waits or fails), checked
   * against `descriptor` by containerd. Returns false when containerd already had it: the labels are
   * then set on the existing blob. `onBytes` sees the running total of bytes sent.
   */
  async write(ref: string, descriptor: BlobDescriptor, data: Buffer | AsyncIterable<Buffer>, labels: Record<string, string> = {}, onBytes?: (sent: number) => void): Promise<boolean> {
    // A large layer over a slow registry can take long; the stream is bounded by a generous deadline.
    const call = this.connection.duplex('content', 'Write', 6 * 60 * 60_000);
    // Failures reach us through the iterator; this listener only keeps a late CANCELLED from going unhandled.
    call.on('error', () => undefined);
    const responses = call[Symbol.asyncIterator]() as AsyncIterator<WriteResponse>;
    const what = `write ${descriptor.digest} to containerd's content store`;
    const exchange = async (request: object): Promise<WriteResponse> => {
      call.write(request);
      const next = await responses.next();
      if (next.done) throw new Error(`${what}: the stream ended early`);
      return next.value;
    };
    const expected = { ref, total: descriptor.size, expected: descriptor.digest };
    try {
      // STAT first: containerd answers AlreadyExists right away when it has the blob.
      await exchange({ action: 'STAT', ...expected });
      let offset = 0;
      // Offset 0 on the first write discards what a crashed earlier writer of this ref left behind.
      for await (const chunk of typeof (data as AsyncIterable<Buffer>)[Symbol.asyncIterator] === 'function' ? (data as AsyncIterable<Buffer>) : [data as Buffer]) {
        for (let at = 0; at < chunk.length; at += WRITE_CHUNK_BYTES) {
          const piece = chunk.subarray(at, at + WRITE_CHUNK_BYTES);
          await exchange({ action: 'WRITE', ref, offset, data: piece });
          offset += piece.length;
          onBytes?.(offset);
        }
      }
      await exchange({ action: 'COMMIT', ...expected, offset, labels });
      return true;
    } catch (err) {
      const error = containerdError(err, what);
      if (!isAlreadyExists(error)) throw error;
      await this.setLabels(descriptor.digest, labels);
      return false;
    } finally {
      call.end();
      call.cancel();
    }
  }
}
