/**
 * The SOCI index artifact: an OCI image manifest whose config media type names the SOCI index version
 * and whose layers are zTOC blobs, each annotated with the image layer it indexes. Shared by the
 * `soci create` writer and the daemon's discovery, so both agree on every name and rule.
 */
import type { ManifestDocument } from '../remote/manifest.js';
import { isDigest, type Digest } from '../util/digest.js';

export const SociMediaTypes = {
  indexV1: 'application/vnd.amazon.soci.index.v1+json',
  indexV2: 'application/vnd.amazon.soci.index.v2+json',
  ztoc: 'application/octet-stream',
  prefetch: 'application/vnd.amazon.soci.prefetch.v1+json',
} as const;

export const SociAnnotations = {
  /** On a zTOC descriptor: the image layer it indexes (the only runtime link between them). */
  imageLayerDigest: 'com.amazon.soci.image-layer-digest',
  imageLayerMediaType: 'com.amazon.soci.image-layer-mediaType',
  spanSize: 'com.amazon.soci.span-size',
  disableXattrs: 'com.amazon.soci.disable-xattrs',
  buildTool: 'com.amazon.soci.build-tool-identifier',
  /** v2: on the image manifest, the SOCI index bound to it. */
  indexDigest: 'com.amazon.soci.index-digest',
  /** v2: on the image index entry of a SOCI index, the image manifest it belongs to. */
  imageManifestDigest: 'com.amazon.soci.image-manifest-digest',
} as const;

/** The label a client can set on a layer Prepare to name the SOCI index directly. */
export const SOCI_INDEX_DIGEST_LABEL = 'containerd.io/snapshot/remote/soci.index.digest';

/** The 2-byte `{}` config every SOCI index points at. */
export const EMPTY_CONFIG = Buffer.from('{}');
export const EMPTY_CONFIG_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a' as Digest;

export type SociIndexVersion = 'v1' | 'v2';

/** One zTOC listed in a SOCI index. */
export interface SociZtocRef {
  digest: Digest;
  size: number;
  layerDigest: Digest;
  layerMediaType?: string;
  spanSize?: number;
  disableXattrs: boolean;
}

export interface SociIndex {
  version: SociIndexVersion;
  ztocs: SociZtocRef[];
  /** v1: the image manifest the index belongs to. */
  subject?: { mediaType: string; digest: Digest; size: number };
  buildTool?: string;
}

export class SociIndexError extends Error {
  override name = 'SociIndexError';
}

export function sociIndexVersionOf(configMediaType: string): SociIndexVersion | undefined {
  if (configMediaType === SociMediaTypes.indexV1) return 'v1';
  if (configMediaType === SociMediaTypes.indexV2) return 'v2';
  return undefined;
}

export function sociIndexMediaType(version: SociIndexVersion): string {
  return version === 'v1' ? SociMediaTypes.indexV1 : SociMediaTypes.indexV2;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Parses SOCI index manifest bytes. Untrusted input: anything that is not a SOCI index, or a zTOC entry
 * without a valid layer digest, is a SociIndexError; prefetch blobs and other layers are skipped.
 */
export function parseSociIndex(bytes: Uint8Array): SociIndex {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new SociIndexError(`SOCI index is not JSON: ${(err as Error).message}`);
  }
  if (!isRecord(json) || !isRecord(json.config) || !Array.isArray(json.layers)) throw new SociIndexError('SOCI index is not an image manifest (config and layers missing)');
  const configType = json.config.mediaType;
  const version = typeof configType === 'string' ? sociIndexVersionOf(configType) : undefined;
  if (!version) throw new SociIndexError(`manifest config media type ${JSON.stringify(configType)} is not a SOCI index`);
  const ztocs = json.layers.flatMap((layer, i) => {
    if (!isRecord(layer) || layer.mediaType === SociMediaTypes.prefetch) return [];
    return [parseZtocRef(layer, i)];
  });
  const subject = isRecord(json.subject) && typeof json.subject.mediaType === 'string' && isDigest(json.subject.digest) && typeof json.subject.size === 'number' ? { mediaType: json.subject.mediaType, digest: json.subject.digest, size: json.subject.size } : undefined;
  const buildTool = isRecord(json.annotations) && typeof json.annotations[SociAnnotations.buildTool] === 'string' ? json.annotations[SociAnnotations.buildTool] : undefined;
  return { version, ztocs, ...(subject ? { subject } : {}), ...(typeof buildTool === 'string' ? { buildTool } : {}) };
}

function parseZtocRef(layer: Record<string, unknown>, i: number): SociZtocRef {
  const where = `SOCI index layer ${i}`;
  const annotations = isRecord(layer.annotations) ? layer.annotations : {};
  const layerDigest = annotations[SociAnnotations.imageLayerDigest];
  if (!isDigest(layer.digest)) throw new SociIndexError(`${where}: digest ${JSON.stringify(layer.digest)} is not a sha256 digest`);
  if (typeof layer.size !== 'number' || !Number.isSafeInteger(layer.size) || layer.size < 0) throw new SociIndexError(`${where}: invalid size ${JSON.stringify(layer.size)}`);
  if (!isDigest(layerDigest)) throw new SociIndexError(`${where}: annotation ${SociAnnotations.imageLayerDigest} is missing or not a digest`);
  const mediaType = annotations[SociAnnotations.imageLayerMediaType];
  const spanText = annotations[SociAnnotations.spanSize];
  const spanSize = typeof spanText === 'string' && /^\d{1,15}$/.test(spanText) ? Number(spanText) : undefined;
  return {
    digest: layer.digest,
    size: layer.size,
    layerDigest,
    ...(typeof mediaType === 'string' ? { layerMediaType: mediaType } : {}),
    ...(spanSize !== undefined ? { spanSize } : {}),
    disableXattrs: annotations[SociAnnotations.disableXattrs] === 'true',
  };
}

/** The bytes of a SOCI index manifest for these zTOCs (v1 with its subject, v2 without). */
export function serializeSociIndex(index: SociIndex): Buffer {
  if (index.version === 'v1' && !index.subject) throw new SociIndexError('a v1 SOCI index needs the image manifest as its subject');
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: sociIndexMediaType(index.version), digest: EMPTY_CONFIG_DIGEST, size: EMPTY_CONFIG.length },
    layers: index.ztocs.map((ztoc) => ({
      mediaType: SociMediaTypes.ztoc,
      digest: ztoc.digest,
      size: ztoc.size,
      annotations: {
        [SociAnnotations.imageLayerDigest]: ztoc.layerDigest,
        ...(ztoc.layerMediaType ? { [SociAnnotations.imageLayerMediaType]: ztoc.layerMediaType } : {}),
        ...(ztoc.spanSize !== undefined ? { [SociAnnotations.spanSize]: String(ztoc.spanSize) } : {}),
        ...(ztoc.disableXattrs ? { [SociAnnotations.disableXattrs]: 'true' } : {}),
      },
    })),
    ...(index.version === 'v1' && index.subject ? { subject: index.subject } : {}),
    annotations: { [SociAnnotations.buildTool]: index.buildTool ?? 'lazypull' },
  };
  return Buffer.from(JSON.stringify(manifest));
}

/** The `sha256-<hex>` tag registries without the referrers API use to list a manifest's referrers. */
export function referrersTagOf(manifestDigest: Digest): string {
  return manifestDigest.replace(':', '-');
}

/**
 * The v1 SOCI indexes a `sha256-<hex>` referrers tag names: the tag points at an OCI index of
 * referrers (the OCI tag schema, what `soci create --v1` writes), whose v1 entries carry the
 * artifactType; or, as some tools push it, at a v1 SOCI index itself.
 */
export function v1IndexesAtReferrersTag(tagged: { digest: Digest; document: ManifestDocument }): Digest[] {
  if (tagged.document.kind === 'index') return tagged.document.index.manifests.filter((m) => m.artifactType === SociMediaTypes.indexV1).map((m) => m.digest);
  return sociIndexVersionOf(tagged.document.manifest.config.mediaType) === 'v1' ? [tagged.digest] : [];
}
