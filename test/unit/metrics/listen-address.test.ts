import { describe, expect, it } from 'vitest';
import { DaemonMetrics, parseListenAddress, serveMetrics } from '../../../src/metrics/index.js';

describe('metrics listen address', () => {
  it('parses host:port, [v6]:port and :port (every interface)', () => {
    expect(parseListenAddress('127.0.0.1:9811')).toEqual({ host: '127.0.0.1', port: 9811 });
    expect(parseListenAddress('localhost:0')).toEqual({ host: 'localhost', port: 0 });
    expect(parseListenAddress('[::1]:9811')).toEqual({ host: '::1', port: 9811 });
    expect(parseListenAddress(':9811')).toEqual({ host: undefined, port: 9811 });
  });

  it('rejects what is not host:port', () => {
    for (const bad of ['9811', '127.0.0.1', '127.0.0.1:', '127.0.0.1:65536', '::1:9811', 'http://127.0.0.1:9811', '127.0.0.1:98x']) {
      expect(() => parseListenAddress(bad), bad).toThrow(/not host:port/);
    }
  });

  it('serves on IPv6 loopback with a bracketed address', async () => {
    const server = await serveMetrics('[::1]:0', new DaemonMetrics());
    try {
      expect(server.address).toMatch(/^\[::1\]:\d+$/);
      expect((await fetch(`http://${server.address}/metrics`)).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});
