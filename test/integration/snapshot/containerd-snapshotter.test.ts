/**
 * lazypull serve as containerd's proxy snapshotter, driven through containerd 1.6 itself: the
 * `ctr snapshots` commands, bad requests on the socket, and an image pull + `ctr run`. With the
 * plain gzip image every layer falls back to a normal pull, and the daemon says why.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, realpathSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerdConnection } from '../../../src/containerd/connection.js';
import { CommandError, type Containerd } from '../../helpers/containerd.js';
import { goArch } from '../../helpers/oci-image.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { codeOf, snapshotsClient } from '../../unit/snapshot/grpc-client.js';
import { buildIfStale, startContainerdWithLazypull, startLazypull, type LazypullDaemon } from './lazypull-daemon.js';

let lazypull: LazypullDaemon | undefined;
let containerd: Containerd | undefined;
let registry: TestRegistry | undefined;
let workDir: string | undefined;

beforeAll(async () => {
  await buildIfStale();
  lazypull = await startLazypull();
  containerd = await startContainerdWithLazypull(lazypull);
  registry = await startRegistry();
  workDir = await mkdtemp('/tmp/lpw-');
}, 180_000);

afterAll(async () => {
  // Each step runs even when an earlier one fails, so nothing outlives the suite.
  const results = await Promise.allSettled([containerd?.stop(), registry?.stop()]);
  const daemonExit = await lazypull?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
  for (const r of results) if (r.status === 'rejected') throw r.reason;
  expect(daemonExit, 'lazypull serve exits 0 on SIGTERM and removes its socket').toEqual({ code: 0, socketLeft: false });
}, 60_000);

const snap = (args: string[]) => (containerd as Containerd).ctr(['snapshots', '--snapshotter', 'lazypull', ...args], { timeoutMs: 30_000 });

async function ctrError(args: string[]): Promise<string> {
  try {
    await snap(args);
  } catch (err) {
    if (err instanceof CommandError) return err.stderr;
    throw err;
  }
  throw new Error(`ctr snapshots ${args.join(' ')} succeeded`);
}

/** Parses `ctr snapshots mounts` output: `mount -t TYPE SOURCE TARGET -o OPTIONS`. */
function parseMount(output: string): { type: string; source: string; options: string[] } {
  const match = /mount -t (\S+) (\S+) \S+ -o (\S+)/.exec(output);
  if (!match) throw new Error(`not a mount command: ${output}`);
  return { type: match[1] as string, source: match[2] as string, options: (match[3] as string).split(',') };
}

function option(mount: { options: string[] }, name: string): string {
  const found = mount.options.find((o) => o.startsWith(`${name}=`));
  if (!found) throw new Error(`no ${name} in ${mount.options.join(',')}`);
  return found.slice(name.length + 1);
}

describe('ctr snapshots --snapshotter lazypull', () => {
  it('prepare, mounts, commit, view, info, label, usage, ls and rm behave like the overlay snapshotter', async () => {
    const daemon = lazypull as LazypullDaemon;
    // Bottom layer: a writable bind mount of a directory under lazypull's root.
    await snap(['prepare', 'base-active']);
    const base = parseMount((await snap(['mounts', '/mnt/x', 'base-active'])).stdout);
    expect(base.type).toBe('bind');
    expect(base.options).toEqual(['rw', 'rbind']);
    expect(base.source.startsWith(join(daemon.root, 'snapshots'))).toBe(true);
    await writeFile(join(base.source, 'from-base'), Buffer.alloc(100_000, 7));
    await snap(['commit', 'base', 'base-active']);

    // Second layer: overlay over base.
    await snap(['prepare', 'mid-active', 'base']);
    const mid = parseMount((await snap(['mounts', '/mnt/x', 'mid-active'])).stdout);
    expect(mid.type).toBe('overlay');
    expect(option(mid, 'lowerdir')).toBe(base.source);
    expect(existsSync(join(option(mid, 'lowerdir'), 'from-base'))).toBe(true);
    await writeFile(join(option(mid, 'upperdir'), 'from-mid'), 'mid');
    expect(dirname(option(mid, 'workdir'))).toBe(dirname(option(mid, 'upperdir')));
    await snap(['commit', 'mid', 'mid-active']);

    // Third: lowerdirs nearest first.
    await snap(['prepare', 'top', 'mid']);
    const top = parseMount((await snap(['mounts', '/mnt/x', 'top'])).stdout);
    expect(option(top, 'lowerdir')).toBe(`${option(mid, 'upperdir')}:${base.source}`);

    // A view is read-only: no upperdir. Made through containerd's API, not `ctr snapshots view`: ctr
    // labels what it prepares and commits as a GC root but not its views, so containerd's garbage
    // collector could take the view between two of this test's commands.
    const cd = containerd as Containerd;
    const connection = await ContainerdConnection.open({ address: cd.address, namespace: cd.namespace });
    try {
      await connection.unary('snapshots', 'View', { snapshotter: 'lazypull', key: 'look', parent: 'mid', labels: { 'containerd.io/gc.root': 'test' } }, 'view');
    } finally {
      connection.close();
    }
    const view = parseMount((await snap(['mounts', '/mnt/x', 'look'])).stdout);
    expect(view.type).toBe('overlay');
    expect(view.options.some((o) => o.startsWith('upperdir='))).toBe(false);
    expect(option(view, 'lowerdir')).toBe(option(top, 'lowerdir'));

    const info = JSON.parse((await snap(['info', 'mid'])).stdout) as { Kind: string; Parent: string; Name: string };
    expect(info).toMatchObject({ Name: 'mid', Parent: 'base', Kind: 'Committed' });

    // Labels with the containerd.io/snapshot/ prefix reach the backend: lazypull itself has it.
    await snap(['label', 'base', 'containerd.io/snapshot/test=yes']);
    expect(JSON.parse((await snap(['info', 'base'])).stdout).Labels).toMatchObject({ 'containerd.io/snapshot/test': 'yes' });
    const client = snapshotsClient(daemon.socket);
    try {
      const labelled = await client.list(['labels."containerd.io/snapshot/test"==yes']);
      expect(labelled.names).toHaveLength(1);
      expect(labelled.names[0]).toMatch(/\/base$/);
    } finally {
      client.close();
    }

    const usage = (await snap(['usage', 'base'])).stdout;
    const baseRow = usage.split('\n').find((line) => line.startsWith('base'));
    expect(baseRow, usage).toMatch(/^base\s+\d+(\.\d+)? KiB\s+2\s*$/);

    const list = (await snap(['ls'])).stdout;
    expect(list).toMatch(/^base\s+Committed/m);
    expect(list).toMatch(/^mid\s+base\s+Committed/m);
    expect(list).toMatch(/^top\s+mid\s+Active/m);
    expect(list).toMatch(/^look\s+mid\s+View/m);

    // Removing a parent fails with FailedPrecondition; the chain comes down top first.
    expect(await ctrError(['rm', 'base'])).toMatch(/failed precondition/);
    expect(await ctrError(['rm', 'no-such-snapshot'])).toMatch(/not found/);
    expect(await ctrError(['prepare', 'x', 'no-such-parent'])).toMatch(/not found/);
    await snap(['rm', 'top', 'look']);
    await snap(['rm', 'mid']);
    await snap(['rm', 'base']);
    expect((await snap(['ls'])).stdout.trim().split('\n')).toHaveLength(1); // the header only
    // containerd removes backend snapshots in its garbage collection, checked in the image test below.
  });

  it('answers bad requests on its socket with gRPC errors and keeps serving containerd', async () => {
    const client = snapshotsClient((lazypull as LazypullDaemon).socket);
    try {
      expect(await codeOf(client.call('Stat', { key: 'unknown-key' }))).toBe(grpc.status.NOT_FOUND);
      expect(await codeOf(client.call('Prepare', { key: 'k', parent: 'missing-parent' }))).toBe(grpc.status.NOT_FOUND);
      expect(await codeOf(client.call('Prepare', { key: 'k', parent: '', labels: { '': 'garbage' } }))).toBe(grpc.status.INVALID_ARGUMENT);
      expect(await codeOf(client.call('Prepare', { key: 'k', parent: '', labels: { junk: '\u0000'.repeat(5000) } }))).toBe(grpc.status.INVALID_ARGUMENT);
      expect(await codeOf(client.list(['labels.(']))).toBe(grpc.status.INVALID_ARGUMENT);
    } finally {
      client.close();
    }
    await snap(['prepare', 'after-bad-requests']);
    expect((await snap(['ls'])).stdout).toMatch(/^after-bad-requests\s+Active/m);
    await snap(['rm', 'after-bad-requests']);
  });
});

/** A gzip layer holding /bin/echo and the libraries it loads, so `echo hello` runs in the container. */
function echoLayer(dir: string): { gz: Buffer; diffId: string } {
  const stage = join(dir, 'echo-root');
  for (const file of ['/bin/echo', ...sharedLibraries('/bin/echo')]) {
    const target = join(stage, file);
    mkdirSync(dirname(target), { recursive: true });
    copyFileSync(realpathSync(file), target);
  }
  const tar = execFileSync('tar', ['-C', stage, '--owner=0', '--group=0', '-cf', '-', '.'], { maxBuffer: 64 << 20 });
  return { gz: gzipSync(tar), diffId: `sha256:${createHash('sha256').update(tar).digest('hex')}` };
}

function sharedLibraries(binary: string): string[] {
  const out = execFileSync('ldd', [binary], { encoding: 'utf8' });
  return [...out.matchAll(/(\/\S+) \(0x/g)].map((m) => m[1] as string);
}

/** A second layer: one file, so the image has a parent chain. */
function fileLayer(dir: string): { gz: Buffer; diffId: string } {
  const stage = join(dir, 'file-root');
  mkdirSync(join(stage, 'etc'), { recursive: true });
  execFileSync('sh', ['-c', `echo from-layer-2 > ${join(stage, 'etc', 'greeting')}`]);
  const tar = execFileSync('tar', ['-C', stage, '--owner=0', '--group=0', '-cf', '-', '.']);
  return { gz: gzipSync(tar), diffId: `sha256:${createHash('sha256').update(tar).digest('hex')}` };
}

describe('images through lazypull', () => {
  it('pulls a plain two-layer image, records why each layer was not lazy, and runs a container', async () => {
    const reg = registry as TestRegistry;
    const cd = containerd as Containerd;
    const layers = [echoLayer(workDir as string), fileLayer(workDir as string)];
    const layerDescriptors = [];
    for (const layer of layers) layerDescriptors.push({ ...(await reg.pushBlob('test/echo', layer.gz)), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
    // The config's diff_ids are the uncompressed tars' digests: containerd checks them after unpacking.
    const config = Buffer.from(
      JSON.stringify({ architecture: goArch(), os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) }, config: { Env: ['PATH=/bin'] } }),
    );
    const configDescriptor = { ...(await reg.pushBlob('test/echo', config)), mediaType: 'application/vnd.oci.image.config.v1+json' };
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: configDescriptor, layers: layerDescriptors }));
    await reg.pushManifest('test/echo', 'v1', manifest, 'application/vnd.oci.image.manifest.v1+json');
    const image = `${reg.host}/test/echo:v1`;

    const runEcho = async () => (await cd.ctr(['run', '--snapshotter', 'lazypull', '--rm', image, 'echo-test', 'echo', 'hello'], { timeoutMs: 60_000 })).stdout;
    const fallbackLines = () => (lazypull as LazypullDaemon).log().split('\n').filter((line) => line.includes('msg="layer pulled normally, not lazily"'));

    // ctr-remote's rpull speaks the remote snapshot protocol (containerd.io/snapshot.ref and the
    // stargz labels): every layer falls back, each with its reason, and the image still runs.
    await cd.ctrRemote(['images', 'rpull', '--plain-http', '--snapshotter', 'lazypull', image], { timeoutMs: 60_000 });
    expect(await runEcho()).toBe('hello\n');
    const fallbacks = fallbackLines();
    expect(fallbacks).toHaveLength(2);
    for (const line of fallbacks) expect(line).toContain('reason="not-lazy-format: not an eStargz or zstd:chunked layer');
    // containerd names committed layers by chainID.
    const committed = (await snap(['ls'])).stdout.split('\n').filter((line) => /^sha256:\S+\s.*Committed\s*$/.test(line));
    expect(committed).toHaveLength(2);

    // Removing the image lets containerd's garbage collector Remove the layers from lazypull (and the
    // snapshots the previous tests removed through containerd's metadata).
    await cd.ctr(['images', 'rm', '--sync', image], { timeoutMs: 30_000 });
    expect((await snap(['ls'])).stdout).not.toMatch(/^sha256:/m);
    expect(await readdir(join((lazypull as LazypullDaemon).root, 'snapshots'))).toEqual([]);

    // Plain `ctr images pull` (containerd 1.6) sends no remote labels: a normal unpack, nothing to explain.
    await cd.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'lazypull', image], { timeoutMs: 60_000 });
    expect(await runEcho()).toBe('hello\n');
    expect(fallbackLines()).toHaveLength(2);
  });
});
