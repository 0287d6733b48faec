/**
 * lazypull's configuration file (TOML). A missing file means defaults; unknown keys and wrong types are
 * errors naming the key, so a typo never silently changes nothing. Command-line flags override it.
 * Every key, its default and meaning is listed in CONFIG_KEYS (and the README's config section).
 */
import { readFile } from 'node:fs/promises';
import { parse } from 'smol-toml';

import { DEFAULT_CONFIG_PATH, DEFAULT_DAEMON_ADDRESS } from './paths.js';

export { DEFAULT_CONFIG_PATH } from './paths.js';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface DaemonConfig {
  root: string;
  address: string;
  logLevel: LogLevel;
  /** host:port of the Prometheus endpoint; undefined: no metrics server. */
  metricsAddress?: string;
  layers: {
    /** Serve a layer lazily only when its TOC digest is known and matches. */
    verify: boolean;
    resolveTimeoutSec: number;
    restoreFailure: 'report' | 'fail';
  };
  fetch: {
    prefetch: boolean;
    /** Without a landmark: prefetch the first this many compressed bytes. */
    prefetchBytes: number;
    /** A layer of at most this many compressed bytes is prefetched whole (unless it has a range profile). */
    prefetchWholeLayerBytes: number;
    background: boolean;
    /** A FUSE read that cannot get its bytes within this time answers EIO. */
    readTimeoutSec: number;
    /** An on-demand fetch brings the small files that follow it within this many compressed bytes. */
    smallFileReadAheadBytes: number;
    prefetchWaitSec: number;
    prefetchWaitMaxBytes: number;
  };
  cache: {
    /** '' means `<root>/cache`. */
    dir: string;
    maxDiskBytes: number;
    maxMemoryBytes: number;
  };
  soci: {
    /** Serve plain gzip layers lazily through their SOCI index's zTOCs. */
    enable: boolean;
    /** Also find v1 SOCI indexes through the referrers API and the `sha256-<hex>` tag. */
    referrers: boolean;
  };
  registry: {
    /** containerd's hosts.toml tree (mirrors, CAs, plain HTTP); '' disables it. */
    hostsDir: string;
  };
}

export const DEFAULT_DAEMON_CONFIG: Readonly<DaemonConfig> = Object.freeze<DaemonConfig>({
  root: '/var/lib/lazypull',
  address: DEFAULT_DAEMON_ADDRESS,
  logLevel: 'info',
  layers: { verify: true, resolveTimeoutSec: 30, restoreFailure: 'report' },
  fetch: { prefetch: true, prefetchBytes: 0, prefetchWholeLayerBytes: 8 << 20, background: true, readTimeoutSec: 30, smallFileReadAheadBytes: 64 << 10, prefetchWaitSec: 0, prefetchWaitMaxBytes: 128 << 20 },
  cache: { dir: '', maxDiskBytes: 10 * 1024 ** 3, maxMemoryBytes: 256 * 1024 ** 2 },
  soci: { enable: true, referrers: false },
  registry: { hostsDir: '/etc/containerd/certs.d' },
});

type Check = (value: unknown) => string | undefined;

interface KeySpec {
  /** Where the value goes: a top-level field or `section.field`. */
  path: string;
  check: Check;
  help: string;
}

const absolutePath: Check = (v) => (typeof v === 'string' && v.startsWith('/') ? undefined : 'must be an absolute path');
const pathOrEmpty: Check = (v) => (v === '' ? undefined : absolutePath(v));
const boolean: Check = (v) => (typeof v === 'boolean' ? undefined : 'must be true or false');
const oneOf = (values: readonly string[]): Check => (v) => (typeof v === 'string' && values.includes(v) ? undefined : `must be one of ${values.join(', ')}`);
const count = (min: number): Check => (v) => (typeof v === 'number' && Number.isSafeInteger(v) && v >= min ? undefined : `must be an integer >= ${min}`);
const hostPort: Check = (v) => (typeof v === 'string' && /^[^\s/]+:\d{1,5}$/.test(v) ? undefined : 'must be host:port, e.g. "127.0.0.1:9811"');

/** TOML key (dotted for tables) -> where it goes, its check, and what it means. */
export const CONFIG_KEYS: Record<string, KeySpec> = {
  root: { path: 'root', check: absolutePath, help: 'snapshots, metadata.db, layer tails and (by default) the cache' },
  address: { path: 'address', check: absolutePath, help: "the gRPC socket containerd's proxy_plugins entry points at" },
  log_level: { path: 'logLevel', check: oneOf(LOG_LEVELS), help: 'debug | info | warn | error' },
  metrics_address: { path: 'metricsAddress', check: hostPort, help: 'serve Prometheus metrics on http://host:port/metrics (off when unset)' },
  'layers.verify': { path: 'layers.verify', check: boolean, help: 'lazy only with a TOC digest to check the TOC against' },
  'layers.resolve_timeout_sec': { path: 'layers.resolveTimeoutSec', check: count(1), help: 'a layer not mounted in this time is pulled normally' },
  'layers.restore_failure': { path: 'layers.restoreFailure', check: oneOf(['report', 'fail']), help: 'a remote snapshot that cannot be mounted at start: report it and go on, or fail the start' },
  'fetch.prefetch': { path: 'fetch.prefetch', check: boolean, help: 'fetch the landmark region at mount' },
  'fetch.prefetch_bytes': { path: 'fetch.prefetchBytes', check: count(0), help: 'without a landmark, prefetch this many bytes from the start of the layer' },
  'fetch.prefetch_whole_layer_bytes': { path: 'fetch.prefetchWholeLayerBytes', check: count(0), help: 'prefetch a layer of at most this many compressed bytes whole at mount (0: off)' },
  'fetch.background': { path: 'fetch.background', check: boolean, help: 'fetch the rest of each layer in the background' },
  'fetch.read_timeout_sec': { path: 'fetch.readTimeoutSec', check: count(1), help: 'a read that cannot get its bytes in this time answers EIO' },
  'fetch.small_file_read_ahead_bytes': { path: 'fetch.smallFileReadAheadBytes', check: count(0), help: 'an on-demand fetch also brings the small files that follow it within this many compressed bytes (0: off)' },
  'fetch.prefetch_wait_sec': { path: 'fetch.prefetchWaitSec', check: count(0), help: 'before a container starts, wait at most this long for its prefetch' },
  'fetch.prefetch_wait_max_bytes': { path: 'fetch.prefetchWaitMaxBytes', check: count(0), help: 'do not wait for prefetches larger than this' },
  'cache.dir': { path: 'cache.dir', check: pathOrEmpty, help: 'chunk cache directory (default <root>/cache)' },
  'cache.max_disk_bytes': { path: 'cache.maxDiskBytes', check: count(1), help: 'disk bound of the chunk cache (LRU eviction)' },
  'cache.max_memory_bytes': { path: 'cache.maxMemoryBytes', check: count(1), help: 'memory bound of decompressed chunks' },
  'soci.enable': { path: 'soci.enable', check: boolean, help: 'mount plain gzip layers lazily when a SOCI index has their zTOC (label, then the v2 annotation)' },
  'soci.referrers': { path: 'soci.referrers', check: boolean, help: 'also find v1 SOCI indexes through the referrers API and the sha256-<hex> tag' },
  'registry.hosts_dir': { path: 'registry.hostsDir', check: pathOrEmpty, help: "containerd's hosts.toml directory ('' to ignore it)" },
};

export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

/** The config in `text`, on top of the defaults. `source` names the file in errors. */
export function parseDaemonConfig(text: string, source: string): DaemonConfig {
  let table: Record<string, unknown>;
  try {
    table = parse(text);
  } catch (err) {
    throw new Error(`${source}: ${(err as Error).message}`);
  }
  const config = structuredClone(DEFAULT_DAEMON_CONFIG) as DaemonConfig;
  for (const [key, value] of flatten(table)) {
    const spec = CONFIG_KEYS[key];
    if (!spec) throw new Error(`${source}: unknown key ${JSON.stringify(key)} (known: ${Object.keys(CONFIG_KEYS).join(', ')})`);
    const problem = spec.check(value);
    if (problem) throw new Error(`${source}: ${key} ${problem}`);
    assignPath(config, spec.path, value);
  }
  return config;
}

/** `[fetch] prefetch = true` -> ['fetch.prefetch', true]; tables nest one level. */
function flatten(table: Record<string, unknown>, prefix = ''): [string, unknown][] {
  return Object.entries(table).flatMap(([key, value]): [string, unknown][] => {
    const name = prefix === '' ? key : `${prefix}.${key}`;
    const isTable = typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
    return isTable && prefix === '' ? flatten(value as Record<string, unknown>, name) : [[name, value]];
  });
}

function assignPath(config: DaemonConfig, path: string, value: unknown): void {
  const [head, field] = path.split('.') as [string, string | undefined];
  const target = (field === undefined ? config : (config as unknown as Record<string, Record<string, unknown>>)[head]) as Record<string, unknown>;
  target[field ?? head] = value;
}

/** Reads the config file; a missing file gives the defaults, any other read error is an error. */
export async function loadDaemonConfig(path: string = DEFAULT_CONFIG_PATH): Promise<DaemonConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return structuredClone(DEFAULT_DAEMON_CONFIG) as DaemonConfig;
    throw new Error(`cannot read config ${path}: ${(err as Error).message}`);
  }
  return parseDaemonConfig(text, path);
}
