import type { RangeSource } from '../../../src/fs/chunk-fetcher.js';
import { BufferSource } from '../../../src/io/random-access.js';

/** Counts reads and lets a test delay, corrupt or stall them. */
export class ScriptedSource implements RangeSource {
  readAtCalls = 0;
  readRangesCalls: { start: number; length: number }[][] = [];
  delayMs = 0;
  stall = false;
  replace?: (offset: number, data: Buffer) => Buffer;
  private readonly inner: BufferSource;
  constructor(blob: Buffer) {
    this.inner = new BufferSource(blob);
  }
  get size(): number {
    return this.inner.size;
  }
  async readAt(offset: number, length: number): Promise<Buffer> {
    this.readAtCalls++;
    return this.answer(offset, await this.inner.readAt(offset, length));
  }
  async readRanges(ranges: readonly { start: number; length: number }[]): Promise<Buffer[]> {
    this.readRangesCalls.push([...ranges]);
    return Promise.all(ranges.map(async (r) => this.answer(r.start, await this.inner.readAt(r.start, r.length))));
  }
  private async answer(offset: number, data: Buffer): Promise<Buffer> {
    if (this.stall) await new Promise(() => undefined);
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    return this.replace ? this.replace(offset, data) : data;
  }
}
