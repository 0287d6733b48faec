import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthError, DockerConfigCredentialStore } from '../../../src/remote/index.js';

describe('docker config.json credentials', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lazypull-dockercfg-'));
    env = { ...process.env, PATH: `${dir}:${process.env.PATH ?? ''}` };
    await writeFile(join(dir, 'docker-credential-token'), `#!/bin/sh\nprintf '{"Username":"<token>","Secret":"refresh-secret"}'\n`);
    await writeFile(join(dir, 'docker-credential-missing'), `#!/bin/sh\necho "credentials not found in native keychain"\nexit 1\n`);
    await writeFile(join(dir, 'docker-credential-broken'), `#!/bin/sh\necho "leaked-secret-in-output" >&2\nexit 3\n`);
    for (const name of ['token', 'missing', 'broken']) await chmod(join(dir, `docker-credential-${name}`), 0o755);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function store(config: object): Promise<DockerConfigCredentialStore> {
    const path = join(dir, `config-${Math.random()}.json`);
    await writeFile(path, JSON.stringify(config));
    return new DockerConfigCredentialStore({ path, env });
  }

  it('maps Docker Hub hosts to the legacy index key', async () => {
    const s = await store({ auths: { 'https://index.docker.io/v1/': { auth: Buffer.from('me:hub-pw').toString('base64') } } });
    expect(await s.get('registry-1.docker.io')).toEqual({ kind: 'basic', username: 'me', password: 'hub-pw' });
    expect(await s.get('ghcr.io')).toBeUndefined();
  });

  it('reads an identity token from a helper that answers <token>', async () => {
    const s = await store({ credHelpers: { 'ghcr.io': 'token' } });
    expect(await s.get('ghcr.io')).toEqual({ kind: 'identity-token', token: 'refresh-secret' });
  });

  it('treats "credentials not found" as no credentials, and falls back to auths', async () => {
    const s = await store({ credsStore: 'missing', auths: { 'ghcr.io': { identitytoken: 'idt' } } });
    expect(await s.get('ghcr.io')).toEqual({ kind: 'identity-token', token: 'idt' });
  });

  it('reports a failing helper without its output', async () => {
    const s = await store({ credsStore: 'broken' });
    const err = await s.get('ghcr.io').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthError);
    expect((err as Error).message).toMatch(/docker-credential-broken failed \(exit code 3\)/);
    expect((err as Error).message).not.toContain('leaked-secret');
  });

  it('reports a missing helper and a corrupt file without quoting content', async () => {
    await expect((await store({ credsStore: 'nonexistent' })).get('ghcr.io')).rejects.toThrow(/docker-credential-nonexistent could not be run: ENOENT/);
    const path = join(dir, 'corrupt.json');
    await writeFile(path, '{"auths": {"x": {"auth": "c2VjcmV0"}} oops');
    const err = await new DockerConfigCredentialStore({ path }).get('x').catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/is not valid JSON$/);
    expect((err as Error).message).not.toContain('c2VjcmV0');
  });
});
