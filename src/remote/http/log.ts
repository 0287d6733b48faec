import { redactHeaders, redactUrl } from '../redact.js';
import type { Middleware } from './types.js';

/** Debug log of every exchange (one line each), with URLs and headers redacted; bodies are never logged. */
export function logMiddleware(log: ((line: string) => void) | undefined): Middleware {
  return (next) => async (request) => {
    if (!log) return next(request);
    const started = performance.now();
    const headers = JSON.stringify(redactHeaders(request.headers));
    try {
      const response = await next(request);
      log(`${request.method} ${redactUrl(request.url)} ${headers} -> ${response.status} ${response.body.length}B ${(performance.now() - started).toFixed(1)}ms`);
      return response;
    } catch (err) {
      log(`${request.method} ${redactUrl(request.url)} ${headers} -> ${err instanceof Error ? `${err.name}: ${err.message}` : 'error'}`);
      throw err;
    }
  };
}
