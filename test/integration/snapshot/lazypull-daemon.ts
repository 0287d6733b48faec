/**
 * `lazypull serve` as a child process for integration tests: built from the current sources when
 * stale, given its own root and socket in a temp dir, stopped by its PID (SIGTERM, SIGKILL after a
 * grace period), with everything under its root unmounted before the dir is removed. Also killed at
 * process exit if a test crashes first.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startContainerd, unmountUnder, type Containerd } from '../../helpers/containerd.js';

export const REPO = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');

export interface LazypullDaemon {
  dir: string;
  root: string;
  socket: string;
  pid: number;
  log(): string;
  /**
   * Sends SIGTERM and waits: the exit code (null when it had to be killed) and whether the socket
   * outlived it. `keepDir` leaves root and log for a restart (`startLazypull(args, { dir })`); mounts
   * are removed either way.
   */
  stop(options?: { keepDir?: boolean }): Promise<{ code: number | null; socketLeft: boolean }>;
}

export interface StartOptions {
  /** Reuse the dir (root, socket path, log) of a stopped daemon: a restart. */
  dir?: string;
  /** TOML written to the daemon's config file. */
  config?: string;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

async function newestSource(dir: string): Promise<number> {
  let newest = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

const SERVE_JS = join(REPO, 'dist/src/cli/commands/serve.js');
/** The sources `lazypull serve` is built from; other folders may be mid-edit by concurrent work. */
const DAEMON_SOURCES = ['src/snapshot', 'src/grpc', 'src/config', 'src/cli', 'src/daemon'].map((dir) => join(REPO, dir));

async function newestDaemonSource(): Promise<number> {
  return Math.max(...(await Promise.all(DAEMON_SOURCES.map(newestSource))));
}

const builtAt = () => (existsSync(SERVE_JS) ? statSync(SERVE_JS).mtimeMs : 0);

/**
 * The daemon runs from dist/: rebuild when a source is newer than the built serve command. tsc emits
 * even with type errors, so a failed build is accepted when the daemon's own files came out fresh
 * (type errors are the typecheck's job, not this suite's).
 */
export async function buildIfStale(): Promise<void> {
  if (builtAt() >= (await newestSource(join(REPO, 'src')))) return;
  const failure = await new Promise<string | undefined>((done) =>
    execFile('npm', ['run', '--silent', 'build'], { cwd: REPO }, (err, stdout, stderr) => done(err ? `${stdout}${stderr}` : undefined)),
  );
  if (failure !== undefined && builtAt() < (await newestDaemonSource())) throw new Error(`build failed: ${failure}`);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Starts the daemon and waits for its socket. Short temp paths: unix sockets are limited to 107 bytes. */
export async function startLazypull(extraArgs: string[] = [], options: StartOptions = {}): Promise<LazypullDaemon> {
  const dir = options.dir ?? (await mkdtemp('/tmp/lpd-'));
  const configPath = join(dir, options.config === undefined ? 'absent.toml' : 'config.toml');
  if (options.config !== undefined) await writeFile(configPath, options.config);
  const root = join(dir, 'root');
  const socket = join(dir, 'run', 'lazypull.sock');
  const logPath = join(dir, 'lazypull.log');
  const logFd = openSync(logPath, 'a');
  const args = [join(REPO, 'bin/lazypull.js'), 'serve', '--config', configPath, '--root', root, '--address', socket, '--log-level', 'debug', ...extraArgs];
  const child = spawn(process.execPath, args, { stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  live.add(child);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const log = () => (existsSync(logPath) ? readFileSync(logPath, 'utf8') : '');
  let stopped: Promise<{ code: number | null; socketLeft: boolean }> | undefined;
  const stop = (stopOptions: { keepDir?: boolean } = {}) => (stopped ??= terminate(stopOptions.keepDir ?? false));
  const terminate = async (keepDir: boolean) => {
    try {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const code = await Promise.race([exited, sleep(10_000).then(() => 'timeout' as const)]);
        if (code === 'timeout') child.kill('SIGKILL');
      }
      const code = await exited;
      return { code, socketLeft: existsSync(socket) };
    } finally {
      live.delete(child);
      unmountUnder(dir);
      if (!keepDir) await rm(dir, { recursive: true, force: true });
    }
  };
  const deadline = Date.now() + 20_000;
  while (!existsSync(socket)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`lazypull serve did not start:\n${log()}`);
    }
    await sleep(50);
  }
  return { dir, root, socket, pid: child.pid as number, log, stop };
}

/**
 * containerd with this daemon as its `lazypull` proxy snapshotter, able to run containers (containerd
 * 1.6's task service does not load without the v1 runtime plugin, and `ctr run` needs it).
 */
export function startContainerdWithLazypull(daemon: LazypullDaemon): Promise<Containerd> {
  return startContainerd({
    enablePlugins: ['io.containerd.runtime.v1.linux'],
    extraConfig: ['[proxy_plugins]', '  [proxy_plugins.lazypull]', '    type = "snapshot"', `    address = ${JSON.stringify(daemon.socket)}`].join('\n'),
  });
}
