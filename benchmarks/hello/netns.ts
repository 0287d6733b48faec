/**
 * A registry behind an emulated network link (see /work/shared/specs/bench-env.md): a network
 * namespace with a veth pair on 169.254.N.0/30, docker-registry inside it, HTB on the namespace's
 * side of the veth (so it limits registry -> client) and delay-proxy.js inside the namespace adding
 * RTT/2 each way. Two ports reach the registry from the host:
 * - `direct` (the registry's own port): unshaped, no delay, for pushing the images;
 * - `shaped` (the proxy's port): the link being measured; HTB matches its source port.
 *
 * Everything is started by PID and stopped by PID; `teardown` (and `teardownSync` at exit) deletes
 * the namespace, which removes the veth pair with it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { run } from '../../test/helpers/containerd.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const REGISTRY_PORT = 5000;
const PROXY_PORT = 5001;

export interface LinkSpec {
  name: string;
  rateMbit: number;
  rttMs: number;
}

/** `100mbit-20ms`, `1gbit-2ms`, `250mbit-10ms`, ... */
export function parseLink(name: string): LinkSpec {
  const m = /^(\d+(?:\.\d+)?)(mbit|gbit)-(\d+(?:\.\d+)?)ms$/.exec(name);
  if (!m) throw new Error(`link ${JSON.stringify(name)}: expected RATE(mbit|gbit)-RTTms, e.g. 100mbit-20ms`);
  return { name, rateMbit: Number(m[1]) * (m[2] === 'gbit' ? 1000 : 1), rttMs: Number(m[3]) };
}

export interface ProxyStats {
  /** Bytes the registry sent to clients through the shaped port (cumulative). */
  down: number;
  up: number;
  connections: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function ip(args: string[]): Promise<unknown> {
  return run('ip', args, { timeoutMs: 30_000 });
}

export class ShapedRegistry {
  readonly ns: string;
  readonly hostIf: string;
  readonly nsIf: string;
  readonly hostAddr: string;
  readonly nsAddr: string;
  private registry?: ChildProcess;
  private proxy?: ChildProcess;
  private proxyLines?: Interface;
  private waiters: ((line: string) => void)[] = [];
  private nsCreated = false;
  link?: LinkSpec;

  constructor(private readonly dir: string) {
    const id = process.pid;
    this.ns = `lzhello-${id}`;
    this.hostIf = `lzh${id}h`.slice(0, 15);
    this.nsIf = `lzh${id}n`.slice(0, 15);
    const subnet = 200 + (id % 50); // 169.254.200-249.x: away from 169.254.169.254
    this.hostAddr = `169.254.${subnet}.1`;
    this.nsAddr = `169.254.${subnet}.2`;
  }

  /** host:port pushes go to (unshaped). */
  get direct(): string {
    return `${this.nsAddr}:${REGISTRY_PORT}`;
  }
  /** host:port clients pull from (through HTB and the delay proxy). */
  get shaped(): string {
    return `${this.nsAddr}:${PROXY_PORT}`;
  }
  get registryLog(): string {
    return join(this.dir, 'registry.log');
  }
  get pids(): number[] {
    return [this.proxy?.pid, this.registry?.pid].filter((p): p is number => p !== undefined);
  }

  async setup(storageDir: string): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await ip(['netns', 'add', this.ns]);
    this.nsCreated = true;
    await ip(['link', 'add', this.hostIf, 'type', 'veth', 'peer', 'name', this.nsIf]);
    await ip(['link', 'set', this.nsIf, 'netns', this.ns]);
    await ip(['addr', 'add', `${this.hostAddr}/30`, 'dev', this.hostIf]);
    await ip(['link', 'set', this.hostIf, 'up']);
    await ip(['netns', 'exec', this.ns, 'ip', 'addr', 'add', `${this.nsAddr}/30`, 'dev', this.nsIf]);
    await ip(['netns', 'exec', this.ns, 'ip', 'link', 'set', this.nsIf, 'up']);
    await ip(['netns', 'exec', this.ns, 'ip', 'link', 'set', 'lo', 'up']);

    const config = join(this.dir, 'registry.yml');
    await writeFile(
      config,
      [
        'version: 0.1',
        'log: { level: error, accesslog: { disabled: false } }',
        `storage: { filesystem: { rootdirectory: ${storageDir} }, delete: { enabled: true } }`,
        `http: { addr: "0.0.0.0:${REGISTRY_PORT}" }`,
        '',
      ].join('\n'),
    );
    const log = openSync(this.registryLog, 'a');
    try {
      this.registry = spawn('ip', ['netns', 'exec', this.ns, 'docker-registry', 'serve', config], { stdio: ['ignore', log, log] });
    } finally {
      closeSync(log);
    }
    await this.waitHttp(`http://${this.direct}/v2/`, 'docker-registry');
  }

  private async waitHttp(url: string, what: string): Promise<void> {
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
        await res.arrayBuffer();
        return;
      } catch {
        await sleep(100);
      }
    }
    throw new Error(`${what} did not answer at ${url}`);
  }

  /** Puts the link in place: the HTB class of the shaped port and a proxy with RTT/2 each way. */
  async shape(link: LinkSpec): Promise<void> {
    await this.stopProxy();
    const dev = ['dev', this.nsIf];
    const rate = `${link.rateMbit}mbit`;
    const tc = (args: string[]) => run('ip', ['netns', 'exec', this.ns, 'tc', ...args], { timeoutMs: 30_000 });
    if (!this.link) await tc(['qdisc', 'add', ...dev, 'root', 'handle', '1:', 'htb', 'default', '20']);
    await tc(['class', 'replace', ...dev, 'parent', '1:', 'classid', '1:1', 'htb', 'rate', '10gbit']);
    await tc(['class', 'replace', ...dev, 'parent', '1:1', 'classid', '1:10', 'htb', 'rate', rate, 'ceil', rate]);
    await tc(['class', 'replace', ...dev, 'parent', '1:1', 'classid', '1:20', 'htb', 'rate', '10gbit']);
    if (!this.link) {
      await tc(['filter', 'add', ...dev, 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32', 'match', 'ip', 'sport', String(PROXY_PORT), '0xffff', 'flowid', '1:10']);
    }
    this.link = link;
    const proxy = spawn('ip', ['netns', 'exec', this.ns, process.execPath, resolve(HERE, 'delay-proxy.js'), `0.0.0.0:${PROXY_PORT}`, `127.0.0.1:${REGISTRY_PORT}`, String(link.rttMs / 2)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    this.proxy = proxy;
    this.proxyLines = createInterface({ input: proxy.stdout! });
    this.proxyLines.on('line', (line) => this.waiters.shift()?.(line));
    const first = await Promise.race([this.nextLine(), sleep(10_000).then(() => 'timeout')]);
    if (first !== 'listening') throw new Error(`delay proxy did not start (${first})`);
  }

  private nextLine(): Promise<string> {
    return new Promise((r) => this.waiters.push(r));
  }

  async stats(): Promise<ProxyStats> {
    if (!this.proxy?.stdin) throw new Error('no proxy running');
    const line = this.nextLine();
    this.proxy.stdin.write('stats\n');
    return JSON.parse(await line) as ProxyStats;
  }

  /** Registry requests that came through the proxy (access log lines from 127.0.0.1) so far. */
  proxiedRequests(): number {
    if (!existsSync(this.registryLog)) return 0;
    return readFileSync(this.registryLog, 'utf8')
      .split('\n')
      .filter((l) => /^127\.0\.0\.1 .*"(GET|HEAD) \/v2\//.test(l)).length;
  }

  private async stopProxy(): Promise<void> {
    const proxy = this.proxy;
    if (!proxy) return;
    this.proxy = undefined;
    this.proxyLines?.close();
    this.waiters = [];
    await stopChild(proxy);
  }

  async teardown(): Promise<void> {
    await this.stopProxy();
    if (this.registry) await stopChild(this.registry);
    this.registry = undefined;
    if (this.nsCreated) {
      await ip(['netns', 'del', this.ns]).catch(() => undefined);
      this.nsCreated = false;
    }
  }

  /** At process exit: SIGKILL by PID, delete the namespace. */
  teardownSync(): void {
    for (const pid of this.pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (this.nsCreated) spawnSync('ip', ['netns', 'del', this.ns], { stdio: 'ignore' });
    this.nsCreated = false;
  }
}

/** SIGTERM a child this process started, SIGKILL after 10 s. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  if (!(await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]))) {
    child.kill('SIGKILL');
    await exited;
  }
}
