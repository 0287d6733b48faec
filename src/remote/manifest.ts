import { isDigest, type Digest } from '../util/digest.js';
import { ManifestError } from './errors.js';
import { isIndexMediaType, isManifestMediaType } from './media-types.js';
import { formatPlatform, platformMatches, type Platform } from './platform.js';

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  annotations?: Record<string, string>;
  platform?: Platform;
  urls?: string[];
  /** OCI 1.1: what kind of artifact the descriptor points at (referrers, SOCI index entries). */
  artifactType?: string;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export type ManifestDocument = { kind: 'manifest'; manifest: ImageManifest } | { kind: 'index'; index: ImageIndex };

/** Manifests and indexes are small; anything bigger is refused before it is read. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseDescriptor(value: unknown, where: string): Descriptor {
  if (!isRecord(value)) throw new ManifestError(`${where}: not an object`);
  const { mediaType, digest, size, annotations, platform, urls, artifactType } = value;
  if (typeof mediaType !== 'string') throw new ManifestError(`${where}: mediaType missing`);
  if (!isDigest(digest)) throw new ManifestError(`${where}: digest ${JSON.stringify(digest)} is not a sha256 digest`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw new ManifestError(`${where}: invalid size ${JSON.stringify(size)}`);
  const descriptor: Descriptor = { mediaType, digest, size };
  if (isRecord(annotations)) descriptor.annotations = Object.fromEntries(Object.entries(annotations).filter((e): e is [string, string] => typeof e[1] === 'string'));
  if (isRecord(platform) && typeof platform.os === 'string' && typeof platform.architecture === 'string') {
    descriptor.platform = { os: platform.os, architecture: platform.architecture, ...(typeof platform.variant === 'string' ? { variant: platform.variant } : {}) };
  }
  if (Array.isArray(urls)) descriptor.urls = urls.filter((u): u is string => typeof u === 'string');
  if (typeof artifactType === 'string') descriptor.artifactType = artifactType;
  return descriptor;
}

/**
 * Parses an OCI/Docker manifest or index. The media type comes from the document, else from the
 * Content-Type, else from its shape (`manifests` means index), as containerd does.
 */
export function parseManifestDocument(body: Buffer, contentType?: string): ManifestDocument {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new ManifestError(`manifest is not valid JSON: ${(err as Error).message}`);
  }
  if (!isRecord(json)) throw new ManifestError('manifest is not a JSON object');
  if (json.schemaVersion !== 2) throw new ManifestError(`unsupported manifest schemaVersion ${JSON.stringify(json.schemaVersion)} (only 2 is supported)`);
  const declared = typeof json.mediaType === 'string' ? json.mediaType : contentType?.split(';')[0]?.trim();
  const mediaType = declared && (isIndexMediaType(declared) || isManifestMediaType(declared)) ? declared : Array.isArray(json.manifests) ? 'application/vnd.oci.image.index.v1+json' : 'application/vnd.oci.image.manifest.v1+json';
  const annotations = isRecord(json.annotations) ? (json.annotations as Record<string, string>) : undefined;
  if (isIndexMediaType(mediaType)) {
    if (!Array.isArray(json.manifests)) throw new ManifestError('index has no manifests array');
    const manifests = json.manifests.map((m, i) => parseDescriptor(m, `manifests[${i}]`));
    return { kind: 'index', index: { schemaVersion: 2, mediaType, manifests, ...(annotations ? { annotations } : {}) } };
  }
  if (!Array.isArray(json.layers)) throw new ManifestError('manifest has no layers array');
  const config = parseDescriptor(json.config, 'config');
  const layers = json.layers.map((l, i) => parseDescriptor(l, `layers[${i}]`));
  return { kind: 'manifest', manifest: { schemaVersion: 2, mediaType, config, layers, ...(annotations ? { annotations } : {}) } };
}

/** The index entry for `wanted`; exact variant matches win over entries without variant. */
export function selectPlatform(index: ImageIndex, wanted: Platform): Descriptor {
  // Entries with an artifactType (a SOCI index beside its image, say) are artifacts, not runnable images.
  const candidates = index.manifests.filter((m) => isManifestMediaType(m.mediaType) && m.artifactType === undefined && m.platform && platformMatches(wanted, m.platform));
  const exact = candidates.find((m) => m.platform?.variant === wanted.variant);
  const chosen = exact ?? candidates[0];
  if (!chosen) {
    const available = index.manifests.map((m) => (m.platform ? formatPlatform(m.platform) : 'unknown')).join(', ');
    throw new ManifestError(`no manifest for platform ${formatPlatform(wanted)} in the index (available: ${available || 'none'})`);
  }
  return chosen;
}
