import { DeadlineExceededError, RegistryError, RequestTimeoutError, TransportError, isAbortError } from '../errors.js';
import { redactUrl } from '../redact.js';
import { header, type HttpResponse, type Middleware } from './types.js';

export interface RetryPolicy {
  /** Attempts in total, the first one included. */
  maxAttempts: number;
  /** Backoff before attempt n+1 is random in [0, min(maxDelayMs, baseDelayMs * 2^n)] ("full jitter"). */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Longest Retry-After the client waits for; longer ones end the retries. */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxAttempts: 5, baseDelayMs: 200, maxDelayMs: 10_000, maxRetryAfterMs: 30_000 };

const RETRYABLE_STATUSES = new Set([408, 429, 500, 502, 503, 504]);

export function isRetryableStatus(status: number): boolean {
  return RETRYABLE_STATUSES.has(status);
}

/** Delay demanded by a Retry-After header (seconds or an HTTP date), if any. */
export function retryAfterMs(response: HttpResponse, now = Date.now()): number | undefined {
  const value = header(response, 'retry-after')?.trim();
  if (!value) return undefined;
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

export function backoffMs(policy: RetryPolicy, failedAttempts: number, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (failedAttempts - 1));
  return Math.floor(random() * ceiling);
}

/**
 * Retries network failures, timeouts and 408/429/5xx with exponential backoff and jitter, honouring
 * Retry-After. Never sleeps past the request's deadline: then it fails with DeadlineExceededError.
 * A retryable status that survives every attempt is returned for the caller to report.
 */
export function retryMiddleware(policy: RetryPolicy = DEFAULT_RETRY_POLICY): Middleware {
  return (next) => async (request) => {
    for (let attempt = 1; ; attempt++) {
      let response: HttpResponse | undefined;
      let failure: unknown;
      try {
        response = await next(request);
        if (!isRetryableStatus(response.status)) return response;
      } catch (err) {
        if (isAbortError(err) || !(err instanceof TransportError)) throw err;
        failure = err;
      }
      const deadlinePassed = request.deadline !== undefined && Date.now() >= request.deadline;
      if (deadlinePassed && failure instanceof RequestTimeoutError) throw deadlineError(request.method, request.url, attempt, failure);
      if (attempt >= policy.maxAttempts || deadlinePassed) {
        if (response) return response;
        throw withAttempts(failure, attempt);
      }
      const demanded = response ? retryAfterMs(response) : undefined;
      if (demanded !== undefined && demanded > policy.maxRetryAfterMs) {
        if (response) return response;
      }
      const delay = demanded ?? backoffMs(policy, attempt);
      if (request.deadline !== undefined && Date.now() + delay >= request.deadline) {
        if (response) return response;
        throw deadlineError(request.method, request.url, attempt, failure);
      }
      await sleep(delay, request.signal);
    }
  };
}

function deadlineError(method: string, url: URL, attempts: number, cause: unknown): DeadlineExceededError {
  const last = cause instanceof Error ? `; last error: ${cause.message}` : '';
  return new DeadlineExceededError(`${method} ${redactUrl(url)}: deadline exceeded after ${attempts} attempt(s)${last}`, { cause });
}

function withAttempts(err: unknown, attempts: number): unknown {
  if (err instanceof RegistryError && attempts > 1) err.message = `${err.message} (after ${attempts} attempts)`;
  return err;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
