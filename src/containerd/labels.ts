/**
 * The labels a layer's Prepare carries so a remote snapshotter can mount it lazily: what containerd's
 * unpacker sets (the chainID in `containerd.io/snapshot.ref` and the layer's `containerd.io/snapshot/`
 * annotations), CRI's `cri.*` set (pkg/snapshotters in containerd) and ctr-remote's `stargz.*` set.
 */
import type { Descriptor } from '../remote/index.js';
import { REMOTE_LAYER_LABELS, SNAPSHOT_REF_LABEL } from '../snapshot/remote-layer.js';

/** containerd refuses a label whose key and value together are longer than this (labels.Validate). */
export const MAX_LABEL_BYTES = 4096;
/** Layer annotations with this prefix are passed on as snapshot labels (snapshots.FilterInheritedLabels). */
const INHERITED_PREFIX = 'containerd.io/snapshot/';

/**
 * `digests` joined with commas, as many as fit into one label under `key` (the first one always: it is
 * the layer itself). A shortened list only costs the snapshotter some pre-resolving.
 */
export function layerListLabel(key: string, digests: readonly string[]): string {
  let value = '';
  for (const digest of digests) {
    const next = value === '' ? digest : `${value},${digest}`;
    if (value !== '' && Buffer.byteLength(key) + Buffer.byteLength(next) > MAX_LABEL_BYTES) break;
    value = next;
  }
  return value;
}

export interface LayerLabelInput {
  /** The image reference the snapshotter resolves the layer from (pinned to the manifest digest). */
  reference: string;
  manifestDigest: string;
  /** Every layer of the image, in order. */
  layers: readonly Descriptor[];
  index: number;
  /** This layer's chainID. */
  chainId: string;
}

/** The labels of one layer's Prepare (and Commit). */
export function layerLabels(input: LayerLabelInput): Record<string, string> {
  const layer = input.layers[input.index];
  if (!layer) throw new Error(`layer ${input.index} out of range (image has ${input.layers.length})`);
  const rest = input.layers.slice(input.index).map((l) => l.digest);
  const L = REMOTE_LAYER_LABELS;
  const inherited = Object.entries(layer.annotations ?? {}).filter(([key]) => key.startsWith(INHERITED_PREFIX));
  return {
    ...Object.fromEntries(inherited),
    [L.criImageRef]: input.reference,
    [L.criLayerDigest]: layer.digest,
    [L.criImageLayers]: layerListLabel(L.criImageLayers, rest),
    [L.criManifestDigest]: input.manifestDigest,
    [L.stargzReference]: input.reference,
    [L.stargzDigest]: layer.digest,
    [L.stargzLayers]: layerListLabel(L.stargzLayers, rest),
    [SNAPSHOT_REF_LABEL]: input.chainId,
  };
}

/** Annotations by which a lazy-capable layer names the digest of its TOC (eStargz; zstd:chunked variants). */
const TOC_ANNOTATIONS = [REMOTE_LAYER_LABELS.tocDigest, 'io.containers.zstd-chunked.manifest-checksum', 'io.github.containers.zstd-chunked.manifest-checksum'];

/** Why a layer was downloaded, as far as the client can tell (the daemon's log and status know the rest). */
export function fallbackHint(layer: Descriptor): string {
  const annotations = layer.annotations ?? {};
  if (!TOC_ANNOTATIONS.some((key) => annotations[key] !== undefined)) return 'no TOC digest annotation: not eStargz / zstd:chunked';
  return 'the snapshotter did not mount it lazily; its log says why';
}
