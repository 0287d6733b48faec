import type { RemoteObserver } from '../observer.js';
import type { Middleware } from './types.js';

/** Reports each exchange (placed below retries, so every attempt counts) to the observer. */
export function observeMiddleware(observer: RemoteObserver | undefined): Middleware {
  return (next) => async (request) => {
    if (!observer?.onExchange) return next(request);
    const started = performance.now();
    const base = { host: request.url.host, method: request.method, kind: request.labels?.kind ?? 'other', ...(request.labels?.blob ? { blob: request.labels.blob } : {}) } as const;
    try {
      const response = await next(request);
      observer.onExchange({ ...base, host: response.url.host, status: response.status, bytes: response.body.length, durationMs: performance.now() - started });
      return response;
    } catch (err) {
      observer.onExchange({ ...base, bytes: 0, durationMs: performance.now() - started, error: err instanceof Error ? err.name : 'Error' });
      throw err;
    }
  };
}
