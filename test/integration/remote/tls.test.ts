import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryClient, TlsError, type RegistryClientOptions } from '../../../src/remote/index.js';
import { startRegistry, type PushedImage, type TestRegistry } from '../../helpers/registry.js';

describe('HTTPS registry with a private CA', () => {
  let registry: TestRegistry;
  let image: PushedImage;
  let hostsDir: string;

  beforeAll(async () => {
    registry = await startRegistry({ tls: true });
    image = await registry.pushImage('team/app', 'v1', { layers: [Buffer.from('tls layer')] });
    hostsDir = await mkdtemp(join(tmpdir(), 'lazypull-certsd-'));
  });
  afterAll(async () => {
    await registry?.stop();
    if (hostsDir) await rm(hostsDir, { recursive: true, force: true });
  });

  async function resolveWith(hostsToml: string, options: Partial<RegistryClientOptions> = {}): Promise<string> {
    await mkdir(join(hostsDir, registry.host), { recursive: true });
    await writeFile(join(hostsDir, registry.host, 'hosts.toml'), hostsToml);
    const client = new RegistryClient({ hostsDir, dockerConfig: false, ...options });
    try {
      return (await client.resolve(`${registry.host}/team/app:v1`)).manifestDescriptor.digest;
    } finally {
      await client.close();
    }
  }

  it('trusts the CA named in hosts.toml', async () => {
    expect(await resolveWith(`server = "https://${registry.host}"\nca = "${registry.caPath}"\n`)).toBe(image.descriptor.digest);
  });

  it("trusts the CA from lazypull's host settings", async () => {
    expect(await resolveWith(`server = "https://${registry.host}"\n`, { settings: { [registry.host]: { ca: [registry.caPath!] } } })).toBe(image.descriptor.digest);
  });

  it('honours skip_verify', async () => {
    expect(await resolveWith(`server = "https://${registry.host}"\nskip_verify = true\n`)).toBe(image.descriptor.digest);
  });

  it('fails at once with a TLS error, not after retries, when the CA is unknown', async () => {
    const started = Date.now();
    await expect(resolveWith(`server = "https://${registry.host}"\n`)).rejects.toThrow(TlsError);
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
