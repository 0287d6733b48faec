/**
 * Sequential-read detection for one open file. The kernel already reads ahead in 128 KiB requests;
 * this fetches whole chunks beyond that, so a streaming reader finds the next chunk decoded when it
 * gets there instead of waiting for a round trip per chunk.
 */
export class ReadAhead {
  private expectedOffset = -1;
  private sequentialReads = 0;
  /** Everything before this offset has already been requested. */
  private requestedEnd = 0;

  constructor(private readonly windowBytes: number) {}

  /** After serving [offset, offset + length): the range to fetch ahead, if the reader is sequential. */
  next(offset: number, length: number, fileSize: number): { offset: number; length: number } | undefined {
    const end = offset + length;
    this.sequentialReads = offset === this.expectedOffset || offset === 0 ? this.sequentialReads + 1 : 0;
    this.expectedOffset = end;
    if (this.windowBytes <= 0 || this.sequentialReads < 2 || end >= fileSize) return undefined;
    // Refill when the reader has consumed half the window: one request per half window, not per read.
    if (this.requestedEnd - end > this.windowBytes / 2) return undefined;
    const from = Math.max(end, this.requestedEnd);
    const to = Math.min(fileSize, end + this.windowBytes);
    if (to <= from) return undefined;
    this.requestedEnd = to;
    return { offset: from, length: to - from };
  }
}
