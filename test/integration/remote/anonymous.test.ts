import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CountingObserver, RegistryClient, parseReference } from '../../../src/remote/index.js';
import { startRegistry, type PushedImage, type TestRegistry } from '../../helpers/registry.js';

describe('anonymous registry', () => {
  let registry: TestRegistry;
  let amd64: PushedImage;
  let arm64: PushedImage;
  const big = randomBytes(3 * 1024 * 1024 + 17);
  const small = Buffer.from('a small layer');

  beforeAll(async () => {
    registry = await startRegistry();
    amd64 = await registry.pushImage('team/app', 'single', { layers: [big, small], platform: { os: 'linux', architecture: 'amd64' } });
    arm64 = await registry.pushImage('team/app', undefined, { layers: [Buffer.from('arm layer')], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
    await registry.pushIndex('team/app', 'multi', [amd64.descriptor, arm64.descriptor]);
  });
  afterAll(async () => {
    await registry?.stop();
  });

  function client(observer?: CountingObserver): RegistryClient {
    return new RegistryClient({ hostsDir: null, dockerConfig: false, ...(observer ? { observer } : {}) });
  }

  it('resolves a tag to the manifest it was pushed with, pinned to its digest', async () => {
    const c = client();
    try {
      const resolved = await c.resolve(`${registry.host}/team/app:single`);
      expect(resolved.reference.digest).toBe(amd64.descriptor.digest);
      expect(resolved.manifest.layers.map((l) => l.digest)).toEqual(amd64.layers.map((l) => l.digest));
      expect(resolved.index).toBeUndefined();
    } finally {
      await c.close();
    }
  });

  it('selects the requested platform from a two-platform index', async () => {
    const c = client();
    try {
      const arm = await c.resolve(`${registry.host}/team/app:multi`, { platform: { os: 'linux', architecture: 'arm64' } });
      expect(arm.manifestDescriptor.digest).toBe(arm64.descriptor.digest);
      expect(arm.manifest.layers[0]?.digest).toBe(arm64.layers[0]?.digest);
      const amd = await c.resolve(`${registry.host}/team/app:multi`, { platform: { os: 'linux', architecture: 'amd64' } });
      expect(amd.manifestDescriptor.digest).toBe(amd64.descriptor.digest);
      expect(amd.index?.index.manifests).toHaveLength(2);
      await expect(c.resolve(`${registry.host}/team/app:multi`, { platform: { os: 'linux', architecture: 's390x' } })).rejects.toThrow(/no manifest for platform linux\/s390x.*linux\/amd64, linux\/arm64\/v8/);
    } finally {
      await c.close();
    }
  });

  it('reads exact byte ranges of a blob, probing its size when not given', async () => {
    const observer = new CountingObserver();
    const c = client(observer);
    try {
      const ref = parseReference(`${registry.host}/team/app:single`);
      const blob = await c.openBlob(ref, { digest: amd64.layers[0]!.digest });
      expect(blob.size).toBe(big.length);
      expect(observer.exchanges.some((e) => e.kind === 'probe' && e.method === 'HEAD' && e.status === 200)).toBe(true);
      expect((await blob.readAt(0, 100)).equals(big.subarray(0, 100))).toBe(true);
      expect((await blob.readAt(big.length - 10, 10)).equals(big.subarray(big.length - 10))).toBe(true);
      await expect(blob.readAt(big.length - 10, 11)).rejects.toThrow(/outside the blob/);
    } finally {
      await c.close();
    }
  });

  it('serves concurrent scattered reads with fewer requests (coalescing + multi-range) and right bytes', async () => {
    const observer = new CountingObserver();
    const c = client(observer);
    try {
      const ref = parseReference(`${registry.host}/team/app:single`);
      const blob = await c.openBlob(ref, amd64.layers[0]!);
      const offsets = Array.from({ length: 40 }, (_, i) => (i * 77_777) % (big.length - 5000));
      const results = await Promise.all(offsets.map((o) => blob.readAt(o, 4096)));
      results.forEach((data, i) => expect(data.equals(big.subarray(offsets[i]!, offsets[i]! + 4096))).toBe(true));
      const blobRequests = observer.exchanges.filter((e) => e.kind === 'blob').length;
      expect(blobRequests).toBeLessThan(offsets.length / 4);
      expect(c.multiRangeFallbackReason(registry.host)).toBeUndefined();
    } finally {
      await c.close();
    }
  });

  it('streams a whole blob and verifies its digest', async () => {
    const c = client();
    try {
      const blob = await c.openBlob(parseReference(`${registry.host}/team/app:single`), amd64.layers[0]!);
      const chunks: Buffer[] = [];
      for await (const chunk of blob.stream(1024 * 1024)) chunks.push(chunk);
      expect(Buffer.concat(chunks).equals(big)).toBe(true);
      expect((await c.fetchBlob(parseReference(`${registry.host}/team/app`), amd64.config)).length).toBe(amd64.config.size);
    } finally {
      await c.close();
    }
  });

  it('reports a missing tag with the reference and host', async () => {
    const c = client();
    try {
      await expect(c.resolve(`${registry.host}/team/app:nope`)).rejects.toThrow(new RegExp(`team/app:nope not found on ${registry.host.replace('.', '\\.')}`));
    } finally {
      await c.close();
    }
  });
});
