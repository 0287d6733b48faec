/**
 * Small runnable images for end-to-end tests, pushed to a test registry: a layer with `/bin/echo`,
 * `/bin/cat` and their shared libraries (so `ctr run` works without a distro), an optional block of
 * incompressible bytes no workload reads (what lazy pulling should never fetch), and a layer with a
 * greeting file. Each layer is plain gzip, eStargz or zstd:chunked (converted with lazypull's writer,
 * with the TOC digest annotation the way `lazypull convert` and ctr-remote write it).
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { convertLayer, type OutputFormat } from '../../src/estargz/writer.js';
import { goArch } from './oci-image.js';
import type { TestRegistry } from './registry.js';

export type LayerFormat = 'gzip' | OutputFormat;

export interface RunnableLayer {
  /** Files by absolute path in the image: content, or a host file to copy. */
  files: Record<string, Buffer | { copyOf: string }>;
  format: LayerFormat;
}

export interface RunnableImage {
  /** `host/repo:tag`. */
  ref: string;
  manifestDigest: string;
  /** Blob digests of the layers, bottom first. */
  layers: string[];
  /** Sum of the compressed layer sizes. */
  layerBytes: number;
}

const GZIP_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
const ZSTD_LAYER = 'application/vnd.oci.image.layer.v1.tar+zstd';

/** /bin/echo, /bin/cat and the libraries they load, as RunnableLayer files. */
export function coreutilsFiles(): Record<string, { copyOf: string }> {
  const files: Record<string, { copyOf: string }> = {};
  for (const binary of ['/bin/echo', '/bin/cat']) {
    files[binary] = { copyOf: binary };
    const ldd = execFileSync('ldd', [binary], { encoding: 'utf8' });
    for (const match of ldd.matchAll(/(\/\S+) \(0x/g)) files[match[1] as string] = { copyOf: match[1] as string };
  }
  return files;
}

/** `size` random bytes: they do not compress, so fetching them shows in the byte count. */
export function incompressible(size: number): Buffer {
  return randomBytes(size);
}

async function tarOf(files: RunnableLayer['files']): Promise<Buffer> {
  const stage = await mkdtemp(join(tmpdir(), 'lp-image-'));
  try {
    for (const [path, content] of Object.entries(files)) {
      const target = join(stage, path);
      mkdirSync(dirname(target), { recursive: true });
      if (Buffer.isBuffer(content)) writeFileSync(target, content);
      else copyFileSync(realpathSync(content.copyOf), target);
    }
    return execFileSync('tar', ['-C', stage, '--owner=0', '--group=0', '--sort=name', '-cf', '-', '.'], { maxBuffer: 1 << 30 });
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

interface BuiltLayer {
  blob: Buffer;
  diffId: string;
  mediaType: string;
  annotations?: Record<string, string>;
}

async function buildLayer(spec: RunnableLayer): Promise<BuiltLayer> {
  const tar = await tarOf(spec.files);
  if (spec.format === 'gzip') return { blob: gzipSync(tar), diffId: sha256(tar), mediaType: GZIP_LAYER };
  const parts: Buffer[] = [];
  const result = await convertLayer(
    (async function* () {
      yield tar;
    })(),
    { write: async (data) => void parts.push(Buffer.from(data)) },
    { format: spec.format },
  );
  return { blob: Buffer.concat(parts), diffId: result.diffID, mediaType: spec.format === 'estargz' ? GZIP_LAYER : ZSTD_LAYER, annotations: result.annotations };
}

function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Builds the layers, pushes blobs, config and manifest, and returns the reference to pull. */
export async function pushRunnableImage(registry: TestRegistry, repo: string, tag: string, specs: RunnableLayer[]): Promise<RunnableImage> {
  const layers = await Promise.all(specs.map(buildLayer));
  const descriptors = [];
  for (const layer of layers) {
    const pushed = await registry.pushBlob(repo, layer.blob);
    descriptors.push({ ...pushed, mediaType: layer.mediaType, ...(layer.annotations ? { annotations: layer.annotations } : {}) });
  }
  const config = Buffer.from(JSON.stringify({ architecture: goArch(), os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) }, config: { Env: ['PATH=/bin'] } }));
  const configDescriptor = { ...(await registry.pushBlob(repo, config)), mediaType: 'application/vnd.oci.image.config.v1+json' };
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: configDescriptor, layers: descriptors }));
  await registry.pushManifest(repo, tag, manifest, 'application/vnd.oci.image.manifest.v1+json');
  return {
    ref: `${registry.host}/${repo}:${tag}`,
    manifestDigest: sha256(manifest),
    layers: descriptors.map((d) => d.digest),
    layerBytes: descriptors.reduce((sum, d) => sum + d.size, 0),
  };
}
