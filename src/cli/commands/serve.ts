import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { DEFAULT_CONFIG_PATH, DEFAULT_DAEMON_CONFIG, isLogLevel, loadDaemonConfig, type DaemonConfig, type LogLevel } from '../../config/config.js';
import { serveSnapshots } from '../../grpc/server.js';
import { createLogger } from '../../snapshot/logger.js';
import { NoRemoteLayers } from '../../snapshot/remote-layer.js';
import { Snapshotter } from '../../snapshot/snapshotter.js';
import { SqliteMetadataStore } from '../../snapshot/sqlite-store.js';

export interface ServeFlags {
  config: string;
  root?: string;
  address?: string;
  logLevel?: LogLevel;
}

function parseLogLevel(value: string): LogLevel {
  if (!isLogLevel(value)) throw new InvalidArgumentError('must be debug, info, warn or error');
  return value;
}

/** The config file, then the flags given on the command line on top of it. */
export async function effectiveConfig(flags: ServeFlags): Promise<DaemonConfig> {
  const fromFile = await loadDaemonConfig(flags.config);
  return {
    root: flags.root ?? fromFile.root,
    address: flags.address ?? fromFile.address,
    logLevel: flags.logLevel ?? fromFile.logLevel,
  };
}

function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/** Runs the daemon until SIGINT/SIGTERM: stops serving, removes the socket, closes the database. */
export async function runServe(flags: ServeFlags): Promise<void> {
  const config = await effectiveConfig(flags);
  const log = createLogger(config.logLevel);
  await mkdir(config.root, { recursive: true, mode: 0o700 });
  const store = new SqliteMetadataStore(join(config.root, 'metadata.db'));
  const stopped = untilSignal();
  try {
    const core = await Snapshotter.open({ root: config.root, store, remote: new NoRemoteLayers(), logger: log });
    const server = await serveSnapshots(core, config.address, log);
    log.info('serving containerd snapshots', { address: config.address, root: config.root, remote_layers: NoRemoteLayers.REASON });
    const signal = await stopped;
    log.info('shutting down', { signal });
    await server.close();
  } finally {
    store.close();
  }
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the snapshotter daemon: containerd.services.snapshots.v1 on a unix socket (a containerd proxy plugin)')
    .option('--config <file>', 'TOML config file (a missing file means defaults)', DEFAULT_CONFIG_PATH)
    .option('--root <dir>', `where snapshots and metadata live (default ${DEFAULT_DAEMON_CONFIG.root})`)
    .option('--address <socket>', `the daemon's unix socket (default ${DEFAULT_DAEMON_CONFIG.address})`)
    .option('--log-level <level>', 'debug, info, warn or error (default info)', parseLogLevel)
    .action(async (flags: ServeFlags) => runServe(flags));
}
