/**
 * The snapshotter core: containerd's overlayfs snapshotter semantics over a MetadataStore, with the
 * remote-layer seam (remote-layer.ts) on Prepare.
 *
 * Layout under `root`: `snapshots/<id>/fs` (the upper dir, or the lower dir once committed) and
 * `snapshots/<id>/work` (overlay's workdir, active snapshots only).
 *
 * Crash consistency, the same order as containerd's overlay snapshotter:
 * - create: the directory is built under a temporary name (`new-*`), then, inside the metadata
 *   transaction, renamed to its id; the transaction commits last. A crash leaves at most a directory
 *   the database does not know, never a row without its directory.
 * - remove: the row goes first, the directory after; a crash in between leaves an orphan directory.
 * Orphans (unknown ids and stale `new-*` dirs) are removed by Cleanup, which also runs at open.
 */
import { existsSync, lchownSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { diskUsage } from './disk-usage.js';
import { alreadyExists, failedPrecondition, invalidArgument, isSnapshotError, notFound, unavailable } from './errors.js';
import { parseFilters } from './filters.js';
import type { MetadataStore, MetadataTransaction } from './metadata-store.js';
import { LAYER_IDENTITY_LABELS, NoRemoteLayers, REMOTE_LABEL, SNAPSHOT_REF_LABEL, type RemoteLayerResolution, type RemoteLayerResolver, type RemoteSnapshot } from './remote-layer.js';
import { infoOf, type Labels, type Mount, type SnapshotInfo, type SnapshotKind, type SnapshotRecord, type Usage } from './types.js';

/** containerd's limit for one label: key and value together (labels.Validate). */
export const MAX_LABEL_BYTES = 4096;
const TEMP_PREFIX = 'new-';

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

const silentLogger: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined };

export interface SnapshotterOptions {
  /** The snapshotter's root; snapshot directories live in `root/snapshots`. */
  root: string;
  store: MetadataStore;
  remote?: RemoteLayerResolver;
  logger?: Logger;
  /** Add `index=off` to overlay mounts (default: when the kernel's overlay module has the parameter, as containerd does). */
  overlayIndexOff?: boolean;
  /** A remote snapshot that cannot be mounted again at open: 'report' logs it and goes on (default), 'fail' makes open() throw. */
  restoreFailure?: 'report' | 'fail';
}

export interface LayerSnapshot {
  key: string;
  kind: SnapshotKind;
  labels: Labels;
  mountpoint: string;
  fallbackReason?: string;
}

export interface RestoreFailure {
  chainId: string;
  reason: string;
}

export interface LayerFallback {
  key: string;
  reason: string;
}

/** A created snapshot and the ids of its parents, nearest first. */
interface Created {
  record: SnapshotRecord;
  parentIds: string[];
}

export class Snapshotter {
  private readonly root: string;
  private readonly store: MetadataStore;
  private readonly remote: RemoteLayerResolver;
  private readonly log: Logger;
  private readonly indexOff: boolean;
  /** Temp dirs of creations in flight: Cleanup must not take them for orphans. */
  private readonly inFlight = new Set<string>();
  /** Remote snapshots open() could not mount again, and why (retried when a container wants them). */
  readonly restoreFailures: RestoreFailure[] = [];

  private constructor(options: SnapshotterOptions) {
    this.root = options.root;
    this.store = options.store;
    this.remote = options.remote ?? new NoRemoteLayers();
    this.log = options.logger ?? silentLogger;
    this.indexOff = options.overlayIndexOff ?? existsSync('/sys/module/overlay/parameters/index');
  }

  /** Creates the directories it needs and removes what a crash left behind. */
  static async open(options: SnapshotterOptions): Promise<Snapshotter> {
    const snapshotter = new Snapshotter(options);
    await mkdir(options.root, { recursive: true, mode: 0o700 });
    await mkdir(snapshotter.snapshotsDir, { recursive: true, mode: 0o700 });
    const removed = await snapshotter.cleanup();
    if (removed.length > 0) snapshotter.log.info('removed orphan snapshot directories', { count: removed.length });
    await snapshotter.restoreRemote(options.restoreFailure ?? 'report');
    return snapshotter;
  }

  /** Mounts every remote snapshot of an earlier run again; one that cannot be is reported (or fails open). */
  private async restoreRemote(onFailure: 'report' | 'fail'): Promise<void> {
    const restore = this.remote.restore?.bind(this.remote);
    if (!restore) return;
    const remote = this.store.transaction((tx) => tx.list()).filter((record) => record.labels[REMOTE_LABEL] !== undefined);
    const results = await Promise.allSettled(remote.map((record) => restore(this.remoteSnapshotOf(record))));
    results.forEach((result, i) => {
      if (result.status === 'fulfilled') return;
      const chainId = (remote[i] as SnapshotRecord).key;
      const reason = result.reason instanceof Error ? result.reason.message : String(result.reason);
      this.restoreFailures.push({ chainId, reason });
      this.log.warn('remote snapshot not restored', { chainId, reason });
    });
    if (onFailure === 'fail' && this.restoreFailures.length > 0) {
      throw new Error(`${this.restoreFailures.length} remote snapshot(s) could not be restored, e.g. ${this.restoreFailures[0]?.chainId}: ${this.restoreFailures[0]?.reason}`);
    }
    if (remote.length > 0) this.log.info('restored remote snapshots', { restored: remote.length - this.restoreFailures.length, failed: this.restoreFailures.length });
  }

  private remoteSnapshotOf(record: SnapshotRecord): RemoteSnapshot {
    return { chainId: record.key, labels: record.labels, mountpoint: this.upperPath(record.id) };
  }

  /**
   * A container is about to use `parent` and its ancestors: the resolver checks the remote ones (and
   * waits for their prefetch); a remote layer that cannot serve reads fails the Prepare as Unavailable.
   */
  private async checkRemoteAncestors(parent: string): Promise<void> {
    const beforeUse = this.remote.beforeUse?.bind(this.remote);
    if (!beforeUse || parent === '') return;
    // A missing parent is create()'s error to report, with its own message.
    const remote = this.store.transaction((tx) => (tx.get(parent) ? ancestorsOf(tx, parent) : [])).filter((record) => record.labels[REMOTE_LABEL] !== undefined);
    if (remote.length === 0) return;
    try {
      await beforeUse(remote.map((record) => this.remoteSnapshotOf(record)));
    } catch (err) {
      throw unavailable(`a lazily pulled layer cannot serve reads: ${(err as Error).message}`);
    }
  }

  get snapshotsDir(): string {
    return join(this.root, 'snapshots');
  }

  upperPath(id: string): string {
    return join(this.snapshotsDir, id, 'fs');
  }

  workPath(id: string): string {
    return join(this.snapshotsDir, id, 'work');
  }

  async prepare(key: string, parent: string, labels: Labels = {}): Promise<Mount[]> {
    this.log.debug('prepare', { key, parent, labels });
    const chainId = labels[SNAPSHOT_REF_LABEL];
    if (chainId !== undefined && chainId !== '') return this.prepareLayer(key, parent, labels, chainId);
    await this.checkRemoteAncestors(parent);
    return this.mountsOf(await this.create('active', key, parent, labels));
  }

  async view(key: string, parent: string, labels: Labels = {}): Promise<Mount[]> {
    await this.checkRemoteAncestors(parent);
    return this.mountsOf(await this.create('view', key, parent, labels));
  }

  async mounts(key: string): Promise<Mount[]> {
    return this.mountsOf(
      this.store.transaction((tx) => {
        const record = requireRecord(tx, key);
        if (record.kind === 'committed') throw failedPrecondition(`snapshot ${key} is committed: it has no mounts, only active and view snapshots do`);
        return { record, parentIds: parentIdsOf(tx, record.parent) };
      }),
    );
  }

  async commit(name: string, key: string, labels: Labels = {}): Promise<void> {
    requireName(name, 'name');
    validateLabels(labels);
    const active = this.store.transaction((tx) => checkCommittable(tx, name, key));
    const usage = await diskUsage(this.upperPath(active.id));
    this.store.transaction((tx) => {
      const current = checkCommittable(tx, name, key);
      if (current.id !== active.id) throw notFound(`snapshot ${key} changed while committing`);
      commitRow(tx, key, name, current.fallbackReason === undefined ? labels : { ...layerIdentity(current.labels), ...labels }, usage);
    });
  }

  async remove(key: string): Promise<void> {
    const removed = this.store.transaction((tx) => {
      const record = requireRecord(tx, key);
      const children = tx.children(key);
      if (children.length > 0) throw failedPrecondition(`cannot remove snapshot ${key}: it has ${children.length} child snapshot(s), e.g. ${children[0]}`);
      tx.delete(key);
      return record;
    });
    // The row is gone; failing to free the directory now only delays it to the next Cleanup.
    const wasRemote = removed.labels[REMOTE_LABEL] !== undefined;
    await this.removeDirectory(removed.id, wasRemote).catch((err: Error) => this.log.warn('snapshot directory left for Cleanup', { id: removed.id, error: err.message }));
  }

  async stat(key: string): Promise<SnapshotInfo> {
    this.log.debug('stat', { key });
    return infoOf(this.store.transaction((tx) => requireRecord(tx, key)));
  }

  /** Changes labels as containerd does: fieldpaths `labels` (replace all) or `labels.<key>`; none means all. */
  async update(info: Pick<SnapshotInfo, 'name' | 'labels'>, fieldpaths: readonly string[] = []): Promise<SnapshotInfo> {
    requireName(info.name, 'name');
    const labels = labelsAfterUpdate.bind(null, info, fieldpaths);
    return infoOf(
      this.store.transaction((tx) => {
        const record = requireRecord(tx, info.name);
        const next = labels(record.labels);
        validateLabels(next);
        return tx.update(info.name, { labels: next, updated: new Date() });
      }),
    );
  }

  async list(filters: readonly string[] = []): Promise<SnapshotInfo[]> {
    const filter = parseFilters(filters);
    return this.store.transaction((tx) => tx.list()).map(infoOf).filter(filter);
  }

  /** Active snapshots are measured now (their upper dir changes); others report what commit recorded. */
  async usage(key: string): Promise<Usage> {
    const record = this.store.transaction((tx) => requireRecord(tx, key));
    if (record.kind === 'active' && record.labels[REMOTE_LABEL] === undefined) return diskUsage(this.upperPath(record.id));
    return record.usage;
  }

  /** Removes directories no snapshot owns (left by crashes or failed removals); returns their paths. */
  async cleanup(): Promise<string[]> {
    const known = new Set(this.store.transaction((tx) => tx.list()).map((record) => record.id));
    const removed: string[] = [];
    for (const name of await readdir(this.snapshotsDir)) {
      if (known.has(name) || this.inFlight.has(join(this.snapshotsDir, name))) continue;
      try {
        await this.removeDirectory(name);
        removed.push(join(this.snapshotsDir, name));
      } catch (err) {
        this.log.warn('could not remove orphan snapshot directory', { dir: name, error: (err as Error).message });
      }
    }
    return removed;
  }

  /** Snapshots of image layers: remote ones (with their mountpoints) and those that fell back (with the reason). */
  layerSnapshots(): LayerSnapshot[] {
    return this.store
      .transaction((tx) => tx.list())
      .filter((record) => record.labels[REMOTE_LABEL] !== undefined || record.fallbackReason !== undefined)
      .map((record) => ({
        key: record.key,
        kind: record.kind,
        labels: { ...record.labels },
        mountpoint: this.upperPath(record.id),
        ...(record.fallbackReason !== undefined ? { fallbackReason: record.fallbackReason } : {}),
      }));
  }

  /** Why layers were pulled normally instead of lazily, per snapshot. */
  fallbacks(): LayerFallback[] {
    return this.layerSnapshots().flatMap((s) => (s.fallbackReason === undefined ? [] : [{ key: s.key, reason: s.fallbackReason }]));
  }

  close(): void {
    this.store.close();
  }

  /**
   * Prepare of an image layer (containerd set `containerd.io/snapshot.ref` to its chainID): the
   * resolver may mount it remotely, and then the snapshot is committed as the chainID and containerd
   * told AlreadyExists; otherwise it is an ordinary active snapshot with the reason recorded.
   */
  private async prepareLayer(key: string, parent: string, labels: Labels, chainId: string): Promise<Mount[]> {
    if (this.store.transaction((tx) => tx.get(chainId)) !== undefined) throw alreadyExists(`target snapshot ${chainId}: already exists`);
    const created = await this.create('active', key, parent, labels);
    const mountpoint = this.upperPath(created.record.id);
    const resolution = await this.resolveRemote({ key, parent, chainId, labels, mountpoint });
    if ('mounted' in resolution) {
      await this.commitRemote(key, chainId, labels, mountpoint);
      throw alreadyExists(`target snapshot ${chainId}: mounted remotely`);
    }
    this.store.transaction((tx) => tx.update(key, { fallbackReason: resolution.fallback }));
    this.log.info('layer pulled normally, not lazily', { key, chainId, reason: resolution.fallback });
    return this.mountsOf(created);
  }

  /** The resolver's answer, with throws and misplaced mounts turned into fallbacks. */
  private async resolveRemote(request: Parameters<RemoteLayerResolver['resolve']>[0]): Promise<RemoteLayerResolution> {
    let resolution: RemoteLayerResolution;
    try {
      resolution = await this.remote.resolve(request);
    } catch (err) {
      return { fallback: `remote layer failed: ${(err as Error).message}` };
    }
    if ('mounted' in resolution && resolution.mounted !== request.mountpoint) {
      await this.remote.release(resolution.mounted).catch(() => undefined);
      return { fallback: `remote layer mounted at ${resolution.mounted} instead of ${request.mountpoint}` };
    }
    return resolution;
  }

  /** Commits a remotely mounted layer; if that fails, the mount is released and the error surfaces. */
  private async commitRemote(key: string, chainId: string, labels: Labels, mountpoint: string): Promise<void> {
    try {
      this.store.transaction((tx) => commitRow(tx, key, chainId, { ...labels, [REMOTE_LABEL]: 'remote snapshot' }, { size: 0, inodes: 0 }));
    } catch (err) {
      await this.remote.release(mountpoint).catch(() => undefined);
      await this.remove(key).catch(() => undefined);
      // Another Prepare committed the same layer first: for containerd that is the same success.
      if (isSnapshotError(err, 'AlreadyExists')) throw alreadyExists(`target snapshot ${chainId}: already exists`);
      throw err;
    }
  }

  private async create(kind: SnapshotKind, key: string, parent: string, labels: Labels): Promise<Created> {
    requireName(key, 'key');
    validateLabels(labels);
    const temp = await this.makeTempDirectory(kind);
    try {
      const owner = await this.ownerOf(parent);
      return this.store.transaction((tx) => {
        const parentRecord = parent === '' ? undefined : requireParent(tx, parent);
        const now = new Date();
        const record = tx.insert({ key, kind, parent, labels, created: now, updated: now });
        const parentIds = parentRecord ? parentIdsOf(tx, parent) : [];
        // The new upper dir is owned like the parent's, so a container's root keeps its owner.
        if (parentRecord && owner && owner.id === parentRecord.id) lchownSync(join(temp, 'fs'), owner.uid, owner.gid);
        renameSync(temp, join(this.snapshotsDir, record.id));
        return { record, parentIds };
      });
    } catch (err) {
      await rm(temp, { recursive: true, force: true });
      throw err;
    } finally {
      this.inFlight.delete(temp);
    }
  }

  /**
   * Owner of the parent's root dir, for the new upper dir. Asynchronous on purpose: a remote parent's
   * dir is this process's own FUSE mount, which a synchronous stat would wait on forever (the answer
   * needs the event loop the stat blocks).
   */
  private async ownerOf(parent: string): Promise<{ id: string; uid: number; gid: number } | undefined> {
    if (parent === '') return undefined;
    const record = this.store.transaction((tx) => tx.get(parent));
    if (!record) return undefined;
    const { uid, gid } = await stat(this.upperPath(record.id));
    return { id: record.id, uid, gid };
  }

  private async makeTempDirectory(kind: SnapshotKind): Promise<string> {
    const temp = await mkdtemp(join(this.snapshotsDir, TEMP_PREFIX));
    this.inFlight.add(temp);
    mkdirSync(join(temp, 'fs'), { mode: 0o755 });
    if (kind === 'active') mkdirSync(join(temp, 'work'), { mode: 0o711 });
    return temp;
  }

  /**
   * Releases the remote mount on the snapshot's fs dir (of a remote snapshot, or whatever is still
   * mounted there), then deletes the directory; never deletes through a mount.
   */
  private async removeDirectory(id: string, remote = false): Promise<void> {
    const dir = join(this.snapshotsDir, id);
    if (remote || mountPointsUnder(dir).length > 0) await this.remote.release(this.upperPath(id));
    const left = mountPointsUnder(dir);
    if (left.length > 0) throw new Error(`still mounted: ${left.join(', ')}`);
    await rm(dir, { recursive: true, force: true });
  }

  /** containerd overlay's mounts: bind without parents, overlay with them, read-only for views. */
  private mountsOf({ record, parentIds }: Created): Mount[] {
    if (parentIds.length === 0) {
      return [{ type: 'bind', source: this.upperPath(record.id), options: [record.kind === 'view' ? 'ro' : 'rw', 'rbind'] }];
    }
    if (record.kind === 'view' && parentIds.length === 1) {
      return [{ type: 'bind', source: this.upperPath(parentIds[0] as string), options: ['ro', 'rbind'] }];
    }
    const options = this.indexOff ? ['index=off'] : [];
    if (record.kind === 'active') options.push(`workdir=${this.workPath(record.id)}`, `upperdir=${this.upperPath(record.id)}`);
    options.push(`lowerdir=${parentIds.map((id) => this.upperPath(id)).join(':')}`);
    return [{ type: 'overlay', source: 'overlay', options }];
  }
}

function requireName(value: string, what: string): void {
  if (typeof value !== 'string' || value === '') throw invalidArgument(`snapshot ${what} must not be empty`);
}

function requireRecord(tx: MetadataTransaction, key: string): SnapshotRecord {
  requireName(key, 'key');
  const record = tx.get(key);
  if (!record) throw notFound(`snapshot ${key} does not exist`);
  return record;
}

function requireParent(tx: MetadataTransaction, parent: string): SnapshotRecord {
  const record = tx.get(parent);
  if (!record) throw notFound(`parent snapshot ${parent} does not exist`);
  if (record.kind !== 'committed') throw invalidArgument(`parent ${parent} is not a committed snapshot (it is ${record.kind})`);
  return record;
}

/** Ids of `parent` and its ancestors, nearest first: overlay's lowerdir order. */
function parentIdsOf(tx: MetadataTransaction, parent: string): string[] {
  return ancestorsOf(tx, parent).map((record) => record.id);
}

/** `parent` and its ancestors, nearest first. */
function ancestorsOf(tx: MetadataTransaction, parent: string): SnapshotRecord[] {
  const records: SnapshotRecord[] = [];
  for (let key = parent; key !== ''; ) {
    const record = tx.get(key);
    if (!record) throw notFound(`parent snapshot ${key} is missing from the chain`);
    records.push(record);
    key = record.parent;
  }
  return records;
}

/** The labels naming a fallback layer's image and blob, which its commit keeps so status can show them. */
function layerIdentity(labels: Labels): Labels {
  return Object.fromEntries(Object.entries(labels).filter(([key]) => LAYER_IDENTITY_LABELS.includes(key)));
}

/** The checks containerd makes before a commit, in its order: name free, key exists, key active. */
function checkCommittable(tx: MetadataTransaction, name: string, key: string): SnapshotRecord {
  if (tx.get(name) !== undefined) throw alreadyExists(`committed snapshot ${name}: already exists`);
  const record = requireRecord(tx, key);
  if (record.kind !== 'active') throw failedPrecondition(`snapshot ${key} is not active (it is ${record.kind})`);
  return record;
}

function commitRow(tx: MetadataTransaction, key: string, name: string, labels: Labels, usage: Usage): void {
  checkCommittable(tx, name, key);
  const now = new Date();
  tx.update(key, { key: name, kind: 'committed', labels, created: now, updated: now, usage });
}

function labelsAfterUpdate(info: Pick<SnapshotInfo, 'labels'>, fieldpaths: readonly string[], current: Labels): Labels {
  const given = info.labels ?? {};
  let next: Labels = { ...current };
  if (fieldpaths.length === 0) next = { ...given };
  for (const path of fieldpaths) {
    if (path === 'labels') next = { ...given };
    else if (path.startsWith('labels.')) {
      const label = path.slice('labels.'.length);
      next[label] = given[label] ?? '';
    } else throw invalidArgument(`cannot update ${JSON.stringify(path)}: only labels and labels.<key> can change`);
  }
  // containerd stores no empty labels: setting one to '' removes it.
  return Object.fromEntries(Object.entries(next).filter(([, value]) => value !== ''));
}

function validateLabels(labels: Labels): void {
  for (const [key, value] of Object.entries(labels)) {
    if (key === '') throw invalidArgument('label keys must not be empty');
    if (typeof value !== 'string') throw invalidArgument(`label ${key}: value must be a string`);
    const size = Buffer.byteLength(key) + Buffer.byteLength(value);
    if (size > MAX_LABEL_BYTES) throw invalidArgument(`label ${key.slice(0, 64)}: key and value are ${size} bytes, more than ${MAX_LABEL_BYTES}`);
  }
}

/** Mount points at or under `dir` (from /proc/self/mountinfo, octal escapes decoded). */
export function mountPointsUnder(dir: string): string[] {
  let mountinfo: string;
  try {
    mountinfo = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const points: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    const point = field.replace(/\\([0-7]{3})/g, (_match, octal: string) => String.fromCharCode(parseInt(octal, 8)));
    if (point === dir || point.startsWith(`${dir}/`)) points.push(point);
  }
  return points;
}
