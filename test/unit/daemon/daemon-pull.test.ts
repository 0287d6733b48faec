/**
 * DaemonPuller and the chunk cache's write hold: a pull holds the disk writes while it runs and lets
 * them go when it ends, also when it fails (here: no containerd and a registry port nothing listens on).
 */
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { DaemonPuller } from '../../../src/daemon/daemon-pull.js';
import { RegistryClient } from '../../../src/remote/index.js';

const quietLog = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** A loopback port that refuses connections: bound, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('DaemonPuller', () => {
  it('holds the cache writes for the length of a pull and releases them when it ends, failed or not', async () => {
    const events: string[] = [];
    const registry = new RegistryClient({ hostsDir: null, dockerConfig: false });
    const puller = new DaemonPuller({
      registry,
      plainHttpRegistry: { hostsDir: null, dockerConfig: false, retry: { maxAttempts: 1 } },
      warmer: { expectImage: () => undefined, dropWarmLayersOf: () => undefined },
      log: quietLog,
      holdCacheWrites: (maxMs) => {
        events.push(`hold ${maxMs}`);
        return () => events.push('release');
      },
    });
    try {
      const request = { reference: `127.0.0.1:${await closedPort()}/none/image:v1`, containerd_address: '/nonexistent/containerd.sock', namespace: 'test', snapshotter: 'lazypull', plain_http: true };
      const pulling = puller.run(request, () => undefined, new AbortController().signal);
      expect(events).toEqual(['hold 10000']);
      await expect(pulling).rejects.toThrow();
      expect(events).toEqual(['hold 10000', 'release']);
    } finally {
      await puller.close();
      await registry.close();
    }
  });
});
