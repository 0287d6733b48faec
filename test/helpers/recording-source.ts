import type { RandomAccessSource } from '../../src/io/random-access.js';

/** Wraps a source and records every read, so tests can assert what was (not) fetched. */
export class RecordingSource implements RandomAccessSource {
  readonly reads: { offset: number; length: number }[] = [];
  constructor(private readonly inner: RandomAccessSource) {}
  get size(): number {
    return this.inner.size;
  }
  readAt(offset: number, length: number): Promise<Buffer> {
    this.reads.push({ offset, length });
    return this.inner.readAt(offset, length);
  }
  get bytesRead(): number {
    return this.reads.reduce((n, r) => n + r.length, 0);
  }
}
