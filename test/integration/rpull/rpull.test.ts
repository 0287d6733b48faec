/**
 * `lazypull rpull` against a real containerd 1.6 (with lazypull serve as its proxy snapshotter), a real
 * docker-registry on 127.0.0.1 behind a byte-counting relay, and runc: a plain gzip image falls back
 * layer by layer and runs; an eStargz image is mounted lazily and runs after far fewer registry bytes
 * than its size; configuration mistakes end in one clear line and exit status 1.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainIds } from '../../../src/containerd/chain-id.js';
import { parseReference, RegistryClient } from '../../../src/remote/index.js';
import { CommandError, mountsUnder, run, unmountUnder, type Containerd } from '../../helpers/containerd.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { buildIfStale, REPO, startContainerdWithLazypull, startLazypull, type LazypullDaemon } from '../snapshot/lazypull-daemon.js';
import { pushEchoImage, startCountingRelay, type CountingRelay, type PushedImage } from './fixtures.js';

const LAZYPULL = join(REPO, 'bin/lazypull.js');
/** Bytes of random data in the image's second layer that no container reads: what a lazy pull saves. */
const BULK_BYTES = 8 << 20;

let lazypull: LazypullDaemon | undefined;
let containerd: Containerd | undefined;
let registry: TestRegistry | undefined;
let relay: CountingRelay | undefined;
let workDir: string | undefined;
let plain: PushedImage;

beforeAll(async () => {
  await buildIfStale();
  // Background fetch off: the registry's byte count is then what pulling and the workload's reads cost.
  lazypull = await startLazypull([], { config: '[fetch]\nbackground = false\n' });
  containerd = await startContainerdWithLazypull(lazypull);
  registry = await startRegistry();
  relay = await startCountingRelay(Number(registry.host.split(':')[1]));
  workDir = await mkdtemp('/tmp/lpr-');
  plain = await pushEchoImage(registry, relay.host, workDir, 'test/plain', 'v1', BULK_BYTES);
}, 180_000);

afterAll(async () => {
  // Each step runs even when an earlier one fails, so nothing outlives the suite.
  const results = await Promise.allSettled([containerd?.stop(), relay?.close(), registry?.stop()]);
  const daemon = lazypull ? await stopDaemon(lazypull).catch((err: unknown) => err) : undefined;
  if (workDir) await rm(workDir, { recursive: true, force: true });
  for (const r of results) if (r.status === 'rejected') throw r.reason;
  if (daemon instanceof Error) throw daemon;
}, 120_000);

/**
 * Stops lazypull serve. A daemon blocked in a syscall on one of its own FUSE mounts (state D, waiting
 * for an answer only it could give) ignores even SIGKILL; detaching its mounts ends the wait, so a hung
 * daemon fails the suite instead of outliving it.
 */
async function stopDaemon(daemon: LazypullDaemon): Promise<void> {
  const stopping = daemon.stop();
  const stopped = await Promise.race([stopping.then(() => true), sleep(30_000).then(() => false)]);
  if (stopped) return;
  // `umount -f` aborts the FUSE connection (even when the mount is busy), which frees the daemon.
  for (const point of mountsUnder(daemon.dir)) spawnSync('umount', ['-f', point], { stdio: 'ignore' });
  unmountUnder(daemon.dir);
  await stopping;
  throw new Error(`lazypull serve (pid ${daemon.pid}) did not stop until its FUSE mounts were detached: it was blocked on its own mount`);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const cd = () => containerd as Containerd;
/** ctr with a bound: a stuck snapshotter fails the test in seconds instead of holding the suite. */
const ctr = (args: string[], timeoutMs = 30_000) => cd().ctr(args, { timeoutMs });

function rpull(args: string[], timeoutMs = 120_000) {
  return run(process.execPath, [LAZYPULL, 'rpull', '--address', cd().address, '--namespace', cd().namespace, ...args], { timeoutMs });
}

/** The stderr of a failing rpull, after checking its exit status is 1. */
async function rpullFailure(args: string[]): Promise<string> {
  try {
    await run(process.execPath, [LAZYPULL, 'rpull', ...args], { timeoutMs: 60_000 });
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    expect(err.exitCode).toBe(1);
    return err.stderr;
  }
  throw new Error(`lazypull rpull ${args.join(' ')} succeeded`);
}

/** `layer <digest> <what>` lines of rpull's output, by digest. */
function layerLines(stdout: string): Map<string, string> {
  return new Map([...stdout.matchAll(/^layer (sha256:[0-9a-f]{64}) (.*)$/gm)].map((m) => [m[1] as string, m[2] as string]));
}

const snapshotsLs = async () => (await ctr(['snapshots', '--snapshotter', 'lazypull', 'ls'])).stdout;
/** The daemon deletes a pull's lease just after answering, so a check right after a pull may still see it. */
async function leasesLeft(): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const left = (await ctr(['leases', 'ls', '-q'])).stdout.trim();
    if (left === '' || attempt >= 50) return left;
    await sleep(100);
  }
}
const committed = async () => (await snapshotsLs()).split('\n').filter((line) => /\sCommitted\s*$/.test(line)).map((line) => line.split(/\s+/)[0] as string);
const runEcho = async (image: string, id: string) => (await ctr(['run', '--rm', '--snapshotter', 'lazypull', image, id, 'echo', 'hello'], 60_000)).stdout;

describe('lazypull rpull', () => {
  it('pulls a plain gzip image: every layer falls back, is downloaded and applied, and the image runs', async () => {
    const before = (relay as CountingRelay).bytesDown;
    const { stdout } = await rpull(['--no-daemon', plain.reference]);
    expect(stdout).not.toContain('pulled by the lazypull daemon');
    const lines = layerLines(stdout);
    expect([...lines.keys()]).toEqual(plain.layers.map((l) => l.digest));
    for (const layer of plain.layers) expect(lines.get(layer.digest)).toBe(`fetched ${layer.size} bytes (no TOC digest annotation: not eStargz / zstd:chunked)`);
    expect(stdout).toContain(`image ${plain.reference} created: ${plain.manifest.digest}, snapshotter lazypull`);
    expect(stdout).toContain('layers: 2 (0 lazy, 2 fetched, 0 already unpacked)');
    expect(stdout).toMatch(/^downloaded (\d+\.\d MiB) of \1 \(100\.0%\) in \d+\.\d\d s$/m);
    expect((relay as CountingRelay).bytesDown - before).toBeGreaterThanOrEqual(plain.bytes);

    // The daemon was asked with the remote labels, declined, and said why.
    const fallbacks = (lazypull as LazypullDaemon).log().split('\n').filter((line) => line.includes('layer pulled normally, not lazily'));
    expect(fallbacks.length).toBeGreaterThanOrEqual(2);

    expect((await ctr(['images', 'ls', '-q'])).stdout.split('\n')).toContain(plain.reference);
    // containerd names the snapshots by the chainIDs it computes itself; `ctr run` finds them (so it
    // does not unpack again) only when ours are the same.
    const chain = chainIds(plain.diffIds);
    expect((await committed()).sort()).toEqual([...chain].sort());
    expect(await runEcho(plain.reference, 'plain-1')).toBe('hello\n');
    expect((await committed()).sort()).toEqual([...chain].sort());

    // The config marks the image unpacked for lazypull, and that keeps the chain through a full GC once
    // the pull's lease is gone.
    const configLine = (await ctr(['content', 'ls'])).stdout.split('\n').find((line) => line.includes(`containerd.io/gc.ref.snapshot.lazypull=${chain[1]}`));
    expect(configLine).toBeDefined();
    expect((await ctr(['leases', 'ls', '-q'])).stdout.trim()).toBe('');
    await ctr(['images', 'tag', plain.reference, `${plain.reference}-tmp`]);
    await ctr(['images', 'rm', '--sync', `${plain.reference}-tmp`]);
    expect((await committed()).sort()).toEqual([...chain].sort());
    expect(await runEcho(plain.reference, 'plain-2')).toBe('hello\n');

    // A second pull (this time through the daemon) finds everything in place.
    const again = await rpull(['--daemon', (lazypull as LazypullDaemon).socket, plain.reference]);
    for (const what of layerLines(again.stdout).values()) expect(what).toBe('already unpacked');
    expect(again.stdout).toContain(`image ${plain.reference} updated: ${plain.manifest.digest}`);
  });

  it('pulls an eStargz image lazily: layers mounted remotely, far fewer registry bytes than the image, and it runs', async () => {
    const reg = registry as TestRegistry;
    await run(process.execPath, [LAZYPULL, 'convert', '--estargz', `${reg.host}/test/plain:v1`, `${reg.host}/test/esgz:v1`], { timeoutMs: 120_000 });
    const reference = `${(relay as CountingRelay).host}/test/esgz:v1`;
    const client = new RegistryClient({ hostsDir: null, dockerConfig: false });
    let image: Awaited<ReturnType<RegistryClient['resolve']>>;
    let diffIds: string[];
    try {
      image = await client.resolve(`${reg.host}/test/esgz:v1`);
      const config = JSON.parse((await client.fetchBlob(parseReference(`${reg.host}/test/esgz:v1`), image.manifest.config)).toString()) as { rootfs: { diff_ids: string[] } };
      diffIds = config.rootfs.diff_ids;
    } finally {
      await client.close();
    }
    const imageBytes = image.manifest.layers.reduce((sum, l) => sum + l.size, 0);
    expect(imageBytes).toBeGreaterThan(BULK_BYTES);

    const before = (relay as CountingRelay).bytesDown;
    // A lazy pull takes seconds; a minute means the daemon is stuck, and its log says where. The daemon
    // does this one: it opens the layers as soon as it has the manifest.
    const { stdout } = await rpull(['--daemon', (lazypull as LazypullDaemon).socket, reference], 60_000).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\nlazypull serve's log:\n${(lazypull as LazypullDaemon).log().split('\n').slice(-30).join('\n')}`);
    });
    const pulledBytes = (relay as CountingRelay).bytesDown - before;
    // containerd's AlreadyExists named each target, so no layer needed a Stat after its Prepare (the
    // presence check before them stops in containerd: it had none of these snapshots yet).
    const layerChain = chainIds(diffIds);
    const stats = (lazypull as LazypullDaemon).log().split('\n').filter((line) => line.includes('msg=stat ') && layerChain.some((chainId) => line.includes(chainId)));
    expect(stats).toEqual([]);
    expect(await leasesLeft()).toBe('');
    expect(stdout).toContain(`pulled by the lazypull daemon at ${(lazypull as LazypullDaemon).socket}`);
    expect((lazypull as LazypullDaemon).log().split('\n').some((line) => line.includes('msg="image pulled"') && line.includes(`image=${reference} `))).toBe(true);
    const lines = layerLines(stdout);
    expect([...lines.keys()]).toEqual(image.manifest.layers.map((l) => l.digest));
    // Lazy or not, the image runs.
    expect(await runEcho(reference, 'esgz-1')).toBe('hello\n');

    for (const what of lines.values()) expect(what).toBe('lazy');
    expect(stdout).toContain('layers: 2 (2 lazy, 0 fetched, 0 already unpacked)');
    // The daemon read footers and TOCs, rpull the manifest and config: a small part of the image.
    expect(pulledBytes).toBeLessThan(imageBytes / 4);
    for (const chainId of layerChain) {
      const info = JSON.parse((await ctr(['snapshots', '--snapshotter', 'lazypull', 'info', chainId])).stdout) as { Labels?: Record<string, string> };
      expect(info.Labels ?? {}).toHaveProperty('containerd.io/snapshot/remote');
    }
    // Running echo read echo and libc, not the bulk data.
    expect((relay as CountingRelay).bytesDown - before).toBeLessThan(imageBytes / 2);
  });

  it('explains configuration mistakes in one line and exits 1', async () => {
    const reg = registry as TestRegistry;
    const daemon = ['--daemon', (lazypull as LazypullDaemon).socket];
    const failures: string[] = [];
    // The same mistakes read the same whether the daemon or this process does the pull.
    for (const via of [['--no-daemon'], daemon]) {
      const noSnapshotter = await rpullFailure([...via, '--address', cd().address, '--namespace', cd().namespace, '--snapshotter', 'nope', plain.reference]);
      expect(noSnapshotter).toMatch(/^lazypull: containerd has no snapshotter named "nope"/);
      const noContainerd = await rpullFailure([...via, '--address', join(workDir as string, 'absent.sock'), plain.reference]);
      expect(noContainerd).toMatch(/^lazypull: cannot reach containerd: no socket at /);
      const notFound = await rpullFailure([...via, '--address', cd().address, '--namespace', cd().namespace, `${reg.host}/test/missing:v1`]);
      expect(notFound).toMatch(/^lazypull: .*not found/);
      const wrongSocket = await rpullFailure([...via, '--address', (lazypull as LazypullDaemon).socket, plain.reference]);
      expect(wrongSocket).toMatch(/^lazypull: .*lazypull\.sock does not serve containerd's API/);
      failures.push(noSnapshotter, noContainerd, notFound, wrongSocket);
    }
    // A daemon socket named on the command line must answer: no quiet pull in this process instead.
    const noDaemon = await rpullFailure(['--daemon', join(workDir as string, 'no-daemon.sock'), '--address', cd().address, plain.reference]);
    expect(noDaemon).toMatch(/^lazypull: no lazypull daemon at .*no-daemon\.sock/);
    failures.push(noDaemon);
    for (const stderr of failures) {
      expect(stderr.trim().split('\n')).toHaveLength(1);
      expect(stderr).not.toMatch(/\n\s+at /);
    }
    // Nothing half-done stays behind: no lease, no active extraction snapshot.
    expect(await leasesLeft()).toBe('');
    expect(await snapshotsLs()).not.toMatch(/\sActive\s*$/m);
  });
});
