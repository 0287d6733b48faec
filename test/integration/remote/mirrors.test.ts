import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CountingObserver, RegistryClient } from '../../../src/remote/index.js';
import { freePort, startRegistry, type PushedImage, type TestRegistry } from '../../helpers/registry.js';

describe('mirrors from containerd hosts.toml', () => {
  const layer = randomBytes(300_000);
  let upstream: TestRegistry;
  let mirror: TestRegistry;
  let onlyOnMirror: PushedImage;
  let onlyUpstream: PushedImage;
  let hostsDir: string;

  beforeAll(async () => {
    [upstream, mirror] = await Promise.all([startRegistry(), startRegistry()]);
    onlyOnMirror = await mirror.pushImage('team/app', 'v1', { layers: [layer] });
    onlyUpstream = await upstream.pushImage('team/other', 'v1', { layers: [Buffer.from('upstream only')] });
    hostsDir = await mkdtemp(join(tmpdir(), 'lazypull-certsd-'));
  });
  afterAll(async () => {
    await Promise.all([upstream?.stop(), mirror?.stop()]);
    if (hostsDir) await rm(hostsDir, { recursive: true, force: true });
  });

  async function writeHosts(content: string): Promise<void> {
    await mkdir(join(hostsDir, upstream.host), { recursive: true });
    await writeFile(join(hostsDir, upstream.host, 'hosts.toml'), content);
  }

  it('resolves and reads through the mirror when it has the image', async () => {
    await writeHosts(`server = "${upstream.url}"\n\n[host."${mirror.url}"]\n  capabilities = ["pull", "resolve"]\n`);
    const observer = new CountingObserver();
    const client = new RegistryClient({ hostsDir, dockerConfig: false, observer });
    try {
      const resolved = await client.resolve(`${upstream.host}/team/app:v1`);
      expect(resolved.manifestDescriptor.digest).toBe(onlyOnMirror.descriptor.digest);
      expect(resolved.host).toBe(mirror.host);
      const source = await client.openBlob(resolved.reference, resolved.manifest.layers[0]!);
      expect((await source.readAt(1234, 5678)).equals(layer.subarray(1234, 1234 + 5678))).toBe(true);
      expect(observer.requestsTo(upstream.host)).toBe(0);
      // Every exchange, token and blob ones included, went to the mirror.
      expect(observer.exchanges.every((e) => e.host === mirror.host)).toBe(true);
    } finally {
      await client.close();
    }
  });

  it('falls back to the server when the mirror lacks the image or is down', async () => {
    const deadPort = await freePort();
    for (const mirrorUrl of [mirror.url, `http://127.0.0.1:${deadPort}`]) {
      await writeHosts(`server = "${upstream.url}"\n\n[host."${mirrorUrl}"]\n  capabilities = ["pull", "resolve"]\n`);
      const client = new RegistryClient({ hostsDir, dockerConfig: false, retry: { maxAttempts: 2, baseDelayMs: 10 } });
      try {
        const resolved = await client.resolve(`${upstream.host}/team/other:v1`);
        expect(resolved.manifestDescriptor.digest).toBe(onlyUpstream.descriptor.digest);
        expect(resolved.host).toBe(upstream.host);
        const source = await client.openBlob(resolved.reference, { digest: resolved.manifest.layers[0]!.digest });
        expect((await source.readAt(0, 13)).toString()).toBe('upstream only');
        expect(source.host).toBe(upstream.host);
      } finally {
        await client.close();
      }
    }
  });

  it('does not resolve tags on a mirror without the resolve capability', async () => {
    await writeHosts(`server = "${upstream.url}"\n\n[host."${mirror.url}"]\n  capabilities = ["pull"]\n`);
    const client = new RegistryClient({ hostsDir, dockerConfig: false });
    try {
      await expect(client.resolve(`${upstream.host}/team/app:v1`)).rejects.toThrow(/not found on/);
    } finally {
      await client.close();
    }
  });
});
