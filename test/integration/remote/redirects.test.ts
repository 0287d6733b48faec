import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CountingObserver, RegistryClient, parseReference } from '../../../src/remote/index.js';
import { startRegistry, type PushedImage, type TestRegistry } from '../../helpers/registry.js';
import { startRedirectProxy, type RedirectProxy } from './proxies.js';

describe('blobs redirected to expiring storage URLs', () => {
  const layer = randomBytes(1024 * 1024);
  let registry: TestRegistry;
  let proxy: RedirectProxy;
  let image: PushedImage;

  beforeAll(async () => {
    registry = await startRegistry();
    image = await registry.pushImage('team/app', 'v1', { layers: [layer] });
    proxy = await startRedirectProxy(registry.url, 3);
  });
  afterAll(async () => {
    await proxy?.close();
    await registry?.stop();
  });

  it('remembers the final URL, and re-resolves through the registry when storage answers 403', async () => {
    const observer = new CountingObserver();
    const client = new RegistryClient({ hostsDir: null, dockerConfig: false, observer, blobRead: { coalesce: false } });
    try {
      const ref = parseReference(`${proxy.host}/team/app`);
      const source = await client.openBlob(ref, image.layers[0]!);
      for (let i = 0; i < 10; i++) {
        const start = i * 100_000;
        expect((await source.readAt(start, 4096)).equals(layer.subarray(start, start + 4096))).toBe(true);
      }
      // 10 reads, 3 per signature: 4 signatures; every reuse skipped the registry round trip.
      expect(proxy.redirects).toBe(4);
      expect(proxy.storageRefusals).toBe(3);
      expect(proxy.storageRequests).toBe(13);
      // The signature never reaches the metrics labels or would-be log lines unredacted.
      expect(JSON.stringify(observer.exchanges)).not.toMatch(/X-Signature=sig/);
    } finally {
      await client.close();
    }
  });
});
