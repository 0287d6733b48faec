import type { Readable } from 'node:stream';

/**
 * One HTTP exchange with a registry, with the body already read (bounded). Registry bodies are
 * small (manifests, tokens) or are ranges the caller sized, so buffering lets every middleware see
 * and retry a whole exchange, including failures that only show up while reading the body.
 */
export interface HttpRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH';
  url: URL;
  headers: Record<string, string>;
  /**
   * A blob upload's body is a factory, not a stream: a retried, re-authenticated or redirected
   * request sends it again from the start.
   */
  body?: string | Buffer | (() => Readable);
  /** Largest 2xx body the caller will accept; bigger answers fail with ResponseTooLargeError. */
  maxBodyBytes: number;
  /** Token scope the auth middleware asks for, e.g. `repository:library/alpine:pull`. */
  scope?: string;
  /** Cancellation by the caller. */
  signal?: AbortSignal;
  /** Epoch ms after which no attempt may run (the per-read deadline). */
  deadline?: number;
  /** Labels for the observability hooks. */
  labels?: { kind: 'manifest' | 'blob' | 'token' | 'probe'; blob?: string };
}

export interface HttpResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", " except `www-authenticate`, which keeps all values. */
  headers: Record<string, string | string[]>;
  body: Buffer;
  /** The URL that produced this response, after redirects. */
  url: URL;
}

export type Send = (request: HttpRequest) => Promise<HttpResponse>;
export type Middleware = (next: Send) => Send;

/** `compose(base, a, b)` sends through a, then b, then base: the first middleware is the outermost. */
export function compose(base: Send, ...middlewares: Middleware[]): Send {
  return middlewares.reduceRight<Send>((next, middleware) => middleware(next), base);
}

export function header(response: HttpResponse, name: string): string | undefined {
  const value = response.headers[name.toLowerCase()];
  return Array.isArray(value) ? value.join(', ') : value;
}

export function withHeaders(request: HttpRequest, headers: Record<string, string | undefined>): HttpRequest {
  const merged = { ...request.headers };
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) delete merged[name];
    else merged[name] = value;
  }
  return { ...request, headers: merged };
}
