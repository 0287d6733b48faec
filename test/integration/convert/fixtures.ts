/**
 * Small two-layer images for the converter tests: real gzip tars made with GNU tar from files whose
 * contents the tests keep, pushed to the harness registry or written as OCI layouts, and the checks
 * every converted image must pass (each layer opens against its toc.digest annotation, every file reads
 * back equal, diff_ids are the uncompressed blobs' digests, history kept).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { expect } from 'vitest';
import { openLayer } from '../../../src/estargz/open.js';
import { ANNOTATION_TOC_DIGEST, ANNOTATION_UNCOMPRESSED_SIZE } from '../../../src/estargz/writer.js';
import { FileSource, type RandomAccessSource } from '../../../src/io/random-access.js';
import { readFileChunks } from '../../../src/layer/read.js';
import type { Descriptor } from '../../../src/remote/index.js';
import type { Digest } from '../../../src/util/digest.js';
import { pseudoRandom } from '../../helpers/fixture-tree.js';
import type { TestRegistry } from '../../helpers/registry.js';

const execFileAsync = promisify(execFile);

export interface TestLayer {
  /** The gzip tar as pushed. */
  blob: Buffer;
  diffID: Digest;
  /** Regular files by path, as the layer holds them. */
  files: Map<string, Buffer>;
}

export interface TestImage {
  layers: TestLayer[];
  history: { created_by: string }[];
  platform: { os: string; architecture: string };
}

const sha = (data: Buffer): Digest => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** A gzip tar of `files` (plus a symlink), built by GNU tar from a directory. */
export async function makeLayer(work: string, name: string, files: Record<string, Buffer>): Promise<TestLayer> {
  const root = join(work, name);
  for (const [path, data] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), data);
  }
  await symlink(Object.keys(files)[0]!, join(root, `${name}-link`));
  const tarPath = join(work, `${name}.tar`);
  await execFileAsync('tar', ['--format=gnu', '--numeric-owner', '--owner=0', '--group=0', '--sort=name', '--mtime=2024-01-01', '-C', root, '-cf', tarPath, '.']);
  const tar = await readFile(tarPath);
  await execFileAsync('gzip', ['-n', '-6', '-k', tarPath]);
  const blob = await readFile(`${tarPath}.gz`);
  return { blob, diffID: sha(tar), files: new Map(Object.entries(files).map(([p, d]) => [p, d])) };
}

/** Two layers: a big file cut into several chunks plus small files, then a few small files. */
export async function makeTwoLayerImage(work: string, seed: number, platform = { os: 'linux', architecture: 'amd64' }): Promise<TestImage> {
  const base = await makeLayer(work, `base-${seed}`, {
    'usr/lib/big.bin': pseudoRandom(seed, 5 * (1 << 20) + 12345),
    'etc/os-release': Buffer.from(`ID=lazypull-test-${seed}\n`),
    'usr/share/doc/readme.txt': Buffer.from('hello\n'.repeat(5000)),
  });
  const app = await makeLayer(work, `app-${seed}`, {
    'app/main.js': Buffer.from(`console.log(${seed});\n`),
    'app/data.bin': pseudoRandom(seed + 1, 300_000),
    'app/empty': Buffer.alloc(0),
  });
  return { layers: [base, app], history: [{ created_by: `base ${seed}` }, { created_by: `app ${seed}` }], platform };
}

export function configOf(image: TestImage): Buffer {
  return Buffer.from(JSON.stringify({ ...image.platform, config: { Cmd: ['/app/main.js'] }, rootfs: { type: 'layers', diff_ids: image.layers.map((l) => l.diffID) }, history: image.history }));
}

/** Pushes the image with a correct config (real diff_ids, history); returns the manifest descriptor with its platform. */
export async function pushTestImage(registry: TestRegistry, repository: string, tag: string | undefined, image: TestImage): Promise<Descriptor> {
  const layers = [];
  for (const layer of image.layers) layers.push({ ...(await registry.pushBlob(repository, layer.blob)), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
  const config = { ...(await registry.pushBlob(repository, configOf(image))), mediaType: 'application/vnd.oci.image.config.v1+json' };
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers }));
  const pushed = await registry.pushManifest(repository, tag ?? sha(manifest), manifest, 'application/vnd.oci.image.manifest.v1+json');
  return { ...pushed, platform: image.platform };
}

export interface ImageReader {
  manifestBytes(digestOrTag: string): Promise<Buffer>;
  blob(descriptor: Descriptor): Promise<Buffer>;
  openBlob(descriptor: Descriptor): Promise<RandomAccessSource>;
}

/**
 * Every check a converted manifest must pass against the image it came from. Returns the manifest so
 * callers can assert more.
 */
export async function expectConverted(reader: ImageReader, manifestDigest: string, original: TestImage, format: 'estargz' | 'zstd:chunked' = 'estargz'): Promise<{ layers: Descriptor[]; config: Record<string, unknown> }> {
  const manifest = JSON.parse((await reader.manifestBytes(manifestDigest)).toString('utf8')) as { mediaType: string; config: Descriptor; layers: Descriptor[] };
  expect(manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
  expect(manifest.config.mediaType).toBe('application/vnd.oci.image.config.v1+json');
  const config = JSON.parse((await reader.blob(manifest.config)).toString('utf8')) as { rootfs: { diff_ids: string[] }; history: unknown; config: unknown };
  expect(config.history).toEqual(original.history);
  expect(config.config).toEqual({ Cmd: ['/app/main.js'] });
  expect(manifest.layers).toHaveLength(original.layers.length);
  for (const [i, layer] of manifest.layers.entries()) {
    expect(layer.mediaType).toBe(format === 'estargz' ? 'application/vnd.oci.image.layer.v1.tar+gzip' : 'application/vnd.oci.image.layer.v1.tar+zstd');
    const tocDigest = layer.annotations?.[ANNOTATION_TOC_DIGEST] as Digest;
    expect(tocDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    const source = await reader.openBlob(layer);
    try {
      const opened = await openLayer(source, { expectedTocDigest: tocDigest });
      for (const [path, data] of original.layers[i]!.files) {
        const entry = opened.lookup(path);
        expect(entry, path).toBeDefined();
        const chunks: Buffer[] = [];
        for await (const chunk of readFileChunks(opened, source, entry!)) chunks.push(chunk);
        expect(sha(Buffer.concat(chunks)), path).toBe(sha(data));
      }
    } finally {
      await source.close?.();
    }
    if (format === 'estargz') {
      const tar = gunzipSync(await reader.blob(layer));
      expect(config.rootfs.diff_ids[i]).toBe(sha(tar));
      expect(layer.annotations?.[ANNOTATION_UNCOMPRESSED_SIZE]).toBe(String(tar.length));
    }
  }
  return { layers: manifest.layers, config };
}

/** Writes `image` as an OCI image layout tagged `tag` (config with real diff_ids and history). */
export async function writeTestLayout(dir: string, image: TestImage, tag: string): Promise<Descriptor> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = async (data: Buffer, mediaType: string): Promise<Descriptor> => {
    const digest = sha(data);
    await writeFile(join(dir, 'blobs', 'sha256', digest.slice(7)), data);
    return { mediaType, digest, size: data.length };
  };
  const layers = [];
  for (const layer of image.layers) layers.push(await put(layer.blob, 'application/vnd.oci.image.layer.v1.tar+gzip'));
  const config = await put(configOf(image), 'application/vnd.oci.image.config.v1+json');
  const manifest = await put(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers })), 'application/vnd.oci.image.manifest.v1+json');
  const entry = { ...manifest, annotations: { 'org.opencontainers.image.ref.name': tag } };
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [entry] }));
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return manifest;
}

/** Reads an OCI layout's blobs (what `expectConverted` needs). */
export function layoutReader(dir: string): ImageReader {
  const path = (digest: string): string => join(dir, 'blobs', 'sha256', digest.replace(/^sha256:/, ''));
  return {
    manifestBytes: (digest) => readFile(path(digest)),
    blob: (descriptor) => readFile(path(descriptor.digest)),
    openBlob: (descriptor) => FileSource.open(path(descriptor.digest)),
  };
}

/** The layout's index.json entry for `tag`. */
export async function layoutTag(dir: string, tag: string): Promise<Descriptor | undefined> {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
  return index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
}
