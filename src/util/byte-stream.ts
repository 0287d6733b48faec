/**
 * Pulls exact byte counts out of an async iterable of buffers (a Node stream). Tar parsing needs
 * "the next 512 bytes" and "the next N payload bytes" regardless of how the producer chunked them.
 */
export class ByteStream {
  private readonly iterator: AsyncIterator<Uint8Array>;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private ended = false;
  /** Total bytes handed out so far: the stream offset of the next byte. */
  position = 0;

  constructor(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>) {
    this.iterator = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : toAsync(source)[Symbol.asyncIterator]();
  }

  private async fill(n: number): Promise<void> {
    while (this.pendingBytes < n && !this.ended) {
      const { value, done } = await this.iterator.next();
      if (done) {
        this.ended = true;
        break;
      }
      if (value.length === 0) continue;
      const buf = Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.length);
      this.pending.push(buf);
      this.pendingBytes += buf.length;
    }
  }

  /** Up to `n` bytes; fewer only at the end of the stream. */
  async read(n: number): Promise<Buffer> {
    await this.fill(n);
    const take = Math.min(n, this.pendingBytes);
    const first = this.pending[0];
    let out: Buffer;
    if (first && first.length >= take) {
      out = first.subarray(0, take);
      if (first.length === take) this.pending.shift();
      else this.pending[0] = first.subarray(take);
    } else {
      out = Buffer.allocUnsafe(take);
      let copied = 0;
      while (copied < take) {
        const head = this.pending[0]!;
        const part = Math.min(head.length, take - copied);
        head.copy(out, copied, 0, part);
        copied += part;
        if (part === head.length) this.pending.shift();
        else this.pending[0] = head.subarray(part);
      }
    }
    this.pendingBytes -= take;
    this.position += take;
    return out;
  }

  /** Exactly `n` bytes, or an error naming what was being read. */
  async readExactly(n: number, what: string): Promise<Buffer> {
    const buf = await this.read(n);
    if (buf.length !== n) throw new Error(`unexpected end of input while reading ${what} (wanted ${n} bytes, got ${buf.length})`);
    return buf;
  }

  /** Drains the rest of the input; used to consume tar EOF padding so upstream digests complete. */
  async drain(): Promise<number> {
    let n = 0;
    for (;;) {
      const buf = await this.read(1 << 20);
      if (buf.length === 0) return n;
      n += buf.length;
    }
  }
}

async function* toAsync(source: Iterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  yield* source;
}
