/**
 * A lazy pull through containerd, as `ctr-remote images rpull` does it: the manifest, config (and
 * index) go into containerd's content store, each layer is prepared through containerd's snapshots
 * service with the remote-snapshot labels so the snapshotter can mount it lazily, only the layers it
 * declines are downloaded and applied, and the image is registered. Everything happens under one
 * lease, so containerd's garbage collector cannot take half of it away meanwhile.
 */
import { randomBytes } from 'node:crypto';
import { hostPlatform, selectPlatform, type Descriptor, type FetchedManifest, type ImageManifest, type ImageReference, type Platform, type RegistryClient } from '../remote/index.js';
import { parseReference } from '../remote/index.js';
import type { Digest } from '../util/digest.js';
import { chainIds } from './chain-id.js';
import { ContainerdError, isAlreadyExists, isNotFound, type ContainerdConnection } from './connection.js';
import { ContentClient } from './content.js';
import { DiffClient } from './diff.js';
import { ImagesClient } from './images.js';
import { fallbackHint, layerLabels } from './labels.js';
import { LeasesClient } from './leases.js';
import { SnapshotsClient, type Mount } from './snapshots.js';

export type LayerOutcome =
  /** containerd already had the snapshot of this chainID (pulled before): nothing to do. */
  | { kind: 'present' }
  /** The snapshotter mounted the layer remotely (Prepare answered AlreadyExists). */
  | { kind: 'lazy' }
  /** The snapshotter declined; the blob was downloaded (`bytes` from the registry, 0 when containerd had it) and applied. */
  | { kind: 'fetched'; bytes: number; reason: string };

export interface ResolvedPull {
  /** The image name registered in containerd. */
  name: string;
  /** The reference pinned to the digest of what it points at: what the snapshotter is told to read. */
  pinned: string;
  /** The image's target: the index when the reference names one, else the manifest. */
  target: Descriptor;
  manifest: Descriptor;
  layers: Descriptor[];
  /** Manifest (and index), config and layer sizes. */
  imageBytes: number;
}

/** What the pull reports while it works; the CLI draws progress from it. */
export interface PullEvents {
  resolved?(image: ResolvedPull): void;
  layerStarted?(index: number, layer: Descriptor): void;
  /** Bytes of a declined layer downloaded so far. */
  layerBytes?(index: number, bytes: number): void;
  layerApplying?(index: number): void;
  layerDone?(index: number, outcome: LayerOutcome): void;
}

export interface RemotePullOptions {
  /** As the user wrote it; normalized (`docker.io/library/...:latest`) for the image name. */
  reference: string;
  platform?: Platform;
  snapshotter: string;
  registry: RegistryClient;
  /** A connection being opened is fine: the image's documents are fetched meanwhile. */
  connection: ContainerdConnection | Promise<ContainerdConnection>;
  events?: PullEvents;
  signal?: AbortSignal;
  /**
   * Called once the image manifest is in, before the config, the lease and any layer: the daemon's
   * own pulls open the layers' TOCs from here. `image` is the reference the layer labels carry.
   */
  onManifest?(image: ImageReference, manifestDigest: Digest, manifest: ImageManifest): void;
  /**
   * Takes work that need not hold up the result (deleting the pull's lease once the image exists);
   * the caller keeps the connection open until it settles. Without it, the pull waits for that work.
   */
  background?(work: Promise<unknown>): void;
}

export interface PulledLayer {
  descriptor: Descriptor;
  chainId: string;
  outcome: LayerOutcome;
}

export interface PullResult extends ResolvedPull {
  /** ChainID of the top layer: the snapshot containers of this image start from. */
  chainId: string;
  layerResults: PulledLayer[];
  /** Bytes this command fetched from the registry (documents and declined layers). */
  downloadedBytes: number;
  image: 'created' | 'updated';
}

/** A crashed pull's lease expires after this, so its content does not stay pinned forever. */
const LEASE_EXPIRY_MS = 24 * 60 * 60_000;
const UNCOMPRESSED_LABEL = 'containerd.io/uncompressed';

/** Names of containerd's ingest refs (remotes.MakeRefKey), so a concurrent ctr pull of the same blob waits for us. */
function ingestRef(kind: 'index' | 'manifest' | 'config' | 'layer', digest: string): string {
  return `${kind}-${digest}`;
}

/** containerd's unpacker key: `extract-<unique> <chainID>` (snapshots.UnpackKeyFormat). */
function extractKey(chainId: string): string {
  return `extract-${process.hrtime.bigint() % 1_000_000_000n}-${randomBytes(3).toString('base64url')} ${chainId}`;
}

interface ImageDocuments {
  ref: ImageReference;
  index?: FetchedManifest;
  manifest: FetchedManifest & { document: { kind: 'manifest'; manifest: ImageManifest } };
  config: Buffer;
  diffIds: string[];
}

/** Resolves the reference, keeping the exact bytes of every document: containerd stores them as they are. */
async function fetchDocuments(options: RemotePullOptions): Promise<ImageDocuments> {
  const { registry, reference, platform, signal } = options;
  const ref = parseReference(reference);
  const top = await registry.fetchManifest(ref, ref.object, signal);
  let index: FetchedManifest | undefined;
  let manifest = top;
  if (top.document.kind === 'index') {
    index = top;
    const chosen = selectPlatform(top.document.index, platform ?? hostPlatform());
    manifest = await registry.fetchManifest(ref, chosen.digest, signal);
  }
  if (manifest.document.kind !== 'manifest') throw new Error(`${ref}: index entry ${manifest.descriptor.digest} is not an image manifest`);
  const image = manifest.document.manifest;
  const pinned = ref.withDigest(top.descriptor.digest);
  options.onManifest?.(pinned, manifest.descriptor.digest, image);
  const config = await registry.fetchBlob(pinned, image.config, signal);
  const diffIds = diffIdsOf(config, image.config.digest);
  if (diffIds.length !== image.layers.length) throw new Error(`${ref}: the config lists ${diffIds.length} diff IDs for ${image.layers.length} layers`);
  return { ref, ...(index ? { index } : {}), manifest: manifest as ImageDocuments['manifest'], config, diffIds };
}

function diffIdsOf(config: Buffer, digest: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(config.toString('utf8'));
  } catch {
    throw new Error(`image config ${digest} is not JSON`);
  }
  const diffIds = (parsed as { rootfs?: { diff_ids?: unknown } } | null)?.rootfs?.diff_ids;
  if (!Array.isArray(diffIds) || !diffIds.every((d) => typeof d === 'string')) throw new Error(`image config ${digest} has no rootfs.diff_ids list`);
  return diffIds as string[];
}

/**
 * The image's documents from the registry and a lease from containerd, at the same time: a pull's
 * first round trips to each side overlap (and so does parsing containerd's .proto files, which the
 * first call does, with the wait for the registry).
 */
async function documentsUnderLease(options: RemotePullOptions): Promise<{ docs: ImageDocuments; connection: ContainerdConnection; lease: string }> {
  const fetching = fetchDocuments(options);
  const leasing = Promise.resolve(options.connection).then(async (connection) => ({ connection, lease: await new LeasesClient(connection).create('lazypull-rpull', LEASE_EXPIRY_MS) }));
  const [docs, leased] = await Promise.allSettled([fetching, leasing]);
  if (docs.status === 'fulfilled' && leased.status === 'fulfilled') return { docs: docs.value, ...leased.value };
  if (leased.status === 'fulfilled') await new LeasesClient(leased.value.connection).delete(leased.value.lease).catch(() => undefined);
  // containerd's failure first: a wrong socket is the more basic mistake.
  throw leased.status === 'rejected' ? leased.reason : (docs as PromiseRejectedResult).reason;
}

/** Pulls `reference` into containerd, lazily where the snapshotter can. */
export async function remotePull(options: RemotePullOptions): Promise<PullResult> {
  const { events = {}, signal } = options;
  const { docs, connection, lease } = await documentsUnderLease(options);
  const layers = docs.manifest.document.manifest.layers;
  const configDescriptor = docs.manifest.document.manifest.config;
  const target = (docs.index ?? docs.manifest).descriptor;
  const resolved: ResolvedPull = {
    name: docs.ref.toString(),
    pinned: docs.ref.withDigest(target.digest).toString(),
    target,
    manifest: docs.manifest.descriptor,
    layers,
    imageBytes: (docs.index?.bytes.length ?? 0) + docs.manifest.bytes.length + configDescriptor.size + layers.reduce((sum, l) => sum + l.size, 0),
  };
  events.resolved?.(resolved);

  connection.lease = lease;
  try {
    const content = new ContentClient(connection);
    // The lease keeps the documents and the snapshots alike, so storing them need not hold up the layers.
    const stored = storeDocuments(content, docs);
    stored.catch(() => undefined);
    const unpacker = new Unpacker({ ...options, connection }, content, resolved, docs.ref.withDigest(target.digest), docs.diffIds);
    const chain = unpacker.chain;
    const layerResults: PulledLayer[] = [];
    const present = await unpacker.presence();
    for (let i = 0; i < layers.length; i++) {
      signal?.throwIfAborted();
      layerResults.push({ descriptor: layers[i] as Descriptor, chainId: chain[i] as string, outcome: await unpacker.unpackLayer(i, present[i] === true) });
    }
    await stored;
    // The lease keeps everything until both are done, so the image record need not wait for the labels.
    const [, image] = await Promise.all([labelUnpacked(content, options.snapshotter, docs, chain, layerResults), new ImagesClient(connection).put(resolved.name, target)]);
    const documentBytes = (docs.index?.bytes.length ?? 0) + docs.manifest.bytes.length + docs.config.length;
    const layerBytes = layerResults.reduce((sum, l) => sum + (l.outcome.kind === 'fetched' ? l.outcome.bytes : 0), 0);
    return { ...resolved, chainId: chain.at(-1) ?? '', layerResults, downloadedBytes: documentBytes + layerBytes, image };
  } finally {
    connection.lease = undefined;
    const released = new LeasesClient(connection).delete(lease).catch(() => undefined);
    if (options.background) options.background(released);
    else await released;
  }
}

/** Config, manifest and index, each labelled so containerd's GC keeps its children (images.ChildGCLabels). */
async function storeDocuments(content: ContentClient, docs: ImageDocuments): Promise<void> {
  const config = docs.manifest.document.manifest.config;
  await Promise.all([
    content.write(ingestRef('config', config.digest), config, docs.config),
    content.write(ingestRef('manifest', docs.manifest.descriptor.digest), docs.manifest.descriptor, docs.manifest.bytes, { 'containerd.io/gc.ref.content.config': config.digest }),
    docs.index ? content.write(ingestRef('index', docs.index.descriptor.digest), docs.index.descriptor, docs.index.bytes, { 'containerd.io/gc.ref.content.m.0': docs.manifest.descriptor.digest }) : undefined,
  ]);
}

/**
 * Marks the image unpacked for the snapshotter as containerd's unpacker does: the config references the
 * top snapshot (`containerd.io/gc.ref.snapshot.<snapshotter>`), which keeps the whole chain alive; the
 * manifest references the layer blobs that were downloaded (lazy layers have none).
 */
async function labelUnpacked(content: ContentClient, snapshotter: string, docs: ImageDocuments, chain: string[], layers: PulledLayer[]): Promise<void> {
  const top = chain.at(-1);
  const blobLabels: Record<string, string> = {};
  layers.forEach((layer, i) => {
    if (layer.outcome.kind === 'fetched') blobLabels[`containerd.io/gc.ref.content.l.${i}`] = layer.descriptor.digest;
  });
  await Promise.all([
    top !== undefined ? content.setLabels(docs.manifest.document.manifest.config.digest, { [`containerd.io/gc.ref.snapshot.${snapshotter}`]: top }) : undefined,
    content.setLabels(docs.manifest.descriptor.digest, blobLabels),
  ]);
}

/**
 * Whether an AlreadyExists from Prepare says the target snapshot exists in containerd. containerd
 * (metadata/snapshot.go, 1.6 and later) answers `target snapshot "<chainID>"...` both when it had the
 * target and when the snapshotter committed it during the Prepare, and `snapshot "<key>"...` for a key
 * that is taken; only an answer in neither form needs the Stat, a round trip through containerd and the
 * snapshotter per layer on the pull's critical path.
 */
export function namesExistingTarget(err: unknown, chainId: string): boolean {
  return err instanceof ContainerdError && err.details.startsWith(`target snapshot "${chainId}"`);
}

/** Layer by layer, in order: each snapshot's parent is the one below it. */
class Unpacker {
  private readonly snapshots: SnapshotsClient;
  private readonly diff: DiffClient;
  /** The chainID of each layer: the name its snapshot is committed under. */
  readonly chain: string[];

  constructor(
    private readonly options: RemotePullOptions & { connection: ContainerdConnection },
    private readonly content: ContentClient,
    private readonly image: ResolvedPull,
    private readonly ref: ImageReference,
    private readonly diffIds: string[],
  ) {
    this.chain = chainIds(diffIds);
    this.snapshots = new SnapshotsClient(options.connection, options.snapshotter);
    this.diff = new DiffClient(options.connection);
  }

  /**
   * Which layers' snapshots containerd has already, asked for all at once before the layers go one by
   * one: a round trip through containerd and the snapshotter per layer less on the pull's critical path.
   */
  presence(): Promise<boolean[]> {
    return Promise.all(this.chain.map((chainId) => this.exists(chainId)));
  }

  /** `present`: the snapshot was there when presence() asked (one committed since is found at Prepare or Commit). */
  async unpackLayer(index: number, present: boolean): Promise<LayerOutcome> {
    const events = this.options.events ?? {};
    const layer = this.image.layers[index] as Descriptor;
    const chainId = this.chain[index] as string;
    events.layerStarted?.(index, layer);
    const outcome: LayerOutcome = present ? { kind: 'present' } : await this.unpack(index, layer, chainId);
    events.layerDone?.(index, outcome);
    return outcome;
  }

  private async unpack(index: number, layer: Descriptor, chainId: string): Promise<LayerOutcome> {
    const labels = layerLabels({ reference: this.image.pinned, manifestDigest: this.image.manifest.digest, layers: this.image.layers, index, chainId });
    const parent = index === 0 ? '' : (this.chain[index - 1] as string);
    const prepared = await this.prepare(chainId, parent, labels);
    if (prepared === 'remote') return { kind: 'lazy' };
    try {
      const bytes = await this.fetchAndApply(index, layer, prepared.mounts);
      await this.snapshots.commit(chainId, prepared.key, labels);
      return { kind: 'fetched', bytes, reason: fallbackHint(layer) };
    } catch (err) {
      await this.snapshots.remove(prepared.key).catch(() => undefined);
      // Someone else committed this chainID meanwhile (a concurrent pull): theirs is as good as ours.
      if (isAlreadyExists(err) && (await this.exists(chainId))) return { kind: 'present' };
      throw err;
    }
  }

  private async exists(chainId: string): Promise<boolean> {
    try {
      await this.snapshots.stat(chainId);
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /**
   * Prepare with the remote labels. AlreadyExists naming the target, or followed by a successful Stat of
   * the chainID, means the snapshotter mounted the layer itself; AlreadyExists without either is a key
   * collision, retried like containerd does (three tries).
   */
  private async prepare(chainId: string, parent: string, labels: Record<string, string>): Promise<{ key: string; mounts: Mount[] } | 'remote'> {
    let last: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const key = extractKey(chainId);
      try {
        return { key, mounts: await this.snapshots.prepare(key, parent, labels) };
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        if (namesExistingTarget(err, chainId) || (await this.exists(chainId))) return 'remote';
        last = err;
      }
    }
    throw last;
  }

  /** Downloads the blob into containerd (unless it has it) and applies it; returns the bytes downloaded. */
  private async fetchAndApply(index: number, layer: Descriptor, mounts: Mount[]): Promise<number> {
    const { registry, events = {}, signal } = this.options;
    let downloaded = 0;
    const blob = await registry.openBlob(this.ref, layer, signal ? { signal } : {});
    try {
      const wrote = await this.content.write(ingestRef('layer', layer.digest), layer, blob.stream(undefined, signal), {}, (bytes) => {
        downloaded = bytes;
        events.layerBytes?.(index, bytes);
      });
      if (!wrote) downloaded = 0;
    } finally {
      await blob.close();
    }
    events.layerApplying?.(index);
    const diffId = await this.diff.apply(layer, mounts);
    const expected = this.diffIds[index];
    if (diffId !== expected) throw new Error(`layer ${layer.digest} unpacked to ${diffId}, but the config says ${expected}`);
    await this.content.setLabels(layer.digest, { [UNCOMPRESSED_LABEL]: diffId });
    return downloaded;
  }
}
