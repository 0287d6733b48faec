import { open, type FileHandle } from 'node:fs/promises';

/**
 * The one way every format reader reaches bytes: a local file today, a registry blob (HTTP range
 * reads) later. Readers never assume more than this, so they work unchanged over the network.
 */
export interface RandomAccessSource {
  /** Total size in bytes. */
  readonly size: number;
  /**
   * Exactly `length` bytes starting at `offset`. A read past the end is an error, never a short
   * buffer: callers rely on the length to detect truncation.
   */
  readAt(offset: number, length: number, signal?: AbortSignal): Promise<Buffer>;
  close?(): Promise<void>;
}

export class OutOfRangeError extends RangeError {
  constructor(offset: number, length: number, size: number) {
    super(`read of ${length} bytes at offset ${offset} is outside the blob (size ${size})`);
    this.name = 'OutOfRangeError';
  }
}

export function checkRange(offset: number, length: number, size: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new OutOfRangeError(offset, length, size);
  }
}

export class FileSource implements RandomAccessSource {
  private constructor(
    private readonly handle: FileHandle,
    readonly size: number,
  ) {}

  static async open(path: string): Promise<FileSource> {
    const handle = await open(path, 'r');
    try {
      const { size } = await handle.stat();
      return new FileSource(handle, size);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  async readAt(offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    checkRange(offset, length, this.size);
    signal?.throwIfAborted();
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.handle.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) throw new OutOfRangeError(offset, length, offset + done);
      done += bytesRead;
    }
    return buf;
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

export class BufferSource implements RandomAccessSource {
  constructor(private readonly data: Buffer) {}

  get size(): number {
    return this.data.length;
  }

  async readAt(offset: number, length: number): Promise<Buffer> {
    checkRange(offset, length, this.size);
    return this.data.subarray(offset, offset + length);
  }
}
