/**
 * The seam between the snapshotter core and lazily mounted layers.
 *
 * On Prepare with `containerd.io/snapshot.ref` in the labels (containerd unpacking an image layer), the
 * core creates the active snapshot as usual and asks the resolver whether it can mount that layer
 * remotely on the snapshot's `fs` directory. If it can, the core commits the snapshot under the chainID
 * with the label `containerd.io/snapshot/remote` and answers AlreadyExists, so containerd skips the
 * download; otherwise the snapshot stays an ordinary overlay upper dir that containerd unpacks into, and
 * the reason is recorded on it.
 */
import type { Labels } from './types.js';

/** containerd sets it on each layer's Prepare to the layer's chainID: "commit here if you can". */
export const SNAPSHOT_REF_LABEL = 'containerd.io/snapshot.ref';
/** Marks a snapshot that was mounted remotely instead of unpacked (stargz-snapshotter's label). */
export const REMOTE_LABEL = 'containerd.io/snapshot/remote';

/** The label prefixes that say which layer this is (CRI / nerdctl / moby, and ctr-remote). */
export const REMOTE_LAYER_LABELS = {
  criImageRef: 'containerd.io/snapshot/cri.image-ref',
  criLayerDigest: 'containerd.io/snapshot/cri.layer-digest',
  criImageLayers: 'containerd.io/snapshot/cri.image-layers',
  criManifestDigest: 'containerd.io/snapshot/cri.manifest-digest',
  stargzReference: 'containerd.io/snapshot/remote/stargz.reference',
  stargzDigest: 'containerd.io/snapshot/remote/stargz.digest',
  stargzLayers: 'containerd.io/snapshot/remote/stargz.layers',
  stargzPrefetch: 'containerd.io/snapshot/remote/stargz.prefetch',
  stargzSkipVerify: 'containerd.io/snapshot/remote/stargz.skipverify',
  urls: 'containerd.io/snapshot/remote/urls',
  tocDigest: 'containerd.io/snapshot/stargz/toc.digest',
} as const;

export interface RemoteLayerRequest {
  /** The active snapshot's key (containerd's internal key, e.g. `default/12/extract-...`). */
  key: string;
  /** Key of the parent snapshot ('' for the bottom layer). */
  parent: string;
  /** The layer's chainID from `containerd.io/snapshot.ref`: the name the snapshot is committed under. */
  chainId: string;
  /** Every label of the Prepare request (the remote-layer labels above among them). */
  labels: Labels;
  /** An empty directory owned by the core: mount the layer here. */
  mountpoint: string;
}

/** Either the layer is mounted at the given path, or it is not, and why (shown to users, so be specific). */
export type RemoteLayerResolution = { mounted: string } | { fallback: string };

export interface RemoteLayerResolver {
  /** Mounts the layer at `request.mountpoint`, or says why not. A throw counts as a fallback with its message. */
  resolve(request: RemoteLayerRequest): Promise<RemoteLayerResolution>;
  /** Unmounts what resolve() mounted there; called before the snapshot's directory is removed. */
  release(mountpoint: string): Promise<void>;
  /** At daemon start: mounts a layer committed by an earlier run again. Throws with the reason when it cannot. */
  restore?(layer: RemoteSnapshot): Promise<unknown>;
  /**
   * Before a container is created on top of these remote layers (nearest first): a throw fails the
   * Prepare with its message (the layer cannot serve reads), returning lets the container start.
   */
  beforeUse?(layers: readonly RemoteSnapshot[]): Promise<void>;
}

/** A committed remote snapshot: the labels of its Prepare, and where its layer is mounted. */
export interface RemoteSnapshot {
  chainId: string;
  labels: Labels;
  mountpoint: string;
}

/** Labels that say which image and layer a Prepare was for; kept on a fallback layer's commit so status can name it. */
export const LAYER_IDENTITY_LABELS: readonly string[] = [
  REMOTE_LAYER_LABELS.criImageRef,
  REMOTE_LAYER_LABELS.criLayerDigest,
  REMOTE_LAYER_LABELS.stargzReference,
  REMOTE_LAYER_LABELS.stargzDigest,
];

/** The resolver of a snapshotter given none (tests, tools): every layer is pulled normally, and it says so. */
export class NoRemoteLayers implements RemoteLayerResolver {
  static readonly REASON = 'no remote layer resolver is configured';

  async resolve(): Promise<RemoteLayerResolution> {
    return { fallback: NoRemoteLayers.REASON };
  }

  async release(): Promise<void> {
    /* nothing is ever mounted */
  }
}
