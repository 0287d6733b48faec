/**
 * Runs at most `concurrency` tasks at a time. The first failure (or `cancel`) makes tasks that have not
 * started reject with that reason instead of running: a failed conversion stops scheduling work it
 * would throw away.
 */
export class TaskLimiter {
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  private cancelled?: { reason: unknown };

  constructor(private readonly concurrency: number) {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running >= this.concurrency) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    try {
      if (this.cancelled) throw this.cancelled.reason;
      return await task();
    } catch (err) {
      this.cancel(err);
      throw err;
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }

  cancel(reason: unknown): void {
    this.cancelled ??= { reason };
  }
}

/**
 * Like Promise.all, but waits for every promise to settle before rejecting with the first failure, so
 * no task is still writing into a temp dir that the caller removes on failure.
 */
export async function allSettledOrThrow<T>(promises: Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}
