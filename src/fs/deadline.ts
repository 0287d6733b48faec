/** Raised when an operation outlives its deadline; the filesystem answers EIO. */
export class DeadlineExceededError extends Error {
  override name = 'DeadlineExceededError';
}

export interface Deadline {
  /** Aborts when the deadline passes (hand it to the source so the request is cancelled too). */
  readonly signal: AbortSignal;
  /** Settles like `work`, or rejects with DeadlineExceededError when the deadline passes first. */
  race<T>(work: Promise<T>): Promise<T>;
  clear(): void;
}

/**
 * A deadline that does not trust the work to honour its signal: the race settles on time even when a
 * request ignores the abort.
 */
export function deadlineSignal(ms: number): Deadline {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new DeadlineExceededError(`no answer within ${ms} ms`);
      controller.abort(error);
      reject(error);
    }, ms);
  });
  expired.catch(() => undefined);
  return {
    signal: controller.signal,
    race: (work) => Promise.race([work, expired]),
    clear: () => clearTimeout(timer),
  };
}
