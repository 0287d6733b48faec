import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  bytesBody,
  hostPlatform,
  isManifestMediaType,
  ManifestError,
  MediaTypes,
  platformMatches,
  selectPlatform,
  type Descriptor,
  type ImageIndex,
  type ImageManifest,
  type Platform,
} from '../../src/remote/index.js';
import { isDigest, sha256, type Digest } from '../../src/util/digest.js';
import { convertImageLayer, type ConvertedLayer, type LayerFormatOptions, type LayerJob } from './layer.js';
import { allSettledOrThrow, TaskLimiter } from './limiter.js';
import { silentProgress, type ConvertProgress } from './progress.js';
import type { FileReads } from './read-profile.js';
import type { FetchedDocument, ImageDestination, ImageSource } from './store.js';

export interface ConvertImageOptions extends LayerFormatOptions {
  /** Index entries to convert: this platform's (default: the host's), or every one. */
  platform?: Platform;
  allPlatforms?: boolean;
  /** Keep layers already in the target format whose TOC verifies against their toc.digest annotation. */
  reuse?: boolean;
  /** Layers converted at the same time (default 2): each already compresses on every core. */
  parallelLayers?: number;
  /** Where converted blobs wait for their upload (default: the OS temp dir). */
  workDir?: string;
  progress?: ConvertProgress;
  /** Prioritized files by source layer digest, each layer its own list (optimize); a layer absent gets none. */
  prioritizedFilesByLayer?: ReadonlyMap<Digest, string[]>;
  /** What a workload read of each file, by source layer digest: small chunks and a prefetch-ranges annotation (optimize). */
  readsByLayer?: ReadonlyMap<Digest, FileReads>;
}

export interface ConvertedManifest {
  descriptor: Descriptor;
  platform?: Platform;
  layers: ConvertedLayer[];
}

export interface ConvertImageResult {
  /** What DST now names: a manifest, or an index over `manifests`. */
  descriptor: Descriptor;
  manifests: ConvertedManifest[];
}

export const DEFAULT_PARALLEL_LAYERS = 2;
const CONFIG_TYPES = new Set<string>([MediaTypes.ociConfig, MediaTypes.dockerConfig]);

/**
 * Converts SRC's image (or the selected entries of its index) into DST: layers rewritten in parallel
 * through temp files, configs' diff_ids rewritten (history and everything else kept), manifests in
 * OCI media types. DST's tag is written last, so any failure leaves it untouched.
 */
export async function convertImage(source: ImageSource, destination: ImageDestination, options: ConvertImageOptions): Promise<ConvertImageResult> {
  const workDir = await mkdtemp(join(options.workDir ?? tmpdir(), 'lazypull-convert-'));
  try {
    const converter = new ImageConverter(source, destination, options, workDir);
    const root = await source.root();
    const result = root.document.kind === 'manifest' ? await converter.convertRootManifest(root) : await converter.convertIndex(root.document.index);
    return result;
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

class ImageConverter {
  private readonly limiter: TaskLimiter;
  /** Conversions by source layer digest: a layer shared by several manifests is converted once. */
  private readonly layers = new Map<Digest, Promise<ConvertedLayer>>();
  private readonly job: LayerJob;

  constructor(
    private readonly source: ImageSource,
    private readonly destination: ImageDestination,
    private readonly options: ConvertImageOptions,
    workDir: string,
  ) {
    this.limiter = new TaskLimiter(options.parallelLayers ?? DEFAULT_PARALLEL_LAYERS);
    const { format, chunkSize, minChunkSize, compressionLevel, prioritizedFiles, onMissingPrioritized, workers } = options;
    this.job = {
      source,
      destination,
      format: { format, chunkSize, minChunkSize, compressionLevel, prioritizedFiles, onMissingPrioritized, workers },
      reuse: options.reuse ?? false,
      workDir,
      progress: options.progress ?? silentProgress,
      ...(options.prioritizedFilesByLayer ? { prioritizedFilesByLayer: options.prioritizedFilesByLayer } : {}),
      ...(options.readsByLayer ? { readsByLayer: options.readsByLayer } : {}),
    };
  }

  async convertRootManifest(root: FetchedDocument): Promise<ConvertImageResult> {
    const converted = await this.convertManifest(root);
    await this.destination.tag(converted.bytes, converted.descriptor);
    return { descriptor: converted.descriptor, manifests: [converted.result] };
  }

  async convertIndex(index: ImageIndex): Promise<ConvertImageResult> {
    const entries = this.selectEntries(index);
    const converted = await allSettledOrThrow(
      entries.map(async (entry) => {
        const fetched = await this.source.manifest(entry);
        if (fetched.document.kind !== 'manifest') throw new ManifestError(`${this.source.description}: nested index ${entry.digest} is not supported`);
        const manifest = await this.convertManifest(fetched);
        await this.destination.putManifest(manifest.bytes, manifest.descriptor.mediaType);
        const descriptor: Descriptor = { ...manifest.descriptor, ...(entry.platform ? { platform: entry.platform } : {}), ...(entry.annotations ? { annotations: entry.annotations } : {}) };
        return { descriptor, result: { ...manifest.result, descriptor } };
      }),
    );
    const rawIndex = { ...index, schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: converted.map((c) => c.descriptor) };
    const bytes = Buffer.from(JSON.stringify(rawIndex));
    const descriptor: Descriptor = { mediaType: MediaTypes.ociIndex, digest: sha256(bytes), size: bytes.length };
    await this.destination.tag(bytes, descriptor);
    return { descriptor, manifests: converted.map((c) => c.result) };
  }

  /**
   * Like the reference (containerd's converter): --all-platforms keeps every entry; otherwise only
   * the entries for the platform (and entries without one) are converted, and the others are left
   * out of the new index rather than pointing at unconverted images.
   */
  private selectEntries(index: ImageIndex): Descriptor[] {
    const nested = index.manifests.find((m) => !isManifestMediaType(m.mediaType));
    if (nested) throw new ManifestError(`${this.source.description}: index entry ${nested.digest} (${nested.mediaType}) is not an image manifest`);
    if (this.options.allPlatforms) return index.manifests;
    const wanted = this.options.platform ?? hostPlatform();
    const chosen = index.manifests.filter((m) => !m.platform || platformMatches(wanted, m.platform));
    return chosen.length > 0 ? chosen : [selectPlatform(index, wanted)];
  }

  private async convertManifest(fetched: FetchedDocument): Promise<{ bytes: Buffer; descriptor: Descriptor; result: ConvertedManifest }> {
    if (fetched.document.kind !== 'manifest') throw new ManifestError('expected an image manifest');
    const manifest = fetched.document.manifest;
    const config = await readImageConfig(this.source, manifest);
    const layers = await allSettledOrThrow(manifest.layers.map((layer, i) => this.convertLayerOnce(layer, config.diffIds[i]!)));
    const configBytes = Buffer.from(JSON.stringify({ ...config.json, rootfs: { ...config.rootfs, diff_ids: layers.map((l) => l.diffID) } }));
    const configDescriptor: Descriptor = { mediaType: MediaTypes.ociConfig, digest: sha256(configBytes), size: configBytes.length };
    await this.destination.putBlob(configDescriptor, bytesBody(configBytes), this.source.registryRepository);
    // Unknown top-level fields (subject, artifactType, annotations) are kept.
    const raw = JSON.parse(fetched.bytes.toString('utf8')) as Record<string, unknown>;
    const bytes = Buffer.from(JSON.stringify({ ...raw, schemaVersion: 2, mediaType: MediaTypes.ociManifest, config: configDescriptor, layers: layers.map((l) => l.descriptor) }));
    const descriptor: Descriptor = { mediaType: MediaTypes.ociManifest, digest: sha256(bytes), size: bytes.length };
    return { bytes, descriptor, result: { descriptor, layers, ...(config.platform ? { platform: config.platform } : {}) } };
  }

  private convertLayerOnce(layer: Descriptor, diffID: Digest): Promise<ConvertedLayer> {
    let pending = this.layers.get(layer.digest);
    if (!pending) {
      // The limiter's first failure stops layers that have not started yet.
      pending = this.limiter.run(() => convertImageLayer(this.job, layer, diffID));
      this.layers.set(layer.digest, pending);
    }
    return pending;
  }
}

export interface ImageConfig {
  json: Record<string, unknown>;
  rootfs: Record<string, unknown>;
  diffIds: Digest[];
  platform?: Platform;
}

/** The config of an image manifest, refused unless it is a container image's config. */
export async function readImageConfig(source: ImageSource, manifest: ImageManifest): Promise<ImageConfig> {
  if (!CONFIG_TYPES.has(manifest.config.mediaType)) throw new ManifestError(`${source.description} is not a container image: its config has media type ${manifest.config.mediaType}`);
  return parseImageConfig(await source.blobBytes(manifest.config), manifest.layers.length, source.description);
}

/** The parts of an image config the converter changes, checked against the manifest's layers. */
export function parseImageConfig(bytes: Buffer, layerCount: number, where: string): ImageConfig {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new ManifestError(`${where} is not a container image: its config is not JSON`);
  }
  const record = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
  if (!record(json) || !record(json.rootfs) || !Array.isArray(json.rootfs.diff_ids)) throw new ManifestError(`${where} is not a container image: its config has no rootfs.diff_ids`);
  const diffIds = json.rootfs.diff_ids;
  if (!diffIds.every(isDigest)) throw new ManifestError(`${where}: config rootfs.diff_ids holds something that is not a sha256 digest`);
  if (diffIds.length !== layerCount) throw new ManifestError(`${where}: config lists ${diffIds.length} diff_ids for ${layerCount} layers`);
  const platform = typeof json.os === 'string' && typeof json.architecture === 'string' ? { os: json.os, architecture: json.architecture, ...(typeof json.variant === 'string' ? { variant: json.variant } : {}) } : undefined;
  return { json, rootfs: json.rootfs, diffIds, ...(platform ? { platform } : {}) };
}
