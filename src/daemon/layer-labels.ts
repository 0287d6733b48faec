/**
 * What a layer Prepare's labels say about the layer: which image it belongs to, its blob digest, the
 * TOC digest to verify against, the layers after it (for pre-resolving), and the prefetch size. Both
 * label sets are understood: CRI / nerdctl / moby (`cri.*`) and `ctr-remote images rpull` (`stargz.*`),
 * plus soci-snapshotter's `soci.index.digest`.
 */
import { REMOTE_LAYER_LABELS as L } from '../snapshot/remote-layer.js';
import type { Labels } from '../snapshot/types.js';
import { parseReference, type ImageReference } from '../remote/index.js';
import { SOCI_INDEX_DIGEST_LABEL } from '../soci/index-manifest.js';
import { isDigest, type Digest } from '../util/digest.js';

export interface LayerTarget {
  image: ImageReference;
  digest: Digest;
  /** The layer's `containerd.io/snapshot/stargz/toc.digest` annotation, when the client passed it. */
  tocDigest?: Digest;
  /** From `cri.manifest-digest`: lets the daemon read annotations the labels lack. */
  manifestDigest?: Digest;
  /** This layer and the ones after it, in image order (this one first). */
  layers: Digest[];
  /** The label list may have been cut at containerd's 4096-byte label limit. */
  layersTruncated: boolean;
  /** `stargz.prefetch`: bytes to prefetch when the layer has no landmark. */
  prefetchBytes?: number;
  /** `soci.index.digest`: the SOCI index that has this layer's zTOC. */
  sociIndexDigest?: Digest;
  /** `stargz.skipverify`: serve without a TOC digest check (chunk digests are still checked; legacy stargz has none). */
  skipVerify: boolean;
}

/** containerd's limit for one label (key and value). */
const MAX_LABEL_BYTES = 4096;
/** `,sha256:` + 64 hex digits: a list within this of the limit may have had a digest dropped. */
const DIGEST_ITEM_BYTES = 72;

export class LabelError extends Error {
  override name = 'LabelError';
}

/**
 * The layer described by `labels`, or a LabelError saying what is missing. Labels a client sets are
 * untrusted input: malformed ones are errors, never exceptions of another kind.
 */
export function layerTargetOf(labels: Labels): LayerTarget {
  const refText = labels[L.criImageRef] ?? labels[L.stargzReference];
  const digestText = labels[L.criLayerDigest] ?? labels[L.stargzDigest];
  if (refText === undefined || digestText === undefined) {
    throw new LabelError(`the client passed no image reference and layer digest labels (${L.criImageRef} or ${L.stargzReference}); plain \`ctr pull\` does not, use \`lazypull rpull\`, \`ctr-remote images rpull\` or the CRI`);
  }
  let image: ImageReference;
  try {
    image = parseReference(refText);
  } catch (err) {
    throw new LabelError(`image reference label: ${(err as Error).message}`);
  }
  const digest = requireDigest(digestText, 'layer digest');
  const listKey = labels[L.criImageLayers] !== undefined ? L.criImageLayers : L.stargzLayers;
  const { layers, truncated } = layerList(labels[listKey], listKey, digest);
  const tocText = labels[L.tocDigest];
  const manifestText = labels[L.criManifestDigest];
  const sociText = labels[SOCI_INDEX_DIGEST_LABEL];
  const prefetch = parsePrefetch(labels[L.stargzPrefetch]);
  return {
    image,
    digest,
    ...(tocText !== undefined ? { tocDigest: requireDigest(tocText, 'TOC digest') } : {}),
    ...(manifestText !== undefined ? { manifestDigest: requireDigest(manifestText, 'manifest digest') } : {}),
    ...(sociText !== undefined ? { sociIndexDigest: requireDigest(sociText, 'SOCI index digest') } : {}),
    layers,
    layersTruncated: truncated,
    ...(prefetch !== undefined ? { prefetchBytes: prefetch } : {}),
    skipVerify: labels[L.stargzSkipVerify] !== undefined && labels[L.stargzSkipVerify] !== 'false',
  };
}

function requireDigest(value: string, what: string): Digest {
  if (!isDigest(value)) throw new LabelError(`${what} label ${JSON.stringify(value.slice(0, 100))} is not a sha256 digest`);
  return value;
}

/** The comma list of layer digests, this layer first; junk items are dropped, not fatal (they only steer pre-resolving). */
function layerList(value: string | undefined, key: string, self: Digest): { layers: Digest[]; truncated: boolean } {
  if (value === undefined) return { layers: [self], truncated: false };
  const listed = value.split(',').map((item) => item.trim()).filter(isDigest);
  const start = listed.indexOf(self);
  const layers = start >= 0 ? listed.slice(start) : [self, ...listed];
  const truncated = Buffer.byteLength(key) + Buffer.byteLength(value) + DIGEST_ITEM_BYTES > MAX_LABEL_BYTES;
  return { layers, truncated };
}

function parsePrefetch(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,15}$/.test(value)) return undefined;
  return Number(value);
}
