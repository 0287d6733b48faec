/**
 * Builds OCI images from layer blobs for tests and benchmarks, and moves them in and out of a harness
 * containerd (see containerd.ts).
 *
 * - `writeOciLayout(dir, layers, opts)` writes an OCI image layout (oci-layout, index.json,
 *   blobs/sha256/...) holding one image: a config whose `rootfs.diff_ids` are the layers' diffIDs in
 *   order, and a manifest listing the layers with their media types and annotations. Layer blobs are
 *   hardlinked into the layout when possible (no copy of big layers).
 * - `importImage(cd, layoutDir)` streams the layout as a tar into `ctr images import --no-unpack`;
 *   the image gets the name given to writeOciLayout (`io.containerd.image.name`).
 * - `buildAndImportImage(cd, workDir, name, layers)` does both.
 * - `getContent(cd, digest, outPath?)` fetches a blob back out of the content store with
 *   `ctr content get` (to a file for big blobs), and `getImage(cd, ref)` resolves an image name to its
 *   manifest (an index is resolved to the manifest for this platform) and config.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, link, mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CommandError, run, type Containerd } from './containerd.js';

export const MediaType = {
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  index: 'application/vnd.oci.image.index.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layerTar: 'application/vnd.oci.image.layer.v1.tar',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  layerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
} as const;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string; variant?: string };
}

export interface Manifest {
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageConfig {
  architecture: string;
  os: string;
  config?: Record<string, unknown>;
  rootfs: { type: 'layers'; diff_ids: string[] };
  history?: unknown[];
}

export interface LayerInput {
  /** The blob exactly as the manifest references it (compressed or not). */
  path: string;
  mediaType: string;
  /** sha256 of the uncompressed tar (goes into the config's rootfs.diff_ids). */
  diffID: string;
  annotations?: Record<string, string>;
  /** The blob's digest and size; computed from the file when absent. */
  digest?: string;
  size?: number;
}

export interface ImageOptions {
  /** Full image name recorded for containerd (`io.containerd.image.name`), e.g. `example.com/lazypull/x:v1`. */
  name: string;
  /** Defaults to this machine's (amd64/arm64, linux). */
  architecture?: string;
  os?: string;
  /** The config's `config` object (Cmd, Env, ...). */
  runConfig?: Record<string, unknown>;
  manifestAnnotations?: Record<string, string>;
}

export interface OciImage {
  name: string;
  layoutDir: string;
  manifest: Manifest;
  manifestDigest: string;
  manifestSize: number;
  config: ImageConfig;
  configDigest: string;
}

export function goArch(arch: string = process.arch): string {
  return arch === 'x64' ? 'amd64' : arch === 'ia32' ? '386' : arch;
}

/** sha256 of a file, streamed, with its size. */
export async function fileDigest(path: string): Promise<{ digest: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

function blobFile(layoutDir: string, digest: string): string {
  const [alg, hex] = digest.split(':');
  if (alg !== 'sha256' || !hex || !/^[0-9a-f]{64}$/.test(hex)) throw new Error(`not a sha256 digest: ${digest}`);
  return join(layoutDir, 'blobs', alg, hex);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function putBytes(layoutDir: string, data: Buffer): Promise<{ digest: string; size: number }> {
  const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
  await writeFile(blobFile(layoutDir, digest), data);
  return { digest, size: data.length };
}

/** Writes an OCI image layout with one image made of `layers` (bottom first). */
export async function writeOciLayout(layoutDir: string, layers: LayerInput[], opts: ImageOptions): Promise<OciImage> {
  await mkdir(join(layoutDir, 'blobs', 'sha256'), { recursive: true });
  const descs: Descriptor[] = [];
  for (const layer of layers) {
    const { digest, size } =
      layer.digest !== undefined && layer.size !== undefined
        ? { digest: layer.digest, size: layer.size }
        : await fileDigest(layer.path);
    const dest = blobFile(layoutDir, digest);
    if (!(await exists(dest))) {
      await link(layer.path, dest).catch(() => copyFile(layer.path, dest));
    }
    const desc: Descriptor = { mediaType: layer.mediaType, digest, size };
    if (layer.annotations && Object.keys(layer.annotations).length > 0) desc.annotations = { ...layer.annotations };
    descs.push(desc);
  }
  const config: ImageConfig = {
    architecture: opts.architecture ?? goArch(),
    os: opts.os ?? 'linux',
    config: opts.runConfig ?? {},
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffID) },
    history: layers.map(() => ({ created_by: 'lazypull test harness' })),
  };
  const configBlob = await putBytes(layoutDir, Buffer.from(JSON.stringify(config)));
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.manifest,
    config: { mediaType: MediaType.config, ...configBlob },
    layers: descs,
  };
  if (opts.manifestAnnotations) manifest.annotations = { ...opts.manifestAnnotations };
  const manifestBlob = await putBytes(layoutDir, Buffer.from(JSON.stringify(manifest)));
  const tag = opts.name.includes('@') ? undefined : /:([^/:]+)$/.exec(opts.name)?.[1];
  const index = {
    schemaVersion: 2,
    mediaType: MediaType.index,
    manifests: [
      {
        mediaType: MediaType.manifest,
        ...manifestBlob,
        platform: { architecture: config.architecture, os: config.os },
        annotations: {
          'io.containerd.image.name': opts.name,
          ...(tag ? { 'org.opencontainers.image.ref.name': tag } : {}),
        },
      },
    ],
  };
  await writeFile(join(layoutDir, 'index.json'), JSON.stringify(index));
  await writeFile(join(layoutDir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return {
    name: opts.name,
    layoutDir,
    manifest,
    manifestDigest: manifestBlob.digest,
    manifestSize: manifestBlob.size,
    config,
    configDigest: configBlob.digest,
  };
}

/** Writes the layout as an OCI archive (a tar that `ctr images import` and `docker load` accept). */
export async function writeOciArchive(layoutDir: string, tarPath: string): Promise<void> {
  await run('tar', ['--format=gnu', '--numeric-owner', '--owner=0', '--group=0', '-C', layoutDir, '-cf', tarPath, 'oci-layout', 'index.json', 'blobs']);
}

/**
 * Imports an OCI layout into the harness containerd (streamed as a tar into `ctr images import`,
 * without unpacking into a snapshotter). The image gets the name writeOciLayout recorded.
 */
export async function importImage(cd: Containerd, layoutDir: string): Promise<void> {
  const tarArgs = ['--format=gnu', '--numeric-owner', '--owner=0', '--group=0', '-C', layoutDir, '-cf', '-', 'oci-layout', 'index.json', 'blobs'];
  const tar = spawn('tar', tarArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
  const tarErr: Buffer[] = [];
  tar.stderr.on('data', (b: Buffer) => tarErr.push(b));
  const tarDone = new Promise<void>((resolve, reject) => {
    tar.on('error', reject);
    tar.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new CommandError(['tar', ...tarArgs], code, signal, Buffer.concat(tarErr).toString()));
    });
  });
  try {
    await cd.ctr(['images', 'import', '--no-unpack', '--all-platforms', '-'], { input: tar.stdout });
  } catch (err) {
    tar.kill('SIGKILL');
    await tarDone.catch(() => undefined);
    throw err;
  }
  await tarDone;
}

/** Writes the layout under `workDir` and imports it; returns what was written. */
export async function buildAndImportImage(cd: Containerd, workDir: string, layers: LayerInput[], opts: ImageOptions): Promise<OciImage> {
  const image = await writeOciLayout(workDir, layers, opts);
  await importImage(cd, workDir);
  return image;
}

/** A blob from the content store: returned as bytes, or written to `outPath` (for big blobs). */
export async function getContent(cd: Containerd, digest: string): Promise<Buffer>;
export async function getContent(cd: Containerd, digest: string, outPath: string): Promise<void>;
export async function getContent(cd: Containerd, digest: string, outPath?: string): Promise<Buffer | void> {
  if (outPath !== undefined) {
    await cd.ctr(['content', 'get', digest], { stdoutFile: outPath });
    return;
  }
  return (await cd.ctr(['content', 'get', digest])).stdoutBytes;
}

export interface ResolvedImage {
  /** The image's target (manifest or index) digest. */
  target: Descriptor;
  manifest: Manifest;
  manifestDigest: string;
  config: ImageConfig;
}

/** The image names containerd knows, with their target descriptors. */
export async function listImages(cd: Containerd): Promise<Map<string, Descriptor>> {
  const { stdout } = await cd.ctr(['images', 'ls']);
  const images = new Map<string, Descriptor>();
  for (const line of stdout.split('\n').slice(1)) {
    const [ref, mediaType, digest] = line.trim().split(/\s+/);
    if (ref && mediaType && digest) images.set(ref, { mediaType, digest, size: 0 });
  }
  return images;
}

/** Resolves an image name to its manifest (for an index: the one for `architecture`/`os`) and config. */
export async function getImage(cd: Containerd, ref: string, architecture = goArch(), os = 'linux'): Promise<ResolvedImage> {
  const target = (await listImages(cd)).get(ref);
  if (!target) throw new Error(`image ${ref} not found in containerd`);
  let manifestDigest = target.digest;
  let doc = JSON.parse((await getContent(cd, manifestDigest)).toString('utf8')) as {
    mediaType?: string;
    manifests?: Descriptor[];
  };
  if (doc.manifests) {
    const pick = doc.manifests.find((m) => !m.platform || (m.platform.architecture === architecture && m.platform.os === os));
    if (!pick) throw new Error(`image ${ref} has no manifest for ${os}/${architecture}`);
    manifestDigest = pick.digest;
    doc = JSON.parse((await getContent(cd, manifestDigest)).toString('utf8')) as typeof doc;
  }
  const manifest = doc as unknown as Manifest;
  const config = JSON.parse((await getContent(cd, manifest.config.digest)).toString('utf8')) as ImageConfig;
  return { target, manifest, manifestDigest, config };
}
