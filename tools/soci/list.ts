/**
 * `lazypull soci index list`: the SOCI indexes of an image, found the ways soci-snapshotter finds them:
 * v2 through the image index's SOCI entries and the image manifests' index-digest annotation; v1
 * through the OCI referrers API, or the `sha256-<hex>` referrers tag where the registry has none.
 */
import { isManifestMediaType, MediaTypes, type Descriptor, type Platform } from '../../src/remote/index.js';
import { parseSociIndex, referrersTagOf, SociAnnotations, SociMediaTypes, v1IndexesAtReferrersTag, type SociIndexVersion } from '../../src/soci/index-manifest.js';
import { isDigest, type Digest } from '../../src/util/digest.js';
import { readImageConfig, type ImageSource } from '../convert/index.js';
import type { FetchedDocument } from '../convert/store.js';
import type { ReferrersLookup } from './referrers.js';

export type SociDiscovery = 'image index' | 'manifest annotation' | 'referrers API' | 'referrers tag';

export interface ListedSociIndex {
  digest: Digest;
  /** Undefined when the manifest found is not a SOCI index (see `error`). */
  version?: SociIndexVersion;
  /** The image manifest the index belongs to. */
  imageManifest: Digest;
  platform?: Platform;
  ztocs: number;
  foundBy: SociDiscovery[];
  /** Why the index could not be read, or does not belong to the manifest that led to it. */
  error?: string;
}

interface Found {
  digest: Digest;
  size?: number;
  imageManifest: Digest;
  platform?: Platform;
  foundBy: SociDiscovery;
}

export async function listSociIndexes(source: ImageSource, referrers: ReferrersLookup): Promise<ListedSociIndex[]> {
  const root = await source.root();
  const found: Found[] = [];
  const images: { image: FetchedDocument; platform?: Platform }[] = [];
  if (root.document.kind === 'manifest') {
    // A lone manifest's platform is its config's (when it is an image's config).
    const config = await readImageConfig(source, root.document.manifest).catch(() => undefined);
    images.push({ image: root, ...(config?.platform ? { platform: config.platform } : {}) });
  }
  else {
    for (const entry of root.document.index.manifests) {
      const boundTo = entry.annotations?.[SociAnnotations.imageManifestDigest];
      if (entry.artifactType === SociMediaTypes.indexV2 && isDigest(boundTo)) found.push({ digest: entry.digest, size: entry.size, imageManifest: boundTo, ...platformOf(entry), foundBy: 'image index' });
      else if (isManifestMediaType(entry.mediaType) && entry.artifactType === undefined) images.push({ image: await source.manifest(entry), ...platformOf(entry) });
    }
  }
  for (const { image, platform } of images) {
    const digest = image.descriptor.digest;
    const at = { imageManifest: digest, ...(platform ? { platform } : {}) };
    const bound = image.document.kind === 'manifest' ? image.document.manifest.annotations?.[SociAnnotations.indexDigest] : undefined;
    if (isDigest(bound)) found.push({ digest: bound, ...at, foundBy: 'manifest annotation' });
    const listed = await referrers.listed(digest, SociMediaTypes.indexV1);
    if (listed) {
      for (const d of listed.filter((r) => r.artifactType === SociMediaTypes.indexV1)) found.push({ digest: d.digest, size: d.size, ...at, foundBy: 'referrers API' });
      continue;
    }
    const tagged = await referrers.readTag(referrersTagOf(digest));
    if (tagged) for (const d of v1IndexesAtReferrersTag({ digest: tagged.descriptor.digest, document: tagged.document })) found.push({ digest: d, ...at, foundBy: 'referrers tag' });
  }
  return Promise.all(merge(found).map((f) => describe(source, f)));
}

/** One row per index and image manifest, with every way it was found. */
function merge(found: Found[]): (Omit<Found, 'foundBy'> & { foundBy: SociDiscovery[] })[] {
  const rows = new Map<string, Omit<Found, 'foundBy'> & { foundBy: SociDiscovery[] }>();
  for (const f of found) {
    const key = `${f.digest} ${f.imageManifest}`;
    const row = rows.get(key);
    if (row) {
      row.foundBy.push(f.foundBy);
      row.size ??= f.size;
      row.platform ??= f.platform;
    } else rows.set(key, { ...f, foundBy: [f.foundBy] });
  }
  return [...rows.values()];
}

async function describe(source: ImageSource, found: Omit<Found, 'foundBy'> & { foundBy: SociDiscovery[] }): Promise<ListedSociIndex> {
  const row = { digest: found.digest, imageManifest: found.imageManifest, ...(found.platform ? { platform: found.platform } : {}), foundBy: found.foundBy };
  try {
    // Both sources read a manifest by its digest (and check it); the size is not always known here.
    const fetched = await source.manifest({ mediaType: MediaTypes.ociManifest, digest: found.digest, size: found.size ?? 0 });
    const index = parseSociIndex(fetched.bytes);
    const mismatch = index.version === 'v1' && index.subject?.digest !== found.imageManifest ? `its subject is ${index.subject?.digest ?? 'missing'}, not the image manifest` : undefined;
    return { ...row, version: index.version, ztocs: index.ztocs.length, ...(mismatch ? { error: mismatch } : {}) };
  } catch (err) {
    return { ...row, ztocs: 0, error: (err as Error).message };
  }
}

function platformOf(entry: Descriptor): { platform?: Platform } {
  return entry.platform ? { platform: entry.platform } : {};
}
