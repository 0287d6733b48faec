/**
 * lazypull's configuration file (TOML). A missing file means defaults; unknown keys and wrong types are
 * errors naming the key, so a typo never silently changes nothing. Command-line flags override it.
 *
 *   root = "/var/lib/lazypull"               # snapshots, metadata.db
 *   address = "/run/lazypull/lazypull.sock"   # the gRPC socket containerd's proxy_plugins entry points at
 *   log_level = "info"                        # debug | info | warn | error
 */
import { readFile } from 'node:fs/promises';
import { parse } from 'smol-toml';

export const DEFAULT_CONFIG_PATH = '/etc/lazypull/config.toml';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface DaemonConfig {
  root: string;
  address: string;
  logLevel: LogLevel;
}

export const DEFAULT_DAEMON_CONFIG: Readonly<DaemonConfig> = {
  root: '/var/lib/lazypull',
  address: '/run/lazypull/lazypull.sock',
  logLevel: 'info',
};

/** TOML key -> config field, with the check its value must pass. */
const KEYS: Record<string, { field: keyof DaemonConfig; check: (value: unknown) => string | undefined }> = {
  root: { field: 'root', check: absolutePath },
  address: { field: 'address', check: absolutePath },
  log_level: { field: 'logLevel', check: logLevel },
};

function absolutePath(value: unknown): string | undefined {
  if (typeof value !== 'string' || !value.startsWith('/')) return 'must be an absolute path';
  return undefined;
}

function logLevel(value: unknown): string | undefined {
  return typeof value === 'string' && (LOG_LEVELS as readonly string[]).includes(value) ? undefined : `must be one of ${LOG_LEVELS.join(', ')}`;
}

export function isLogLevel(value: string): value is LogLevel {
  return logLevel(value) === undefined;
}

/** The config in `text`, on top of the defaults. `source` names the file in errors. */
export function parseDaemonConfig(text: string, source: string): DaemonConfig {
  let table: Record<string, unknown>;
  try {
    table = parse(text);
  } catch (err) {
    throw new Error(`${source}: ${(err as Error).message}`);
  }
  const config: DaemonConfig = { ...DEFAULT_DAEMON_CONFIG };
  for (const [key, value] of Object.entries(table)) {
    const spec = KEYS[key];
    if (!spec) throw new Error(`${source}: unknown key ${JSON.stringify(key)} (known: ${Object.keys(KEYS).join(', ')})`);
    const problem = spec.check(value);
    if (problem) throw new Error(`${source}: ${key} ${problem}`);
    Object.assign(config, { [spec.field]: value });
  }
  return config;
}

/** Reads the config file; a missing file gives the defaults, any other read error is an error. */
export async function loadDaemonConfig(path: string = DEFAULT_CONFIG_PATH): Promise<DaemonConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { ...DEFAULT_DAEMON_CONFIG };
    throw new Error(`cannot read config ${path}: ${(err as Error).message}`);
  }
  return parseDaemonConfig(text, path);
}
