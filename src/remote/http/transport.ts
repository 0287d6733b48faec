import type { Dispatcher } from 'undici';
import { RequestTimeoutError, ResponseTooLargeError, TlsError, TransportError } from '../errors.js';
import type { HttpRequest, Send } from './types.js';
import { Agent, request as undiciRequest, TIMEOUT_ERROR_CODES } from './undici-agent.js';

export interface TransportOptions {
  /** Connections per origin (undici keeps one Pool per origin inside the Agent). */
  maxConnections: number;
  /** No response headers, or no body bytes, for this long fails the attempt. */
  requestTimeoutMs: number;
  /** Extra CA certificates (PEM) trusted in addition to the system ones. */
  ca?: string[];
  skipVerify?: boolean;
  /** Headers added to every request (hosts.toml `header`). */
  headers?: Record<string, string>;
}

/** Error bodies are only used to explain a failure; anything beyond this is dropped. */
const ERROR_BODY_LIMIT = 64 * 1024;

/**
 * The bottom of every middleware stack: one undici Agent (a Pool per origin, bounded connections),
 * TLS settings of the host, per-request timeouts, bounded body reads. Retries, redirects and auth are
 * middlewares above it.
 */
export class Transport {
  private readonly agent: Agent;

  constructor(private readonly options: TransportOptions) {
    this.agent = new Agent({
      connections: options.maxConnections,
      headersTimeout: options.requestTimeoutMs,
      bodyTimeout: options.requestTimeoutMs,
      connect: {
        ...(options.ca && options.ca.length > 0 ? { ca: options.ca } : {}),
        rejectUnauthorized: !options.skipVerify,
      },
    });
  }

  readonly send: Send = async (request) => {
    const signals = [request.signal];
    if (request.deadline !== undefined) signals.push(AbortSignal.timeout(Math.max(0, request.deadline - Date.now())));
    const active = signals.filter((s): s is AbortSignal => s !== undefined);
    const signal = active.length > 1 ? AbortSignal.any(active) : active[0];
    let response: Dispatcher.ResponseData;
    try {
      response = await undiciRequest(this.agent, {
        origin: request.url.origin,
        path: request.url.pathname + request.url.search,
        method: request.method,
        headers: { ...this.options.headers, ...request.headers },
        ...(request.body !== undefined ? { body: typeof request.body === 'function' ? request.body() : request.body } : {}),
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      throw this.translate(err, request);
    }
    const limit = response.statusCode >= 200 && response.statusCode < 300 ? request.maxBodyBytes : ERROR_BODY_LIMIT;
    const body = await this.readBody(response, limit, request);
    return { status: response.statusCode, headers: flattenHeaders(response.headers), body, url: request.url };
  };

  private async readBody(response: Dispatcher.ResponseData, limit: number, request: HttpRequest): Promise<Buffer> {
    const isSuccess = response.statusCode >= 200 && response.statusCode < 300;
    const declared = Number(response.headers['content-length']);
    if (request.method === 'HEAD') {
      response.body.resume();
      return Buffer.alloc(0);
    }
    if (isSuccess && Number.isFinite(declared) && declared > limit) {
      response.body.destroy();
      throw new ResponseTooLargeError(request.method, request.url, response.statusCode, limit);
    }
    const chunks: Buffer[] = [];
    let total = 0;
    try {
      for await (const chunk of response.body) {
        const buf = chunk as Buffer;
        total += buf.length;
        if (total > limit) {
          response.body.destroy();
          if (isSuccess) throw new ResponseTooLargeError(request.method, request.url, response.statusCode, limit);
          break;
        }
        chunks.push(buf);
      }
    } catch (err) {
      if (err instanceof ResponseTooLargeError) throw err;
      throw this.translate(err, request);
    }
    return Buffer.concat(chunks);
  }

  private translate(err: unknown, request: HttpRequest): Error {
    if (request.signal?.aborted) return request.signal.reason instanceof Error ? request.signal.reason : new DOMException('aborted', 'AbortError');
    const code = (err as { code?: string } | undefined)?.code ?? '';
    if (TIMEOUT_ERROR_CODES.has(code)) {
      return new RequestTimeoutError(request.method, request.url, `no data for ${this.options.requestTimeoutMs} ms`, { cause: err });
    }
    if (request.deadline !== undefined && Date.now() >= request.deadline) {
      return new RequestTimeoutError(request.method, request.url, 'deadline reached during the request', { cause: err });
    }
    if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL/.test(code)) return new TlsError(request.method, request.url, `${code}: ${(err as Error).message}`, { cause: err });
    const reason = err instanceof Error ? `${(err as { code?: string }).code ?? err.name}: ${err.message}` : String(err);
    return new TransportError(request.method, request.url, reason, { cause: err });
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

function flattenHeaders(headers: Dispatcher.ResponseData['headers']): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    // WWW-Authenticate values may contain commas themselves, so they stay separate.
    out[name] = Array.isArray(value) && name !== 'www-authenticate' ? value.join(', ') : value;
  }
  return out;
}
