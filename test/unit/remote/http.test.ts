import { describe, expect, it } from 'vitest';
import { Authenticator, authMiddleware } from '../../../src/remote/auth/authenticator.js';
import { parseChallenges } from '../../../src/remote/auth/challenge.js';
import { StaticCredentialStore } from '../../../src/remote/auth/credentials.js';
import { DeadlineExceededError, TransportError } from '../../../src/remote/errors.js';
import { redirectMiddleware } from '../../../src/remote/http/redirect.js';
import { backoffMs, retryAfterMs, retryMiddleware } from '../../../src/remote/http/retry.js';
import { compose, type HttpRequest, type HttpResponse, type Send } from '../../../src/remote/http/types.js';
import { redactHeaders, redactUrl } from '../../../src/remote/redact.js';

function response(status: number, headers: Record<string, string | string[]> = {}, body = '', url = 'https://r.example/v2/x'): HttpResponse {
  return { status, headers, body: Buffer.from(body), url: new URL(url) };
}

function get(url = 'https://r.example/v2/app/blobs/sha256:1', extra: Partial<HttpRequest> = {}): HttpRequest {
  return { method: 'GET', url: new URL(url), headers: {}, maxBodyBytes: 1000, scope: 'repository:app:pull', ...extra };
}

/** A fake server: answers from a function and records what it was sent. */
function fake(answer: (req: HttpRequest, n: number) => HttpResponse | Promise<HttpResponse>): Send & { seen: HttpRequest[] } {
  const seen: HttpRequest[] = [];
  const send = async (req: HttpRequest): Promise<HttpResponse> => {
    seen.push(req);
    const res = await answer(req, seen.length);
    return { ...res, url: req.url };
  };
  return Object.assign(send, { seen });
}

describe('retry middleware', () => {
  const policy = { maxAttempts: 4, baseDelayMs: 1, maxDelayMs: 5, maxRetryAfterMs: 2000 };

  it('retries 5xx and network errors, then succeeds', async () => {
    const server = fake((_req, n) => {
      if (n === 1) throw new TransportError('GET', new URL('https://r.example/'), 'ECONNRESET');
      return response(n === 2 ? 502 : 200);
    });
    const res = await compose(server, retryMiddleware(policy))(get());
    expect(res.status).toBe(200);
    expect(server.seen).toHaveLength(3);
  });

  it('does not retry 4xx', async () => {
    const server = fake(() => response(404));
    expect((await compose(server, retryMiddleware(policy))(get())).status).toBe(404);
    expect(server.seen).toHaveLength(1);
  });

  it('returns the last retryable status after the last attempt', async () => {
    const server = fake(() => response(500));
    expect((await compose(server, retryMiddleware(policy))(get())).status).toBe(500);
    expect(server.seen).toHaveLength(4);
  });

  it('honours Retry-After (seconds and HTTP date)', async () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(retryAfterMs(response(503, { 'retry-after': '2' }), now)).toBe(2000);
    expect(retryAfterMs(response(503, { 'retry-after': 'Thu, 01 Jan 2026 00:00:03 GMT' }), now)).toBe(3000);
    expect(retryAfterMs(response(503), now)).toBeUndefined();
    const server = fake((_r, n) => response(n === 1 ? 429 : 200, { 'retry-after': '1' }));
    const started = Date.now();
    await compose(server, retryMiddleware(policy))(get());
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  });

  it('backs off exponentially with full jitter, capped', () => {
    const p = { maxAttempts: 10, baseDelayMs: 100, maxDelayMs: 1000, maxRetryAfterMs: 0 };
    expect(backoffMs(p, 1, () => 0.999)).toBe(99);
    expect(backoffMs(p, 3, () => 0.999)).toBe(399);
    expect(backoffMs(p, 8, () => 0.999)).toBe(999);
    expect(backoffMs(p, 3, () => 0)).toBe(0);
  });

  it('does not sleep past the deadline', async () => {
    const server = fake(() => {
      throw new TransportError('GET', new URL('https://r.example/'), 'ECONNRESET');
    });
    const retry = retryMiddleware({ ...policy, baseDelayMs: 10_000, maxDelayMs: 10_000 });
    const started = Date.now();
    await expect(compose(server, retry)(get(undefined, { deadline: Date.now() + 200 }))).rejects.toThrow(DeadlineExceededError);
    expect(Date.now() - started).toBeLessThan(150);
  });
});

describe('redirect middleware', () => {
  it('follows to storage, drops Authorization across origins, reports the final URL', async () => {
    const server = fake((req) => (req.url.host === 'r.example' ? response(307, { location: 'https://storage.example/blob?sig=1' }) : response(200, {}, 'data')));
    const res = await compose(server, redirectMiddleware())(get(undefined, { headers: { authorization: 'Bearer secret' } }));
    expect(res.url.href).toBe('https://storage.example/blob?sig=1');
    expect(server.seen[0]!.headers.authorization).toBe('Bearer secret');
    expect(server.seen[1]!.headers.authorization).toBeUndefined();
  });

  it('stops redirect loops', async () => {
    const server = fake(() => response(302, { location: '/again' }));
    await expect(compose(server, redirectMiddleware(3))(get())).rejects.toThrow(/more than 3 redirects/);
  });
});

describe('WWW-Authenticate', () => {
  it('parses Bearer params with quoted commas, and several challenges', () => {
    expect(parseChallenges('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"')).toEqual([
      { scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull,push' } },
    ]);
    expect(parseChallenges(['Basic realm="x"', 'Bearer realm="y", error=invalid_token']).map((c) => [c.scheme, c.params.realm, c.params.error])).toEqual([
      ['basic', 'x', undefined],
      ['bearer', 'y', 'invalid_token'],
    ]);
  });
});

describe('auth middleware', () => {
  const challenge = { 'www-authenticate': 'Bearer realm="https://auth.example/token",service="svc"' };

  function setup(expiresIn = 300) {
    let clock = 1_000_000;
    let issued = 0;
    const tokenServer = fake((req) => {
      issued++;
      expect(req.headers.authorization).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);
      expect(req.url.searchParams.get('scope')).toBe('repository:app:pull');
      expect(req.url.searchParams.get('service')).toBe('svc');
      return response(200, {}, JSON.stringify({ token: `tok${issued}`, expires_in: expiresIn }));
    });
    const registry = fake((req) => (req.headers.authorization === `Bearer tok${issued}` ? response(200) : response(401, challenge)));
    const auth = new Authenticator('https://r.example', 'r.example', new StaticCredentialStore({ 'r.example': { username: 'u', password: 'p' } }), tokenServer, () => clock);
    const send = compose(registry, authMiddleware(auth));
    return { send, registry, tokenServer, advance: (ms: number) => (clock += ms), issuedCount: () => issued };
  }

  it('answers the challenge once, then reuses the cached token', async () => {
    const { send, registry, issuedCount } = setup();
    for (let i = 0; i < 3; i++) expect((await send(get())).status).toBe(200);
    expect(issuedCount()).toBe(1);
    expect(registry.seen).toHaveLength(4);
  });

  it('fetches a new token when the cached one expired', async () => {
    const { send, advance, issuedCount } = setup(60);
    await send(get());
    advance(61_000);
    expect((await send(get())).status).toBe(200);
    expect(issuedCount()).toBe(2);
  });

  it('refreshes once when a cached token is refused, and gives up after that', async () => {
    let issued = 0;
    const tokenServer = fake(() => response(200, {}, JSON.stringify({ token: `tok${++issued}`, expires_in: 300 })));
    let accepted = new Set(['tok1', 'tok2']);
    const registry = fake((req) => (accepted.has(req.headers.authorization?.slice('Bearer '.length) ?? '') ? response(200) : response(401, challenge)));
    const auth = new Authenticator('https://r.example', 'r.example', new StaticCredentialStore({}), tokenServer);
    const send = compose(registry, authMiddleware(auth));
    expect((await send(get())).status).toBe(200);
    expect(issued).toBe(1);
    // tok1 is revoked: the next request is refused once, a new token fetched, and the request repeated.
    accepted = new Set(['tok2']);
    expect((await send(get())).status).toBe(200);
    expect(issued).toBe(2);
    // Every token refused: exactly one refresh per request, then the 401 reaches the caller.
    accepted = new Set();
    const before = registry.seen.length;
    expect((await send(get())).status).toBe(401);
    expect(issued).toBe(3);
    expect(registry.seen.length - before).toBe(2);
  });

  it('leaves requests to other origins (storage) alone', async () => {
    const { tokenServer } = setup();
    const storage = fake(() => response(200));
    const auth = new Authenticator('https://r.example', 'r.example', new StaticCredentialStore({}), tokenServer);
    await compose(storage, authMiddleware(auth))(get('https://storage.example/x'));
    expect(storage.seen[0]!.headers.authorization).toBeUndefined();
  });
});

describe('redaction', () => {
  it('removes userinfo and query values from URLs, and secret headers', () => {
    const text = redactUrl('https://user:pass@s3.example/bucket/blob?X-Amz-Signature=abc&X-Amz-Credential=key');
    expect(text).toBe('https://s3.example/bucket/blob?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED');
    expect(redactHeaders({ Authorization: 'Bearer t', range: 'bytes=0-1' })).toEqual({ Authorization: 'REDACTED', range: 'bytes=0-1' });
  });
});
