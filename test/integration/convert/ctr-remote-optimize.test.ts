/**
 * An image optimized by the reference tool (`ctr-remote images optimize`: it runs the workload under
 * containerd, records what it reads and writes eStargz with a prefetch landmark per layer) pulled lazily
 * through lazypull: every layer mounts from its TOC, the landmark's region is prefetched at mount (and
 * nothing else, with background fetch off), and the same workload then runs without fetching more.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryClient } from '../../../src/remote/index.js';
import type { Containerd } from '../../helpers/containerd.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { pushRunnableImage } from '../../helpers/runnable-image.js';
import { coreutilsLayer, daemonStatus, greetingLayer, layersOf, UNREAD_BYTES } from '../e2e/lazy-stack.js';
import { buildIfStale, startContainerdWithLazypull, startLazypull, type LazypullDaemon } from '../snapshot/lazypull-daemon.js';

// Small layers are not prefetched whole here: what is under test is the landmark region ctr-remote wrote.
const DAEMON_CONFIG = ['[fetch]', 'background = false', 'prefetch_wait_sec = 10', 'prefetch_whole_layer_bytes = 0', '[registry]', 'hosts_dir = ""'].join('\n');
const WORKLOAD = ['/bin/cat', '/etc/greeting'];

let registry: TestRegistry | undefined;
let lazypull: LazypullDaemon | undefined;
let containerd: Containerd | undefined;

beforeAll(async () => {
  await buildIfStale();
  registry = await startRegistry();
  lazypull = await startLazypull([], { config: DAEMON_CONFIG });
  containerd = await startContainerdWithLazypull(lazypull);
}, 180_000);

afterAll(async () => {
  const results = await Promise.allSettled([containerd?.stop(), registry?.stop()]);
  await lazypull?.stop();
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}, 60_000);

describe('an image optimized by ctr-remote images optimize', () => {
  it('mounts lazily through lazypull, prefetches its landmark region, and the recorded workload runs without fetching more', async () => {
    const cd = containerd as Containerd;
    const reg = registry as TestRegistry;
    const source = await pushRunnableImage(reg, 'compat/optimize-src', 'v1', [coreutilsLayer('gzip'), greetingLayer('hello from an image ctr-remote optimized', 'gzip')]);
    const optimized = `${reg.host}/compat/optimized:v1`;
    // The reference optimizer works on images in containerd's store and runs the workload on overlayfs.
    await cd.ctr(['images', 'pull', '--plain-http', source.ref], { namespace: 'optimize', timeoutMs: 120_000 });
    await cd.ctrRemote(['images', 'optimize', '--oci', '--net-host', '--period', '1', '--entrypoint', JSON.stringify(WORKLOAD), source.ref, optimized], { namespace: 'optimize', timeoutMs: 120_000 });
    await cd.ctr(['images', 'push', '--plain-http', optimized], { namespace: 'optimize', timeoutMs: 120_000 });
    const client = new RegistryClient({ hostsDir: null, dockerConfig: false });
    const { manifest } = await client.resolve(optimized).finally(() => client.close());
    const layers = manifest.layers.map((l) => l.digest);
    expect(manifest.layers.every((l) => l.annotations?.['containerd.io/snapshot/stargz/toc.digest'])).toBe(true);

    await cd.ctrRemote(['images', 'rpull', '--plain-http', '--snapshotter', 'lazypull', optimized], { timeoutMs: 120_000 });
    const daemon = lazypull as LazypullDaemon;
    const mounted = layersOf(await daemonStatus(daemon.socket), { layers });
    for (const layer of mounted) {
      expect(layer.state, `${layer.digest}: ${layer.reason}`).toBe('lazy');
      expect(layer.format).toBe('estargz');
    }
    // The binaries' layer: its landmark region (cat, its libraries, the loader) is prefetched, the unread data is not.
    const binaries = mounted[0]!;
    expect(binaries.prefetch_bytes).toBeGreaterThan(0);
    expect(binaries.prefetch_bytes).toBeLessThan(UNREAD_BYTES / 4);

    const output = (await cd.ctr(['run', '--snapshotter', 'lazypull', '--rm', optimized, 'optimized-1', ...WORKLOAD], { timeoutMs: 120_000 })).stdout;
    expect(output).toBe('hello from an image ctr-remote optimized\n');
    const after = layersOf(await daemonStatus(daemon.socket), { layers });
    for (const [i, layer] of after.entries()) {
      expect(layer.prefetch_done).toBe(true);
      // Everything the workload read was in the prefetched region: no on-demand fetch beyond it.
      expect(layer.fetched_bytes, `layer ${i} fetched beyond its prefetch`).toBe(mounted[i]!.fetched_bytes);
      expect(layer.fetched_bytes).toBeLessThan(layer.total_bytes);
    }
  }, 300_000);
});
