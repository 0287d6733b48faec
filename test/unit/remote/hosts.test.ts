import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostsConfigError, resolveHosts } from '../../../src/remote/index.js';

describe('resolveHosts', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lazypull-hosts-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function hostsToml(host: string, text: string, files: Record<string, string> = {}): Promise<void> {
    await mkdir(join(dir, host), { recursive: true });
    await writeFile(join(dir, host, 'hosts.toml'), text);
    for (const [name, content] of Object.entries(files)) await writeFile(join(dir, host, name), content);
  }

  it('defaults: https to the registry (docker.io is registry-1.docker.io), http for local hosts', async () => {
    const hub = await resolveHosts('docker.io', { hostsDir: null });
    expect(hub.map((e) => e.base.href)).toEqual(['https://registry-1.docker.io/v2']);
    expect([...hub[0]!.capabilities].sort()).toEqual(['pull', 'push', 'resolve']);
    expect((await resolveHosts('127.0.0.1:5000', { hostsDir: null }))[0]!.base.href).toBe('http://127.0.0.1:5000/v2');
    expect((await resolveHosts('ghcr.io', { hostsDir: null, settings: { 'ghcr.io': { plainHttp: true } } }))[0]!.base.protocol).toBe('http:');
    expect((await resolveHosts('ghcr.io', { hostsDir: dir }))[0]!.base.href).toBe('https://ghcr.io/v2');
  });

  it('reads mirrors in file order, then the server, with containerd semantics', async () => {
    await hostsToml(
      'registry.example.com',
      `server = "https://registry.example.com"
[header]
  x-server = "s"

[host."https://mirror-a.example.com/prefix"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
  ca = "mirror-ca.pem"
  [host."https://mirror-a.example.com/prefix".header]
    x-token = ["a", "b"]

[host."mirror-b.example.com:8443/registry/v2/"]
  capabilities = ["pull"]
  override_path = true
`,
      { 'mirror-ca.pem': '-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n' },
    );
    const endpoints = await resolveHosts('registry.example.com', { hostsDir: dir });
    expect(endpoints.map((e) => e.base.href)).toEqual(['https://mirror-a.example.com/prefix/v2', 'https://mirror-b.example.com:8443/registry/v2', 'https://registry.example.com/v2']);
    const [a, b, server] = endpoints;
    expect(a).toMatchObject({ skipVerify: true, mirror: true, headers: { 'x-token': 'a, b' } });
    expect(a!.ca[0]).toContain('BEGIN CERTIFICATE');
    expect([...a!.capabilities].sort()).toEqual(['pull', 'resolve']);
    expect([...b!.capabilities]).toEqual(['pull']);
    expect(server).toMatchObject({ mirror: false, skipVerify: false, headers: { 'x-server': 's' } });
  });

  it('uses _default when the host has no directory', async () => {
    await hostsToml('_default', `[host."https://catch-all.example.com"]\n`);
    const endpoints = await resolveHosts('quay.io', { hostsDir: dir });
    expect(endpoints.map((e) => e.host)).toEqual(['catch-all.example.com', 'quay.io']);
  });

  it('names the file in configuration errors', async () => {
    await hostsToml('broken.example.com', `[host."https://m.example.com"]\n  capabilities = ["pull", "fly"]\n`);
    await expect(resolveHosts('broken.example.com', { hostsDir: dir })).rejects.toThrow(HostsConfigError);
    await expect(resolveHosts('broken.example.com', { hostsDir: dir })).rejects.toThrow(/broken\.example\.com\/hosts\.toml: unknown capability "fly"/);
    await hostsToml('syntax.example.com', `server = `);
    await expect(resolveHosts('syntax.example.com', { hostsDir: dir })).rejects.toThrow(/syntax\.example\.com\/hosts\.toml/);
  });
});
