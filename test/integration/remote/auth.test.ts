import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthError, CountingObserver, RegistryClient, parseReference, type RegistryClientOptions } from '../../../src/remote/index.js';
import { startRegistry, type PushedImage, type TestRegistry } from '../../helpers/registry.js';

/** Every string reachable from an error (message, stack, causes), to prove a secret is in none of them. */
function errorText(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err; e instanceof Error; e = e.cause) parts.push(e.message, e.stack ?? '', JSON.stringify(e));
  return parts.join('\n');
}

async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

async function withClient<T>(options: RegistryClientOptions, body: (client: RegistryClient) => Promise<T>): Promise<T> {
  const client = new RegistryClient({ hostsDir: null, dockerConfig: false, retry: { maxAttempts: 2, baseDelayMs: 10 }, ...options });
  try {
    return await body(client);
  } finally {
    await client.close();
  }
}

const layer = randomBytes(200_000);

describe('Basic auth (htpasswd)', () => {
  const password = `pw-${randomBytes(8).toString('hex')}`;
  let registry: TestRegistry;
  let image: PushedImage;

  beforeAll(async () => {
    registry = await startRegistry({ auth: { kind: 'htpasswd', users: { alice: password } } });
    image = await registry.pushImage('private/app', 'v1', { layers: [layer] });
  });
  afterAll(async () => {
    await registry?.stop();
  });

  it('pulls manifests and ranges with credentials from lazypull settings', async () => {
    await withClient({ settings: { [registry.host]: { username: 'alice', password } } }, async (client) => {
      const resolved = await client.resolve(`${registry.host}/private/app:v1`);
      expect(resolved.manifestDescriptor.digest).toBe(image.descriptor.digest);
      const blob = await client.openBlob(resolved.reference, resolved.manifest.layers[0]!);
      expect((await blob.readAt(1000, 5000)).equals(layer.subarray(1000, 6000))).toBe(true);
    });
  });

  it('fails with AuthError without credentials', async () => {
    await withClient({}, async (client) => {
      await expect(client.resolve(`${registry.host}/private/app:v1`)).rejects.toBeInstanceOf(AuthError);
    });
  });

  it('never puts a wrong password into the error', async () => {
    const wrong = `wrong-${randomBytes(8).toString('hex')}`;
    const observer = new CountingObserver();
    const log: string[] = [];
    await withClient({ settings: { [registry.host]: { username: 'alice', password: wrong } }, observer, log: (line) => log.push(line) }, async (client) => {
      const err = await caught(client.resolve(`${registry.host}/private/app:v1`));
      expect(err).toBeInstanceOf(AuthError);
      // The log shows the exchange (so it would show a leak) with the credential replaced.
      expect(log.some((line) => line.includes('"authorization":"REDACTED"') && line.includes('-> 401'))).toBe(true);
      const text = errorText(err) + JSON.stringify(observer.exchanges) + log.join('\n');
      expect(text).not.toContain(wrong);
      expect(text).not.toContain(Buffer.from(`alice:${wrong}`).toString('base64'));
    });
  });
});

describe('Bearer token auth', () => {
  const password = `pw-${randomBytes(8).toString('hex')}`;
  const identityToken = `idt-${randomBytes(8).toString('hex')}`;
  let registry: TestRegistry;
  let image: PushedImage;
  let configDir: string;

  beforeAll(async () => {
    registry = await startRegistry({ auth: { kind: 'token', users: { bob: password }, identityTokens: { [identityToken]: 'carol' }, expiresIn: 300 } });
    image = await registry.pushImage('private/app', 'v1', { layers: [layer] });
    configDir = await mkdtemp(join(tmpdir(), 'lazypull-dockercfg-'));
  });
  afterAll(async () => {
    await registry?.stop();
    if (configDir) await rm(configDir, { recursive: true, force: true });
  });

  it('follows the challenge to the token server, caches the token and reads ranges', async () => {
    const before = registry.tokenServer!.grantsByUser.get('bob') ?? 0;
    const log: string[] = [];
    await withClient({ settings: { [registry.host]: { username: 'bob', password } }, log: (line) => log.push(line) }, async (client) => {
      const resolved = await client.resolve(`${registry.host}/private/app:v1`);
      expect(resolved.manifestDescriptor.digest).toBe(image.descriptor.digest);
      const blob = await client.openBlob(resolved.reference, { digest: image.layers[0]!.digest });
      expect(blob.size).toBe(layer.length);
      for (let i = 0; i < 5; i++) expect((await blob.readAt(i * 1000, 100)).equals(layer.subarray(i * 1000, i * 1000 + 100))).toBe(true);
    });
    // One token for the repository scope serves the manifest, the probe and every range.
    expect((registry.tokenServer!.grantsByUser.get('bob') ?? 0) - before).toBe(1);
    // Neither the password nor the JWT (whose header starts with eyJ) reaches the debug log.
    expect(log.filter((line) => line.includes('/token')).length).toBe(1);
    expect(log.join('\n')).not.toContain(password);
    expect(log.join('\n')).not.toMatch(/eyJ[\w-]+\./);
  });

  it('refuses wrong credentials with an AuthError that does not contain them', async () => {
    const wrong = `wrong-${randomBytes(8).toString('hex')}`;
    await withClient({ settings: { [registry.host]: { username: 'bob', password: wrong } } }, async (client) => {
      const err = await caught(client.resolve(`${registry.host}/private/app:v1`));
      expect(err).toBeInstanceOf(AuthError);
      expect(errorText(err)).toMatch(/refused the credentials/);
      expect(errorText(err)).not.toContain(wrong);
    });
  });

  it('uses credentials from a docker config.json: auths entry, identity token, and a credential helper', async () => {
    const helperDir = join(configDir, 'bin');
    await mkdir(helperDir, { recursive: true });
    const helper = join(helperDir, 'docker-credential-lazytest');
    const seen = join(configDir, 'helper-input');
    await writeFile(helper, `#!/bin/sh\n[ "$1" = get ] || exit 1\ncat > ${seen}\nprintf '{"ServerURL":"%s","Username":"bob","Secret":"${password}"}' "$(cat ${seen})"\n`);
    await chmod(helper, 0o755);
    const env = { ...process.env, PATH: `${helperDir}:${process.env.PATH ?? ''}` };
    const cases: Array<[string, object]> = [
      ['auths', { auths: { [`http://${registry.host}`]: { auth: Buffer.from(`bob:${password}`).toString('base64') } } }],
      ['identitytoken', { auths: { [registry.host]: { identitytoken: identityToken } } }],
      ['credHelpers', { credHelpers: { [registry.host]: 'lazytest' }, auths: { [registry.host]: { auth: Buffer.from('bob:stale').toString('base64') } } }],
      ['credsStore', { credsStore: 'lazytest' }],
    ];
    for (const [name, config] of cases) {
      const path = join(configDir, `${name}.json`);
      await writeFile(path, JSON.stringify(config));
      await withClient({ dockerConfig: { path, env } }, async (client) => {
        const resolved = await client.resolve(`${registry.host}/private/app:v1`);
        expect(resolved.manifestDescriptor.digest, name).toBe(image.descriptor.digest);
      });
    }
    expect(registry.tokenServer!.grantsByUser.get('carol')).toBeGreaterThanOrEqual(1);
    // The helper protocol: the server URL arrives on stdin.
    expect(await readFile(seen, 'utf8')).toBe(registry.host);
  });

  it('refreshes an expired token once', async () => {
    const short = await startRegistry({ auth: { kind: 'token', users: { bob: password }, expiresIn: 1 } });
    try {
      const pushed = await short.pushImage('private/app', 'v1', { layers: [layer] });
      await withClient({ settings: { [short.host]: { username: 'bob', password } } }, async (client) => {
        const blob = await client.openBlob(parseReference(`${short.host}/private/app`), pushed.layers[0]!);
        expect((await blob.readAt(0, 10)).equals(layer.subarray(0, 10))).toBe(true);
        const grants = short.tokenServer!.grantsByUser.get('bob') ?? 0;
        await new Promise((r) => setTimeout(r, 1200));
        expect((await blob.readAt(10, 10)).equals(layer.subarray(10, 20))).toBe(true);
        expect(short.tokenServer!.grantsByUser.get('bob')).toBe(grants + 1);
      });
    } finally {
      await short.stop();
    }
  });
});
