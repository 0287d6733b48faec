/**
 * LazyLayerResolver against a real registry and real FUSE mounts, for the paths the containerd
 * end-to-end suites do not reach: the TOC digest read from the manifest's annotations, a damaged
 * stored tail fetched again, the resolve deadline, and a missing TOC digest.
 */
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MemoryOnlyChunkCache } from '../../../src/cache/index.js';
import { LazyLayerResolver } from '../../../src/daemon/lazy-layers.js';
import { TailStore } from '../../../src/daemon/layer-tails.js';
import { MountManager } from '../../../src/fs/index.js';
import { RegistryClient } from '../../../src/remote/index.js';
import { REMOTE_LAYER_LABELS as L } from '../../../src/snapshot/remote-layer.js';
import { unmountUnder } from '../../helpers/containerd.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { pushRunnableImage, type RunnableImage } from '../../helpers/runnable-image.js';
import { startTcpRelay, type TcpRelay } from '../fs/proxies.js';

let registry: TestRegistry | undefined;
let relay: TcpRelay | undefined;
let image: RunnableImage | undefined;
let dir: string | undefined;
const managers: MountManager[] = [];
const silent = { debug: () => undefined, info: () => undefined, warn: () => undefined };

beforeAll(async () => {
  registry = await startRegistry();
  relay = await startTcpRelay(Number(registry.host.split(':')[1]));
  image = await pushRunnableImage(registry, 'daemon/layers', 'v1', [{ format: 'estargz', files: { '/etc/greeting': Buffer.from('hello\n') } }]);
  dir = await mkdtemp('/tmp/lpll-');
}, 60_000);

afterEach(async () => {
  await Promise.allSettled(managers.splice(0).map((m) => m.shutdown()));
  if (dir) unmountUnder(dir);
});

afterAll(async () => {
  await Promise.allSettled([registry?.stop(), relay?.close()]);
  if (dir) {
    unmountUnder(dir);
    await rm(dir, { recursive: true, force: true });
  }
});

function resolver(name: string, options: { resolveTimeoutMs?: number } = {}) {
  const mounts = new MountManager();
  managers.push(mounts);
  const client = new RegistryClient({ dockerConfig: false, hostsDir: null, retry: { maxAttempts: 1 }, requestTimeoutMs: 5_000 });
  const tails = new TailStore(join(dir as string, name, 'tails'));
  const lazy = new LazyLayerResolver({ client, mounts, cache: new MemoryOnlyChunkCache(), tails, log: silent, fetch: { background: false }, ...options });
  return { lazy, tailsDir: join(dir as string, name, 'tails') };
}

async function mountpoint(name: string): Promise<string> {
  const path = join(dir as string, name, 'mnt');
  await mkdir(path, { recursive: true });
  return path;
}

function criLabels(extra: Record<string, string> = {}): Record<string, string> {
  const img = image as RunnableImage;
  return { [L.criImageRef]: img.ref.replace((registry as TestRegistry).host, (relay as TcpRelay).host), [L.criLayerDigest]: img.layers[0] as string, ...extra };
}

describe('LazyLayerResolver', () => {
  it('takes the TOC digest from the layer annotations of the manifest named by cri.manifest-digest', async () => {
    const { lazy } = resolver('manifest');
    const at = await mountpoint('manifest');
    const answer = await lazy.resolve({ key: 'k', parent: '', chainId: 'c', labels: criLabels({ [L.criManifestDigest]: (image as RunnableImage).manifestDigest }), mountpoint: at });
    expect(answer).toEqual({ mounted: at });
    expect(await readFile(join(at, 'etc/greeting'), 'utf8')).toBe('hello\n');
    await lazy.release(at);
  });

  it('without a TOC digest anywhere, falls back as no-toc-digest', async () => {
    const { lazy } = resolver('none');
    const answer = await lazy.resolve({ key: 'k', parent: '', chainId: 'c', labels: criLabels(), mountpoint: await mountpoint('none') });
    expect(answer).toMatchObject({ fallback: expect.stringMatching(/^no-toc-digest: layer sha256:\w+ has no containerd.io\/snapshot\/stargz\/toc.digest annotation/) as unknown });
  });

  it('fetches a damaged stored tail again instead of failing the layer, and replaces it', async () => {
    const { lazy, tailsDir } = resolver('damaged');
    const at = await mountpoint('damaged');
    const labels = criLabels({ [L.criManifestDigest]: (image as RunnableImage).manifestDigest });
    expect(await lazy.resolve({ key: 'k', parent: '', chainId: 'c', labels, mountpoint: at })).toEqual({ mounted: at });
    const digest = ((image as RunnableImage).layers[0] as string).slice('sha256:'.length);
    const stored = await readFile(join(tailsDir, digest));
    await lazy.release(at);
    expect(await readdir(tailsDir), 'release deletes the tail with the last snapshot of the layer').toEqual([]);
    // The same file with one byte of its TOC flipped: it decodes as a tail, but its TOC is wrong.
    const damaged = Buffer.from(stored);
    damaged[24 + 40] = (damaged[24 + 40] as number) ^ 0xff;
    await writeFile(join(tailsDir, digest), damaged);
    const before = (relay as TcpRelay).bytesFromUpstream();
    expect(await lazy.resolve({ key: 'k2', parent: '', chainId: 'c', labels, mountpoint: at })).toEqual({ mounted: at });
    expect((relay as TcpRelay).bytesFromUpstream()).toBeGreaterThan(before);
    expect((await readFile(join(tailsDir, digest))).equals(stored)).toBe(true);
    await lazy.release(at);
  });

  it('falls back as timeout when the registry does not answer within the resolve deadline', async () => {
    const { lazy } = resolver('slow', { resolveTimeoutMs: 300 });
    // Accepts connections and never answers.
    const sockets = new Set<Socket>();
    const silentServer = createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silentServer.listen(0, '127.0.0.1', resolve));
    try {
      const host = `127.0.0.1:${(silentServer.address() as AddressInfo).port}`;
      const labels = { [L.criImageRef]: `${host}/daemon/layers:v1`, [L.criLayerDigest]: (image as RunnableImage).layers[0] as string, [L.tocDigest]: `sha256:${'0'.repeat(64)}` };
      const started = Date.now();
      const answer = await lazy.resolve({ key: 'k', parent: '', chainId: 'c', labels, mountpoint: await mountpoint('slow') });
      expect(answer).toEqual({ fallback: 'timeout: the layer was not ready within 300 ms' });
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silentServer.close(() => resolve()));
    }
  });

  it('before a container starts: warns while the registry is unreachable and the layer not fully cached, clears it once back', async () => {
    const { lazy } = resolver('health');
    const at = await mountpoint('health');
    const labels = criLabels({ [L.criManifestDigest]: (image as RunnableImage).manifestDigest });
    expect(await lazy.resolve({ key: 'k', parent: '', chainId: 'c', labels, mountpoint: at })).toEqual({ mounted: at });
    await (relay as TcpRelay).stop();
    try {
      await lazy.beforeUse([{ chainId: 'c', labels, mountpoint: at }]);
      expect(lazy.mounted(at)?.warning).toMatch(/^registry unreachable \(.*\) and the layer is not fully cached/);
    } finally {
      await (relay as TcpRelay).start();
    }
    await lazy.beforeUse([{ chainId: 'c', labels, mountpoint: at }]);
    expect(lazy.mounted(at)?.warning).toBeUndefined();
    await lazy.release(at);
  });
});
