/**
 * `lazypull soci create`: a SOCI index for an image, without containerd. Each selected image manifest's
 * gzip (or uncompressed tar) layers of at least the minimum size get a zTOC (built in one streaming
 * pass over the blob, checked against its digest); the zTOCs, the `{}` config and the SOCI index
 * manifest are pushed, then the index is bound to the image:
 * - v2 (as `soci convert`): a new image at DST whose manifests carry the index-digest annotation, and
 *   whose OCI index lists each SOCI index beside its manifest (artifactType, platform, manifest digest);
 * - v1: the index names the manifest as its `subject`, in the image's repository, and the OCI
 *   referrers tag `sha256-<hex>` (an index of referrers) lists it where the registry has no referrers API.
 * Tags are written last, after every blob and manifest, so a failure leaves every tag as it was.
 */
import { Readable } from 'node:stream';
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
  type Platform,
} from '../../src/remote/index.js';
import { buildZtoc, DEFAULT_MIN_LAYER_SIZE, UnsupportedLayerError } from '../../src/soci/build.js';
import { DEFAULT_SPAN_SIZE } from '../../src/soci/checkpoints.js';
import { EMPTY_CONFIG, EMPTY_CONFIG_DIGEST, referrersTagOf, serializeSociIndex, SociAnnotations, SociMediaTypes, type SociIndexVersion, type SociZtocRef } from '../../src/soci/index-manifest.js';
import { sha256, type Digest } from '../../src/util/digest.js';
import { readPieces, verifiedPieces } from '../convert/blob-stream.js';
import { isTarLayer, readImageConfig, type ImageDestination, type ImageSource } from '../convert/index.js';
import { allSettledOrThrow, TaskLimiter } from '../convert/limiter.js';
import type { FetchedDocument } from '../convert/store.js';
import type { ReferrersStore } from './referrers.js';

export interface CreateSociOptions {
  /** Uncompressed bytes per span (default 4 MiB). */
  spanSize?: number;
  /** Layers smaller than this (compressed) get no zTOC (default 10 MiB). */
  minLayerSize?: number;
  /** Index entries to index: this platform's (default: the host's), or every image entry. */
  platform?: Platform;
  allPlatforms?: boolean;
  /** Layers read at the same time (default 2). */
  parallelLayers?: number;
  /** Progress lines (a zTOC built, a layer skipped and why). */
  note?: (line: string) => void;
}

export interface SociLayerOutcome {
  layer: Descriptor;
  ztoc?: { digest: Digest; size: number; spans: number; files: number };
  /** Why the layer got no zTOC. */
  skipped?: string;
}

export interface SociManifestOutcome {
  /** The image manifest as SRC has it. */
  image: Descriptor;
  platform?: Platform;
  layers: SociLayerOutcome[];
  /** The SOCI index manifest. */
  index: Descriptor;
  /** v2: the image manifest rewritten with the index-digest annotation. */
  bound?: Descriptor;
}

export interface CreateSociResult {
  version: SociIndexVersion;
  manifests: SociManifestOutcome[];
  /** What was tagged, in order (the last step): `name` is the tag's full name. */
  tagged: { name: string; descriptor: Descriptor }[];
  /** v1 indexes the registry lists through its referrers API, so no tag was needed. */
  listedByRegistry: Digest[];
}

const DEFAULT_PARALLEL_LAYERS = 2;
const isNonDistributable = (mediaType: string): boolean => mediaType.includes('nondistributable') || mediaType.includes('foreign');

/** v2: SRC's image (the selected platforms rewritten, the others copied as they are) with SOCI indexes, tagged at DST. */
export async function createSociV2(source: ImageSource, destination: ImageDestination, options: CreateSociOptions = {}): Promise<CreateSociResult> {
  const creator = new SociCreator(source, destination, 'v2', options);
  const root = await source.root();
  const raw = JSON.parse(root.bytes.toString('utf8')) as Record<string, unknown>;
  let manifests: Descriptor[];
  let outcomes: SociManifestOutcome[];
  if (root.document.kind === 'manifest') {
    const made = await creator.bindV2(root, await creator.indexManifest(root));
    outcomes = [made];
    manifests = [made.bound!, sociEntry(made)];
  } else {
    const index = root.document.index;
    const selected = selectImageEntries(index, options, source.description);
    outcomes = await allSettledOrThrow(
      selected.map(async (entry) => {
        const image = await creator.imageManifest(entry);
        return creator.bindV2(image, await creator.indexManifest(image));
      }),
    );
    const byImage = new Map(outcomes.map((o) => [o.image.digest, o]));
    manifests = (
      await allSettledOrThrow(
        index.manifests.map(async (entry): Promise<Descriptor[]> => {
          const made = byImage.get(entry.digest);
          if (made) return [{ ...entry, mediaType: made.bound!.mediaType, digest: made.bound!.digest, size: made.bound!.size }, sociEntry(made)];
          // An older SOCI index of a manifest rewritten here is replaced by the new one.
          const boundTo = entry.annotations?.[SociAnnotations.imageManifestDigest];
          if (entry.artifactType === SociMediaTypes.indexV2 && boundTo !== undefined && byImage.has(boundTo as Digest)) return [];
          await creator.copyManifest(entry);
          return [entry];
        }),
      )
    ).flat();
    delete raw.manifests;
  }
  const bytes = Buffer.from(JSON.stringify({ ...(root.document.kind === 'index' ? raw : {}), schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests }));
  const descriptor: Descriptor = { mediaType: MediaTypes.ociIndex, digest: sha256(bytes), size: bytes.length };
  await destination.tag(bytes, descriptor);
  return { version: 'v2', manifests: outcomes, tagged: [{ name: destination.description, descriptor }], listedByRegistry: [] };
}

/**
 * v1: a SOCI index per selected manifest, with the manifest as its subject, in SRC's repository; each
 * manifest's referrers tag lists it unless the registry lists referrers itself.
 */
export async function createSociV1(source: ImageSource, repository: ReferrersStore, options: CreateSociOptions = {}): Promise<CreateSociResult> {
  const creator = new SociCreator(source, repository.destination, 'v1', options);
  const root = await source.root();
  const images = root.document.kind === 'manifest' ? [root] : await Promise.all(selectImageEntries(root.document.index, options, source.description).map((entry) => creator.imageManifest(entry)));
  const outcomes = await allSettledOrThrow(images.map((image) => creator.indexManifest(image)));
  const tagged: CreateSociResult['tagged'] = [];
  const listedByRegistry: Digest[] = [];
  for (const made of outcomes) {
    const listed = await repository.listed(made.image.digest, SociMediaTypes.indexV1);
    if (listed?.some((d) => d.digest === made.index.digest)) {
      listedByRegistry.push(made.index.digest);
      continue;
    }
    const tag = referrersTagOf(made.image.digest);
    const bytes = referrersIndex(await repository.readTag(tag), { ...made.index, artifactType: SociMediaTypes.indexV1 });
    const descriptor: Descriptor = { mediaType: MediaTypes.ociIndex, digest: sha256(bytes), size: bytes.length };
    const target = await repository.openTag(tag);
    await target.tag(bytes, descriptor);
    tagged.push({ name: target.description, descriptor });
  }
  return { version: 'v1', manifests: outcomes, tagged, listedByRegistry };
}

/**
 * The OCI tag schema's index of referrers with `entry` added (replacing an entry of the same digest).
 * What the tag held is kept: an index's other entries, or a manifest pushed straight under the tag
 * (some tools push a SOCI index that way) as an entry of its own.
 */
export function referrersIndex(existing: FetchedDocument | undefined, entry: Descriptor): Buffer {
  let raw: Record<string, unknown> = {};
  let manifests: unknown[] = [];
  if (existing?.document.kind === 'index') {
    raw = JSON.parse(existing.bytes.toString('utf8')) as Record<string, unknown>;
    manifests = Array.isArray(raw.manifests) ? raw.manifests : [];
  } else if (existing?.document.kind === 'manifest') {
    manifests = [{ ...existing.descriptor, size: existing.bytes.length, artifactType: existing.document.manifest.config.mediaType }];
  }
  const others = manifests.filter((m) => !(typeof m === 'object' && m !== null && (m as { digest?: unknown }).digest === entry.digest));
  return Buffer.from(JSON.stringify({ ...raw, schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: [...others, entry] }));
}

/** The image index entry that binds a v2 SOCI index to its (rewritten) image manifest. */
function sociEntry(made: SociManifestOutcome): Descriptor {
  return {
    ...made.index,
    artifactType: SociMediaTypes.indexV2,
    ...(made.platform ? { platform: made.platform } : {}),
    annotations: { [SociAnnotations.imageManifestDigest]: made.bound!.digest },
  };
}

/**
 * The image entries of an index to index: every one with --all-platforms, else those of the platform
 * (and those without one). Artifacts (entries with an artifactType, such as SOCI indexes) and
 * attestation manifests (platform unknown/unknown) are never images to index.
 */
export function selectImageEntries(index: ImageIndex, options: Pick<CreateSociOptions, 'platform' | 'allPlatforms'>, where: string): Descriptor[] {
  const images = index.manifests.filter((m) => isManifestMediaType(m.mediaType) && m.artifactType === undefined && m.platform?.os !== 'unknown');
  if (images.length === 0) throw new ManifestError(`${where}: the index lists no image manifest`);
  if (options.allPlatforms) return images;
  const wanted = options.platform ?? hostPlatform();
  const chosen = images.filter((m) => !m.platform || platformMatches(wanted, m.platform));
  return chosen.length > 0 ? chosen : [selectPlatform(index, wanted)];
}

class SociCreator {
  private readonly limiter: TaskLimiter;
  private readonly ztocs = new Map<Digest, Promise<SociLayerOutcome>>();
  private readonly copies = new Map<Digest, Promise<void>>();
  private readonly manifests = new Map<Digest, Promise<FetchedDocument>>();
  private readonly spanSize: number;
  private readonly minLayerSize: number;
  private readonly note: (line: string) => void;

  constructor(
    private readonly source: ImageSource,
    private readonly destination: ImageDestination,
    private readonly version: SociIndexVersion,
    options: CreateSociOptions,
  ) {
    this.limiter = new TaskLimiter(options.parallelLayers ?? DEFAULT_PARALLEL_LAYERS);
    this.spanSize = options.spanSize ?? DEFAULT_SPAN_SIZE;
    this.minLayerSize = options.minLayerSize ?? DEFAULT_MIN_LAYER_SIZE;
    this.note = options.note ?? (() => undefined);
    if (!Number.isSafeInteger(this.spanSize) || this.spanSize < 1) throw new RangeError(`span size must be a positive number of bytes, got ${this.spanSize}`);
  }

  /** An index entry's manifest, fetched once and refused unless it is an image manifest. */
  imageManifest(entry: Descriptor): Promise<FetchedDocument> {
    return once(this.manifests, entry.digest, async () => {
      const fetched = await this.source.manifest(entry);
      if (fetched.document.kind !== 'manifest') throw new ManifestError(`${this.source.description}: index entry ${entry.digest} is a nested index, which is not supported`);
      return { ...fetched, descriptor: { ...fetched.descriptor, ...(entry.platform ? { platform: entry.platform } : {}) } };
    });
  }

  /** zTOCs for the manifest's layers, then the `{}` config and the SOCI index manifest, pushed by digest. */
  async indexManifest(image: FetchedDocument): Promise<SociManifestOutcome> {
    if (image.document.kind !== 'manifest') throw new ManifestError(`${this.source.description}: expected an image manifest`);
    const manifest = image.document.manifest;
    const config = await readImageConfig(this.source, manifest);
    const layers = await allSettledOrThrow(manifest.layers.map((layer) => once(this.ztocs, layer.digest, () => this.limiter.run(() => this.ztocOf(layer)))));
    const ztocs: SociZtocRef[] = layers.flatMap(({ layer, ztoc }) => (ztoc ? [{ digest: ztoc.digest, size: ztoc.size, layerDigest: layer.digest, layerMediaType: layer.mediaType, spanSize: this.spanSize, disableXattrs: false }] : []));
    const imageDescriptor: Descriptor = { ...image.descriptor, size: image.bytes.length };
    if (ztocs.length === 0) {
      const why = layers.map((l) => `${l.layer.digest}: ${l.skipped}`).join('; ');
      throw new Error(`${this.source.description}: no layer of manifest ${image.descriptor.digest} gets a zTOC, so there is nothing to index (${why || 'it has no layers'})`);
    }
    await this.destination.putBlob({ digest: EMPTY_CONFIG_DIGEST, size: EMPTY_CONFIG.length }, bytesBody(EMPTY_CONFIG));
    const subject = { mediaType: imageDescriptor.mediaType, digest: imageDescriptor.digest, size: imageDescriptor.size };
    const bytes = serializeSociIndex({ version: this.version, ztocs, ...(this.version === 'v1' ? { subject } : {}) });
    await this.destination.putManifest(bytes, MediaTypes.ociManifest);
    const platform = image.descriptor.platform ?? config.platform;
    return { image: imageDescriptor, ...(platform ? { platform } : {}), layers, index: { mediaType: MediaTypes.ociManifest, digest: sha256(bytes), size: bytes.length } };
  }

  /** v2: the image's config and layers into DST, and the manifest again with the index-digest annotation. */
  async bindV2(image: FetchedDocument, made: SociManifestOutcome): Promise<SociManifestOutcome> {
    await this.copyBlobsOf(image);
    const raw = JSON.parse(image.bytes.toString('utf8')) as Record<string, unknown>;
    const annotations = { ...(raw.annotations as Record<string, string> | undefined), [SociAnnotations.indexDigest]: made.index.digest };
    const bytes = Buffer.from(JSON.stringify({ ...raw, annotations }));
    await this.destination.putManifest(bytes, made.image.mediaType);
    return { ...made, bound: { mediaType: made.image.mediaType, digest: sha256(bytes), size: bytes.length, ...(made.platform ? { platform: made.platform } : {}) } };
  }

  /** An index entry this run does not index, copied to DST as it is (the new index still lists it). */
  async copyManifest(entry: Descriptor): Promise<void> {
    const fetched = await this.imageManifest(entry);
    await this.copyBlobsOf(fetched);
    await this.destination.putManifest(fetched.bytes, fetched.descriptor.mediaType);
  }

  private async copyBlobsOf(image: FetchedDocument): Promise<void> {
    if (image.document.kind !== 'manifest') return;
    const blobs = [image.document.manifest.config, ...image.document.manifest.layers].filter((b) => !isNonDistributable(b.mediaType));
    await allSettledOrThrow(blobs.map((blob) => once(this.copies, blob.digest, () => this.limiter.run(() => this.copyBlob(blob)))));
  }

  /** A blob of SRC into DST unchanged: present already, mounted from SRC's repository, or streamed. */
  private async copyBlob(descriptor: Descriptor): Promise<void> {
    const blob = await this.source.openBlob(descriptor);
    try {
      const body = { size: descriptor.size, open: (start: number, end: number) => Readable.from(readPieces(blob, start, end)) };
      await this.destination.putBlob(descriptor, body, this.source.registryRepository);
    } finally {
      await blob.close?.();
    }
  }

  private async ztocOf(layer: Descriptor): Promise<SociLayerOutcome> {
    const skipped = this.skipReason(layer);
    if (skipped) return this.skip(layer, skipped);
    const blob = await this.source.openBlob(layer);
    let built;
    try {
      built = await buildZtoc(verifiedPieces(readPieces(blob), layer.digest), { spanSize: this.spanSize, minLayerSize: 0 });
    } catch (err) {
      if (err instanceof UnsupportedLayerError) return this.skip(layer, err.message);
      throw new Error(`layer ${layer.digest}: cannot build its zTOC (is it a tar or a tar.gz?): ${(err as Error).message}`, { cause: err });
    } finally {
      await blob.close?.();
    }
    if (!built) throw new Error(`layer ${layer.digest}: no zTOC was built`);
    await this.destination.putBlob({ digest: built.digest, size: built.bytes.length }, bytesBody(built.bytes));
    const ztoc = { digest: built.digest, size: built.bytes.length, spans: built.ztoc.maxSpanId + 1, files: built.ztoc.files.length };
    this.note(`layer ${layer.digest}: zTOC ${ztoc.digest} (${ztoc.spans} spans, ${ztoc.files} files)`);
    return { layer, ztoc };
  }

  private skipReason(layer: Descriptor): string | undefined {
    if (isNonDistributable(layer.mediaType)) return 'non-distributable layer';
    if (layer.mediaType.includes('zstd')) return 'zstd layers are not indexed by SOCI';
    if (!isTarLayer(layer.mediaType)) return `not a tar layer (${layer.mediaType})`;
    if (layer.size < this.minLayerSize) return `${layer.size} bytes, below the minimum layer size of ${this.minLayerSize} bytes`;
    return undefined;
  }

  private skip(layer: Descriptor, why: string): SociLayerOutcome {
    this.note(`layer ${layer.digest}: no zTOC: ${why}`);
    return { layer, skipped: why };
  }
}

/** One shared promise per key: a layer, blob or manifest shared by several manifests is handled once. */
function once<T>(map: Map<Digest, Promise<T>>, key: Digest, load: () => Promise<T>): Promise<T> {
  let pending = map.get(key);
  if (!pending) {
    pending = load();
    map.set(key, pending);
  }
  return pending;
}
