/**
 * Runs the profiled workload as a real container: `runc run` in the foreground (its own state dir, so
 * nothing is shared with other runc users), stdout watched line by line for `--wait-on-line`, stopped
 * with `runc kill KILL` after the period, and always deleted. stdin is an empty pipe held open until
 * the end (like `docker run -i` with nothing typed), so a workload that reads stdin waits instead of
 * exiting at once.
 */
import { execFile, spawn } from 'node:child_process';
import { constants } from 'node:os';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface WorkloadOptions {
  /** Bundle directory holding config.json. */
  bundle: string;
  /** runc's `--root` (state directory). */
  stateDir: string;
  id: string;
  periodMs: number;
  /** Stop as soon as a stdout line contains this. */
  waitOnLine?: string;
  /** Each line the workload writes. */
  onOutput?: (stream: 'stdout' | 'stderr', line: string) => void;
  runc?: string;
  /** Stops the workload (then it is deleted as after a period). */
  signal?: AbortSignal;
}

export interface WorkloadRun {
  /** `exit`: it ended by itself; `period`: stopped when the period ran out; `line`: stopped when the awaited line came; `aborted`: by the signal. */
  stoppedBy: 'exit' | 'period' | 'line' | 'aborted';
  /** runc's exit status: the workload's, or 128+signal. */
  status: number | null;
  /** Only with `waitOnLine`. */
  lineSeen?: boolean;
  elapsedMs: number;
  /** The last lines of stderr (runc's errors end up here). */
  stderrTail: string[];
}

/** How long a stopped container may take to go before runc itself is killed. */
const STOP_GRACE_MS = 10_000;

export async function runWorkload(options: WorkloadOptions): Promise<WorkloadRun> {
  const runc = options.runc ?? 'runc';
  const started = Date.now();
  const child = spawn(runc, ['--root', options.stateDir, 'run', '--bundle', options.bundle, options.id], { stdio: ['pipe', 'pipe', 'pipe'] });
  const stderrTail: string[] = [];
  let stoppedBy: WorkloadRun['stoppedBy'] | undefined;
  let lineSeen = false;
  let graceTimer: NodeJS.Timeout | undefined;

  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', (err) => reject(new Error(`cannot run ${runc}: ${err.message}`)));
    child.once('close', (code, signal) => resolve(code ?? (signal ? 128 + signalNumber(signal) : null)));
  });
  const stop = (reason: 'period' | 'line' | 'aborted'): void => {
    if (stoppedBy !== undefined || child.exitCode !== null) return;
    stoppedBy = reason;
    void killContainer(runc, options.stateDir, options.id, () => child.exitCode !== null || child.signalCode !== null);
    // runc forwards no SIGKILL: kill runc itself only when the container did not go in time.
    graceTimer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  };
  createInterface({ input: child.stdout }).on('line', (line) => {
    options.onOutput?.('stdout', line);
    if (options.waitOnLine !== undefined && !lineSeen && line.includes(options.waitOnLine)) {
      lineSeen = true;
      stop('line');
    }
  });
  createInterface({ input: child.stderr }).on('line', (line) => {
    options.onOutput?.('stderr', line);
    stderrTail.push(line);
    if (stderrTail.length > 20) stderrTail.shift();
  });
  child.stdin.on('error', () => undefined);
  const periodTimer = setTimeout(() => stop('period'), options.periodMs);
  const onAbort = (): void => stop('aborted');
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) onAbort();
  try {
    const status = await exited;
    return {
      stoppedBy: stoppedBy ?? 'exit',
      status,
      ...(options.waitOnLine !== undefined ? { lineSeen } : {}),
      elapsedMs: Date.now() - started,
      stderrTail,
    };
  } finally {
    clearTimeout(periodTimer);
    clearTimeout(graceTimer);
    options.signal?.removeEventListener('abort', onAbort);
    child.stdin.destroy();
    await deleteContainer(runc, options.stateDir, options.id);
  }
}

/** `runc kill ID KILL`, retried briefly: right after `run` starts, the container may not exist yet. */
async function killContainer(runc: string, stateDir: string, id: string, gone: () => boolean): Promise<void> {
  for (let attempt = 0; attempt < 20 && !gone(); attempt++) {
    try {
      await execFileAsync(runc, ['--root', stateDir, 'kill', id, 'KILL']);
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** Removes the container whatever its state; a container that never got created is fine. */
export async function deleteContainer(runc: string, stateDir: string, id: string): Promise<void> {
  await execFileAsync(runc, ['--root', stateDir, 'delete', '--force', id]).catch(() => undefined);
}

function signalNumber(signal: NodeJS.Signals): number {
  return constants.signals[signal] ?? 0;
}
