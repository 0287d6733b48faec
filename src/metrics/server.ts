import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { DaemonMetrics } from './daemon-metrics.js';

export interface MetricsServer {
  /** The address actually listened on, as host:port (the port chosen when 0 was asked). */
  readonly address: string;
  close(): Promise<void>;
}

/** Serves `GET /metrics` in the Prometheus text format on `address` ("host:port", "[::1]:port"; port 0: any free one). */
export async function serveMetrics(address: string, metrics: DaemonMetrics): Promise<MetricsServer> {
  const { host, port } = parseListenAddress(address);
  const server = createServer((req, res) => void respond(req, res, metrics));
  await listen(server, host, port);
  const bound = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  return {
    address: formatAddress(bound.address, bound.port),
    close: () => (closed ??= close(server)),
  };
}

async function respond(req: IncomingMessage, res: ServerResponse, metrics: DaemonMetrics): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://metrics').pathname;
  if (path !== '/metrics') return reply(res, 404, 'not found\n');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    return reply(res, 405, 'method not allowed\n');
  }
  try {
    const body = await metrics.registry.metrics();
    res.setHeader('Content-Type', metrics.registry.contentType);
    reply(res, 200, req.method === 'HEAD' ? '' : body);
  } catch (err) {
    reply(res, 500, `collecting metrics failed: ${(err as Error).message}\n`);
  }
}

function reply(res: ServerResponse, status: number, body: string): void {
  res.statusCode = status;
  if (!res.hasHeader('Content-Type')) res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.end(body);
}

/** "host:port" or "[v6]:port"; an empty host listens on every interface. */
export function parseListenAddress(address: string): { host: string | undefined; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(address.trim());
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw new Error(`metrics address ${JSON.stringify(address)} is not host:port (e.g. 127.0.0.1:9811)`);
  const host = match[1] ?? match[2];
  return { host: host === '' ? undefined : host, port };
}

function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function listen(server: Server, host: string | undefined, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((err) => (err ? reject(err) : resolve()));
    // Prometheus keeps its connection alive between scrapes; without this close would wait for it.
    server.closeAllConnections();
  });
}
