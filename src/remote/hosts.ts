import { readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { DEFAULT_HOSTS_DIR } from '../config/paths.js';
import { RegistryError } from './errors.js';
import { DOCKER_HUB, isLocalHost } from './reference.js';

export type Capability = 'pull' | 'resolve' | 'push';

/** lazypull's own per-host settings (from its config file), keyed by host[:port]. */
export interface HostSettings {
  /** Talk plain HTTP to this host (default only for localhost and 127.0.0.0/8). */
  plainHttp?: boolean;
  skipVerify?: boolean;
  /** CA certificate files (PEM) trusted for this host. */
  ca?: string[];
  headers?: Record<string, string>;
  maxConnections?: number;
  username?: string;
  password?: string;
  identityToken?: string;
}

/** One place to send requests for a registry: a mirror or the registry itself. */
export interface HostEndpoint {
  /** API root including `/v2` (or the override path), without trailing slash. */
  base: URL;
  /** host[:port] of `base`; credentials are looked up under it. */
  host: string;
  capabilities: ReadonlySet<Capability>;
  skipVerify: boolean;
  /** PEM contents of extra CAs. */
  ca: string[];
  headers: Record<string, string>;
  /** True for entries other than the registry's own server: requests then carry `?ns=<registry>`. */
  mirror: boolean;
}

export interface HostsOptions {
  /** containerd's certs.d directory; `null` disables hosts.toml. Default `/etc/containerd/certs.d`. */
  hostsDir?: string | null;
  settings?: Record<string, HostSettings>;
  /** Force plain HTTP for every host (the CLI's --plain-http). */
  plainHttp?: boolean;
}

export { DEFAULT_HOSTS_DIR } from '../config/paths.js';
const ALL_CAPABILITIES: Capability[] = ['pull', 'resolve', 'push'];

export class HostsConfigError extends RegistryError {
  override name = 'HostsConfigError';
}

/** The address docker.io is actually served from. */
function defaultServer(registry: string): string {
  return registry === DOCKER_HUB ? 'registry-1.docker.io' : registry;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stringList(value: unknown, field: string, file: string): string[] {
  if (value === undefined) return [];
  if (typeof value === 'string') return [value];
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value;
  throw new HostsConfigError(`${file}: ${field} must be a string or a list of strings`);
}

function headerTable(value: unknown, file: string): Record<string, string> {
  if (value === undefined) return {};
  if (!isRecord(value)) throw new HostsConfigError(`${file}: header must be a table`);
  const out: Record<string, string> = {};
  for (const [name, v] of Object.entries(value)) out[name.toLowerCase()] = stringList(v, `header.${name}`, file).join(', ');
  return out;
}

async function readCas(paths: string[], relativeTo: string): Promise<string[]> {
  return Promise.all(paths.map((p) => readFile(isAbsolute(p) ? p : join(relativeTo, p), 'utf8')));
}

/** Puts a scheme on bare host names: https except for local hosts, as containerd does. */
function withScheme(address: string, plainHttp: boolean): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(address)) return address;
  return `${plainHttp || isLocalHost(address) ? 'http' : 'https'}://${address}`;
}

interface RawHost {
  address: string;
  table: Record<string, unknown>;
  mirror: boolean;
}

async function buildEndpoint(raw: RawHost, options: HostsOptions, file: string, dir: string): Promise<HostEndpoint> {
  const bareHost = raw.address.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').split('/')[0] ?? raw.address;
  const settings = options.settings?.[bareHost] ?? {};
  const url = new URL(withScheme(raw.address, options.plainHttp === true || settings.plainHttp === true));
  if (options.plainHttp || settings.plainHttp) url.protocol = 'http:';
  let path = url.pathname.replace(/\/+$/, '');
  if (raw.table.override_path !== true && !path.endsWith('/v2')) path = `${path}/v2`;
  url.pathname = path;
  const capabilities = raw.table.capabilities === undefined ? ALL_CAPABILITIES : stringList(raw.table.capabilities, 'capabilities', file);
  for (const c of capabilities) if (!ALL_CAPABILITIES.includes(c as Capability)) throw new HostsConfigError(`${file}: unknown capability ${JSON.stringify(c)}`);
  const ca = [...(await readCas(stringList(raw.table.ca, 'ca', file), dir)), ...(await readCas(settings.ca ?? [], process.cwd()))];
  return {
    base: url,
    host: url.host,
    capabilities: new Set(capabilities as Capability[]),
    skipVerify: raw.table.skip_verify === true || settings.skipVerify === true,
    ca,
    headers: { ...headerTable(raw.table.header, file), ...settings.headers },
    mirror: raw.mirror,
  };
}

async function readHostsToml(dir: string): Promise<Record<string, unknown> | undefined> {
  const file = join(dir, 'hosts.toml');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw err;
  }
  try {
    return parseToml(text);
  } catch (err) {
    throw new HostsConfigError(`${file}: ${(err as Error).message}`);
  }
}

/**
 * The endpoints to try for `registry`, in order: the `[host."..."]` mirrors of
 * `<hostsDir>/<registry>/hosts.toml` (or `_default/hosts.toml`), then its `server` (default: the
 * registry itself). Users configure mirrors once for containerd and lazypull alike.
 */
export async function resolveHosts(registry: string, options: HostsOptions = {}): Promise<HostEndpoint[]> {
  const hostsDir = options.hostsDir === undefined ? DEFAULT_HOSTS_DIR : options.hostsDir;
  let config: Record<string, unknown> | undefined;
  let dir = '';
  if (hostsDir !== null) {
    for (const name of [registry, '_default']) {
      dir = join(hostsDir, name);
      config = await readHostsToml(dir);
      if (config) break;
    }
  }
  const file = join(dir, 'hosts.toml');
  const raws: RawHost[] = [];
  const hosts = config?.host;
  if (hosts !== undefined) {
    if (!isRecord(hosts)) throw new HostsConfigError(`${file}: host must be a table of tables`);
    for (const [address, table] of Object.entries(hosts)) {
      if (!isRecord(table)) throw new HostsConfigError(`${file}: host.${JSON.stringify(address)} must be a table`);
      raws.push({ address, table, mirror: true });
    }
  }
  const server = typeof config?.server === 'string' ? config.server : defaultServer(registry);
  const serverTable = config ?? {};
  raws.push({ address: server, table: { ...serverTable, override_path: serverTable.override_path ?? false }, mirror: false });
  const endpoints = await Promise.all(raws.map((raw) => buildEndpoint(raw, options, file, dir)));
  // A mirror that serves the registry's own host is the registry itself, not a namespace-qualified mirror.
  return endpoints.map((e) => (e.host === defaultServer(registry) ? { ...e, mirror: false } : e));
}
