import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as undici from 'undici';
import { describe, expect, it } from 'vitest';
import { Agent, request, requestApi, TIMEOUT_ERROR_CODES } from '../../../src/remote/http/undici-agent.js';

describe('undici Agent imported without the index', () => {
  it('is the class undici exports, and its request API the one the index installs', () => {
    expect(Agent).toBe(undici.Agent);
    expect(requestApi).toBe(undici.Dispatcher.prototype.request);
  });

  it('makes a request through the request API it imported', async () => {
    const server = createServer((_req, res) => res.end('pong'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const agent = new Agent();
    try {
      const { port } = server.address() as AddressInfo;
      const response = await request(agent, { origin: `http://127.0.0.1:${port}`, path: '/', method: 'GET' });
      expect(response.statusCode).toBe(200);
      expect(await response.body.text()).toBe('pong');
    } finally {
      await agent.close();
      server.close();
    }
  });

  it('knows the codes of every undici timeout error', () => {
    const codes = [new undici.errors.ConnectTimeoutError(), new undici.errors.HeadersTimeoutError(), new undici.errors.BodyTimeoutError()].map((e) => (e as Error & { code: string }).code);
    expect(new Set(codes)).toEqual(TIMEOUT_ERROR_CODES);
  });
});
