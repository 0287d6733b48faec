/**
 * Test harness for a real OCI registry: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1.
 *
 * ```ts
 * const registry = await startRegistry({ auth: { kind: 'htpasswd', users: { alice: 'pw' } } });
 * try {
 *   const image = await registry.pushImage('team/app', 'v1', { layers: [Buffer.from('layer bytes')] });
 *   // ... talk to `registry.host` (e.g. `127.0.0.1:40123`) ...
 * } finally {
 *   await registry.stop();
 * }
 * ```
 *
 * - Each registry gets a temp dir (config, storage, htpasswd, certificates), a free port on
 *   127.0.0.1, and is stopped by the PID this harness started (also at process exit, if a test
 *   crashes before `stop`). The temp dir is removed on stop.
 * - Auth: `{ kind: 'htpasswd', users }` (bcrypt file written with `htpasswd` when installed, else
 *   python3's crypt) or `{ kind: 'token', users }`, which also starts a token server on 127.0.0.1 that
 *   signs real RS256 JWTs (x5c header, root cert bundle given to the registry).
 * - `tls: true` serves HTTPS with a fresh self-signed certificate for 127.0.0.1 (`caPem`, `caPath`).
 * - Push helpers (`pushBlob`, `pushManifest`, `pushImage`, `pushIndex`) authenticate as the
 *   harness's own admin user, so tests only configure the credentials they want to test.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash, createPrivateKey, randomBytes, sign, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';

const execFileAsync = promisify(execFile);
const REGISTRY_BINARY = '/usr/bin/docker-registry';
const ADMIN_USER = 'harness-admin';

export type RegistryAuth =
  | { kind: 'htpasswd'; users: Record<string, string> }
  | {
      kind: 'token';
      users: Record<string, string>;
      /** Refresh tokens (docker "identity tokens") accepted by the token server's OAuth2 POST, mapped to user names. */
      identityTokens?: Record<string, string>;
      /** Token lifetime in seconds (default 300). */
      expiresIn?: number;
      /** Let anonymous clients pull (default false). */
      anonymousPull?: boolean;
    };

export interface RegistryOptions {
  auth?: RegistryAuth;
  tls?: boolean;
}

export interface Descriptor {
  mediaType: string;
  digest: `sha256:${string}`;
  size: number;
  annotations?: Record<string, string>;
  platform?: { os: string; architecture: string; variant?: string };
}

export interface LayerSpec {
  data: Buffer;
  mediaType?: string;
  annotations?: Record<string, string>;
}

export interface PushedImage {
  manifest: Record<string, unknown>;
  manifestBytes: Buffer;
  /** Descriptor of the manifest itself (for building an index). */
  descriptor: Descriptor;
  config: Descriptor;
  layers: Descriptor[];
}

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  /** Token requests served so far (including refused ones). */
  requests: number;
  /** Requests that presented valid Basic credentials or a refresh token, by user. */
  grantsByUser: Map<string, number>;
}

export interface TestRegistry {
  /** `127.0.0.1:PORT`: the registry part of image references. */
  host: string;
  /** `http://127.0.0.1:PORT` or `https://...`. */
  url: string;
  pid: number;
  dir: string;
  /** PEM of the self-signed certificate when `tls` is on. */
  caPem?: string;
  caPath?: string;
  tokenServer?: TokenServer;
  pushBlob(repository: string, data: Buffer): Promise<Descriptor>;
  pushManifest(repository: string, reference: string, body: Buffer, mediaType: string): Promise<Descriptor>;
  /** Pushes layers, a config and an OCI manifest; tags it when `tag` is given. */
  pushImage(repository: string, tag: string | undefined, spec: { layers: (Buffer | LayerSpec)[]; platform?: { os: string; architecture: string; variant?: string } }): Promise<PushedImage>;
  /** Pushes an OCI index over already pushed manifests. */
  pushIndex(repository: string, tag: string, manifests: Descriptor[]): Promise<Descriptor>;
  stop(): Promise<void>;
}

export function sha256Digest(data: Buffer): `sha256:${string}` {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** A free TCP port on 127.0.0.1 (released just before use; startRegistry retries on a lost race). */
export async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve, reject) => server.listen(0, '127.0.0.1', resolve).once('error', reject));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * A bcrypt htpasswd line (the only hash distribution accepts). Cost 4, the minimum: the registry
 * checks the hash on every request, and cost 12 would add about 250 ms to each.
 */
async function htpasswdLine(user: string, password: string): Promise<string> {
  try {
    const { stdout } = await execFileAsync('htpasswd', ['-nbB', '-C', '4', user, password]);
    return stdout.trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const script = 'import crypt,sys,warnings\nwarnings.simplefilter("ignore")\nprint(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))';
  const { stdout } = await execFileAsync('python3', ['-c', script, password]);
  return `${user}:${stdout.trim()}`;
}

async function selfSignedCertificate(dir: string, name: string, subjectAltName: string): Promise<{ certPath: string; keyPath: string }> {
  const certPath = join(dir, `${name}.crt`);
  const keyPath = join(dir, `${name}.key`);
  await execFileAsync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', `/CN=${name}`, '-addext', `subjectAltName=${subjectAltName}`]);
  return { certPath, keyPath };
}

function base64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

interface RunningTokenServer extends TokenServer {
  certPath: string;
  server: Server;
}

/** Docker's token protocol (GET with Basic auth, POST refresh-token grant), signing RS256 JWTs. */
async function startTokenServer(dir: string, auth: Extract<RegistryAuth, { kind: 'token' }>, adminPassword: string): Promise<RunningTokenServer> {
  const { certPath, keyPath } = await selfSignedCertificate(dir, 'token-issuer', 'DNS:token-issuer');
  const certificate = new X509Certificate(await readFile(certPath));
  const privateKey = createPrivateKey(await readFile(keyPath));
  const users: Record<string, string> = { ...auth.users, [ADMIN_USER]: adminPassword };
  const service = 'lazypull-test-registry';
  const issuer = 'lazypull-test-issuer';
  const state = { requests: 0, grantsByUser: new Map<string, number>() };

  const issue = (res: ServerResponse, user: string | undefined, scopes: string[], serviceParam: string | null): void => {
    const now = Math.floor(Date.now() / 1000);
    const expiresIn = auth.expiresIn ?? 300;
    const access = scopes.flatMap((scope) => {
      const [type, name, actions] = scope.split(':');
      if (type !== 'repository' || !name || !actions) return [];
      const wanted = actions.split(',');
      const allowed = user === ADMIN_USER ? wanted : wanted.filter((a) => a === 'pull' && (user !== undefined || auth.anonymousPull === true));
      return [{ type, name, actions: allowed }];
    });
    const headerJson = { typ: 'JWT', alg: 'RS256', x5c: [certificate.raw.toString('base64')] };
    const claims = { iss: issuer, sub: user ?? '', aud: serviceParam ?? service, exp: now + expiresIn, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access };
    const signingInput = `${base64url(JSON.stringify(headerJson))}.${base64url(JSON.stringify(claims))}`;
    const token = `${signingInput}.${base64url(sign('sha256', Buffer.from(signingInput), privateKey))}`;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token, access_token: token, expires_in: expiresIn, issued_at: new Date(now * 1000).toISOString() }));
  };
  const grant = (user: string): void => {
    state.grantsByUser.set(user, (state.grantsByUser.get(user) ?? 0) + 1);
  };

  const server = createHttpServer((req, res) => {
    state.requests++;
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      if (url.pathname !== '/token') return res.writeHead(404).end();
      if (req.method === 'POST') {
        const form = new URLSearchParams(await readBody(req));
        const user = auth.identityTokens?.[form.get('refresh_token') ?? ''];
        if (form.get('grant_type') !== 'refresh_token' || !user) return res.writeHead(401).end('{"error":"invalid_grant"}');
        grant(user);
        return issue(res, user, (form.get('scope') ?? '').split(' ').filter(Boolean), form.get('service'));
      }
      let user: string | undefined;
      const authorization = req.headers.authorization;
      if (authorization?.startsWith('Basic ')) {
        const decoded = Buffer.from(authorization.slice(6), 'base64').toString('utf8');
        const colon = decoded.indexOf(':');
        const name = decoded.slice(0, colon);
        if (colon < 0 || users[name] !== decoded.slice(colon + 1)) return res.writeHead(401, { 'www-authenticate': 'Basic realm="token"' }).end();
        user = name;
        grant(name);
      } else if (!auth.anonymousPull) {
        return res.writeHead(401, { 'www-authenticate': 'Basic realm="token"' }).end();
      }
      issue(res, user, url.searchParams.getAll('scope'), url.searchParams.get('service'));
    })().catch(() => res.writeHead(500).end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const running: RunningTokenServer = {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certPath,
    server,
    get requests() {
      return state.requests;
    },
    grantsByUser: state.grantsByUser,
  };
  return running;
}

function registryConfig(opts: { port: number; dir: string; tls?: { certPath: string; keyPath: string }; authYaml: string }): string {
  return [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(opts.dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: 127.0.0.1:${opts.port}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
    ...(opts.tls ? ['  tls:', `    certificate: ${opts.tls.certPath}`, `    key: ${opts.tls.keyPath}`] : []),
    opts.authYaml,
    '',
  ].join('\n');
}

const liveChildren = new Set<ChildProcess>();
process.once('exit', () => {
  // A test that crashed before stop() must not leave a registry behind.
  for (const child of liveChildren) if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
});

async function waitUntilServing(child: ChildProcess, url: string, dispatcher: Agent, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited with ${child.exitCode}: ${stderr()}`);
    try {
      const res = await request(`${url}/v2/`, { dispatcher });
      await res.body.dump();
      if (res.statusCode === 200 || res.statusCode === 401) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`docker-registry did not answer on ${url} within 15 s: ${stderr()}`);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  process.kill(child.pid, 'SIGTERM');
  const timer = setTimeout(() => child.pid !== undefined && child.exitCode === null && process.kill(child.pid, 'SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

/** Starts a registry; see the module comment. Always pair with `stop()` in a finally/afterAll. */
export async function startRegistry(options: RegistryOptions = {}): Promise<TestRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'lazypull-registry-'));
  const adminPassword = randomBytes(12).toString('hex');
  let tokenServer: RunningTokenServer | undefined;
  try {
    let authYaml = '';
    if (options.auth?.kind === 'htpasswd') {
      const lines = await Promise.all(Object.entries({ ...options.auth.users, [ADMIN_USER]: adminPassword }).map(([u, p]) => htpasswdLine(u, p)));
      await writeFile(join(dir, 'htpasswd'), lines.join('\n') + '\n');
      authYaml = ['auth:', '  htpasswd:', '    realm: lazypull-test', `    path: ${join(dir, 'htpasswd')}`].join('\n');
    } else if (options.auth?.kind === 'token') {
      tokenServer = await startTokenServer(dir, options.auth, adminPassword);
      authYaml = ['auth:', '  token:', `    realm: ${tokenServer.realm}`, `    service: ${tokenServer.service}`, `    issuer: ${tokenServer.issuer}`, `    rootcertbundle: ${tokenServer.certPath}`].join('\n');
    }
    const tls = options.tls ? await selfSignedCertificate(dir, 'registry', 'IP:127.0.0.1') : undefined;
    const caPem = tls ? await readFile(tls.certPath, 'utf8') : undefined;
    const dispatcher = new Agent(caPem ? { connect: { ca: caPem } } : {});

    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      const configPath = join(dir, 'config.yml');
      await writeFile(configPath, registryConfig({ port, dir, authYaml, ...(tls ? { tls } : {}) }));
      const child = spawn(REGISTRY_BINARY, ['serve', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
      liveChildren.add(child);
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => {
        stderr = (stderr + d.toString('utf8')).slice(-4000);
      });
      const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
      try {
        await waitUntilServing(child, url, dispatcher, () => stderr);
      } catch (err) {
        lastError = err;
        await stopChild(child);
        liveChildren.delete(child);
        continue;
      }
      const pusher = new Pusher(url, dispatcher, adminPassword);
      let stopped = false;
      const stop = async (): Promise<void> => {
        if (stopped) return;
        stopped = true;
        await stopChild(child);
        liveChildren.delete(child);
        await dispatcher.close();
        if (tokenServer) await new Promise<void>((resolve) => tokenServer!.server.close(() => resolve()));
        await rm(dir, { recursive: true, force: true });
      };
      return {
        host: `127.0.0.1:${port}`,
        url,
        pid: child.pid!,
        dir,
        ...(caPem && tls ? { caPem, caPath: tls.certPath } : {}),
        ...(tokenServer ? { tokenServer } : {}),
        pushBlob: (repo, data) => pusher.pushBlob(repo, data),
        pushManifest: (repo, reference, body, mediaType) => pusher.pushManifest(repo, reference, body, mediaType),
        pushImage: (repo, tag, spec) => pusher.pushImage(repo, tag, spec),
        pushIndex: (repo, tag, manifests) => pusher.pushIndex(repo, tag, manifests),
        stop,
      };
    }
    throw lastError;
  } catch (err) {
    await dispatcherlessCleanup(dir, tokenServer);
    throw err;
  }
}

async function dispatcherlessCleanup(dir: string, tokenServer: RunningTokenServer | undefined): Promise<void> {
  if (tokenServer) await new Promise<void>((resolve) => tokenServer.server.close(() => resolve()));
  await rm(dir, { recursive: true, force: true });
}

/** Minimal registry client for setting up fixtures, independent of the code under test. */
class Pusher {
  private readonly tokens = new Map<string, string>();

  constructor(
    private readonly base: string,
    private readonly dispatcher: Agent,
    private readonly adminPassword: string,
  ) {}

  private basic(): string {
    return `Basic ${Buffer.from(`${ADMIN_USER}:${this.adminPassword}`).toString('base64')}`;
  }

  private async send(method: 'GET' | 'POST' | 'PUT' | 'HEAD', url: string, repository: string, headers: Record<string, string> = {}, body?: Buffer): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
    for (let round = 0; round < 2; round++) {
      const authorization = this.tokens.get(repository);
      const res = await request(url, { method, headers: { ...headers, ...(authorization ? { authorization } : {}) }, ...(body ? { body } : {}), dispatcher: this.dispatcher });
      const data = Buffer.from(await res.body.arrayBuffer());
      if (res.statusCode !== 401 || round === 1) return { status: res.statusCode, headers: res.headers, body: data };
      const challenge = String(res.headers['www-authenticate'] ?? '');
      if (challenge.startsWith('Basic')) {
        this.tokens.set(repository, this.basic());
      } else {
        const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
        const tokenUrl = new URL(params.realm!);
        tokenUrl.searchParams.set('service', params.service ?? '');
        tokenUrl.searchParams.set('scope', `repository:${repository}:pull,push`);
        const tokenRes = await request(tokenUrl, { headers: { authorization: this.basic() } });
        const json = (await tokenRes.body.json()) as { token: string };
        this.tokens.set(repository, `Bearer ${json.token}`);
      }
    }
    throw new Error('unreachable');
  }

  async pushBlob(repository: string, data: Buffer): Promise<Descriptor> {
    const digest = sha256Digest(data);
    const start = await this.send('POST', `${this.base}/v2/${repository}/blobs/uploads/`, repository);
    if (start.status !== 202) throw new Error(`upload start for ${repository}: HTTP ${start.status} ${start.body.toString()}`);
    const location = new URL(String(start.headers.location), this.base);
    location.searchParams.set('digest', digest);
    const put = await this.send('PUT', location.href, repository, { 'content-type': 'application/octet-stream' }, data);
    if (put.status !== 201) throw new Error(`upload of ${digest}: HTTP ${put.status} ${put.body.toString()}`);
    return { mediaType: 'application/octet-stream', digest, size: data.length };
  }

  async pushManifest(repository: string, reference: string, body: Buffer, mediaType: string): Promise<Descriptor> {
    const res = await this.send('PUT', `${this.base}/v2/${repository}/manifests/${reference}`, repository, { 'content-type': mediaType }, body);
    if (res.status !== 201) throw new Error(`manifest push ${repository}:${reference}: HTTP ${res.status} ${res.body.toString()}`);
    return { mediaType, digest: sha256Digest(body), size: body.length };
  }

  async pushImage(repository: string, tag: string | undefined, spec: { layers: (Buffer | LayerSpec)[]; platform?: { os: string; architecture: string; variant?: string } }): Promise<PushedImage> {
    const platform = spec.platform ?? { os: 'linux', architecture: 'amd64' };
    const layers: Descriptor[] = [];
    for (const layer of spec.layers) {
      const { data, mediaType, annotations } = Buffer.isBuffer(layer) ? { data: layer, mediaType: undefined, annotations: undefined } : layer;
      const pushed = await this.pushBlob(repository, data);
      layers.push({ ...pushed, mediaType: mediaType ?? 'application/vnd.oci.image.layer.v1.tar+gzip', ...(annotations ? { annotations } : {}) });
    }
    const configBytes = Buffer.from(JSON.stringify({ ...platform, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) }, config: {} }));
    const config = { ...(await this.pushBlob(repository, configBytes)), mediaType: 'application/vnd.oci.image.config.v1+json' };
    const manifest = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers };
    const manifestBytes = Buffer.from(JSON.stringify(manifest));
    const descriptor = await this.pushManifest(repository, tag ?? sha256Digest(manifestBytes), manifestBytes, manifest.mediaType);
    return { manifest, manifestBytes, descriptor: { ...descriptor, platform }, config, layers };
  }

  async pushIndex(repository: string, tag: string, manifests: Descriptor[]): Promise<Descriptor> {
    const index = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests };
    return this.pushManifest(repository, tag, Buffer.from(JSON.stringify(index)), index.mediaType);
  }
}
