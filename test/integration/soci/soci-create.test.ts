/**
 * `lazypull soci create`, `soci index list` and `soci ztoc info DIGEST --image` against a real
 * docker-registry on 127.0.0.1 (distribution 2.8: no referrers API, so v1 goes through the
 * `sha256-<hex>` tag) and OCI layouts in temp dirs, run in-process through the commander commands.
 */
import { Command } from 'commander';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerSoci, type ZtocInfo } from '../../../src/cli/commands/soci.js';
import { BufferSource } from '../../../src/io/random-access.js';
import { readFileChunks } from '../../../src/layer/read.js';
import { parseReference, RegistryClient, type Descriptor } from '../../../src/remote/index.js';
import { parseSociIndex, referrersTagOf, SociAnnotations, SociMediaTypes } from '../../../src/soci/index-manifest.js';
import { openSociLayer } from '../../../src/soci/layer-index.js';
import type { ListedSociIndex } from '../../../tools/soci/index.js';
import { pseudoRandom } from '../../helpers/fixture-tree.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { layoutReader, layoutTag, makeLayer, pushTestImage, writeTestLayout, type ImageReader, type TestImage, type TestLayer } from '../convert/fixtures.js';
import { mountedDigests, startRecordingProxy, uploadedDigests, type RecordingProxy } from '../convert/recording-proxy.js';

const SIZES = ['--span-size', '64KiB', '--min-layer-size', '64KiB'];
const INDEX = 'application/vnd.oci.image.index.v1+json';

let registry: TestRegistry;
let proxy: RecordingProxy;
let client: RegistryClient;
let work: string;
let image: TestImage;
let srcManifest: Descriptor;

const sha = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'lazypull-soci-create-'));
  registry = await startRegistry();
  proxy = await startRecordingProxy(registry.host);
  client = new RegistryClient({ hostsDir: null, dockerConfig: false });
  // A layer big enough to index (several 64 KiB spans) and one below --min-layer-size.
  const big = await makeLayer(work, 'big', {
    'usr/lib/big.bin': pseudoRandom(7, 400_000),
    'etc/os-release': Buffer.from('ID=soci-test\n'),
    'usr/share/doc/readme.txt': Buffer.from('hello soci\n'.repeat(20_000)),
  });
  const small = await makeLayer(work, 'small', { 'app/main.js': Buffer.from('console.log(1);\n') });
  image = { layers: [big, small], history: [{ created_by: 'big' }, { created_by: 'small' }], platform: { os: 'linux', architecture: 'amd64' } };
  srcManifest = await pushTestImage(registry, 'src/app', 'v1', image);
});

afterAll(async () => {
  await client?.close();
  await proxy?.close();
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function soci(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  const program = new Command('lazypull').exitOverride();
  registerSoci(program);
  const out: string[] = [];
  const err: string[] = [];
  const capture = (into: string[]) => (chunk: string | Uint8Array) => {
    into.push(String(chunk));
    return true;
  };
  const stdout = vi.spyOn(process.stdout, 'write').mockImplementation(capture(out));
  const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(capture(err));
  try {
    await program.parseAsync(['node', 'lazypull', 'soci', ...args]);
  } finally {
    stdout.mockRestore();
    stderr.mockRestore();
  }
  return { stdout: out.join(''), stderr: err.join('') };
}

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

const json = async <T>(reader: ImageReader, digest: string): Promise<T> => JSON.parse((await reader.manifestBytes(digest)).toString('utf8')) as T;

interface Manifest {
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

/** Paths of the regular files, dirs and links of a gzip tar, as the zTOC names them. */
function tarNames(layer: TestLayer): string[] {
  const tar = gunzipSync(layer.blob);
  const names: string[] = [];
  for (let at = 0; at + 512 <= tar.length; ) {
    const header = tar.subarray(at, at + 512);
    if (header.every((b) => b === 0)) break;
    const name = header.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(header.subarray(124, 136).toString('utf8').replace(/\0.*$/s, '').trim() || '0', 8);
    names.push(name);
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return names;
}

/**
 * The checks every SOCI v2 image must pass: the tag names an OCI index listing each rewritten image
 * manifest and its SOCI index (artifactType, platform, manifest digest); the manifest carries the
 * index-digest annotation and the source's config and layers unchanged; every zTOC's digest and size
 * match, it opens against its layer's size, lists the layer's files and reads them back.
 */
async function expectSociV2(reader: ImageReader, indexDigest: string, source: Manifest, original: TestImage): Promise<{ bound: Descriptor; soci: Descriptor }> {
  const index = await json<{ mediaType: string; manifests: Descriptor[] }>(reader, indexDigest);
  expect(index.mediaType).toBe(INDEX);
  const soci = index.manifests.find((m) => m.artifactType === SociMediaTypes.indexV2)!;
  const bound = index.manifests.find((m) => m.digest === soci.annotations?.[SociAnnotations.imageManifestDigest])!;
  expect(soci).toMatchObject({ mediaType: 'application/vnd.oci.image.manifest.v1+json', platform: original.platform });
  expect(bound).toMatchObject({ mediaType: 'application/vnd.oci.image.manifest.v1+json', platform: original.platform });
  const manifest = await json<Manifest>(reader, bound.digest);
  expect(manifest.annotations?.[SociAnnotations.indexDigest]).toBe(soci.digest);
  expect(manifest.layers).toEqual(source.layers);
  expect(manifest.config).toEqual(source.config);

  const sociIndex = parseSociIndex(await reader.manifestBytes(soci.digest));
  expect(sociIndex.version).toBe('v2');
  expect(sociIndex.subject).toBeUndefined();
  // Only the big layer is at least 64 KiB.
  expect(sociIndex.ztocs.map((z) => z.layerDigest)).toEqual([source.layers[0]!.digest]);
  for (const ref of sociIndex.ztocs) {
    const i = source.layers.findIndex((l) => l.digest === ref.layerDigest);
    const layer = source.layers[i]!;
    expect(ref).toMatchObject({ layerMediaType: layer.mediaType, spanSize: 65536, disableXattrs: false });
    const bytes = await reader.blob({ mediaType: SociMediaTypes.ztoc, digest: ref.digest, size: ref.size });
    expect(bytes.length).toBe(ref.size);
    expect(sha(bytes)).toBe(ref.digest);
    const opened = openSociLayer(bytes, { expectedZtocDigest: ref.digest, layerSize: layer.size });
    expect(opened.parsed.spans.length).toBeGreaterThan(3);
    expect(opened.parsed.ztoc.files.map((f) => f.name)).toEqual(tarNames(original.layers[i]!));
    const blob = new BufferSource(original.layers[i]!.blob);
    for (const [path, data] of original.layers[i]!.files) {
      const chunks: Buffer[] = [];
      for await (const chunk of readFileChunks(opened, blob, opened.lookup(path)!)) chunks.push(chunk);
      expect(sha(Buffer.concat(chunks)), path).toBe(sha(data));
    }
  }
  return { bound, soci };
}

describe('soci create --v2 (the default)', () => {
  it('registry -> registry: a new image whose index lists the SOCI index; layers unchanged; SRC untouched', async () => {
    const { stdout, stderr } = await soci('create', ...SIZES, `${registry.host}/src/app:v1`, `${registry.host}/soci/app:v1`);
    const tagged = await tagOf('soci/app:v1');
    expect(tagged.mediaType).toBe(INDEX);
    const source = await json<Manifest>(registryReader('src/app'), srcManifest.digest);
    const { bound, soci: entry } = await expectSociV2(registryReader('soci/app'), tagged.digest, source, image);

    expect(stdout).toContain(`linux/amd64 ${srcManifest.digest}:`);
    expect(stdout).toMatch(new RegExp(`layer ${source.layers[0]!.digest} [\\d.]+ KiB: zTOC sha256:[0-9a-f]{64} \\(\\d+ spans, ${tarNames(image.layers[0]!).length} files`));
    expect(stdout).toContain(`layer ${source.layers[1]!.digest} ${source.layers[1]!.size} B: no zTOC: ${source.layers[1]!.size} bytes, below the minimum layer size of 65536 bytes`);
    expect(stdout).toContain(`SOCI index v2: ${entry.digest} (image manifest now ${bound.digest})`);
    expect(stdout).toContain(`tagged ${registry.host}/soci/app:v1@${tagged.digest} (${INDEX})`);
    expect(stderr).toContain(`layer ${source.layers[1]!.digest}: no zTOC:`);
    expect((await tagOf('src/app:v1')).digest).toBe(srcManifest.digest);
  });

  it('on the same registry, the config and layers are mounted from SRC\'s repository, only zTOCs and documents uploaded', async () => {
    const start = proxy.requests.length;
    await soci('create', ...SIZES, `${proxy.host}/src/app:v1`, `${proxy.host}/mounted/app:v1`);
    const requests = proxy.requests.slice(start);
    const source = await json<Manifest>(registryReader('src/app'), srcManifest.digest);
    const reused: string[] = [source.config.digest, ...source.layers.map((l) => l.digest)];
    expect(mountedDigests(requests).sort()).toEqual([...reused].sort());
    expect(uploadedDigests(requests).filter((d) => reused.includes(d))).toEqual([]);
    const index = await json<{ manifests: Descriptor[] }>(registryReader('mounted/app'), (await tagOf('mounted/app:v1')).digest);
    const ztocs = parseSociIndex(await registryReader('mounted/app').manifestBytes(index.manifests[1]!.digest)).ztocs;
    expect(uploadedDigests(requests)).toEqual(expect.arrayContaining([...ztocs.map((z) => z.digest), 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a']));
    // The tag is the last write.
    const writes = requests.filter((r) => r.method === 'PUT' || r.method === 'POST' || r.method === 'PATCH');
    expect(writes.at(-1)).toMatchObject({ method: 'PUT', path: '/v2/mounted/app/manifests/v1' });
  });

  it('DST defaults to SRC; running it again replaces the SOCI entry instead of adding one', async () => {
    await pushTestImage(registry, 'inplace/app', 'v1', image);
    await soci('create', ...SIZES, `${registry.host}/inplace/app:v1`);
    const first = await tagOf('inplace/app:v1');
    await soci('create', ...SIZES, `${registry.host}/inplace/app:v1`);
    const second = await tagOf('inplace/app:v1');
    const index = await json<{ manifests: Descriptor[] }>(registryReader('inplace/app'), second.digest);
    expect(index.manifests.filter((m) => m.artifactType === SociMediaTypes.indexV2)).toHaveLength(1);
    expect(index.manifests).toHaveLength(2);
    // Same image and options: the same zTOCs, index and manifests, so the same digest.
    expect(second.digest).toBe(first.digest);
  });

  it('an index: --platform rewrites its entry, the other platform is kept as it was', async () => {
    const arm: TestImage = { ...image, platform: { os: 'linux', architecture: 'arm64' } };
    const amd = await pushTestImage(registry, 'multi/app', undefined, image);
    const armManifest = await pushTestImage(registry, 'multi/app', undefined, arm);
    await registry.pushIndex('multi/app', 'v1', [amd, armManifest]);
    await soci('create', ...SIZES, '--platform', 'linux/arm64', `${registry.host}/multi/app:v1`, `${registry.host}/multi/app:soci`);
    const tagged = await tagOf('multi/app:soci');
    const index = await json<{ manifests: Descriptor[] }>(registryReader('multi/app'), tagged.digest);
    expect(index.manifests).toHaveLength(3);
    expect(index.manifests[0]).toMatchObject({ digest: amd.digest, platform: image.platform });
    const source = await json<Manifest>(registryReader('multi/app'), armManifest.digest);
    const { soci: entry } = await expectSociV2(registryReader('multi/app'), tagged.digest, source, arm);
    expect(entry.platform).toEqual(arm.platform);
  });

  it('OCI layout -> OCI layout', async () => {
    const srcDir = join(work, 'layout-src');
    const dstDir = join(work, 'layout-dst');
    const manifest = await writeTestLayout(srcDir, image, 'v1');
    await soci('create', ...SIZES, `oci:${srcDir}:v1`, `oci:${dstDir}:soci`);
    const tagged = (await layoutTag(dstDir, 'soci'))!;
    expect(tagged.mediaType).toBe(INDEX);
    const source = await json<Manifest>(layoutReader(srcDir), manifest.digest);
    await expectSociV2(layoutReader(dstDir), tagged.digest, source, image);
    const listed = JSON.parse((await soci('index', 'list', '--json', `oci:${dstDir}:soci`)).stdout) as ListedSociIndex[];
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ version: 'v2', ztocs: 1, foundBy: ['image index', 'manifest annotation'] });
    const ztoc = parseSociIndex(await layoutReader(dstDir).manifestBytes(listed[0]!.digest)).ztocs[0]!;
    const info = JSON.parse((await soci('ztoc', 'info', ztoc.digest, '--image', `oci:${dstDir}:soci`)).stdout) as ZtocInfo;
    expect(info).toMatchObject({ digest: ztoc.digest, size: image.layers[0]!.blob.length, span_size: 65536 });
  });
});

describe('soci create --v1', () => {
  it('pushes a v1 index with the image manifest as subject, listed by the sha256-<hex> referrers tag', async () => {
    const { stdout } = await soci('create', '--v1', ...SIZES, `${registry.host}/src/app:v1`);
    const tag = referrersTagOf(srcManifest.digest);
    const tagged = await tagOf(`src/app:${tag}`);
    expect(tagged.mediaType).toBe(INDEX);
    const referrers = await json<{ manifests: Descriptor[] }>(registryReader('src/app'), tagged.digest);
    expect(referrers.manifests).toHaveLength(1);
    expect(referrers.manifests[0]!.artifactType).toBe(SociMediaTypes.indexV1);
    const sociIndex = parseSociIndex(await registryReader('src/app').manifestBytes(referrers.manifests[0]!.digest));
    expect(sociIndex.version).toBe('v1');
    expect(sociIndex.subject).toEqual({ mediaType: srcManifest.mediaType, digest: srcManifest.digest, size: srcManifest.size });
    expect(sociIndex.ztocs).toHaveLength(1);
    expect(stdout).toContain(`tagged ${registry.host}/src/app:${tag}@${tagged.digest}`);
    // The image itself is untouched.
    expect((await tagOf('src/app:v1')).digest).toBe(srcManifest.digest);

    // Again: the entry is replaced, not repeated.
    await soci('create', '--v1', ...SIZES, `${registry.host}/src/app:v1`, `${registry.host}/src/app:other-tag`);
    expect((await json<{ manifests: Descriptor[] }>(registryReader('src/app'), (await tagOf(`src/app:${tag}`)).digest)).manifests).toHaveLength(1);
  });

  it('refuses a DST in another repository', async () => {
    await expect(soci('create', '--v1', `${registry.host}/src/app:v1`, `${registry.host}/elsewhere/app:v1`)).rejects.toThrow(/stored in the image's own repository/);
  });
});

describe('soci index list and ztoc info DIGEST', () => {
  it('finds v2 indexes through the image index and the annotation, v1 through the referrers tag', async () => {
    const v2 = JSON.parse((await soci('index', 'list', '--json', `${registry.host}/soci/app:v1`)).stdout) as ListedSociIndex[];
    const tagged = await tagOf('soci/app:v1');
    const index = await json<{ manifests: Descriptor[] }>(registryReader('soci/app'), tagged.digest);
    const entry = index.manifests.find((m) => m.artifactType === SociMediaTypes.indexV2)!;
    expect(v2).toEqual([{ digest: entry.digest, version: 'v2', imageManifest: entry.annotations![SociAnnotations.imageManifestDigest], platform: image.platform, ztocs: 1, foundBy: ['image index', 'manifest annotation'] }]);

    const v1 = JSON.parse((await soci('index', 'list', '--json', `${registry.host}/src/app:v1`)).stdout) as ListedSociIndex[];
    expect(v1).toHaveLength(1);
    expect(v1[0]).toMatchObject({ version: 'v1', imageManifest: srcManifest.digest, platform: image.platform, ztocs: 1, foundBy: ['referrers tag'] });
    expect(v1[0]!.error).toBeUndefined();

    const table = (await soci('index', 'list', `${registry.host}/src/app:v1`)).stdout;
    expect(table).toMatch(/^INDEX +VERSION +IMAGE MANIFEST +PLATFORM +ZTOCS +FOUND BY$/m);
    expect(table).toContain(`${v1[0]!.digest}  v1       ${srcManifest.digest}  linux/amd64  1      referrers tag`);
    expect((await soci('index', 'list', `${registry.host}/multi/app:v1`)).stdout).toBe('no SOCI index found\n');
  });

  it('ztoc info DIGEST --image REF prints the zTOC from the registry', async () => {
    const [listed] = JSON.parse((await soci('index', 'list', '--json', `${registry.host}/soci/app:v1`)).stdout) as ListedSociIndex[];
    const ztoc = parseSociIndex(await registryReader('soci/app').manifestBytes(listed!.digest)).ztocs[0]!;
    const info = JSON.parse((await soci('ztoc', 'info', ztoc.digest, '--image', `${registry.host}/soci/app:v1`)).stdout) as ZtocInfo;
    expect(info).toMatchObject({ digest: ztoc.digest, version: '0.9', build_tool: 'lazypull', compression: 'gzip', span_size: 65536, num_files: tarNames(image.layers[0]!).length });
    expect(info.size).toBe(image.layers[0]!.blob.length);
    expect(info.num_spans).toBeGreaterThan(3);
    await expect(soci('ztoc', 'info', `sha256:${'0'.repeat(64)}`, '--image', `${registry.host}/soci/app:v1`)).rejects.toThrow(/not found|404/);
    await expect(soci('ztoc', 'info', `sha256:${'0'.repeat(64)}`)).rejects.toThrow(/needs --image REF/);
  });
});

describe('bad input: a clear error, nothing tagged', () => {
  it('a SRC that is not a container image, or does not exist', async () => {
    const config = await registry.pushBlob('artifact/x', Buffer.from('{"kind":"sbom"}'));
    const manifest = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { ...config, mediaType: 'application/vnd.example.sbom.config+json' }, layers: [] };
    await registry.pushManifest('artifact/x', 'v1', Buffer.from(JSON.stringify(manifest)), manifest.mediaType);
    await expect(soci('create', `${registry.host}/artifact/x:v1`, `${registry.host}/bad/x:v1`)).rejects.toThrow(/is not a container image: its config has media type application\/vnd.example.sbom.config\+json/);
    await expect(soci('create', `${registry.host}/nothing/here:v1`, `${registry.host}/bad/x:v1`)).rejects.toThrow(/not found/);
    await expect(tagOf('bad/x:v1')).rejects.toThrow(/not found/);
  });

  it('a corrupt gzip layer and a gzip layer that is not a tar (v2 and v1)', async () => {
    const good = image.layers[0]!;
    const corrupt = Buffer.concat([good.blob.subarray(0, 200), pseudoRandom(3, 100_000)]);
    const notTar = gzipSync(pseudoRandom(4, 100_000));
    for (const [name, blob, message] of [
      ['corrupt', corrupt, /cannot build its zTOC \(is it a tar or a tar\.gz\?\): .*(invalid|incorrect|corrupt)/i],
      ['nottar', notTar, /cannot build its zTOC \(is it a tar or a tar\.gz\?\): .*tar/i],
    ] as const) {
      const broken: TestImage = { ...image, layers: [{ blob, diffID: `sha256:${'1'.repeat(64)}`, files: new Map() }, image.layers[1]!] };
      const pushed = await pushTestImage(registry, `broken/${name}`, 'v1', broken);
      await expect(soci('create', ...SIZES, `${registry.host}/broken/${name}:v1`, `${registry.host}/bad/${name}:v1`)).rejects.toThrow(message);
      await expect(tagOf(`bad/${name}:v1`)).rejects.toThrow(/not found/);
      await expect(soci('create', '--v1', ...SIZES, `${registry.host}/broken/${name}:v1`)).rejects.toThrow(message);
      await expect(tagOf(`broken/${name}:${referrersTagOf(pushed.digest)}`)).rejects.toThrow(/not found/);
    }
  });

  it('an image none of whose layers is big enough', async () => {
    await expect(soci('create', `${registry.host}/src/app:v1`, `${registry.host}/bad/small:v1`)).rejects.toThrow(/no layer of manifest sha256:[0-9a-f]{64} gets a zTOC, so there is nothing to index \(.*below the minimum layer size of 10485760 bytes/);
    await expect(tagOf('bad/small:v1')).rejects.toThrow(/not found/);
  });

  it('a registry refusing the push', async () => {
    proxy.refuseManifestPuts = true;
    try {
      await expect(soci('create', ...SIZES, `${proxy.host}/src/app:v1`, `${proxy.host}/refused/app:v1`)).rejects.toThrow(/HTTP 403 .*DENIED: requested access to the resource is denied/);
    } finally {
      proxy.refuseManifestPuts = false;
    }
    await expect(tagOf('refused/app:v1')).rejects.toThrow(/not found/);
  });

  it('an OCI layout DST is left without index.json when SRC is bad', async () => {
    const dir = join(work, 'layout-bad');
    await expect(soci('create', `${registry.host}/artifact/x:v1`, `oci:${dir}:v1`)).rejects.toThrow(/not a container image/);
    await expect(stat(join(dir, 'index.json'))).rejects.toThrow(/ENOENT/);
    expect(await readFile(join(dir, 'oci-layout'), 'utf8')).toContain('1.0.0');
  });
});
