import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { AuthError } from '../errors.js';
import type { CredentialStore, Credentials } from './credentials.js';

interface DockerConfigFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

export interface DockerConfigOptions {
  /** Path of config.json; default `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`. */
  path?: string;
  /** Environment for credential helpers (PATH decides which `docker-credential-*` runs). */
  env?: NodeJS.ProcessEnv;
  helperTimeoutMs?: number;
}

/** docker stores Docker Hub credentials under this legacy key. */
const DOCKER_HUB_KEY = 'https://index.docker.io/v1/';
const DOCKER_HUB_HOSTS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** `https://host:5000/v1/` and `host:5000` both name host:5000. */
function hostOfKey(key: string): string {
  return key.replace(/^[a-z]+:\/\//i, '').split('/')[0] ?? key;
}

function serverUrlFor(host: string): string {
  return DOCKER_HUB_HOSTS.has(host) ? DOCKER_HUB_KEY : host;
}

/**
 * Credentials the way `docker login` left them: `auths` entries (`auth` = base64 user:password, or
 * `identitytoken`), and `credHelpers` / `credsStore` helpers run as `docker-credential-<name> get`.
 * The file is read on every lookup so a new `docker login` takes effect without a restart.
 */
export class DockerConfigCredentialStore implements CredentialStore {
  constructor(private readonly options: DockerConfigOptions = {}) {}

  private configPath(): string {
    if (this.options.path) return this.options.path;
    const dir = process.env.DOCKER_CONFIG ?? join(homedir(), '.docker');
    return join(dir, 'config.json');
  }

  private async load(): Promise<DockerConfigFile | undefined> {
    const path = this.configPath();
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    try {
      return JSON.parse(text) as DockerConfigFile;
    } catch {
      // The parser's message may quote file content, which holds secrets.
      throw new AuthError(`${path} is not valid JSON`);
    }
  }

  async get(host: string): Promise<Credentials | undefined> {
    const config = await this.load();
    if (!config) return undefined;
    const isHub = DOCKER_HUB_HOSTS.has(host);
    const matches = (key: string): boolean => hostOfKey(key) === host || (isHub && (key === DOCKER_HUB_KEY || DOCKER_HUB_HOSTS.has(hostOfKey(key))));
    const helper = Object.entries(config.credHelpers ?? {}).find(([key]) => matches(key))?.[1] ?? config.credsStore;
    if (helper) {
      const fromHelper = await this.runHelper(helper, serverUrlFor(host));
      if (fromHelper) return fromHelper;
    }
    const entry = Object.entries(config.auths ?? {}).find(([key]) => matches(key))?.[1];
    if (!entry) return undefined;
    if (entry.identitytoken) return { kind: 'identity-token', token: entry.identitytoken };
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0) throw new AuthError(`docker config entry for ${host} has a malformed "auth" field`);
      return { kind: 'basic', username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    }
    if (entry.username !== undefined && entry.password !== undefined) return { kind: 'basic', username: entry.username, password: entry.password };
    return undefined;
  }

  /** Runs `docker-credential-<name> get` with the server URL on stdin (the docker helper protocol). */
  private runHelper(name: string, serverUrl: string): Promise<Credentials | undefined> {
    const program = `docker-credential-${name}`;
    if (!/^[A-Za-z0-9._-]+$/.test(name)) return Promise.reject(new AuthError(`invalid credential helper name ${JSON.stringify(name)}`));
    return new Promise((resolve, reject) => {
      const child = spawn(program, ['get'], { env: this.options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      const timer = setTimeout(() => child.kill('SIGKILL'), this.options.helperTimeoutMs ?? 10_000);
      child.stdout.on('data', (d: Buffer) => stdout.push(d));
      child.stderr.on('data', (d: Buffer) => stderr.push(d));
      child.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new AuthError(`credential helper ${program} could not be run: ${err.code ?? err.message}`));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        const output = Buffer.concat(stdout).toString('utf8');
        if (code !== 0) {
          // Helpers report a missing entry on stdout or stderr; that means "no credentials", not a failure.
          const message = `${output} ${Buffer.concat(stderr).toString('utf8')}`;
          if (/credentials not found/i.test(message)) return resolve(undefined);
          return reject(new AuthError(`credential helper ${program} failed (${signal ? `signal ${signal}` : `exit code ${code}`})`));
        }
        try {
          const parsed = JSON.parse(output) as { Username?: string; Secret?: string };
          if (typeof parsed.Secret !== 'string' || parsed.Secret === '') return resolve(undefined);
          if (parsed.Username === '<token>') return resolve({ kind: 'identity-token', token: parsed.Secret });
          resolve({ kind: 'basic', username: parsed.Username ?? '', password: parsed.Secret });
        } catch {
          reject(new AuthError(`credential helper ${program} printed something that is not the expected JSON`));
        }
      });
      child.stdin.on('error', () => undefined);
      child.stdin.end(serverUrl);
    });
  }
}
