/**
 * A real containerd for tests and benchmarks.
 *
 * `startContainerd()` starts Debian's containerd (1.6) as a child process in a fresh temp dir with its
 * own root, state, gRPC socket and generated config (CRI and the snapshotters and runtimes a test never
 * needs are disabled, so it is ready in well under a second), waits until it answers `ctr version`, and
 * returns a handle. The handle runs `ctr` / `ctr-remote` (or any ctr-compatible binary) against that
 * socket and namespace, and `stop()` tears everything down:
 *
 *  1. deletes the tasks of every namespace (`ctr tasks delete --force`), so containers do not outlive it;
 *  2. sends SIGTERM to the PID it started (SIGKILL after a grace period), never to anything by name;
 *  3. SIGKILLs leftover shims, found by PID as the `containerd-shim*` processes started with *this*
 *     instance's `-address` (the socket path is unique to the instance);
 *  4. unmounts everything still mounted under its temp dir, deepest first (`umount`, then `umount -l`);
 *  5. removes the temp dir (unless `keepDir`), and only once nothing is mounted under it (unmountUnder
 *     throws otherwise, so a bind mount can never be deleted through).
 *
 * `stop()` is idempotent and every live instance is also killed and unmounted synchronously when the
 * process exits, so a failing test cannot leak a daemon or a mount. Typical use:
 *
 * ```ts
 * let cd: Containerd;
 * beforeAll(async () => { cd = await startContainerd(); });
 * afterAll(async () => { await cd?.stop(); });
 * // or: await withContainerd(async (cd) => { await cd.ctr(['images', 'ls']); });
 * ```
 *
 * Later issues plug lazypull in with `extraConfig` (e.g. a `[proxy_plugins.lazypull]` table).
 * Requires root (containerd does), like the rest of the integration suite.
 */
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';

export interface ContainerdOptions {
  /**
   * TOML appended verbatim to the generated config (e.g. `[proxy_plugins.lazypull]` or
   * `[plugins."io.containerd.snapshotter.v1.overlayfs"]` tables). It must not redefine the tables the
   * harness writes: top-level keys, `[grpc]` and `[plugins."io.containerd.internal.v1.opt"]`.
   */
  extraConfig?: string;
  /** Plugin IDs to disable on top of DEFAULT_DISABLED_PLUGINS. */
  disablePlugins?: string[];
  /** Plugin IDs to keep even though DEFAULT_DISABLED_PLUGINS lists them (e.g. the CRI plugin). */
  enablePlugins?: string[];
  /** Namespace the handle's commands use (default `lazypull-test`). */
  namespace?: string;
  /** Where the temp dir is created (default os.tmpdir()). Keep it short: unix socket paths max 107 bytes. */
  parentDir?: string;
  /** How long to wait for containerd to answer (default 30 s). */
  startTimeoutMs?: number;
  /** containerd's log level (default `info`); the log is at `handle.logPath`. */
  logLevel?: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  /** Keep the temp dir (and its log) after stop(), for debugging. Mounts are removed anyway. */
  keepDir?: boolean;
  /** Extra environment for the containerd process. */
  env?: Record<string, string>;
}

/** Plugins a test never needs: disabling them keeps startup fast and the log free of noise. */
export const DEFAULT_DISABLED_PLUGINS: readonly string[] = [
  'io.containerd.grpc.v1.cri',
  'io.containerd.snapshotter.v1.aufs',
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.zfs',
  'io.containerd.runtime.v1.linux',
  'io.containerd.tracing.processor.v1.otlp',
  'io.containerd.internal.v1.tracing',
];

export interface ExecOptions {
  /** Bytes or a stream to feed to the command's stdin (default: no stdin). */
  input?: Buffer | string | Readable;
  /** Write stdout to this file instead of buffering it (for large blobs). */
  stdoutFile?: string;
  /** Kill the command (by its PID) after this long (default 10 min). */
  timeoutMs?: number;
  /** Extra environment. */
  env?: Record<string, string>;
}

export interface ExecResult {
  /** stdout as UTF-8 (empty when `stdoutFile` was given). */
  stdout: string;
  /** stdout bytes (empty when `stdoutFile` was given). */
  stdoutBytes: Buffer;
  stderr: string;
}

export class CommandError extends Error {
  override name = 'CommandError';
  constructor(
    readonly command: string[],
    readonly exitCode: number | null,
    readonly signal: NodeJS.Signals | null,
    readonly stderr: string,
  ) {
    super(`${command.join(' ')} failed (${signal ?? `exit ${exitCode}`}): ${stderr.trim().slice(-2000)}`);
  }
}

/**
 * Runs a command without a shell; resolves with its output, rejects with a CommandError (carrying
 * stderr) on a non-zero exit, a signal or the timeout.
 */
export function run(binary: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolvePromise, reject) => {
    const outFd = opts.stdoutFile === undefined ? undefined : openSync(opts.stdoutFile, 'w');
    const input = opts.input;
    const streamInput = input !== undefined && typeof input !== 'string' && !Buffer.isBuffer(input);
    const child = spawn(binary, args, {
      stdio: [input === undefined ? 'ignore' : 'pipe', outFd ?? 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
    });
    if (outFd !== undefined) closeSync(outFd);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    if (input !== undefined && child.stdin) {
      child.stdin.on('error', () => {
        /* the command exited early; its exit status tells why */
      });
      if (streamInput) (input as Readable).pipe(child.stdin);
      else child.stdin.end(input);
    }
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 600_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stderr = Buffer.concat(err).toString('utf8');
      if (code !== 0) {
        reject(new CommandError([binary, ...args], code, signal, timedOut ? `timed out\n${stderr}` : stderr));
        return;
      }
      const stdoutBytes = Buffer.concat(out);
      resolvePromise({ stdout: stdoutBytes.toString('utf8'), stdoutBytes, stderr });
    });
  });
}

const live = new Set<Containerd>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const cd of live) cd.killSync();
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Mount points at or under `dir`, deepest first (from /proc/self/mountinfo, octal escapes decoded). */
export function mountsUnder(dir: string): string[] {
  const base = resolve(dir);
  const points: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const field = line.split(' ')[4];
    if (!field) continue;
    const point = field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
    if (point === base || point.startsWith(`${base}/`)) points.push(point);
  }
  return points.sort((a, b) => b.length - a.length);
}

/**
 * Unmounts everything at or under `dir`, deepest first; a busy mount is detached lazily. Returns the
 * mount points it found; throws if some are still mounted after a few passes.
 */
export function unmountUnder(dir: string): string[] {
  const found = new Set<string>();
  for (let pass = 0; pass < 5; pass++) {
    const points = mountsUnder(dir);
    if (points.length === 0) return [...found];
    for (const p of points) {
      found.add(p);
      try {
        execFileSync('umount', [p], { stdio: 'ignore' });
      } catch {
        try {
          execFileSync('umount', ['-l', p], { stdio: 'ignore' });
        } catch {
          /* retried on the next pass; reported below if it never goes away */
        }
      }
    }
  }
  const left = mountsUnder(dir);
  if (left.length > 0) throw new Error(`still mounted under ${dir}: ${left.join(', ')}`);
  return [...found];
}

/** PIDs of containerd shims started by the containerd listening on `address`. */
export function shimPids(address: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (!argv[0]?.includes('containerd-shim')) continue;
      const i = argv.indexOf('-address');
      if (i >= 0 && argv[i + 1] === address) pids.push(Number(name));
    } catch {
      /* the process went away */
    }
  }
  return pids;
}

/** A running containerd started by this harness. Create it with startContainerd(). */
export class Containerd {
  private exited = false;
  private stopped = false;
  private readonly exitPromise: Promise<void>;

  private constructor(
    /** The instance's temp dir; root, state, socket, config and log live in it. */
    readonly dir: string,
    readonly namespace: string,
    private readonly keepDir: boolean,
    private readonly child: ReturnType<typeof spawn>,
  ) {
    // 'error' without 'exit' means the binary could not be started at all.
    this.exitPromise = new Promise((r) => {
      child.once('exit', () => r());
      child.once('error', () => r());
    });
    void this.exitPromise.then(() => {
      this.exited = true;
    });
  }

  /** containerd's persistent root (content store, metadata, snapshots). */
  get root(): string {
    return join(this.dir, 'root');
  }
  /** containerd's state dir (runtime state, mounts of running tasks). */
  get state(): string {
    return join(this.dir, 'state');
  }
  /** The gRPC socket path (ttrpc is at `${address}.ttrpc`). */
  get address(): string {
    return join(this.dir, 'containerd.sock');
  }
  get configPath(): string {
    return join(this.dir, 'config.toml');
  }
  get logPath(): string {
    return join(this.dir, 'containerd.log');
  }
  /** PID of the containerd process this handle started. */
  get pid(): number {
    return this.child.pid ?? -1;
  }
  get running(): boolean {
    return !this.exited;
  }

  /** Where the content store keeps a blob (read-only use: containerd owns the file). */
  blobPath(digest: string): string {
    const [alg, hex] = digest.split(':');
    if (!alg || !hex) throw new Error(`not a digest: ${digest}`);
    return join(this.root, 'io.containerd.content.v1.content', 'blobs', alg, hex);
  }

  /** The last lines of containerd's log (for error messages). */
  logTail(lines = 40): string {
    try {
      return readFileSync(this.logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  /** containerd's user+system CPU time so far, in seconds (from /proc/PID/stat). */
  cpuSeconds(): number {
    const stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
    return ticks / clockTicks();
  }

  /** containerd's current resident set size in bytes. */
  rssBytes(): number {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  }

  /** The global flags that point a ctr-compatible binary at this instance. */
  globalArgs(namespace = this.namespace): string[] {
    return ['--address', this.address, '--namespace', namespace];
  }

  /** Runs `ctr --address SOCK --namespace NS ...args`. */
  ctr(args: string[], opts?: ExecOptions & { namespace?: string }): Promise<ExecResult> {
    return this.exec('ctr', args, opts);
  }

  /**
   * Waits until containerd's connection to a proxy snapshotter works again (after the snapshotter
   * restarted): containerd's gRPC client fails calls at once while it backs off between dials (up to
   * 3 s), so a container started right after the restart would fail with `unavailable`.
   */
  async waitForSnapshotter(snapshotter: string, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.ctr(['snapshots', '--snapshotter', snapshotter, 'ls'], { timeoutMs: 5_000 });
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  }

  /** Runs `ctr-remote` (stargz-snapshotter's ctr) against this instance. */
  ctrRemote(args: string[], opts?: ExecOptions & { namespace?: string }): Promise<ExecResult> {
    return this.exec('ctr-remote', args, opts);
  }

  /** Runs any ctr-compatible binary with this instance's global flags. */
  exec(binary: string, args: string[], opts: ExecOptions & { namespace?: string } = {}): Promise<ExecResult> {
    return run(binary, [...this.globalArgs(opts.namespace), ...args], opts);
  }

  /** Stops containerd and cleans up (see the module doc). Idempotent; safe after a failed test. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      if (!this.exited) {
        await this.deleteAllTasks().catch(() => undefined);
        this.child.kill('SIGTERM');
        const exited = await Promise.race([this.exitPromise.then(() => true), sleep(10_000).then(() => false)]);
        if (!exited) {
          this.child.kill('SIGKILL');
          await this.exitPromise;
        }
      }
      for (const pid of shimPids(this.address)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
      unmountUnder(this.dir);
      if (!this.keepDir) await rm(this.dir, { recursive: true, force: true });
    } finally {
      live.delete(this);
    }
  }

  /** Last-resort cleanup at process exit: SIGKILL by PID, unmount, no waiting for anything else. */
  killSync(): void {
    if (!this.exited && isAlive(this.pid)) {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    try {
      for (const pid of shimPids(this.address)) process.kill(pid, 'SIGKILL');
    } catch {
      /* best effort */
    }
    try {
      unmountUnder(this.dir);
      if (!this.keepDir) rmSync(this.dir, { recursive: true, force: true });
    } catch {
      /* best effort at exit; never remove a dir that still has mounts */
    }
  }

  private async deleteAllTasks(): Promise<void> {
    const { stdout } = await this.ctr(['namespaces', 'ls', '-q'], { timeoutMs: 10_000 });
    for (const ns of stdout.split('\n').filter(Boolean)) {
      const tasks = await this.ctr(['tasks', 'ls', '-q'], { namespace: ns, timeoutMs: 10_000 });
      for (const id of tasks.stdout.split('\n').filter(Boolean)) {
        await this.ctr(['tasks', 'delete', '--force', id], { namespace: ns, timeoutMs: 20_000 }).catch(() => undefined);
      }
    }
  }

  /** @internal use startContainerd() */
  static async start(opts: ContainerdOptions = {}): Promise<Containerd> {
    const dir = await mkdtemp(join(opts.parentDir ?? tmpdir(), 'lazypull-ctd-'));
    const enabled = new Set(opts.enablePlugins ?? []);
    const disabled = [...DEFAULT_DISABLED_PLUGINS, ...(opts.disablePlugins ?? [])].filter((p) => !enabled.has(p));
    const q = (s: string) => JSON.stringify(s); // a TOML basic string
    const config = [
      'version = 2',
      `root = ${q(join(dir, 'root'))}`,
      `state = ${q(join(dir, 'state'))}`,
      `disabled_plugins = [${[...new Set(disabled)].map(q).join(', ')}]`,
      '',
      '[grpc]',
      `  address = ${q(join(dir, 'containerd.sock'))}`,
      '',
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${q(join(dir, 'opt'))}`,
      '',
      opts.extraConfig ?? '',
      '',
    ].join('\n');
    await writeFile(join(dir, 'config.toml'), config);
    await mkdir(join(dir, 'root'), { mode: 0o711 });
    await mkdir(join(dir, 'state'), { mode: 0o711 });

    const logFd = openSync(join(dir, 'containerd.log'), 'a');
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn('containerd', ['--config', join(dir, 'config.toml'), '--log-level', opts.logLevel ?? 'info'], {
        stdio: ['ignore', logFd, logFd],
        env: { ...process.env, ...opts.env },
      });
    } finally {
      closeSync(logFd);
    }
    const cd = new Containerd(dir, opts.namespace ?? 'lazypull-test', opts.keepDir ?? false, child);
    live.add(cd);
    installExitHook();
    try {
      await cd.waitReady(opts.startTimeoutMs ?? 30_000);
    } catch (err) {
      await cd.stop().catch(() => undefined);
      throw err;
    }
    return cd;
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const spawnError = new Promise<never>((_, reject) => this.child.once('error', reject));
    spawnError.catch(() => undefined);
    await Promise.race([sleep(0), spawnError]);
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      if (this.exited) throw new Error(`containerd exited during startup:\n${this.logTail()}`);
      if (existsSync(this.address)) {
        try {
          await Promise.race([this.ctr(['version'], { timeoutMs: 5_000 }), spawnError]);
          return;
        } catch (err) {
          last = err instanceof Error ? err.message : String(err);
        }
      }
      await sleep(50);
    }
    throw new Error(`containerd did not answer within ${timeoutMs} ms (${last}):\n${this.logTail()}`);
  }
}

let ticks: number | undefined;
function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/** Starts a containerd in a temp dir and waits until it answers (see the module doc). */
export function startContainerd(opts: ContainerdOptions = {}): Promise<Containerd> {
  return Containerd.start(opts);
}

/** Runs `fn` against a fresh containerd and always stops it afterwards, also when `fn` throws. */
export async function withContainerd<T>(fn: (cd: Containerd) => Promise<T>, opts: ContainerdOptions = {}): Promise<T> {
  const cd = await startContainerd(opts);
  try {
    return await fn(cd);
  } finally {
    await cd.stop();
  }
}

