import type { Labels, SnapshotKind, SnapshotRecord, Usage } from './types.js';

/** What a new snapshot row needs; the store assigns the id. */
export interface NewSnapshot {
  key: string;
  kind: SnapshotKind;
  parent: string;
  labels: Labels;
  created: Date;
  updated: Date;
  usage?: Usage;
  fallbackReason?: string;
}

/** Fields a transaction may change on an existing row (the id and parent never change). */
export interface SnapshotChanges {
  key?: string;
  kind?: SnapshotKind;
  labels?: Labels;
  created?: Date;
  updated?: Date;
  usage?: Usage;
  fallbackReason?: string | null;
}

/**
 * Operations inside one transaction. They are synchronous on purpose: a transaction must never span an
 * await, so no other request can interleave with it, and the filesystem step that must happen "inside"
 * it (the rename that publishes a new snapshot directory) runs synchronously before it commits.
 */
export interface MetadataTransaction {
  get(key: string): SnapshotRecord | undefined;
  /** Inserts a row; throws AlreadyExists if the key is taken. Ids are never reused, even after deletes. */
  insert(snapshot: NewSnapshot): SnapshotRecord;
  /** Changes a row; throws NotFound if the key does not exist, AlreadyExists if a new key is taken. */
  update(key: string, changes: SnapshotChanges): SnapshotRecord;
  /** Deletes a row; returns whether it existed. */
  delete(key: string): boolean;
  /** Keys of the snapshots whose parent is `key`. */
  children(key: string): string[];
  /** All rows, ordered by key. */
  list(): SnapshotRecord[];
}

/**
 * Snapshot metadata in a transactional store. `transaction(fn)` commits what fn did when it returns and
 * undoes all of it when it throws (the error propagates).
 */
export interface MetadataStore {
  transaction<T>(fn: (tx: MetadataTransaction) => T): T;
  close(): void;
}
