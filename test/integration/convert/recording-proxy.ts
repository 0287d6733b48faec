/**
 * A streaming HTTP proxy on 127.0.0.1 in front of the harness registry that records every request
 * (method, path, query), so tests can see which blobs were uploaded, mounted or only checked. It can
 * also refuse manifest PUTs, as a registry with a read-only tag or a full quota does.
 */
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  status: number;
}

export interface RecordingProxy {
  host: string;
  requests: RecordedRequest[];
  /** Answer manifest PUTs with 403 DENIED while set. */
  refuseManifestPuts: boolean;
  close(): Promise<void>;
}

export async function startRecordingProxy(upstreamHost: string): Promise<RecordingProxy> {
  const sockets = new Set<Socket>();
  const proxy = { requests: [] as RecordedRequest[], refuseManifestPuts: false };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://${upstreamHost}`);
    const record = (status: number): void => void proxy.requests.push({ method: req.method ?? '', path: url.pathname, query: url.searchParams, status });
    if (proxy.refuseManifestPuts && req.method === 'PUT' && url.pathname.includes('/manifests/')) {
      record(403);
      req.resume();
      res.writeHead(403, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'DENIED', message: 'requested access to the resource is denied' }] }));
      return;
    }
    const upstream = request({ host: '127.0.0.1', port: Number(upstreamHost.split(':')[1]), method: req.method, path: req.url, headers: req.headers }, (answer) => {
      record(answer.statusCode ?? 0);
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(proxy, {
    host: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  });
}

/** Blob uploads that carried bytes (the closing PUT of a monolithic upload, or PATCHes), by digest where known. */
export function uploadedDigests(requests: RecordedRequest[]): string[] {
  return requests.filter((r) => r.method === 'PUT' && r.path.includes('/blobs/uploads/')).map((r) => r.query.get('digest') ?? '');
}

/** Successful cross-repository mounts, by digest. */
export function mountedDigests(requests: RecordedRequest[]): string[] {
  return requests.filter((r) => r.method === 'POST' && r.query.has('mount') && r.status === 201).map((r) => r.query.get('mount') ?? '');
}
