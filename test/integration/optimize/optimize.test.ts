/**
 * `lazypull optimize` end to end: real FUSE layer mounts in recording mode, real overlayfs, real runc,
 * a real docker-registry on 127.0.0.1 (through the convert tests' recording proxy, which can refuse
 * manifest pushes) and OCI layouts. The image: /bin/cat and /bin/echo with their libraries, two
 * layers that both hold /greeting/hello.txt (the upper one wins), and a layer nothing reads.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLayer } from '../../../src/estargz/open.js';
import { NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK } from '../../../src/estargz/toc.js';
import type { RandomAccessSource } from '../../../src/io/random-access.js';
import { PREFETCH_RANGES_ANNOTATION, overlapsAny, parsePrefetchRanges } from '../../../src/layer/prefetch-ranges.js';
import { parseReference, RegistryClient, type Descriptor } from '../../../src/remote/index.js';
import { OciLayoutDestination, OciLayoutSource, RegistryImageDestination, RegistryImageSource } from '../../../tools/convert/index.js';
import { optimizeImage, type OptimizeOptions, type ReadProfile } from '../../../tools/optimize/index.js';
import { forceUnmount } from '../../helpers/fuse.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { coreutilsFiles, pushRunnableImage, type RunnableImage } from '../../helpers/runnable-image.js';
import { startRecordingProxy, type RecordingProxy } from '../convert/recording-proxy.js';

const execFileAsync = promisify(execFile);

let registry: TestRegistry;
let proxy: RecordingProxy;
let client: RegistryClient;
let work: string;
let image: RunnableImage;
const GREETING = 'hello from lazypull\n';

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'lazypull-optimize-it-'));
  registry = await startRegistry();
  proxy = await startRecordingProxy(registry.host);
  client = new RegistryClient({ hostsDir: null, dockerConfig: false });
  image = await pushRunnableImage(registry, 'opt/app', 'v1', [
    { files: coreutilsFiles(), format: 'gzip' },
    { files: { '/greeting/hello.txt': Buffer.from('shadowed\n'), '/data/second.txt': Buffer.from('second\n') }, format: 'gzip' },
    { files: { '/greeting/hello.txt': Buffer.from(GREETING) }, format: 'gzip' },
    { files: { '/unused/blob.bin': randomBytes(64 << 10) }, format: 'gzip' },
  ]);
});

afterAll(async () => {
  if (work) for (const target of (await mountsUnder(work)).reverse()) await forceUnmount(target);
  await client?.close();
  await proxy?.close();
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function mountsUnder(dir: string): Promise<string[]> {
  const { stdout } = await execFileAsync('findmnt', ['-rn', '-o', 'TARGET']);
  return stdout.split('\n').filter((t) => t === dir || t.startsWith(`${dir}/`));
}

const source = (repoAndTag: string): RegistryImageSource => new RegistryImageSource(client, parseReference(`${proxy.host}/${repoAndTag}`));
const destination = (repoAndTag: string): Promise<RegistryImageDestination> => RegistryImageDestination.open(client, parseReference(`${proxy.host}/${repoAndTag}`));

async function options(name: string, extra: Partial<OptimizeOptions>): Promise<OptimizeOptions & { workDir: string }> {
  const workDir = join(work, name);
  await mkdir(workDir, { recursive: true });
  return { format: 'estargz', periodMs: 20_000, workload: {}, workDir, parallelLayers: 2, ...extra };
}

/** Nothing left behind: no mount and no temp dir under the test's work dir. */
async function expectCleanedUp(workDir: string): Promise<void> {
  expect(await mountsUnder(work)).toEqual([]);
  expect((await readdir(workDir)).filter((name) => name.startsWith('lazypull-'))).toEqual([]);
}

async function tagExists(repoAndTag: string): Promise<boolean> {
  const ref = parseReference(`${registry.host}/${repoAndTag}`);
  return client.fetchManifest(ref, ref.object).then(
    () => true,
    () => false,
  );
}

/** Entry names of each layer's TOC in blob order, for the image DST names in the registry. */
async function registryTocs(repoAndTag: string): Promise<string[][]> {
  const ref = parseReference(`${registry.host}/${repoAndTag}`);
  const fetched = await client.fetchManifest(ref, ref.object);
  if (fetched.document.kind !== 'manifest') throw new Error('expected a manifest');
  return Promise.all(fetched.document.manifest.layers.map(async (layer) => tocNames(await client.openBlob(ref, layer), layer)));
}

async function layoutTocs(dir: string, tag: string): Promise<string[][]> {
  const layout = await OciLayoutSource.open(dir, tag);
  const root = await layout.root();
  if (root.document.kind !== 'manifest') throw new Error('expected a manifest');
  return Promise.all(root.document.manifest.layers.map(async (layer) => tocNames(await layout.openBlob(layer), layer)));
}

async function tocNames(blob: RandomAccessSource, layer: Descriptor): Promise<string[]> {
  try {
    const opened = await openLayer(blob, { expectedTocDigest: layer.annotations?.['containerd.io/snapshot/stargz/toc.digest'] as `sha256:${string}` });
    return (JSON.parse(opened.tocJson.toString('utf8')) as { entries: { name: string }[] }).entries.map((e) => e.name.replace(/^\.\//, '').replace(/\/$/, '')).filter((n) => n !== '.' && n !== '');
  } finally {
    await blob.close?.();
  }
}

/** The names before the prefetch landmark (undefined when the layer has none). */
function prioritizedPart(names: string[]): string[] | undefined {
  const at = names.indexOf(PREFETCH_LANDMARK);
  return at < 0 ? undefined : names.slice(0, at);
}

describe('optimize', () => {
  it('registry -> registry: what cat read comes first, in access order, in the layer it is seen from; the untouched layer says no prefetch', async () => {
    const opts = await options('main', {
      workload: { entrypoint: ['/bin/cat', '/greeting/hello.txt', '/data/second.txt'] },
      recordOut: join(work, 'main.list'),
      profileOut: join(work, 'main.profile.json'),
    });
    const out: string[] = [];
    const result = await optimizeImage(source('opt/app:v1'), await destination('opt/app:optimized'), { ...opts, onOutput: (_s, line) => out.push(line) });
    expect(out).toEqual(['hello from lazypull', 'second']);
    expect(result.run).toMatchObject({ stoppedBy: 'exit', status: 0 });

    const [base, lower, upper, untouched] = await registryTocs('opt/app:optimized');
    const basePart = prioritizedPart(base!)!;
    expect(basePart).toContain('bin/cat');
    const libc = basePart.findIndex((n) => /libc\.so/.test(n));
    expect(libc).toBeGreaterThan(basePart.indexOf('bin/cat')); // exec looks up cat before the loader maps libc
    expect(basePart).not.toContain('bin/echo');
    // /greeting/hello.txt is read from the upper layer: prioritized there, not in the lower one.
    expect(prioritizedPart(upper!)).toEqual(['greeting', 'greeting/hello.txt']);
    expect(prioritizedPart(lower!)).toEqual(['data', 'data/second.txt']);
    expect(untouched![0]).toBe(NO_PREFETCH_LANDMARK);
    expect(untouched).not.toContain(PREFETCH_LANDMARK);
    // ...and an empty range profile, so the daemon does not prefetch it whole for being small.
    const optimizedRef = parseReference(`${registry.host}/opt/app:optimized`);
    const optimized = await client.fetchManifest(optimizedRef, optimizedRef.object);
    if (optimized.document.kind !== 'manifest') throw new Error('expected a manifest');
    const annotations = optimized.document.manifest.layers.map((l) => l.annotations?.[PREFETCH_RANGES_ANNOTATION]);
    expect(annotations[3]).toBe('');
    expect(annotations.slice(0, 3).every((a) => a !== undefined && a.length > 0)).toBe(true);

    const list = (await readFile(join(work, 'main.list'), 'utf8')).split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    expect(list.indexOf('/bin/cat')).toBeGreaterThanOrEqual(0);
    expect(list.indexOf('/greeting/hello.txt')).toBeLessThan(list.indexOf('/data/second.txt'));
    expect(list.indexOf('/bin/cat')).toBeLessThan(list.indexOf('/greeting/hello.txt'));
    expect(list).not.toContain('/unused/blob.bin');

    const profile = JSON.parse(await readFile(join(work, 'main.profile.json'), 'utf8')) as ReadProfile;
    expect(profile.layers.map((l) => l.sourceDigest)).toEqual(image.layers);
    expect(profile.layers[2]!.files).toEqual([{ path: '/greeting/hello.txt', ranges: [[0, GREETING.length]] }]);
    expect(profile.layers[3]!.files).toEqual([]);
    await expectCleanedUp(opts.workDir);
  });

  it('range profile: a file read in one place gets small chunks and a prefetch-ranges annotation naming only the chunks read; --no-range-profile (rangeProfile false) keeps whole-file prefetch', async () => {
    const big = randomBytes(4 << 20);
    const readAt = 300 * 4096;
    const partial = await pushRunnableImage(registry, 'opt/partial', 'v1', [
      { files: { ...coreutilsFiles(), '/bin/dd': { copyOf: '/bin/dd' } }, format: 'gzip' },
      { files: { '/data/big.bin': big }, format: 'gzip' },
    ]);
    expect(partial.layers).toHaveLength(2);
    const workload = { entrypoint: ['/bin/dd', 'if=/data/big.bin', 'of=/dev/null', 'bs=4096', `skip=${readAt / 4096}`, 'count=1'] };
    await optimizeImage(source('opt/partial:v1'), await destination('opt/partial:ranged'), await options('ranged', { workload }));
    await optimizeImage(source('opt/partial:v1'), await destination('opt/partial:whole'), await options('whole', { workload, rangeProfile: false }));

    const layerOf = async (tag: string) => {
      const ref = parseReference(`${registry.host}/opt/partial:${tag}`);
      const fetched = await client.fetchManifest(ref, ref.object);
      if (fetched.document.kind !== 'manifest') throw new Error('expected a manifest');
      const layer = fetched.document.manifest.layers[1]!;
      const blob = await client.openBlob(ref, layer);
      const opened = await openLayer(blob, { expectedTocDigest: layer.annotations?.['containerd.io/snapshot/stargz/toc.digest'] as `sha256:${string}` });
      return { layer, entry: opened.lookup('data/big.bin')!, close: () => blob.close?.() };
    };
    const ranged = await layerOf('ranged');
    const whole = await layerOf('whole');
    try {
      expect(ranged.entry.chunks.map((c) => c.size)).toEqual(Array.from({ length: 16 }, () => 256 << 10));
      const ranges = parsePrefetchRanges(ranged.layer.annotations?.[PREFETCH_RANGES_ANNOTATION] ?? '', ranged.layer.size);
      const read = ranged.entry.chunks.find((c) => c.fileOffset <= readAt && readAt < c.fileOffset + c.size)!;
      expect(overlapsAny(ranges, read.compressedOffset, read.compressedEnd)).toBe(true);
      const prefetched = ranged.entry.chunks.filter((c) => overlapsAny(ranges, c.compressedOffset, c.compressedEnd));
      // The kernel reads ahead around the 4 KiB dd asked for: a chunk or two, not the 16 of the file.
      expect(prefetched.length).toBeGreaterThanOrEqual(1);
      expect(prefetched.length).toBeLessThanOrEqual(3);
      expect(whole.layer.annotations?.[PREFETCH_RANGES_ANNOTATION]).toBeUndefined();
      expect(whole.entry.chunks).toHaveLength(1);
    } finally {
      await Promise.all([ranged.close(), whole.close()]);
    }
  });

  it('registry -> OCI layout: --wait-on-line stops a workload that would run for the whole period; --prefetch-list globs add files', async () => {
    const opts = await options('wait', {
      workload: { entrypoint: ['/bin/cat', '/greeting/hello.txt', '-'] },
      periodMs: 60_000,
      waitOnLine: 'from lazypull',
      prefetchPatterns: ['/unused/**', 'bin/ech?', '/no/such/*'],
    });
    const layout = join(work, 'wait-layout');
    const result = await optimizeImage(source('opt/app:v1'), await OciLayoutDestination.open(layout, 'fast'), opts);
    expect(result.run).toMatchObject({ stoppedBy: 'line', lineSeen: true });
    expect(result.run.elapsedMs).toBeLessThan(20_000);
    expect(result.unmatchedPatterns).toEqual(['/no/such/*']);
    const tocs = await layoutTocs(layout, 'fast');
    expect(prioritizedPart(tocs[3]!)).toEqual(['unused', 'unused/blob.bin']);
    const base = prioritizedPart(tocs[0]!)!;
    expect(base.indexOf('bin/echo')).toBeGreaterThan(base.indexOf('bin/cat')); // added after what was recorded
    await expectCleanedUp(opts.workDir);
  });

  it('an awaited line that never comes: stopped at the end of the period, said so, image written', async () => {
    const opts = await options('never', { workload: { entrypoint: ['/bin/cat', '/greeting/hello.txt', '-'] }, periodMs: 1500, waitOnLine: 'never printed' });
    const result = await optimizeImage(source('opt/app:v1'), await destination('opt/app:never'), opts);
    expect(result.run).toMatchObject({ stoppedBy: 'period', lineSeen: false });
    expect(result.prioritized).toContain('/greeting/hello.txt');
    expect(await tagExists('opt/app:never')).toBe(true);
    await expectCleanedUp(opts.workDir);
  });

  it('a workload that fails at once: its status is reported and what it read is still recorded', async () => {
    const opts = await options('fails', { workload: { entrypoint: ['/bin/cat', '/data/second.txt', '/nonexistent'] } });
    const result = await optimizeImage(source('opt/app:v1'), await destination('opt/app:fails'), opts);
    expect(result.run).toMatchObject({ stoppedBy: 'exit', status: 1 });
    expect(result.run.stderrTail.join('\n')).toMatch(/nonexistent/);
    expect(result.layerLists[1]).toContain('/data/second.txt');
    await expectCleanedUp(opts.workDir);
  });
});

describe('optimize: bad input leaves no mounts, no temp dirs and no DST tag', () => {
  it('a source that is not a container image', async () => {
    const dir = join(work, 'artifact-layout');
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    const put = async (data: Buffer): Promise<{ digest: string; size: number }> => {
      const { createHash } = await import('node:crypto');
      const hex = createHash('sha256').update(data).digest('hex');
      await writeFile(join(dir, 'blobs', 'sha256', hex), data);
      return { digest: `sha256:${hex}`, size: data.length };
    };
    const config = { mediaType: 'application/vnd.example.artifact.config+json', ...(await put(Buffer.from('{}'))) };
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers: [] }));
    const m = await put(manifest);
    await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...m, annotations: { 'org.opencontainers.image.ref.name': 'v1' } }] }));
    const opts = await options('artifact', { workload: { entrypoint: ['/bin/cat'] } });
    await expect(optimizeImage(await OciLayoutSource.open(dir, 'v1'), await destination('opt/artifact:out'), opts)).rejects.toThrow(/is not a container image/);
    expect(await tagExists('opt/artifact:out')).toBe(false);
    await expectCleanedUp(opts.workDir);
  });

  it('a layer that is not a tar', async () => {
    await registry.pushImage('opt/notar', 'v1', { layers: [{ data: gzipSync(randomBytes(4096)), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' }] });
    const opts = await options('notar', { workload: { entrypoint: ['/bin/cat'] } });
    await expect(optimizeImage(source('opt/notar:v1'), await destination('opt/notar:out'), opts)).rejects.toThrow(/is it a tar/);
    expect(await tagExists('opt/notar:out')).toBe(false);
    await expectCleanedUp(opts.workDir);
  });

  it('a container that cannot start (no such executable)', async () => {
    const opts = await options('noexec', { workload: { entrypoint: ['/bin/no-such-binary'] } });
    await expect(optimizeImage(source('opt/app:v1'), await destination('opt/app:noexec'), opts)).rejects.toThrow(/did not start/);
    expect(await tagExists('opt/app:noexec')).toBe(false);
    await expectCleanedUp(opts.workDir);
  });

  it("an abort (the CLI's Ctrl-C) while the workload runs: container stopped, everything unmounted, nothing converted", async () => {
    const interrupt = new AbortController();
    const opts = await options('aborted', { workload: { entrypoint: ['/bin/cat', '/greeting/hello.txt', '-'] }, periodMs: 60_000, signal: interrupt.signal });
    const started = Date.now();
    const pending = optimizeImage(source('opt/app:v1'), await destination('opt/app:aborted'), { ...opts, onOutput: () => interrupt.abort(new Error('interrupted')) });
    await expect(pending).rejects.toThrow(/interrupted/);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(await tagExists('opt/app:aborted')).toBe(false);
    await expectCleanedUp(opts.workDir);
  });

  it('a registry that refuses the push', async () => {
    const opts = await options('refused', { workload: { entrypoint: ['/bin/cat', '/greeting/hello.txt'] }, recordOut: join(work, 'refused.list') });
    proxy.refuseManifestPuts = true;
    try {
      await expect(optimizeImage(source('opt/app:v1'), await destination('opt/app:refused'), opts)).rejects.toThrow(/denied|403/i);
    } finally {
      proxy.refuseManifestPuts = false;
    }
    expect(await tagExists('opt/app:refused')).toBe(false);
    // The recording is kept: it is written before the conversion.
    expect(await readFile(join(work, 'refused.list'), 'utf8')).toContain('/greeting/hello.txt');
    await expectCleanedUp(opts.workDir);
  });
});
