/**
 * Finds the zTOC of a plain gzip layer, in soci-snapshotter's order: the SOCI index named by the
 * layer's label, else the one the image manifest names in its v2 annotation, else (opt-in) the v1
 * indexes that refer to the image manifest through the referrers API or its `sha256-<hex>` tag.
 * What it finds is a pointer; the resolver fetches the zTOC and checks it against its digest.
 */
import type { ImageManifest, ImageReference, RegistryClient } from '../remote/index.js';
import { ManifestNotFoundError } from '../remote/index.js';
import { SociAnnotations, SociMediaTypes, parseSociIndex, referrersTagOf, v1IndexesAtReferrersTag, type SociIndex, type SociZtocRef } from '../soci/index-manifest.js';
import { isDigest, type Digest } from '../util/digest.js';
import type { LayerTarget } from './layer-labels.js';

export interface SociFound {
  ztoc: SociZtocRef;
  indexDigest: Digest;
  /** How the index was found: label, v2 annotation or referrers. */
  via: string;
}

export type SociDiscoveryResult = { found: SociFound } | { missing: string };

export interface SociDiscoveryOptions {
  client: RegistryClient;
  /** Also look v1 indexes up through the referrers API and the `sha256-<hex>` tag (one or two more requests per image). */
  referrers: boolean;
}

interface Candidate {
  digest: Digest;
  via: string;
}

export class SociDiscovery {
  private readonly indexes = new Map<Digest, Promise<SociIndex>>();
  private readonly v1Lists = new Map<Digest, Promise<Digest[]>>();

  constructor(private readonly options: SociDiscoveryOptions) {}

  /**
   * The zTOC for `target`'s layer, or why there is none. An index that was named but cannot be read is
   * an error (the layer falls back with it); not finding any index is an answer, not an error.
   */
  async find(target: LayerTarget, manifest: ImageManifest | undefined, signal?: AbortSignal): Promise<SociDiscoveryResult> {
    const candidates = await this.candidates(target, manifest, signal);
    if ('missing' in candidates) return candidates;
    for (const candidate of candidates) {
      const index = await this.index(target.image, candidate.digest, signal);
      const ztoc = index.ztocs.find((z) => z.layerDigest === target.digest);
      if (ztoc) return { found: { ztoc, indexDigest: candidate.digest, via: candidate.via } };
    }
    const names = candidates.map((c) => `${c.digest} (${c.via})`).join(', ');
    return { missing: `the SOCI index ${names} has no zTOC for this layer (layers under the index's minimum layer size get none)` };
  }

  /** The zTOCs an already read index lists for these layers (pre-resolving the next layers' Prepares). */
  async listed(target: LayerTarget, manifest: ImageManifest | undefined): Promise<SociZtocRef[]> {
    const candidates = await this.candidates(target, manifest);
    if ('missing' in candidates || candidates.length === 0) return [];
    const index = await this.index(target.image, candidates[0]!.digest);
    return index.ztocs.filter((z) => target.layers.includes(z.layerDigest));
  }

  private async candidates(target: LayerTarget, manifest: ImageManifest | undefined, signal?: AbortSignal): Promise<Candidate[] | { missing: string }> {
    if (target.sociIndexDigest) return [{ digest: target.sociIndexDigest, via: 'label' }];
    const bound = manifest?.annotations?.[SociAnnotations.indexDigest];
    if (isDigest(bound)) return [{ digest: bound, via: 'v2 annotation' }];
    const where = manifest ? `the image manifest has no ${SociAnnotations.indexDigest} annotation` : 'no SOCI index label and no manifest digest label to find one through';
    if (!this.options.referrers || !target.manifestDigest) return { missing: `no SOCI index: ${where}${this.options.referrers ? '' : ' (v1 lookup through referrers is off: soci.referrers)'}` };
    const v1 = await this.v1Indexes(target.image, target.manifestDigest, signal);
    if (v1.length === 0) return { missing: `no SOCI index: ${where}, and no v1 index refers to it` };
    return v1.map((digest) => ({ digest, via: 'referrers' }));
  }

  private index(image: ImageReference, digest: Digest, signal?: AbortSignal): Promise<SociIndex> {
    return once(this.indexes, digest, async () => {
      const fetched = await this.options.client.fetchManifest(image, digest, signal);
      return parseSociIndex(fetched.bytes);
    });
  }

  /** v1 SOCI indexes whose subject is the image manifest: the referrers API, else the tag schema. */
  private v1Indexes(image: ImageReference, manifestDigest: Digest, signal?: AbortSignal): Promise<Digest[]> {
    return once(this.v1Lists, manifestDigest, async () => {
      const listed = await this.options.client.fetchReferrers(image, manifestDigest, { artifactType: SociMediaTypes.indexV1, ...(signal ? { signal } : {}) });
      if (listed) return listed.map((d) => d.digest);
      let tagged;
      try {
        tagged = await this.options.client.fetchManifest(image, referrersTagOf(manifestDigest), signal);
      } catch (err) {
        if (err instanceof ManifestNotFoundError) return [];
        throw err;
      }
      // The tag names an index of referrers (OCI tag schema), or, as some tools push it, the SOCI index itself.
      return v1IndexesAtReferrersTag({ digest: tagged.descriptor.digest, document: tagged.document });
    });
  }
}

/** One shared promise per key; a failed one is forgotten so the next caller tries again. */
function once<T>(map: Map<Digest, Promise<T>>, key: Digest, load: () => Promise<T>): Promise<T> {
  let pending = map.get(key);
  if (!pending) {
    pending = load();
    map.set(key, pending);
    pending.catch(() => map.delete(key));
  }
  return pending;
}
