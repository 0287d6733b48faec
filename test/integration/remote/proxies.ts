/**
 * HTTP proxies on 127.0.0.1 that stand between the client and a real registry to reproduce what
 * registries and object storage do in the wild: redirects with expiring signatures, and faults.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { request } from 'undici';

export type Fault =
  | 'reset-mid-body'
  | 'status-500'
  | 'status-503-retry-after'
  | 'stall'
  | 'truncated-body'
  | 'wrong-content-range'
  | 'ignore-range'
  | 'multi-range-400'
  | 'malformed-multipart';

interface UpstreamAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host', 'content-length']);

async function forward(upstream: string, req: IncomingMessage, path: string, dropRange = false): Promise<UpstreamAnswer> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || (dropRange && name === 'range')) continue;
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  const res = await request(`${upstream}${path}`, { method: (req.method ?? 'GET') as 'GET', headers });
  const body = Buffer.from(await res.body.arrayBuffer());
  const outHeaders: Record<string, string> = {};
  for (const [name, value] of Object.entries(res.headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) outHeaders[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return { status: res.statusCode, headers: outHeaders, body };
}

function send(res: ServerResponse, answer: UpstreamAnswer): void {
  res.writeHead(answer.status, { ...answer.headers, 'content-length': String(answer.body.length) });
  res.end(answer.body);
}

interface Listening {
  url: string;
  host: string;
  close(): Promise<void>;
}

async function listen(server: Server): Promise<Listening> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        // Stalled responses would keep close() waiting forever.
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface FaultProxy extends Listening {
  /** Faults applied, one each, to the next blob GETs (those carrying a Range header). */
  queue: Fault[];
  /** Faults applied to every blob GET until cleared. */
  always: Set<Fault>;
  blobRequests: number;
  /** Blob GETs that asked for several ranges at once. */
  multiRangeRequests: number;
}

const isBlobGet = (req: IncomingMessage): boolean => req.method === 'GET' && /\/blobs\/sha256:/.test(req.url ?? '');

export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const proxy = { queue: [] as Fault[], always: new Set<Fault>(), blobRequests: 0, multiRangeRequests: 0 };
  const server = createServer((req, res) => {
    void (async () => {
      const path = req.url ?? '/';
      const range = req.headers.range;
      const isRangedBlob = isBlobGet(req) && range !== undefined;
      if (isBlobGet(req)) proxy.blobRequests++;
      if (isRangedBlob && range.includes(',')) proxy.multiRangeRequests++;
      const fault = isRangedBlob ? (proxy.queue.shift() ?? [...proxy.always].find((f) => f !== 'multi-range-400' || range.includes(','))) : undefined;
      switch (fault) {
        case 'status-500':
          return res.writeHead(500).end('boom');
        case 'status-503-retry-after':
          return res.writeHead(503, { 'retry-after': '1' }).end();
        case 'stall':
          return; // Never answer: the client's timeout must fire.
        case 'multi-range-400':
          return res.writeHead(400).end('multiple ranges not supported');
        case 'ignore-range':
          return send(res, await forward(upstream, req, path, true));
        default:
          break;
      }
      const answer = await forward(upstream, req, path);
      if (fault === 'reset-mid-body' || fault === 'truncated-body') {
        res.writeHead(answer.status, { ...answer.headers, 'content-length': String(answer.body.length) });
        res.write(answer.body.subarray(0, Math.floor(answer.body.length / 2)));
        // A reset kills the socket at once; a truncation ends it cleanly after the short body.
        if (fault === 'reset-mid-body') res.socket?.resetAndDestroy();
        else setTimeout(() => res.socket?.end(), 10);
        return;
      }
      if (fault === 'wrong-content-range' && answer.headers['content-range']) {
        const shifted = answer.headers['content-range'].replace(/bytes (\d+)-(\d+)/, (_m, a: string, b: string) => `bytes ${Number(a) + 1}-${Number(b) + 1}`);
        return send(res, { ...answer, headers: { ...answer.headers, 'content-range': shifted } });
      }
      if (fault === 'malformed-multipart' && /multipart\/byteranges/.test(answer.headers['content-type'] ?? '')) {
        return send(res, { ...answer, body: answer.body.subarray(0, answer.body.length - 40) });
      }
      send(res, answer);
    })().catch(() => res.destroy());
  });
  const listening = await listen(server);
  return Object.assign(proxy, listening);
}

export interface RedirectProxy extends Listening {
  /** Redirects handed out (a client re-resolving gets a new one). */
  redirects: number;
  storageRequests: number;
  storageRefusals: number;
}

/**
 * Answers blob GETs with 307 to a "storage" URL on itself carrying a signature; each signed URL
 * works for `usesPerSignature` requests and then answers 403, like an expired pre-signed URL.
 */
export async function startRedirectProxy(upstream: string, usesPerSignature: number): Promise<RedirectProxy> {
  const state = { redirects: 0, storageRequests: 0, storageRefusals: 0 };
  const uses = new Map<string, number>();
  const server = createServer((req, res) => {
    void (async () => {
      const path = req.url ?? '/';
      const storage = /^\/storage\/([^/]+)(\/v2\/.*\/blobs\/sha256:[0-9a-f]+)\?X-Signature=(\w+)$/.exec(path);
      if (storage) {
        state.storageRequests++;
        const signature = storage[3]!;
        const used = uses.get(signature) ?? 0;
        if (used >= usesPerSignature) {
          state.storageRefusals++;
          return res.writeHead(403).end('<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>');
        }
        uses.set(signature, used + 1);
        return send(res, await forward(upstream, req, storage[2]!));
      }
      if (isBlobGet(req)) {
        state.redirects++;
        const signature = `sig${state.redirects}x${Date.now()}`;
        return res.writeHead(307, { location: `/storage/gen${state.redirects}${path}?X-Signature=${signature}` }).end();
      }
      send(res, await forward(upstream, req, path));
    })().catch(() => res.destroy());
  });
  const listening = await listen(server);
  return Object.assign(state, listening);
}
