/** The snapshot model containerd's snapshotters share (containerd/snapshots.Info, Usage, mount.Mount). */

export type SnapshotKind = 'active' | 'view' | 'committed';

export type Labels = Record<string, string>;

export interface Usage {
  /** Bytes on disk (allocated blocks, hardlinks counted once), like containerd's fs.DiskUsage. */
  size: number;
  inodes: number;
}

/** One row of snapshot metadata. `key` is the client's name for it; `id` names its directory. */
export interface SnapshotRecord {
  id: string;
  key: string;
  kind: SnapshotKind;
  /** Key of the committed parent, '' for none. */
  parent: string;
  labels: Labels;
  created: Date;
  updated: Date;
  /** Recorded at commit; active snapshots are measured on demand instead. */
  usage: Usage;
  /**
   * Why a layer Prepare'd with remote-snapshot labels was not served lazily (undefined when it was, or
   * when no remote layer was asked for): the per-layer answer users ask for.
   */
  fallbackReason?: string;
}

/** What Stat, Update and List return: a record without its internal id and usage. */
export interface SnapshotInfo {
  name: string;
  parent: string;
  kind: SnapshotKind;
  labels: Labels;
  created: Date;
  updated: Date;
}

/** containerd's mount.Mount: what the client passes to mount(2). */
export interface Mount {
  type: string;
  source: string;
  target?: string;
  options: string[];
}

export function infoOf(record: SnapshotRecord): SnapshotInfo {
  return {
    name: record.key,
    parent: record.parent,
    kind: record.kind,
    labels: { ...record.labels },
    created: record.created,
    updated: record.updated,
  };
}
