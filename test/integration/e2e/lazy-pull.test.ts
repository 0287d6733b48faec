/**
 * End to end, with real parts only: docker-registry on 127.0.0.1 behind a byte-counting TCP relay,
 * Debian's containerd 1.6 with lazypull as its proxy snapshotter, runc, and `ctr-remote images rpull`.
 * Lazy eStargz images, and unmodified gzip images with a SOCI index (`lazypull rpull`), run after
 * fetching a fraction of their bytes; plain layers fall back and
 * `lazypull status` says why; a restarted daemon restores its layers and serves a new container from
 * the cache with the registry gone; garbage labels on the socket are fallbacks, not crashes.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Containerd } from '../../helpers/containerd.js';
import { scrape, type Scrape } from '../../helpers/prometheus.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { coreutilsFiles } from '../../helpers/runnable-image.js';
import { addSociIndex } from '../../helpers/soci-image.js';
import { codeOf, snapshotsClient } from '../../unit/snapshot/grpc-client.js';
import { startTcpRelay, type TcpRelay } from '../fs/proxies.js';
import { buildIfStale, REPO, startContainerdWithLazypull, startLazypull, type LazypullDaemon } from '../snapshot/lazypull-daemon.js';
import { coreutilsLayer, daemonStatus, greetingLayer, layersOf, pushViaRelay, type RelayedImage } from './lazy-stack.js';


const execFileAsync = promisify(execFile);

/** No background fetch: the relay's byte count is then what the workload's reads cost. */
const DAEMON_CONFIG = ['metrics_address = "127.0.0.1:0"', '[fetch]', 'background = false', 'prefetch_wait_sec = 2', '[registry]', 'hosts_dir = ""'].join('\n');

let registry: TestRegistry | undefined;
let relay: TcpRelay | undefined;
let lazypull: LazypullDaemon | undefined;
let containerd: Containerd | undefined;
let workDir: string | undefined;

beforeAll(async () => {
  await buildIfStale();
  registry = await startRegistry();
  relay = await startTcpRelay(Number(registry.host.split(':')[1]));
  lazypull = await startLazypull([], { config: DAEMON_CONFIG });
  containerd = await startContainerdWithLazypull(lazypull);
  workDir = await mkdtemp('/tmp/lpe-');
}, 180_000);

afterAll(async () => {
  const results = await Promise.allSettled([containerd?.stop(), registry?.stop(), relay?.close()]);
  await lazypull?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}, 60_000);



async function rpull(ref: string): Promise<void> {
  await (containerd as Containerd).ctrRemote(['images', 'rpull', '--plain-http', '--snapshotter', 'lazypull', ref], { timeoutMs: 120_000 });
}

async function run(ref: string, name: string, ...command: string[]): Promise<string> {
  return (await (containerd as Containerd).ctr(['run', '--snapshotter', 'lazypull', '--rm', ref, name, ...command], { timeoutMs: 120_000 })).stdout;
}


/** The daemon's /metrics, at the address its start-up log line names. */
async function metrics(): Promise<Scrape> {
  const address = /metrics=http:\/\/(\S+)\/metrics/.exec((lazypull as LazypullDaemon).log())?.[1];
  if (!address) throw new Error('the daemon logged no metrics address');
  return scrape(address);
}


describe('lazy pull end to end', () => {
  let lazyImage: RelayedImage | undefined;

  it('ctr-remote rpull of an eStargz image mounts every layer lazily; the container runs after fetching a fraction of the image', async () => {
    lazyImage = await pushViaRelay(registry as TestRegistry, relay as TcpRelay, 'e2e/lazy', [coreutilsLayer('estargz'), greetingLayer('hello from a lazy layer')]);
    const before = (relay as TcpRelay).bytesFromUpstream();
    await rpull(lazyImage.viaRelay);
    expect(await run(lazyImage.viaRelay, 'lazy-1', 'cat', '/etc/greeting')).toBe('hello from a lazy layer\n');
    const fetched = (relay as TcpRelay).bytesFromUpstream() - before;
    expect(fetched, `registry served ${fetched} bytes of a ${lazyImage.layerBytes}-byte image`).toBeLessThan(lazyImage.layerBytes * 0.3);

    const layers = layersOf(await daemonStatus((lazypull as LazypullDaemon).socket), lazyImage);
    expect(layers.map((l) => l.state)).toEqual(['lazy', 'lazy']);
    expect(layers[0]?.format).toBe('estargz');
    expect(layers[0]?.fetched_bytes).toBeGreaterThan(0);
    expect(layers[0]?.fetched_bytes).toBeLessThan(layers[0]?.total_bytes ?? 0);
    // fetch.prefetch_whole_layer_bytes (8 MiB by default): the small greeting layer came whole at mount,
    // the large one (no landmark region) not at all.
    expect(layers[1]?.prefetch_bytes).toBe(layers[1]?.total_bytes);
    expect(layers[1]?.prefetch_done).toBe(true);
    expect(layers[0]?.prefetch_bytes).toBe(0);
    expect((lazypull as LazypullDaemon).log()).toMatch(/msg="layer mounted lazily" .* ms=\d+ index_ms=\d+/);
  });

  it('lazypull rpull of an unmodified gzip image with a v2 SOCI index mounts every layer through its zTOC; the container runs after fetching a fraction', async () => {
    const plain = await pushViaRelay(registry as TestRegistry, relay as TcpRelay, 'e2e/soci', [coreutilsLayer('gzip'), greetingLayer('hello from a SOCI-indexed gzip layer', 'gzip')]);
    // 1 MiB spans: with the default 4 MiB, the first span (holding /bin/cat) would be mostly the
    // unread incompressible file, whatever the snapshotter does.
    const soci = await addSociIndex(registry as TestRegistry, plain, { bind: 'v2', spanSize: 1 << 20 });
    const ref = soci.ref.replace((registry as TestRegistry).host, (relay as TcpRelay).host);
    const before = (relay as TcpRelay).bytesFromUpstream();
    const cd = containerd as Containerd;
    await execFileAsync(process.execPath, [`${REPO}/bin/lazypull.js`, 'rpull', '--address', cd.address, '--namespace', cd.namespace, ref], { timeout: 120_000 });
    expect(await run(ref, 'soci-1', 'cat', '/etc/greeting')).toBe('hello from a SOCI-indexed gzip layer\n');
    const fetched = (relay as TcpRelay).bytesFromUpstream() - before;
    expect(fetched, `registry served ${fetched} bytes of a ${plain.layerBytes}-byte image`).toBeLessThan(plain.layerBytes * 0.3);
    const layers = layersOf(await daemonStatus((lazypull as LazypullDaemon).socket), plain);
    for (const layer of layers) {
      expect(layer.state, `${layer.digest}: ${layer.reason}`).toBe('lazy');
      expect(layer.format).toBe('soci');
    }
  });

  it('a plain gzip image falls back layer by layer, runs, and status says why', async () => {
    const plain = await pushViaRelay(registry as TestRegistry, relay as TcpRelay, 'e2e/plain', [{ format: 'gzip', files: coreutilsFiles() }, greetingLayer('hello from gzip', 'gzip')]);
    await rpull(plain.viaRelay);
    expect(await run(plain.viaRelay, 'plain-1', 'cat', '/etc/greeting')).toBe('hello from gzip\n');
    const layers = layersOf(await daemonStatus((lazypull as LazypullDaemon).socket), plain);
    for (const layer of layers) {
      expect(layer.state).toBe('fallback');
      expect(layer.reason).toMatch(/^not-lazy-format: not an eStargz or zstd:chunked layer/);
      expect(layer.image).toBe(plain.viaRelay);
    }
    expect((lazypull as LazypullDaemon).log()).toMatch(/level=info msg="layer pulled normally, not lazily".*reason="not-lazy-format/);
    const scraped = await metrics();
    expect(scraped.value('lazypull_layer_fallbacks_total', { reason: 'not-lazy-format' })).toBe(2);
    const lazyLayer = (lazyImage as RelayedImage).layers[0] as string;
    expect(scraped.value('lazypull_layer_fetched_bytes', { digest: lazyLayer })).toBeGreaterThan(0);
    // One lazy mount-duration sample per layer mounted lazily so far, whichever earlier tests did it.
    const lazyLayers = (await daemonStatus((lazypull as LazypullDaemon).socket)).layers.filter((l) => l.state === 'lazy').length;
    expect(lazyLayers).toBeGreaterThanOrEqual(2);
    expect(scraped.value('lazypull_layer_mount_duration_seconds_count', { outcome: 'lazy' })).toBe(lazyLayers);
  });

  it('an image mixing eStargz and plain gzip layers runs with the eStargz layer lazy and the other pulled', async () => {
    const mixed = await pushViaRelay(registry as TestRegistry, relay as TcpRelay, 'e2e/mixed', [coreutilsLayer('estargz'), greetingLayer('hello from a mixed image', 'gzip')]);
    await rpull(mixed.viaRelay);
    expect(await run(mixed.viaRelay, 'mixed-1', 'cat', '/etc/greeting')).toBe('hello from a mixed image\n');
    expect(layersOf(await daemonStatus((lazypull as LazypullDaemon).socket), mixed).map((l) => l.state)).toEqual(['lazy', 'fallback']);
  });

  it('garbage remote labels on the socket are fallbacks with a reason; the daemon keeps serving', async () => {
    const client = snapshotsClient((lazypull as LazypullDaemon).socket);
    const prepare = (key: string, labels: Record<string, string>) => client.call<{ mounts: unknown[] }>('Prepare', { key, parent: '', labels });
    try {
      const garbage: Record<string, string>[] = [
        { 'containerd.io/snapshot/cri.image-ref': 'NOT A REFERENCE', 'containerd.io/snapshot/cri.layer-digest': 'sha256:xyz' },
        { 'containerd.io/snapshot/cri.image-ref': `${(relay as TcpRelay).host}/e2e/none:v1`, 'containerd.io/snapshot/cri.layer-digest': `sha256:${'0'.repeat(64)}`, 'containerd.io/snapshot/cri.image-layers': ',,,junk' },
        { 'containerd.io/snapshot/remote/stargz.reference': 'x', 'containerd.io/snapshot/remote/stargz.digest': 'sha256:', 'containerd.io/snapshot/stargz/toc.digest': 'nope' },
      ];
      for (const [i, labels] of garbage.entries()) {
        const answer = await prepare(`garbage-${i}`, { ...labels, 'containerd.io/snapshot.ref': `garbage-chain-${i}` });
        expect(answer.mounts, 'a fallback answers ordinary mounts').toHaveLength(1);
      }
      const reasons = (await daemonStatus((lazypull as LazypullDaemon).socket)).layers.filter((l) => l.snapshot.startsWith('garbage-')).map((l) => l.reason);
      expect(reasons).toHaveLength(3);
      expect(reasons[0]).toMatch(/^no-remote-labels: image reference label: invalid image reference/);
      expect(reasons[1]).toMatch(/^(registry-unreachable|not-lazy-format|other): /);
      expect(reasons[2]).toMatch(/^no-remote-labels: layer digest label/);
      expect(await codeOf(prepare('garbage-0', {}))).toBe(6 /* ALREADY_EXISTS */);
    } finally {
      client.close();
    }
  });

  it('after a restart the lazy layers are restored, and a new container starts from the cache with the registry gone', async () => {
    const image = lazyImage as RelayedImage;
    const daemon = lazypull as LazypullDaemon;
    await daemon.stop({ keepDir: true });
    await (relay as TcpRelay).stop();
    try {
      lazypull = await startLazypull([], { dir: daemon.dir, config: DAEMON_CONFIG });
      expect(layersOf(await daemonStatus((lazypull as LazypullDaemon).socket), image).map((l) => l.state)).toEqual(['lazy', 'lazy']);
      await (containerd as Containerd).waitForSnapshotter('lazypull');
      expect(await run(image.viaRelay, 'lazy-2', 'cat', '/etc/greeting')).toBe('hello from a lazy layer\n');
      expect(lazypull.log()).toMatch(/msg="restored remote snapshots" restored=\d+ failed=0/);
      // Removing the image lets containerd's GC remove the layers; their stored tails go with them.
      const tails = join(lazypull.root, 'tails');
      expect(await readdir(tails)).toEqual(expect.arrayContaining(image.layers.map((d) => d.slice('sha256:'.length))));
      await (containerd as Containerd).ctr(['images', 'rm', '--sync', image.viaRelay], { timeoutMs: 30_000 });
      const left = await readdir(tails);
      for (const digest of image.layers) expect(left).not.toContain(digest.slice('sha256:'.length));
    } finally {
      await (relay as TcpRelay).start();
    }
  });
});
