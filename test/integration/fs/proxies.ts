/**
 * Proxies on 127.0.0.1 between the registry client and the registry: a TCP relay that can be stopped
 * and started again on the same port (the registry "goes away" and "comes back") and can throttle, and
 * an HTTP relay that flips one bit in range responses.
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { request } from 'undici';

export interface TcpRelay {
  host: string;
  /** Refuses new connections and cuts open ones. */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  start(): Promise<void>;
  /** Bytes per second from upstream to clients (0: unlimited). */
  throttle(bytesPerSecond: number): void;
  /** Bytes relayed from upstream to clients so far (HTTP headers included). */
  bytesFromUpstream(): number;
  close(): Promise<void>;
}

export async function startTcpRelay(upstreamPort: number): Promise<TcpRelay> {
  const sockets = new Set<Socket>();
  let rate = 0;
  let port = 0;
  let relayed = 0;
  const relay = (client: Socket): void => {
    const upstream = connect(upstreamPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream);
    upstream.on('data', (data: Buffer) => {
      relayed += data.length;
      client.write(data);
      if (rate > 0) {
        upstream.pause();
        setTimeout(() => upstream.resume(), (data.length / rate) * 1000);
      }
    });
  };
  let server: Server = createServer(relay);
  const listen = () => new Promise<void>((resolve, reject) => server.listen(port, '127.0.0.1', resolve).once('error', reject));
  await listen();
  port = (server.address() as AddressInfo).port;
  const stop = async () => {
    if (!server.listening) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of sockets) s.destroy();
    await closed;
  };
  return {
    host: `127.0.0.1:${port}`,
    stop,
    async start() {
      server = createServer(relay);
      await listen();
    },
    throttle(bytesPerSecond) {
      rate = bytesPerSecond;
    },
    bytesFromUpstream: () => relayed,
    close: stop,
  };
}

export interface BitFlipProxy {
  host: string;
  /** While true, every 206 answer has one bit flipped in the middle of its body. */
  flipping: boolean;
  flipped: number;
  close(): Promise<void>;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host', 'content-length']);

export async function startBitFlipProxy(upstream: string): Promise<BitFlipProxy> {
  const state = { flipping: true, flipped: 0 };
  const server: HttpServer = createHttpServer((req, res) => {
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    request(`${upstream}${req.url ?? '/'}`, { method: (req.method ?? 'GET') as 'GET', headers })
      .then(async (answer) => {
        const body = Buffer.from(await answer.body.arrayBuffer());
        if (state.flipping && answer.statusCode === 206 && body.length > 0) {
          body[body.length >> 1]! ^= 0x10;
          state.flipped++;
        }
        for (const [name, value] of Object.entries(answer.headers)) {
          if (value !== undefined && !HOP_BY_HOP.has(name)) res.setHeader(name, value);
        }
        res.writeHead(answer.statusCode);
        res.end(body);
      })
      .catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxy: BitFlipProxy = {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    get flipping() {
      return state.flipping;
    },
    set flipping(on: boolean) {
      state.flipping = on;
    },
    get flipped() {
      return state.flipped;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return proxy;
}
