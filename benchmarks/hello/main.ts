/**
 * HelloBench-style cold start over an emulated registry link: for each image x link x mode, a fresh
 * containerd (and, for lazypull modes, a fresh `lazypull serve` with an empty root and cache) pulls
 * the image from a registry behind HTB + a delaying proxy, creates a container and starts it; the
 * time to the workload's first line of output is the figure. See README.md next to this file.
 *
 *   npx vite-node benchmarks/hello/main.ts
 *   HELLO_IMAGES=python HELLO_LINKS=100mbit-20ms HELLO_MODES=overlayfs,lazypull-estargz HELLO_RUNS=1 npx vite-node benchmarks/hello/main.ts
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { cpus, release } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { run, startContainerd, unmountUnder, type Containerd } from '../../test/helpers/containerd.js';
import { buildImage, recipes, smokeTest, type BuiltImage } from './images.js';
import { parseLink, ShapedRegistry, stopChild, type LinkSpec, type ProxyStats } from './netns.js';
import { imageBytes, pushLayout } from './push.js';
import { renderSvg } from './svg.js';

const REPO = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
/** The lazypull CLI to run (`bin/lazypull.js` runs `dist/`; HELLO_LAZYPULL can name another build's `src/cli/main.js`). */
const LAZYPULL = resolve(process.env.HELLO_LAZYPULL ?? join(REPO, 'bin', 'lazypull.js'));
const MiB = 1 << 20;
const NAMESPACE = 'hello';

const env = {
  images: list(process.env.HELLO_IMAGES, 'python,node,gcc'),
  links: list(process.env.HELLO_LINKS, '100mbit-20ms,1gbit-2ms').map(parseLink),
  modes: process.env.HELLO_MODES ? list(process.env.HELLO_MODES, '') : undefined,
  runs: Math.max(1, Number(process.env.HELLO_RUNS ?? 3)),
  out: process.env.HELLO_OUT ?? '/tmp/hello-results',
  cache: process.env.HELLO_CACHE ?? '/var/tmp/lazypull-hello-cache',
  workParent: process.env.HELLO_WORK ?? '/var/tmp',
  /** lazypull serve's [fetch] background (default: the daemon's default, on). */
  background: process.env.HELLO_BACKGROUND !== '0',
  /** More `key = value` lines for lazypull serve's [fetch] table, `;`-separated (e.g. `prefetch_wait_sec = 0`). */
  fetchSettings: (process.env.HELLO_FETCH ?? '').split(';').map((s) => s.trim()).filter(Boolean),
  /** lazypull serve's log_level: `debug` adds per-container health and prefetch-wait timings to the kept log. */
  logLevel: process.env.HELLO_LOG_LEVEL ?? 'info',
};

function list(value: string | undefined, fallback: string): string[] {
  return (value ?? fallback)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

const log = (line: string) => process.stderr.write(`hello: ${line}\n`);

/**
 * A stock Debian machine has no NODE_EXTRA_CA_CERTS; some sandboxes set it, and then every Node process
 * parses that bundle before running anything (40 ms of each `lazypull rpull` on the 2-core VM, none of
 * `ctr`'s). The registry here is plain HTTP, so nothing started from here needs it.
 */
if (process.env.NODE_EXTRA_CA_CERTS !== undefined) {
  delete process.env.NODE_EXTRA_CA_CERTS;
  log('NODE_EXTRA_CA_CERTS unset for the processes started here (the registry is plain HTTP)');
}
const seconds = (from: bigint, to: bigint) => Number(to - from) / 1e9;
const lazypull = (args: string[], timeoutMs = 600_000) => run(process.execPath, [LAZYPULL, ...args], { timeoutMs });

interface PrepareContext {
  image: BuiltImage;
  /** host:port to push to (unshaped). */
  direct: string;
  repository: string;
}

/**
 * A row of the table: how the image variant is made and which snapshotter pulls it. To add a
 * variant, add an entry here; `unavailable` says why it cannot run on this checkout (then it is
 * skipped with a note).
 */
interface Mode {
  name: string;
  snapshotter: 'overlayfs' | 'lazypull';
  describe: string;
  unavailable?: () => Promise<string | undefined>;
  /** Makes the variant in the registry (through `direct`) and returns its tag. */
  prepare: (ctx: PrepareContext) => Promise<string>;
}

async function helpLists(args: string[], word: string): Promise<boolean> {
  const result = spawnSync(process.execPath, [LAZYPULL, ...args, '--help'], { encoding: 'utf8', timeout: 30_000 });
  return result.status === 0 && new RegExp(`^\\s+${word}\\b`, 'm').test(result.stdout);
}

const MODES: Mode[] = [
  {
    name: 'overlayfs',
    snapshotter: 'overlayfs',
    describe: 'ctr pull (full pull + unpack) of the gzip image, containerd overlayfs',
    prepare: async () => 'gzip',
  },
  {
    name: 'lazypull-estargz',
    snapshotter: 'lazypull',
    describe: 'lazypull convert (eStargz, no prioritized files), lazypull rpull',
    prepare: async ({ image, direct, repository }) => {
      await lazypull(['convert', '--plain-http', `oci:${image.layoutDir}:${image.tag}`, `${direct}/${repository}:estargz`]);
      return 'estargz';
    },
  },
  {
    name: 'lazypull-optimized',
    snapshotter: 'lazypull',
    describe: 'lazypull optimize (workload recorded, range prefetch profile), lazypull rpull',
    unavailable: async () => ((await helpLists([], 'optimize')) ? undefined : 'this lazypull has no `optimize` command'),
    prepare: async ({ image, direct, repository }) => {
      await lazypull(['optimize', '--plain-http', '--period', '30s', '--wait-on-line', image.recipe.expect, `oci:${image.layoutDir}:${image.tag}`, `${direct}/${repository}:optimized`]);
      return 'optimized';
    },
  },
  {
    name: 'lazypull-optimized-files',
    snapshotter: 'lazypull',
    describe: 'lazypull optimize --no-range-profile (whole prioritized files prefetched: the landmark region), lazypull rpull',
    unavailable: async () => ((await helpLists([], 'optimize')) ? undefined : 'this lazypull has no `optimize` command'),
    prepare: async ({ image, direct, repository }) => {
      await lazypull(['optimize', '--plain-http', '--no-range-profile', '--period', '30s', '--wait-on-line', image.recipe.expect, `oci:${image.layoutDir}:${image.tag}`, `${direct}/${repository}:optimized-files`]);
      return 'optimized-files';
    },
  },
  {
    name: 'lazypull-soci',
    snapshotter: 'lazypull',
    describe: 'lazypull soci create (v2 index, every layer) on the gzip image, lazypull rpull',
    unavailable: async () => ((await helpLists(['soci'], 'create')) ? undefined : 'this lazypull has no `soci create` command yet'),
    prepare: async ({ direct, repository }) => {
      await lazypull(['soci', 'create', '--plain-http', '--min-layer-size', '0', `${direct}/${repository}:gzip`, `${direct}/${repository}:soci`]);
      return 'soci';
    },
  },
];

interface Sample {
  image: string;
  link: string;
  mode: string;
  run: number;
  pullS: number;
  createS: number;
  runS: number;
  totalS: number;
  /** Bytes the registry sent through the link until the first line of output. */
  bytesAtFirstOutput: number;
  /** ... until the workload exited. */
  bytesAtExit: number;
  /** HTTP requests that reached the registry through the link until the workload exited. */
  requests: number;
  output: string;
  pullLog: string;
  /** lazypull modes: the pull as `lazypull rpull` timed it itself (the rest of pullS is the CLI starting). */
  rpullInternalS?: number;
  /** lazypull modes: how long the daemon took to mount each lazy layer (its log's `ms=`). */
  mountMs?: number[];
  /** lazypull status per layer: state and reason. */
  layers?: { digest: string; state: string; reason?: string; format?: string; fetched?: number }[];
}

// ---- everything started is tracked here, for cleanup on failure, SIGINT and exit ----
const liveChildren = new Set<ChildProcess>();
const liveWorkDirs = new Set<string>();
const liveContainerds = new Set<Containerd>();
let net: ShapedRegistry | undefined;

async function cleanupAll(): Promise<void> {
  for (const cd of liveContainerds) await cd.stop().catch((e: unknown) => log(`containerd stop: ${String(e)}`));
  for (const child of liveChildren) await stopChild(child);
  if (net) await net.teardown().catch((e: unknown) => log(`netns teardown: ${String(e)}`));
  for (const dir of liveWorkDirs) removeWorkDir(dir);
}

function removeWorkDir(dir: string): void {
  try {
    unmountUnder(dir);
    rmSync(dir, { recursive: true, force: true });
    liveWorkDirs.delete(dir);
  } catch (err) {
    log(`leaving ${dir}: ${String(err)}`);
  }
}

process.on('exit', () => {
  for (const child of liveChildren) if (child.pid !== undefined && child.exitCode === null) child.kill('SIGKILL');
  for (const cd of liveContainerds) cd.killSync();
  net?.teardownSync();
  for (const dir of liveWorkDirs) removeWorkDir(dir);
});
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    log(`${signal}: stopping everything this benchmark started`);
    void cleanupAll().finally(() => process.exit(130));
  });
}

function spawnLogged(binary: string, args: string[], logPath: string): ChildProcess {
  const fd = openSync(logPath, 'a');
  try {
    const child = spawn(binary, args, { stdio: ['ignore', fd, fd] });
    liveChildren.add(child);
    child.once('exit', () => liveChildren.delete(child));
    return child;
  } finally {
    closeSync(fd);
  }
}

async function waitFor(check: () => boolean, what: string, child: ChildProcess, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode})`);
    if (Date.now() > deadline) throw new Error(`${what} did not start in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs `ctr task start` and resolves when the workload printed a line and when it exited. */
function startTask(cd: Containerd, id: string): { firstLine: Promise<bigint>; exit: Promise<string> } {
  const child = spawn('ctr', [...cd.globalArgs(NAMESPACE), 'task', 'start', id], { stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.add(child);
  let out = '';
  let err = '';
  let resolveFirst: (t: bigint) => void = () => undefined;
  const firstLine = new Promise<bigint>((r) => (resolveFirst = r));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    resolveFirst(process.hrtime.bigint());
    out += `${line}\n`;
  });
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exit = new Promise<string>((resolveExit, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      liveChildren.delete(child);
      if (code === 0) resolveExit(out);
      else reject(new Error(`ctr task start ${id} exited ${code}: ${err.trim()} (stdout: ${out.trim()})`));
    });
  });
  // A task that fails before printing rejects `exit`; firstLine then never resolves on its own.
  exit.catch(() => resolveFirst(process.hrtime.bigint()));
  return { firstLine, exit };
}

async function measure(image: BuiltImage, link: LinkSpec, mode: Mode, ref: string, runIndex: number): Promise<Sample> {
  const registry = net!;
  const work = await mkdtemp(join(env.workParent, 'lzh-'));
  liveWorkDirs.add(work);
  let serve: ChildProcess | undefined;
  let cd: Containerd | undefined;
  try {
    let extraConfig = '';
    if (mode.snapshotter === 'lazypull') {
      const hostsDir = join(work, 'hosts');
      await mkdir(join(hostsDir, registry.shaped), { recursive: true });
      await writeFile(join(hostsDir, registry.shaped, 'hosts.toml'), `server = "http://${registry.shaped}"\n`);
      const config = join(work, 'lazypull.toml');
      await writeFile(config, [`root = "${join(work, 'lp')}"`, `address = "${join(work, 'lp.sock')}"`, `log_level = "${env.logLevel}"`, '[fetch]', `background = ${env.background}`, ...env.fetchSettings, '[registry]', `hosts_dir = "${hostsDir}"`, ''].join('\n'));
      serve = spawnLogged(process.execPath, [LAZYPULL, 'serve', '--config', config], join(work, 'lazypull.log'));
      await waitFor(() => existsSync(join(work, 'lp.sock')), 'lazypull serve', serve);
      extraConfig = ['[proxy_plugins]', '  [proxy_plugins.lazypull]', '    type = "snapshot"', `    address = "${join(work, 'lp.sock')}"`, ''].join('\n');
    }
    // containerd 1.6's tasks service needs the v1 runtime plugin, which the harness disables by default.
    cd = await startContainerd({ parentDir: work, namespace: NAMESPACE, extraConfig, enablePlugins: ['io.containerd.runtime.v1.linux'] });
    liveContainerds.add(cd);

    // The previous sample's writes (an overlayfs unpack leaves ~180 MB dirty) are flushed before this
    // one starts, not in the middle of it, where they would hold up every fsync it makes.
    await run('sync', []);
    await untilIdle();
    const before: ProxyStats = await registry.stats();
    const requestsBefore = registry.proxiedRequests();
    const t0 = process.hrtime.bigint();
    const pull =
      mode.snapshotter === 'overlayfs'
        ? await cd.ctr(['images', 'pull', '--plain-http', ref], { namespace: NAMESPACE, timeoutMs: 600_000 })
        : // Through the daemon (as on a node), with the hosts.toml the daemon has: plain HTTP to the shaped registry.
          await lazypull(['rpull', '--address', cd.address, '--namespace', NAMESPACE, '--daemon', join(work, 'lp.sock'), '--hosts-dir', join(work, 'hosts'), ref]);
    const t1 = process.hrtime.bigint();
    const id = `hello-${runIndex}`;
    await cd.ctr(['containers', 'create', ...(mode.snapshotter === 'lazypull' ? ['--snapshotter', 'lazypull'] : []), ref, id], { namespace: NAMESPACE, timeoutMs: 120_000 });
    const t2 = process.hrtime.bigint();
    const task = startTask(cd, id);
    const t3 = await task.firstLine;
    const atFirst = await registry.stats();
    const output = await task.exit;
    const atExit = await registry.stats();
    if (!output.includes(image.recipe.expect)) throw new Error(`${image.recipe.name}/${mode.name}: the workload printed ${JSON.stringify(output)}`);

    const sample: Sample = {
      image: image.recipe.name,
      link: link.name,
      mode: mode.name,
      run: runIndex,
      pullS: seconds(t0, t1),
      createS: seconds(t1, t2),
      runS: seconds(t2, t3),
      totalS: seconds(t0, t3),
      bytesAtFirstOutput: atFirst.down - before.down,
      bytesAtExit: atExit.down - before.down,
      requests: registry.proxiedRequests() - requestsBefore,
      output: output.trim(),
      pullLog: (pull.stdout + pull.stderr).trim().split('\n').slice(-6).join('\n'),
    };
    if (mode.snapshotter === 'lazypull') {
      const internal = /downloaded .* in ([\d.]+) s/.exec(pull.stdout)?.[1];
      if (internal) sample.rpullInternalS = Number(internal);
      const daemonLog = await readFile(join(work, 'lazypull.log'), 'utf8').catch(() => '');
      sample.mountMs = [...daemonLog.matchAll(/msg="layer mounted lazily".* ms=(\d+)/g)].map((m) => Number(m[1]));
      const status = await lazypull(['status', '--address', join(work, 'lp.sock'), '--json'], 30_000);
      const parsed = JSON.parse(status.stdout) as { layers?: { digest: string; state: string; reason?: string; format?: string; fetched_bytes?: number }[] };
      sample.layers = (parsed.layers ?? []).map((l) => ({ digest: l.digest, state: l.state, ...(l.reason ? { reason: l.reason } : {}), ...(l.format ? { format: l.format } : {}), ...(l.fetched_bytes !== undefined ? { fetched: l.fetched_bytes } : {}) }));
    }
    return sample;
  } finally {
    if (cd) {
      await cd.stop().catch((e: unknown) => log(`containerd stop: ${String(e)}`));
      liveContainerds.delete(cd);
    }
    if (serve) await stopChild(serve);
    if (process.env.HELLO_KEEP_LOGS === '1') {
      await run('bash', ['-c', `cp ${work}/*.log ${env.out}/ 2>/dev/null || true`]);
    }
    removeWorkDir(work);
  }
}

/** Busy and total jiffies of all CPUs, from /proc/stat. */
function cpuJiffies(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((sum, n) => sum + n, 0);
  return { busy: total - (fields[3] ?? 0) - (fields[4] ?? 0), total };
}

/**
 * Waits until the CPUs were at least 90% idle over a quarter second (5 s at most): a sample starts on
 * a quiet machine, not beside what the last one left running (its cleanup, the kernel reclaiming
 * memory after an overlayfs unpack), which on two cores is a large share of a 1 s sample.
 */
async function untilIdle(): Promise<void> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const before = cpuJiffies();
    await new Promise((r) => setTimeout(r, 250));
    const after = cpuJiffies();
    const busy = (after.busy - before.busy) / Math.max(1, after.total - before.total);
    if (busy <= 0.1 || Date.now() > deadline) return;
  }
}

interface LinkCheck {
  link: string;
  /** Median time of a small request on a warm connection (about one RTT). */
  requestMs: number;
  /** Download rate of the image's largest layer through the link. */
  mbPerS: number;
}

/** What the link really does: the latency of small requests and the rate of a blob download. */
async function checkLink(registry: ShapedRegistry, link: LinkSpec, image: BuiltImage): Promise<LinkCheck> {
  const base = `http://${registry.shaped}/v2`;
  const times: number[] = [];
  for (let i = 0; i < 6; i++) {
    const t = process.hrtime.bigint();
    await (await fetch(`${base}/`)).arrayBuffer();
    if (i > 0) times.push(seconds(t, process.hrtime.bigint()) * 1000);
  }
  const manifest = (await (await fetch(`${base}/hello/${image.recipe.name}/manifests/gzip`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).json()) as { layers: { digest: string; size: number }[] };
  const largest = [...manifest.layers].sort((a, b) => b.size - a.size)[0]!;
  const t = process.hrtime.bigint();
  const body = await (await fetch(`${base}/hello/${image.recipe.name}/blobs/${largest.digest}`)).arrayBuffer();
  const s = seconds(t, process.hrtime.bigint());
  return { link: link.name, requestMs: median(times), mbPerS: body.byteLength / 1e6 / s };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

export interface Row {
  image: string;
  link: string;
  mode: string;
  runs: number;
  pullS: number;
  createS: number;
  runS: number;
  totalS: number;
  /** totalS / the overlayfs row's totalS (same image and link). */
  ratio?: number;
  mibFetched: number;
  requests: number;
}

function summarize(samples: Sample[]): Row[] {
  const groups = new Map<string, Sample[]>();
  for (const s of samples) {
    const key = `${s.link}\0${s.image}\0${s.mode}`;
    groups.set(key, [...(groups.get(key) ?? []), s]);
  }
  const rows: Row[] = [...groups.values()].map((g) => ({
    image: g[0]!.image,
    link: g[0]!.link,
    mode: g[0]!.mode,
    runs: g.length,
    pullS: median(g.map((s) => s.pullS)),
    createS: median(g.map((s) => s.createS)),
    runS: median(g.map((s) => s.runS)),
    totalS: median(g.map((s) => s.totalS)),
    mibFetched: median(g.map((s) => s.bytesAtFirstOutput)) / MiB,
    requests: median(g.map((s) => s.requests)),
  }));
  for (const row of rows) {
    const base = rows.find((r) => r.link === row.link && r.image === row.image && r.mode === 'overlayfs');
    if (base && base.totalS > 0) row.ratio = row.totalS / base.totalS;
  }
  return rows;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [line(rows[0]!), `|${widths.map((w, i) => `${'-'.repeat(w + 1)}${i < 2 ? '-' : ':'}`).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}

function markdown(rows: Row[], links: LinkSpec[]): string {
  const parts: string[] = [];
  for (const link of links) {
    const linkRows = rows.filter((r) => r.link === link.name);
    if (linkRows.length === 0) continue;
    parts.push(`### ${link.rateMbit >= 1000 ? `${link.rateMbit / 1000} Gbit/s` : `${link.rateMbit} Mbit/s`}, ${link.rttMs} ms RTT (${link.name})\n`);
    parts.push(
      table([
        ['image', 'mode', 'pull s', 'create s', 'run s', 'total s', 'vs overlayfs', 'MiB fetched', 'requests'],
        ...linkRows.map((r) => [r.image, r.mode, r.pullS.toFixed(2), r.createS.toFixed(2), r.runS.toFixed(2), r.totalS.toFixed(2), r.ratio === undefined ? '' : `${r.ratio.toFixed(2)}x`, r.mibFetched.toFixed(1), String(Math.round(r.requests))]),
      ]),
    );
    parts.push('');
  }
  return parts.join('\n');
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (network namespace, tc, containerd, FUSE)');
  const nodeBinary = spawnSync('bash', ['-c', 'command -v node'], { encoding: 'utf8' }).stdout.trim() || process.execPath;
  const known = recipes(nodeBinary);
  for (const name of env.images) if (!known[name]) throw new Error(`unknown image ${name} (known: ${Object.keys(known).join(', ')})`);
  const wanted = env.modes ?? MODES.map((m) => m.name);
  for (const name of wanted) if (!MODES.some((m) => m.name === name)) throw new Error(`unknown mode ${name} (known: ${MODES.map((m) => m.name).join(', ')})`);
  const modes: Mode[] = [];
  const notes: string[] = [];
  for (const mode of MODES.filter((m) => wanted.includes(m.name))) {
    const why = await mode.unavailable?.();
    if (why) {
      notes.push(`${mode.name} skipped: ${why}`);
      log(`skipping ${mode.name}: ${why}`);
    } else modes.push(mode);
  }
  await mkdir(env.out, { recursive: true });
  await mkdir(env.cache, { recursive: true });

  const images: BuiltImage[] = [];
  for (const name of env.images) {
    const image = await buildImage(known[name]!, env.cache, log);
    await smokeTest(image, env.workParent);
    images.push(image);
    log(`image ${name}: ${image.layers.length} layers, ${(image.compressedBytes / MiB).toFixed(1)} MiB gzip, ${(image.uncompressedBytes / MiB).toFixed(1)} MiB unpacked`);
  }

  const top = await mkdtemp(join(env.workParent, 'lzh-reg-'));
  liveWorkDirs.add(top);
  net = new ShapedRegistry(join(top, 'net'));
  await net.setup(join(top, 'registry'));
  log(`lazypull: ${LAZYPULL}`);
  log(`registry in netns ${net.ns}: direct ${net.direct}, shaped ${net.shaped}`);

  const refs = new Map<string, string>(); // image\0mode -> tag
  const prepared: { image: string; mode: string; seconds: number; mib: number }[] = [];
  for (const image of images) {
    const repository = `hello/${image.recipe.name}`;
    await pushLayout(image.layoutDir, net.direct, repository, 'gzip');
    for (const mode of modes) {
      const t = process.hrtime.bigint();
      try {
        const tag = await mode.prepare({ image, direct: net.direct, repository });
        refs.set(`${image.recipe.name}\0${mode.name}`, tag);
        const mib = (await imageBytes(net.direct, repository, tag)) / MiB;
        prepared.push({ image: image.recipe.name, mode: mode.name, seconds: seconds(t, process.hrtime.bigint()), mib });
        log(`prepared ${image.recipe.name} ${mode.name}: ${repository}:${tag}, ${mib.toFixed(1)} MiB, in ${seconds(t, process.hrtime.bigint()).toFixed(1)} s`);
      } catch (err) {
        notes.push(`${image.recipe.name} ${mode.name}: could not prepare the image: ${String(err).slice(0, 500)}`);
        log(`could not prepare ${image.recipe.name} ${mode.name}: ${String(err)}`);
      }
    }
  }

  const samples: Sample[] = [];
  const failures: string[] = [];
  const linkChecks: LinkCheck[] = [];
  for (const link of env.links) {
    await net.shape(link);
    const check = await checkLink(net, link, images[0]!);
    linkChecks.push(check);
    log(`link ${link.name}: ${link.rateMbit} Mbit/s HTB, ${link.rttMs / 2} ms each way; measured: request ${check.requestMs.toFixed(1)} ms, ${check.mbPerS.toFixed(1)} MB/s`);
    for (let r = 0; r < env.runs; r++) {
      for (const image of images) {
        for (const mode of modes) {
          const tag = refs.get(`${image.recipe.name}\0${mode.name}`);
          if (!tag) continue;
          const ref = `${net.shaped}/hello/${image.recipe.name}:${tag}`;
          try {
            const s = await measure(image, link, mode, ref, r);
            samples.push(s);
            const lazy = s.layers ? `, layers ${s.layers.map((l) => l.state).join('/')}, rpull itself ${s.rpullInternalS?.toFixed(2)} s, mounts ${s.mountMs?.join('+')} ms` : '';
            log(`${link.name} ${image.recipe.name} ${mode.name} run ${r + 1}: pull ${s.pullS.toFixed(2)} + create ${s.createS.toFixed(2)} + run ${s.runS.toFixed(2)} = ${s.totalS.toFixed(2)} s, ${(s.bytesAtFirstOutput / MiB).toFixed(1)} MiB, ${s.requests} requests${lazy}`);
          } catch (err) {
            failures.push(`${link.name} ${image.recipe.name} ${mode.name} run ${r + 1}: ${String(err).slice(0, 2000)}`);
            log(`FAILED ${link.name} ${image.recipe.name} ${mode.name} run ${r + 1}: ${String(err)}`);
          }
          if (interrupted) return;
        }
      }
    }
  }
  await cleanupAll();

  const rows = summarize(samples);
  const md = markdown(rows, env.links);
  process.stdout.write(`\n${md}\n`);
  for (const note of [...notes, ...failures]) process.stdout.write(`- ${note}\n`);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const result = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, kernel: release(), node: process.version },
    config: { ...env, lazypull: LAZYPULL, links: env.links, modes: modes.map((m) => ({ name: m.name, snapshotter: m.snapshotter, describe: m.describe })) },
    images: images.map((i) => ({ name: i.recipe.name, cmd: i.recipe.cmd, compressedBytes: i.compressedBytes, uncompressedBytes: i.uncompressedBytes, layers: i.layers })),
    prepared,
    linkChecks,
    rows,
    samples,
    notes,
    failures,
  };
  await writeFile(join(env.out, `hello-${stamp}.json`), `${JSON.stringify(result, null, 2)}\n`);
  await writeFile(join(env.out, `hello-${stamp}.md`), md);
  await writeFile(join(env.out, `hello-${stamp}.svg`), renderSvg(rows, env.links.map((l) => l.name)));
  log(`results in ${env.out}/hello-${stamp}.{json,md,svg}`);
  if (failures.length > 0) process.exitCode = 1;
}

main().catch(async (err: unknown) => {
  log(`error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  await cleanupAll();
  process.exit(1);
});
