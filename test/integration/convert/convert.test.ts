/**
 * `lazypull convert` end to end against a real docker-registry on 127.0.0.1 and OCI layouts in temp
 * dirs: registry->registry, oci->registry, registry->oci, multi-platform indexes, --reuse, HEAD checks,
 * cross-repository mounts (seen through a recording proxy), and bad input that must not tag DST.
 */
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANNOTATION_TOC_DIGEST } from '../../../src/estargz/writer.js';
import { parseReference, RegistryClient, type Descriptor } from '../../../src/remote/index.js';
import {
  convertImage,
  OciLayoutDestination,
  OciLayoutSource,
  RegistryImageDestination,
  RegistryImageSource,
  type ConvertImageOptions,
  type ImageDestination,
  type ImageSource,
} from '../../../tools/convert/index.js';
import { pseudoRandom } from '../../helpers/fixture-tree.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { expectConverted, layoutReader, layoutTag, makeLayer, makeTwoLayerImage, pushTestImage, writeTestLayout, type ImageReader, type TestImage } from './fixtures.js';
import { mountedDigests, startRecordingProxy, uploadedDigests, type RecordingProxy } from './recording-proxy.js';

let registry: TestRegistry;
let proxy: RecordingProxy;
let client: RegistryClient;
let work: string;
let image: TestImage;
const ESTARGZ: ConvertImageOptions = { format: 'estargz', chunkSize: 1 << 20 };

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'lazypull-convert-it-'));
  registry = await startRegistry();
  proxy = await startRecordingProxy(registry.host);
  client = new RegistryClient({ hostsDir: null, dockerConfig: false });
  image = await makeTwoLayerImage(work, 1);
  await pushTestImage(registry, 'src/app', 'v1', image);
});

afterAll(async () => {
  await client?.close();
  await proxy?.close();
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** References through the recording proxy, so every request the converter makes is seen. */
const viaProxy = (repoAndTag: string): string => `${proxy.host}/${repoAndTag}`;
const registrySource = (ref: string): ImageSource => new RegistryImageSource(client, parseReference(viaProxy(ref)));
const registryDestination = (ref: string): Promise<ImageDestination> => RegistryImageDestination.open(client, parseReference(viaProxy(ref)));

function registryReader(repository: string): ImageReader {
  const ref = parseReference(`${registry.host}/${repository}`);
  return {
    manifestBytes: async (object) => (await client.fetchManifest(ref, object)).bytes,
    blob: (descriptor) => client.fetchBlob(ref, descriptor),
    openBlob: (descriptor) => client.openBlob(ref, descriptor),
  };
}

async function tagOf(repoAndTag: string): Promise<Descriptor> {
  const ref = parseReference(`${registry.host}/${repoAndTag}`);
  return (await client.fetchManifest(ref, ref.object)).descriptor;
}

async function since<T>(action: () => Promise<T>): Promise<{ value: T; requests: RecordingProxy['requests'] }> {
  const start = proxy.requests.length;
  const value = await action();
  return { value, requests: proxy.requests.slice(start) };
}

describe('convert a two-layer image', () => {
  it('registry -> registry: every layer opens against its toc.digest, files read back equal, diff_ids match', async () => {
    const result = await convertImage(registrySource('src/app:v1'), await registryDestination('dst/app:esgz'), ESTARGZ);
    expect(result.descriptor.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect((await tagOf('dst/app:esgz')).digest).toBe(result.descriptor.digest);
    expect(result.manifests[0]!.layers.map((l) => l.action)).toEqual(['converted', 'converted']);
    await expectConverted(registryReader('dst/app'), result.descriptor.digest, image);
  });

  it('converting again to the same repository uploads nothing: HEAD finds every blob (the output is deterministic)', async () => {
    const { value, requests } = await since(async () => convertImage(registrySource('src/app:v1'), await registryDestination('dst/app:esgz-again'), ESTARGZ));
    expect(value.manifests[0]!.layers.map((l) => l.blob)).toEqual(['exists', 'exists']);
    expect(uploadedDigests(requests)).toEqual([]);
    expect(requests.filter((r) => r.method === 'HEAD' && r.path.startsWith('/v2/dst/app/blobs/')).length).toBeGreaterThanOrEqual(3);
    expect((await tagOf('dst/app:esgz-again')).digest).toBe((await tagOf('dst/app:esgz')).digest);
  });

  it('oci -> registry', async () => {
    const layout = join(work, 'oci-src');
    await writeTestLayout(layout, image, 'v1');
    const result = await convertImage(await OciLayoutSource.open(layout, 'v1'), await registryDestination('from-oci/app:v1'), ESTARGZ);
    expect((await tagOf('from-oci/app:v1')).digest).toBe(result.descriptor.digest);
    await expectConverted(registryReader('from-oci/app'), result.descriptor.digest, image);
  });

  it('registry -> oci (zstd:chunked), index.json tagged, then registry -> the same layout under another tag', async () => {
    const layout = join(work, 'oci-dst');
    const result = await convertImage(registrySource('src/app:v1'), await OciLayoutDestination.open(layout, 'zstd'), { format: 'zstd:chunked' });
    expect((await layoutTag(layout, 'zstd'))?.digest).toBe(result.descriptor.digest);
    await expectConverted(layoutReader(layout), result.descriptor.digest, image, 'zstd:chunked');
    const layers = result.manifests[0]!.layers.map((l) => l.descriptor.annotations ?? {});
    for (const annotations of layers) expect(Object.keys(annotations)).toEqual(expect.arrayContaining(['io.containers.zstd-chunked.manifest-checksum', 'io.containers.zstd-chunked.manifest-position', ANNOTATION_TOC_DIGEST]));

    const second = await convertImage(registrySource('src/app:v1'), await OciLayoutDestination.open(layout, 'esgz'), ESTARGZ);
    await expectConverted(layoutReader(layout), second.descriptor.digest, image);
    expect((await layoutTag(layout, 'zstd'))?.digest, 'the first tag is kept').toBe(result.descriptor.digest);
  });
});

describe('multi-platform index', () => {
  let arm: TestImage;

  beforeAll(async () => {
    arm = await makeTwoLayerImage(work, 2, { os: 'linux', architecture: 'arm64' });
    const amd = await pushTestImage(registry, 'multi/app', undefined, image);
    const armManifest = await pushTestImage(registry, 'multi/app', undefined, arm);
    await registry.pushIndex('multi/app', 'v1', [amd, armManifest]);
  });

  it('--all-platforms converts every entry and keeps their platforms', async () => {
    const result = await convertImage(registrySource('multi/app:v1'), await registryDestination('multi-dst/app:all'), { ...ESTARGZ, allPlatforms: true });
    const index = JSON.parse((await registryReader('multi-dst/app').manifestBytes('all')).toString('utf8')) as { mediaType: string; manifests: Descriptor[] };
    expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(index.manifests.map((m) => m.platform)).toEqual([image.platform, arm.platform]);
    expect(result.descriptor.digest).toBe((await tagOf('multi-dst/app:all')).digest);
    await expectConverted(registryReader('multi-dst/app'), index.manifests[0]!.digest, image);
    await expectConverted(registryReader('multi-dst/app'), index.manifests[1]!.digest, arm);
  });

  it('--platform keeps only that platform in the new index, like ctr-remote without --all-platforms', async () => {
    await convertImage(registrySource('multi/app:v1'), await registryDestination('multi-dst/app:arm'), { ...ESTARGZ, platform: { os: 'linux', architecture: 'arm64' } });
    const index = JSON.parse((await registryReader('multi-dst/app').manifestBytes('arm')).toString('utf8')) as { manifests: Descriptor[] };
    expect(index.manifests.map((m) => m.platform)).toEqual([arm.platform]);
    await expectConverted(registryReader('multi-dst/app'), index.manifests[0]!.digest, arm);
  });

  it('a platform the index lacks is an error naming the ones it has', async () => {
    await expect(convertImage(registrySource('multi/app:v1'), await registryDestination('multi-dst/app:s390x'), { ...ESTARGZ, platform: { os: 'linux', architecture: 's390x' } })).rejects.toThrow(/linux\/s390x.*available: linux\/amd64, linux\/arm64/);
    await expect(tagOf('multi-dst/app:s390x')).rejects.toThrow(/not found/);
  });
});

describe('--reuse and cross-repository mounts', () => {
  it('keeps converted layers without converting or uploading them, mounting them from the source repository', async () => {
    const first = await convertImage(registrySource('src/app:v1'), await registryDestination('reuse/app:esgz'), ESTARGZ);
    const convertedLayers = first.manifests[0]!.layers.map((l) => l.descriptor.digest);

    const { value, requests } = await since(async () => convertImage(registrySource('reuse/app:esgz'), await registryDestination('reuse-copy/app:v1'), { ...ESTARGZ, reuse: true }));
    expect(value.manifests[0]!.layers.map((l) => [l.action, l.blob])).toEqual([['reused', 'mounted'], ['reused', 'mounted']]);
    expect(mountedDigests(requests)).toEqual(expect.arrayContaining(convertedLayers));
    for (const digest of convertedLayers) expect(uploadedDigests(requests)).not.toContain(digest);
    // Same layers, same diff_ids, same config: the very same manifest.
    expect(value.descriptor.digest).toBe(first.descriptor.digest);
    await expectConverted(registryReader('reuse-copy/app'), value.descriptor.digest, image);
  });

  it('without --reuse the same layers are converted again (and a layer whose TOC does not verify is never reused)', async () => {
    const { value } = await since(async () => convertImage(registrySource('reuse/app:esgz'), await registryDestination('reuse-again/app:v1'), ESTARGZ));
    expect(value.manifests[0]!.layers.map((l) => l.action)).toEqual(['converted', 'converted']);

    // A layer claiming a TOC digest it does not have: converted, not reused.
    const manifest = JSON.parse((await registryReader('reuse/app').manifestBytes('esgz')).toString('utf8')) as { layers: Descriptor[]; config: Descriptor };
    const lying = { ...manifest, layers: manifest.layers.map((l) => ({ ...l, annotations: { ...l.annotations, [ANNOTATION_TOC_DIGEST]: `sha256:${'0'.repeat(64)}` } })) };
    await registry.pushManifest('reuse/app', 'lying', Buffer.from(JSON.stringify(lying)), 'application/vnd.oci.image.manifest.v1+json');
    const notes: string[] = [];
    const progress = { layerStarted() {}, layerBytes() {}, layerFinished() {}, note: (line: string) => void notes.push(line), stop() {} };
    const result = await convertImage(registrySource('reuse/app:lying'), await registryDestination('reuse-lying/app:v1'), { ...ESTARGZ, reuse: true, progress });
    expect(result.manifests[0]!.layers.map((l) => l.action)).toEqual(['converted', 'converted']);
    expect(notes.join('\n')).toMatch(/not reused: its TOC does not verify: TOC digest/);
  });
});

describe('uploads', () => {
  it('chunked upload (PATCH pieces, then the closing PUT with the digest) when asked for', async () => {
    const destination = await RegistryImageDestination.open(client, parseReference(viaProxy('chunked/app:v1')), { uploadChunkSize: 256 * 1024 });
    const { value, requests } = await since(async () => convertImage(registrySource('src/app:v1'), destination, ESTARGZ));
    const patches = requests.filter((r) => r.method === 'PATCH' && r.path.startsWith('/v2/chunked/app/blobs/uploads/'));
    const biggest = Math.max(...value.manifests[0]!.layers.map((l) => l.descriptor.size));
    expect(patches.length).toBeGreaterThanOrEqual(Math.ceil(biggest / (256 * 1024)));
    await expectConverted(registryReader('chunked/app'), value.descriptor.digest, image);
  });
});

describe('the lazypull convert command', () => {
  beforeAll(async () => {
    await buildIfStale();
  }, 180_000);

  it('converts registry -> oci layout and prints the result; bad input is one error line and exit 1', async () => {
    const layout = join(work, 'cli-out');
    const ok = await cli(['convert', '--chunk-size', '1MiB', `${registry.host}/src/app:v1`, `oci:${layout}:v1`]);
    expect(ok.code, ok.stderr).toBe(0);
    const tagged = await layoutTag(layout, 'v1');
    expect(ok.stdout).toContain(`oci:${layout}:v1@${tagged!.digest}`);
    expect(ok.stdout).toMatch(/linux\/amd64: sha256:[0-9a-f]{64}, 2 layers \(2 converted\)/);
    expect(ok.stderr).toMatch(/layer [0-9a-f]{12}: converted to sha256:/);
    await expectConverted(layoutReader(layout), tagged!.digest, image);

    const bad = await cli(['convert', `${registry.host}/nothing/here:v1`, `oci:${join(work, 'cli-bad')}:v1`]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^lazypull: manifest nothing\/here:v1 not found on 127\.0\.0\.1:\d+ \(HTTP 404/m);
    await expect(stat(join(work, 'cli-bad', 'index.json'))).rejects.toThrow(/ENOENT/);
  });
});

describe('bad input: clear errors, DST never tagged', () => {
  it('a SRC that is not a container image', async () => {
    const config = await registry.pushBlob('artifact/x', Buffer.from('{"kind":"sbom"}'));
    const manifest = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { ...config, mediaType: 'application/vnd.example.sbom.config+json' }, layers: [] };
    await registry.pushManifest('artifact/x', 'v1', Buffer.from(JSON.stringify(manifest)), manifest.mediaType);
    await expect(convertImage(registrySource('artifact/x:v1'), await registryDestination('bad/x:v1'), ESTARGZ)).rejects.toThrow(/is not a container image: its config has media type application\/vnd.example.sbom.config\+json/);
    await expect(convertImage(registrySource('nothing/here:v1'), await registryDestination('bad/x:v1'), ESTARGZ)).rejects.toThrow(/not found/);
    await expect(tagOf('bad/x:v1')).rejects.toThrow(/not found/);
  });

  it('a layer that is not a tar (registry and OCI destinations)', async () => {
    const good = await makeLayer(work, 'good', { 'a.txt': Buffer.from('a') });
    const broken: TestImage = { layers: [good, { blob: gzipSync(pseudoRandom(9, 100_000)), diffID: `sha256:${'1'.repeat(64)}`, files: new Map() }], history: [{ created_by: 'a' }, { created_by: 'b' }], platform: image.platform };
    await pushTestImage(registry, 'broken/app', 'v1', broken);
    await expect(convertImage(registrySource('broken/app:v1'), await registryDestination('bad/app:v1'), ESTARGZ)).rejects.toThrow(/layer sha256:[0-9a-f]{64}: cannot convert it \(is it a tar, tar.gz or tar.zst\?\): tar header/);
    await expect(tagOf('bad/app:v1')).rejects.toThrow(/not found/);

    const layout = join(work, 'oci-bad');
    await expect(convertImage(registrySource('broken/app:v1'), await OciLayoutDestination.open(layout, 'v1'), ESTARGZ)).rejects.toThrow(/cannot convert it/);
    await expect(stat(join(layout, 'index.json'))).rejects.toThrow(/ENOENT/);
    expect((await readFile(join(layout, 'oci-layout'), 'utf8'))).toContain('1.0.0');
  });

  it('a registry refusing the push', async () => {
    proxy.refuseManifestPuts = true;
    try {
      await expect(convertImage(registrySource('src/app:v1'), await registryDestination('refused/app:v1'), ESTARGZ)).rejects.toThrow(/HTTP 403 \(manifest refused\/app:v1: DENIED: requested access to the resource is denied\)/);
    } finally {
      proxy.refuseManifestPuts = false;
    }
    await expect(tagOf('refused/app:v1')).rejects.toThrow(/not found/);
  });
});

const REPO = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [join(REPO, 'bin/lazypull.js'), ...args], { cwd: REPO }, (err, stdout, stderr) => {
      done({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

async function newestSourceMtime(dir: string): Promise<number> {
  let newest = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

/** The CLI runs from dist/: rebuild when a source file is newer than the built command. */
async function buildIfStale(): Promise<void> {
  let built = 0;
  try {
    built = statSync(join(REPO, 'dist/src/cli/commands/convert.js')).mtimeMs;
  } catch {
    // not built yet
  }
  const newest = Math.max(await newestSourceMtime(join(REPO, 'src')), await newestSourceMtime(join(REPO, 'tools')));
  if (built >= newest) return;
  await new Promise<void>((done, fail) => execFile('npm', ['run', '--silent', 'build'], { cwd: REPO }, (err, _out, stderr) => (err ? fail(new Error(`build failed: ${stderr}`)) : done())));
}
