import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { DEFAULT_CONFIG_PATH, DEFAULT_DAEMON_CONFIG, isLogLevel, loadDaemonConfig, type DaemonConfig, type LogLevel } from '../../config/config.js';
import { startDaemon } from '../../daemon/daemon.js';
import { createLogger } from '../../snapshot/logger.js';

export interface ServeFlags {
  config: string;
  root?: string;
  address?: string;
  logLevel?: LogLevel;
  metricsAddress?: string;
}

function parseLogLevel(value: string): LogLevel {
  if (!isLogLevel(value)) throw new InvalidArgumentError('must be debug, info, warn or error');
  return value;
}

function parseHostPort(value: string): string {
  if (!/^[^\s/]+:\d{1,5}$/.test(value)) throw new InvalidArgumentError('must be host:port, e.g. 127.0.0.1:9811');
  return value;
}

/** The config file, then the flags given on the command line on top of it. */
export async function effectiveConfig(flags: ServeFlags): Promise<DaemonConfig> {
  const fromFile = await loadDaemonConfig(flags.config);
  const metricsAddress = flags.metricsAddress ?? fromFile.metricsAddress;
  return {
    ...fromFile,
    root: flags.root ?? fromFile.root,
    address: flags.address ?? fromFile.address,
    logLevel: flags.logLevel ?? fromFile.logLevel,
    ...(metricsAddress !== undefined ? { metricsAddress } : {}),
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

/** Runs the daemon until SIGINT/SIGTERM: stops serving, unmounts the layers, removes the socket, closes the database. */
export async function runServe(flags: ServeFlags): Promise<void> {
  const config = await effectiveConfig(flags);
  const log = createLogger(config.logLevel);
  const stopped = untilSignal();
  const daemon = await startDaemon(config, log);
  const signal = await stopped;
  log.info('shutting down', { signal });
  await daemon.close();
  log.info('stopped');
  // A FUSE session thread whose mount vanished from outside can keep the event loop alive forever.
  process.exit(0);
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the snapshotter daemon: containerd.services.snapshots.v1 on a unix socket (a containerd proxy plugin)')
    .option('--config <file>', 'TOML config file (a missing file means defaults)', DEFAULT_CONFIG_PATH)
    .option('--root <dir>', `where snapshots, metadata and the cache live (default ${DEFAULT_DAEMON_CONFIG.root})`)
    .option('--address <socket>', `the daemon's unix socket (default ${DEFAULT_DAEMON_CONFIG.address})`)
    .option('--log-level <level>', 'debug, info, warn or error (default info)', parseLogLevel)
    .option('--metrics-address <host:port>', 'serve Prometheus metrics at http://host:port/metrics (default: off)', parseHostPort)
    .action(async (flags: ServeFlags) => runServe(flags));
}
