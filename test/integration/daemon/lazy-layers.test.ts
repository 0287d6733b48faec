/**
 * LazyLayerResolver against a real registry and real FUSE mounts, for the paths the containerd
 * end-to-end suites do not reach: the TOC digest read from the manifest's annotations, a damaged
 * stored tail fetched again, the resolve deadline, a missing TOC digest, and SOCI discovery (label,
 * v2 annotation, v1 through the referrers tag) with its bad inputs.
 */
import { mkdir, mkdtemp, open, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { MemoryOnlyChunkCache } from '../../../src/cache/index.js';
import { LazyLayerResolver } from '../../../src/daemon/lazy-layers.js';
import { TailStore } from '../../../src/daemon/layer-tails.js';
import { ZtocStore } from '../../../src/daemon/ztoc-store.js';
import { MountManager, type BackgroundFetchOptions } from '../../../src/fs/index.js';
import { openLayer } from '../../../src/estargz/open.js';
import { BufferSource } from '../../../src/io/random-access.js';
import { PREFETCH_RANGES_ANNOTATION, formatPrefetchRanges } from '../../../src/layer/prefetch-ranges.js';
import { CountingObserver, parseReference, RegistryClient } from '../../../src/remote/index.js';
import { buildZtoc } from '../../../src/soci/build.js';
import { EMPTY_CONFIG, SOCI_INDEX_DIGEST_LABEL, serializeSociIndex } from '../../../src/soci/index-manifest.js';
import { readZtoc, writeZtoc } from '../../../src/soci/ztoc.js';
import { sha256, type Digest } from '../../../src/util/digest.js';
import { REMOTE_LAYER_LABELS as L } from '../../../src/snapshot/remote-layer.js';
import { unmountUnder } from '../../helpers/containerd.js';
import { sha256Digest, startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { incompressible, pushRunnableImage, type RunnableImage } from '../../helpers/runnable-image.js';
import { addSociIndex, type SociIndexed } from '../../helpers/soci-image.js';
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

function resolver(name: string, options: { resolveTimeoutMs?: number; soci?: false | { referrers: boolean }; fetch?: Partial<BackgroundFetchOptions>; observer?: CountingObserver } = {}) {
  const mounts = new MountManager();
  managers.push(mounts);
  const { observer, ...resolverOptions } = options;
  const client = new RegistryClient({ dockerConfig: false, hostsDir: null, retry: { maxAttempts: 1 }, requestTimeoutMs: 5_000, ...(observer ? { observer } : {}) });
  const tails = new TailStore(join(dir as string, name, 'tails'));
  const ztocs = new ZtocStore(join(dir as string, name, 'ztocs'));
  const lazy = new LazyLayerResolver({ client, mounts, cache: new MemoryOnlyChunkCache(), tails, ztocs, log: silent, fetch: { background: false, prefetch: false }, ...resolverOptions });
  return { lazy, tailsDir: join(dir as string, name, 'tails'), ztocsDir: join(dir as string, name, 'ztocs') };
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

  it('reads a small layer tail (footer and TOC) in one request that also gives the blob size: no size probe', async () => {
    const observer = new CountingObserver();
    const { lazy } = resolver('one-request', { observer });
    const at = await mountpoint('one-request');
    const layer = (image as RunnableImage).layers[0] as string;
    expect(await lazy.resolve({ key: 'k', parent: '', chainId: 'c', labels: criLabels({ [L.criManifestDigest]: (image as RunnableImage).manifestDigest }), mountpoint: at })).toEqual({ mounted: at });
    expect(observer.exchanges.filter((e) => e.blob === layer).map((e) => `${e.method} ${e.kind} ${e.status}`)).toEqual(['GET blob 206']);
    expect(await readFile(join(at, 'etc/greeting'), 'utf8')).toBe('hello\n');
    await lazy.release(at);
  });

  it('opens the layers after the prepared one ahead and starts their prefetch: their own Prepares then ask the registry nothing', async () => {
    const two = await pushRunnableImage(registry as TestRegistry, 'daemon/warm', 'v1', [
      { format: 'estargz', files: { '/a': Buffer.from('first\n') } },
      { format: 'estargz', files: { '/b': Buffer.from('second\n') } },
    ]);
    const observer = new CountingObserver();
    const { lazy } = resolver('warm', { observer, fetch: { background: false, prefetch: true, prefetchWholeLayerBytes: 1 << 20 } });
    const [first, second] = two.layers as [string, string];
    const labelsOf = (index: number) => ({
      [L.criImageRef]: two.ref.replace((registry as TestRegistry).host, (relay as TcpRelay).host),
      [L.criLayerDigest]: two.layers[index] as string,
      [L.criManifestDigest]: two.manifestDigest,
      [L.criImageLayers]: two.layers.slice(index).join(','),
    });
    const at1 = await mountpoint('warm-1');
    expect(await lazy.resolve({ key: 'k1', parent: '', chainId: 'c1', labels: labelsOf(0), mountpoint: at1 })).toEqual({ mounted: at1 });
    // The second layer: its tail, then its prefetch, with nobody having asked for it yet. The first
    // layer's own prefetch may still be on its way: it is not what the second Prepare asks for.
    await vi.waitFor(() => expect(observer.exchanges.filter((e) => e.blob === second)).toHaveLength(2), { timeout: 5_000 });
    await vi.waitFor(() => expect(lazy.progressOf(at1)).toMatchObject({ prefetchDone: true }), { timeout: 5_000 });
    const asked = observer.exchanges.length;
    const at2 = await mountpoint('warm-2');
    expect(await lazy.resolve({ key: 'k2', parent: '', chainId: 'c2', labels: labelsOf(1), mountpoint: at2 })).toEqual({ mounted: at2 });
    expect(await readFile(join(at2, 'b'), 'utf8')).toBe('second\n');
    expect(observer.exchanges.slice(asked)).toEqual([]);
    expect(lazy.progressOf(at2)).toMatchObject({ prefetchDone: true });
    expect(observer.exchanges.some((e) => e.blob === first)).toBe(true);
    await lazy.release(at1);
    await lazy.release(at2);
  });

  it('opens every layer of an image the daemon pulls as soon as it has the manifest: the Prepares then ask the registry nothing', async () => {
    const two = await pushRunnableImage(registry as TestRegistry, 'daemon/expected', 'v1', [
      { format: 'estargz', files: { '/a': Buffer.from('first\n') } },
      { format: 'estargz', files: { '/b': Buffer.from('second\n') } },
    ]);
    const observer = new CountingObserver();
    const { lazy } = resolver('expected', { observer, fetch: { background: false, prefetch: true, prefetchWholeLayerBytes: 1 << 20 } });
    const pinned = `${two.ref.replace((registry as TestRegistry).host, (relay as TcpRelay).host)}@${two.manifestDigest}`;
    const documents = new RegistryClient({ dockerConfig: false, hostsDir: null });
    const fetched = await documents.fetchManifest(parseReference(pinned), two.manifestDigest as Digest).finally(() => documents.close());
    if (fetched.document.kind !== 'manifest') throw new Error('not a manifest');
    lazy.expectImage(parseReference(pinned), two.manifestDigest as Digest, fetched.document.manifest);
    // Each layer's tail, then its prefetch, before any Prepare.
    for (const layer of two.layers) await vi.waitFor(() => expect(observer.exchanges.filter((e) => e.blob === layer)).toHaveLength(2), { timeout: 5_000 });
    const asked = observer.exchanges.length;
    const labelsOf = (index: number) => ({ [L.criImageRef]: pinned, [L.criLayerDigest]: two.layers[index] as string, [L.criManifestDigest]: two.manifestDigest, [L.criImageLayers]: two.layers.slice(index).join(',') });
    const at1 = await mountpoint('expected-1');
    const at2 = await mountpoint('expected-2');
    expect(await lazy.resolve({ key: 'k1', parent: '', chainId: 'c1', labels: labelsOf(0), mountpoint: at1 })).toEqual({ mounted: at1 });
    expect(await lazy.resolve({ key: 'k2', parent: 'c1', chainId: 'c2', labels: labelsOf(1), mountpoint: at2 })).toEqual({ mounted: at2 });
    expect(await readFile(join(at1, 'a'), 'utf8')).toBe('first\n');
    expect(await readFile(join(at2, 'b'), 'utf8')).toBe('second\n');
    expect(observer.exchanges.slice(asked)).toEqual([]);
    lazy.dropWarmLayersOf(two.manifestDigest as Digest);
    await lazy.release(at1);
    await lazy.release(at2);
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
      // The check runs beside the container's start: the warning comes within its 5 s timeout.
      await vi.waitFor(() => expect(lazy.mounted(at)?.warning).toMatch(/^registry unreachable \(.*\) and the layer is not fully cached/), { timeout: 6_000 });
    } finally {
      await (relay as TcpRelay).start();
    }
    await lazy.beforeUse([{ chainId: 'c', labels, mountpoint: at }]);
    await vi.waitFor(() => expect(lazy.mounted(at)?.warning).toBeUndefined(), { timeout: 6_000 });
    await lazy.release(at);
  });
});

describe('LazyLayerResolver with SOCI indexes', () => {
  const greeting = Buffer.from('hello from an unmodified gzip layer\n');
  let plain: RunnableImage | undefined;
  let v2: SociIndexed | undefined;
  let unbound: SociIndexed | undefined;
  let v1: SociIndexed | undefined;
  let unindexed: RunnableImage | undefined;

  beforeAll(async () => {
    // Each span's checkpoint carries a 32 KiB window, so spans much smaller than the layer make a zTOC
    // that is a large part of it: 512 KiB spans over 6 MiB keep the zTOC at 12 windows.
    const files = { '/etc/greeting': greeting, '/data/unread.bin': incompressible(6 << 20) };
    plain = await pushRunnableImage(registry as TestRegistry, 'daemon/soci', 'v1', [{ format: 'gzip', files }]);
    v2 = await addSociIndex(registry as TestRegistry, plain, { bind: 'v2', spanSize: 512 << 10 });
    unbound = await addSociIndex(registry as TestRegistry, plain, { bind: 'unbound', spanSize: 128 << 10 });
    const other = await pushRunnableImage(registry as TestRegistry, 'daemon/soci-v1', 'v1', [{ format: 'gzip', files }]);
    v1 = await addSociIndex(registry as TestRegistry, other, { bind: 'v1', spanSize: 64 << 10 });
    unindexed = await pushRunnableImage(registry as TestRegistry, 'daemon/plain', 'v1', [{ format: 'gzip', files: { '/etc/greeting': greeting } }]);
  }, 60_000);

  function sociLabels(ref: string, layer: string, extra: Record<string, string> = {}): Record<string, string> {
    return { [L.criImageRef]: ref.replace((registry as TestRegistry).host, (relay as TcpRelay).host), [L.criLayerDigest]: layer, ...extra };
  }

  it('finds the zTOC through the v2 annotation of the manifest named by cri.manifest-digest and reads only the spans it needs', async () => {
    const { lazy, ztocsDir } = resolver('soci-v2');
    const at = await mountpoint('soci-v2');
    const layer = (plain as RunnableImage).layers[0] as string;
    const before = (relay as TcpRelay).bytesFromUpstream();
    const labels = sociLabels((v2 as SociIndexed).ref, layer, { [L.criManifestDigest]: (v2 as SociIndexed).manifestDigest });
    expect(await lazy.resolve({ key: 'k', parent: '', chainId: 'c', labels, mountpoint: at })).toEqual({ mounted: at });
    expect(lazy.mounted(at)).toMatchObject({ format: 'soci', tocDigest: (v2 as SociIndexed).ztocs[0]?.digest });
    expect((await readFile(join(at, 'etc/greeting'))).equals(greeting)).toBe(true);
    expect((await stat(join(at, 'data/unread.bin'))).size).toBe(6 << 20);
    const fetched = (relay as TcpRelay).bytesFromUpstream() - before;
    expect(fetched).toBeLessThan((plain as RunnableImage).layerBytes / 4);
    expect(await readdir(ztocsDir), 'the zTOC is kept for restores').toEqual([layer.slice('sha256:'.length)]);
    await lazy.release(at);
    expect(await readdir(ztocsDir), 'and deleted with the last snapshot of the layer').toEqual([]);
  });

  it('stores the zTOCs of the next layers while the first one mounts, so their Prepares need no zTOC fetch', async () => {
    const reg = registry as TestRegistry;
    const two = await pushRunnableImage(reg, 'daemon/soci-two', 'v1', [{ format: 'gzip', files: { '/a': greeting } }, { format: 'gzip', files: { '/b': greeting } }]);
    const indexed = await addSociIndex(reg, two, { bind: 'v2' });
    const { lazy, ztocsDir } = resolver('soci-two');
    const [first, second] = two.layers as [string, string];
    const labelsOf = (layer: string) => sociLabels(indexed.ref, layer, { [L.criManifestDigest]: indexed.manifestDigest, [L.criImageLayers]: two.layers.join(',') });
    const at1 = await mountpoint('soci-two-1');
    expect(await lazy.resolve({ key: 'k1', parent: '', chainId: 'c1', labels: labelsOf(first), mountpoint: at1 })).toEqual({ mounted: at1 });
    const secondFile = second.slice('sha256:'.length);
    for (let i = 0; i < 50 && !(await readdir(ztocsDir)).includes(secondFile); i++) await new Promise((r) => setTimeout(r, 50));
    expect(await readdir(ztocsDir)).toContain(secondFile);
    const at2 = await mountpoint('soci-two-2');
    expect(await lazy.resolve({ key: 'k2', parent: '', chainId: 'c2', labels: labelsOf(second), mountpoint: at2 })).toEqual({ mounted: at2 });
    expect(lazy.mounted(at2)?.tocDigest).toBe(indexed.ztocs.find((z) => z.layerDigest === second)?.digest);
    await lazy.release(at1);
    await lazy.release(at2);
  });

  it('finds the zTOC through the soci.index.digest label', async () => {
    const { lazy } = resolver('soci-label');
    const at = await mountpoint('soci-label');
    const labels = sociLabels((plain as RunnableImage).ref, (plain as RunnableImage).layers[0] as string, { [SOCI_INDEX_DIGEST_LABEL]: (unbound as SociIndexed).indexDigest });
    expect(await lazy.resolve({ key: 'k', parent: '', chainId: 'c', labels, mountpoint: at })).toEqual({ mounted: at });
    expect(lazy.mounted(at)?.tocDigest).toBe((unbound as SociIndexed).ztocs[0]?.digest);
    expect((await readFile(join(at, 'etc/greeting'))).equals(greeting)).toBe(true);
    await lazy.release(at);
  });

  it('finds a v1 index through the sha256-<hex> referrers tag only when soci.referrers is on', async () => {
    const layer = (v1 as SociIndexed).ztocs[0]?.layerDigest as string;
    const labels = sociLabels((v1 as SociIndexed).ref, layer, { [L.criManifestDigest]: (v1 as SociIndexed).manifestDigest });
    const off = resolver('soci-v1-off');
    expect(await off.lazy.resolve({ key: 'k', parent: '', chainId: 'c', labels, mountpoint: await mountpoint('soci-v1-off') })).toMatchObject({
      fallback: expect.stringMatching(/^not-lazy-format: not an eStargz or zstd:chunked layer: .*; no SOCI index: the image manifest has no com.amazon.soci.index-digest annotation \(v1 lookup through referrers is off: soci.referrers\)$/) as unknown,
    });
    const { lazy } = resolver('soci-v1', { soci: { referrers: true } });
    const at = await mountpoint('soci-v1');
    expect(await lazy.resolve({ key: 'k', parent: '', chainId: 'c', labels, mountpoint: at })).toEqual({ mounted: at });
    expect((await readFile(join(at, 'etc/greeting'))).equals(greeting)).toBe(true);
    await lazy.release(at);
  });

  it('a plain gzip layer without any SOCI index falls back as not-lazy-format, saying so', async () => {
    const { lazy } = resolver('soci-none', { soci: { referrers: true } });
    const labels = sociLabels((unindexed as RunnableImage).ref, (unindexed as RunnableImage).layers[0] as string, { [L.criManifestDigest]: (unindexed as RunnableImage).manifestDigest });
    expect(await lazy.resolve({ key: 'k', parent: '', chainId: 'c', labels, mountpoint: await mountpoint('soci-none') })).toMatchObject({
      fallback: expect.stringMatching(/^not-lazy-format: .*no SOCI index: the image manifest has no com.amazon.soci.index-digest annotation, and no v1 index refers to it$/) as unknown,
    });
  });

  it('an index without a zTOC for the layer falls back, naming the index', async () => {
    const { lazy } = resolver('soci-other-layer');
    const elsewhere = await indexWithZtoc(await ztocOfV2(), 'daemon/plain');
    const labels = sociLabels((unindexed as RunnableImage).ref, (unindexed as RunnableImage).layers[0] as string, { [SOCI_INDEX_DIGEST_LABEL]: elsewhere });
    const answer = await lazy.resolve({ key: 'k', parent: '', chainId: 'c', labels, mountpoint: await mountpoint('soci-other-layer') });
    expect(answer).toMatchObject({ fallback: expect.stringMatching(/^not-lazy-format: not an eStargz or zstd:chunked layer: /) as unknown });
    expect(answer).toMatchObject({ fallback: expect.stringContaining(`; the SOCI index ${elsewhere} (label) has no zTOC for this layer`) as unknown });
  });

  /** Pushes to `repo` a SOCI index whose only zTOC is `ztoc`, for `layer` (default: the plain image's layer). */
  async function indexWithZtoc(ztoc: Buffer, repo = 'daemon/soci', layer = (plain as RunnableImage).layers[0] as string): Promise<string> {
    const reg = registry as TestRegistry;
    const pushed = await reg.pushBlob(repo, ztoc);
    await reg.pushBlob(repo, EMPTY_CONFIG);
    const index = serializeSociIndex({ version: 'v2', ztocs: [{ digest: pushed.digest as Digest, size: pushed.size, layerDigest: layer as Digest, disableXattrs: false }] });
    return (await reg.pushManifest(repo, sha256Digest(index), index, 'application/vnd.oci.image.manifest.v1+json')).digest;
  }

  async function ztocOfV2(): Promise<Buffer> {
    return Buffer.from(await (await fetch(`${(registry as TestRegistry).url}/v2/daemon/soci/blobs/${(v2 as SociIndexed).ztocs[0]?.digest}`)).arrayBuffer());
  }

  it('a truncated or inconsistent zTOC falls back as toc-invalid, and the daemon keeps serving', async () => {
    const good = await ztocOfV2();
    const truncated = good.subarray(0, Math.floor(good.length / 2));
    const { lazy } = resolver('soci-bad');
    const labelsFor = (indexDigest: string) => sociLabels((plain as RunnableImage).ref, (plain as RunnableImage).layers[0] as string, { [SOCI_INDEX_DIGEST_LABEL]: indexDigest });
    expect(await lazy.resolve({ key: 'k', parent: '', chainId: 'c', labels: labelsFor(await indexWithZtoc(truncated)), mountpoint: await mountpoint('soci-bad') })).toMatchObject({
      fallback: expect.stringMatching(/^toc-invalid: invalid zTOC/) as unknown,
    });
    // Well-formed, but it indexes another blob: its claimed archive size differs from the layer's.
    const otherLayer = await fetch(`${(registry as TestRegistry).url}/v2/daemon/plain/blobs/${(unindexed as RunnableImage).layers[0]}`);
    const foreign = (await buildZtoc(new BufferSource(Buffer.from(await otherLayer.arrayBuffer())), { minLayerSize: 0 }))!.bytes;
    const labels = sociLabels((v2 as SociIndexed).ref, (plain as RunnableImage).layers[0] as string, { [L.criManifestDigest]: (v2 as SociIndexed).manifestDigest, [SOCI_INDEX_DIGEST_LABEL]: await indexWithZtoc(foreign) });
    expect(await lazy.resolve({ key: 'k', parent: '', chainId: 'c', labels, mountpoint: await mountpoint('soci-bad') })).toMatchObject({
      fallback: expect.stringMatching(/^toc-invalid: zTOC indexes a \d+-byte layer, but the layer blob has \d+ bytes$/) as unknown,
    });
    const at = await mountpoint('soci-after-bad');
    expect(await lazy.resolve({ key: 'k', parent: '', chainId: 'c', labels: labelsFor((unbound as SociIndexed).indexDigest), mountpoint: at })).toEqual({ mounted: at });
    await lazy.release(at);
  });

  it('a span whose bytes do not match its digest answers EIO, never wrong bytes', async () => {
    const parsed = readZtoc(await ztocOfV2()).ztoc;
    const wrongDigests = writeZtoc({ ...parsed, spanDigests: parsed.spanDigests.map(() => sha256(Buffer.from('not this span'))) });
    const { lazy } = resolver('soci-span');
    const at = await mountpoint('soci-span');
    const labels = sociLabels((plain as RunnableImage).ref, (plain as RunnableImage).layers[0] as string, { [SOCI_INDEX_DIGEST_LABEL]: await indexWithZtoc(wrongDigests) });
    expect(await lazy.resolve({ key: 'k', parent: '', chainId: 'c', labels, mountpoint: at })).toEqual({ mounted: at });
    await expect(readFile(join(at, 'etc/greeting'))).rejects.toMatchObject({ code: 'EIO' });
    await lazy.release(at);
  });

  it('restores a SOCI layer from its stored zTOC without the registry', async () => {
    const { lazy, ztocsDir } = resolver('soci-restore');
    const at = await mountpoint('soci-restore');
    const layer = (plain as RunnableImage).layers[0] as string;
    const labels = sociLabels((v2 as SociIndexed).ref, layer, { [L.criManifestDigest]: (v2 as SociIndexed).manifestDigest });
    expect(await lazy.resolve({ key: 'k', parent: '', chainId: 'c', labels, mountpoint: at })).toEqual({ mounted: at });
    await managers.at(-1)?.shutdown();
    await (relay as TcpRelay).stop();
    try {
      const again = resolver('soci-restore');
      expect(await readdir(ztocsDir)).toHaveLength(1);
      const restored = await again.lazy.restore({ chainId: 'c', labels, mountpoint: at });
      expect(restored).toMatchObject({ format: 'soci', digest: layer });
      expect((await readdir(join(at, 'etc'))).includes('greeting')).toBe(true);
    } finally {
      await (relay as TcpRelay).start();
    }
  });
});

describe('LazyLayerResolver with a range-granular prefetch profile', () => {
  it('prefetches exactly the chunks the dev.lazypull.prefetch-ranges annotation touches, and reads of them then fetch nothing', async () => {
    const reg = registry as TestRegistry;
    const big = incompressible(6 << 20);
    const built = await pushRunnableImage(reg, 'daemon/profile', 'v1', [{ format: 'estargz', files: { '/data/big.bin': big } }]);
    const layer = built.layers[0] as string;
    const blob = Buffer.from(await (await fetch(`${reg.url}/v2/daemon/profile/blobs/${layer}`)).arrayBuffer());
    const entry = (await openLayer(new BufferSource(blob))).lookup('data/big.bin')!;
    expect(entry.chunks.length).toBeGreaterThan(1);
    const wanted = entry.chunks[1]!;
    // A range inside the second chunk's member: the whole chunk is prefetched, nothing else.
    const ranges = formatPrefetchRanges([{ start: wanted.compressedOffset + 10, end: wanted.compressedOffset + 20 }]);
    const manifest = JSON.parse(Buffer.from(await (await fetch(`${reg.url}/v2/daemon/profile/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).arrayBuffer()).toString()) as { layers: { annotations?: Record<string, string> }[] };
    manifest.layers[0]!.annotations = { ...manifest.layers[0]!.annotations, [PREFETCH_RANGES_ANNOTATION]: ranges };
    const profiled = Buffer.from(JSON.stringify(manifest));
    const pushed = await reg.pushManifest('daemon/profile', 'profiled', profiled, 'application/vnd.oci.image.manifest.v1+json');

    const { lazy } = resolver('profile', { fetch: { background: false, prefetch: true } });
    const at = await mountpoint('profile');
    const ref = `${(relay as TcpRelay).host}/daemon/profile:profiled`;
    const tocDigest = (await openLayer(new BufferSource(blob))).tocDigest;
    const labels = { [L.criImageRef]: ref, [L.criLayerDigest]: layer, [L.criManifestDigest]: pushed.digest, [L.tocDigest]: tocDigest };
    expect(await lazy.resolve({ key: 'k', parent: '', chainId: 'c', labels, mountpoint: at })).toEqual({ mounted: at });
    const mounted = lazy.mounted(at)!;
    await mounted.mount.whenPrefetched();
    expect(mounted.mount.progress().prefetchBytes).toBe(wanted.compressedEnd - wanted.compressedOffset);
    expect(mounted.mount.progress().completedBytes).toBe(wanted.compressedEnd - wanted.compressedOffset);
    const before = (relay as TcpRelay).bytesFromUpstream();
    const handle = await open(join(at, 'data/big.bin'), 'r');
    try {
      const piece = Buffer.alloc(4096);
      await handle.read(piece, 0, piece.length, wanted.fileOffset + 100);
      expect(piece.equals(big.subarray(wanted.fileOffset + 100, wanted.fileOffset + 100 + 4096))).toBe(true);
    } finally {
      await handle.close();
    }
    expect((relay as TcpRelay).bytesFromUpstream() - before, 'the profiled chunk was already cached').toBe(0);
    await lazy.release(at);
  });
});
