import { alreadyExists, notFound } from './errors.js';
import type { MetadataStore, MetadataTransaction, NewSnapshot, SnapshotChanges } from './metadata-store.js';
import type { SnapshotRecord } from './types.js';

function copyRecord(record: SnapshotRecord): SnapshotRecord {
  return { ...record, labels: { ...record.labels }, usage: { ...record.usage } };
}

/**
 * MetadataStore in memory, for unit tests. A transaction works on a copy of the rows and replaces the
 * originals only when it returns, which gives the same all-or-nothing behaviour as the SQLite store.
 */
export class MemoryMetadataStore implements MetadataStore {
  private rows = new Map<string, SnapshotRecord>();
  private lastId = 0;
  private closed = false;

  transaction<T>(fn: (tx: MetadataTransaction) => T): T {
    if (this.closed) throw new Error('metadata store is closed');
    const draft = new Map([...this.rows].map(([key, row]) => [key, copyRecord(row)]));
    const draftState = { lastId: this.lastId };
    const result = fn(new MemoryTransaction(draft, draftState));
    this.rows = draft;
    this.lastId = draftState.lastId;
    return result;
  }

  close(): void {
    this.closed = true;
  }
}

class MemoryTransaction implements MetadataTransaction {
  constructor(
    private readonly rows: Map<string, SnapshotRecord>,
    private readonly state: { lastId: number },
  ) {}

  get(key: string): SnapshotRecord | undefined {
    const row = this.rows.get(key);
    return row && copyRecord(row);
  }

  insert(snapshot: NewSnapshot): SnapshotRecord {
    if (this.rows.has(snapshot.key)) throw alreadyExists(`snapshot ${snapshot.key}: already exists`);
    this.state.lastId += 1;
    const { fallbackReason, usage, ...rest } = snapshot;
    const row: SnapshotRecord = {
      ...rest,
      id: String(this.state.lastId),
      labels: { ...snapshot.labels },
      usage: usage ? { ...usage } : { size: 0, inodes: 0 },
      ...(fallbackReason === undefined ? {} : { fallbackReason }),
    };
    this.rows.set(row.key, row);
    return copyRecord(row);
  }

  update(key: string, changes: SnapshotChanges): SnapshotRecord {
    const row = this.rows.get(key);
    if (!row) throw notFound(`snapshot ${key}: not found`);
    const newKey = changes.key ?? key;
    if (newKey !== key && this.rows.has(newKey)) throw alreadyExists(`snapshot ${newKey}: already exists`);
    const { fallbackReason, ...rest } = changes;
    const next: SnapshotRecord = { ...row, ...stripUndefined(rest) };
    if (fallbackReason === null) delete next.fallbackReason;
    else if (fallbackReason !== undefined) next.fallbackReason = fallbackReason;
    this.rows.delete(key);
    this.rows.set(newKey, next);
    return copyRecord(next);
  }

  delete(key: string): boolean {
    return this.rows.delete(key);
  }

  children(key: string): string[] {
    return [...this.rows.values()].filter((row) => row.parent === key).map((row) => row.key);
  }

  list(): SnapshotRecord[] {
    return [...this.rows.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).map(copyRecord);
  }
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
