import Database from 'better-sqlite3';
import { alreadyExists, notFound } from './errors.js';
import type { MetadataStore, MetadataTransaction, NewSnapshot, SnapshotChanges } from './metadata-store.js';
import type { Labels, SnapshotKind, SnapshotRecord } from './types.js';

const SCHEMA_VERSION = 1;

// AUTOINCREMENT (not just INTEGER PRIMARY KEY) so an id is never handed out twice: a directory left
// behind under an old id must never be mistaken for a new snapshot's.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS snapshots (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  key TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
  parent TEXT NOT NULL DEFAULT '',
  labels TEXT NOT NULL DEFAULT '{}',
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  usage_size INTEGER NOT NULL DEFAULT 0,
  usage_inodes INTEGER NOT NULL DEFAULT 0,
  fallback_reason TEXT
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots (parent);
`;

interface Row {
  id: number;
  key: string;
  kind: SnapshotKind;
  parent: string;
  labels: string;
  created_ms: number;
  updated_ms: number;
  usage_size: number;
  usage_inodes: number;
  fallback_reason: string | null;
}

function recordOf(row: Row): SnapshotRecord {
  return {
    id: String(row.id),
    key: row.key,
    kind: row.kind,
    parent: row.parent,
    labels: JSON.parse(row.labels) as Labels,
    created: new Date(row.created_ms),
    updated: new Date(row.updated_ms),
    usage: { size: row.usage_size, inodes: row.usage_inodes },
    ...(row.fallback_reason === null ? {} : { fallbackReason: row.fallback_reason }),
  };
}

/**
 * MetadataStore in one SQLite file (better-sqlite3). WAL with synchronous=FULL: a transaction that
 * returned is on disk, one that did not is not there after a crash. Transactions are BEGIN IMMEDIATE so
 * a second process opening the same file cannot interleave writes.
 */
export class SqliteMetadataStore implements MetadataStore {
  private readonly db: Database.Database;
  private readonly tx: SqliteTransaction;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
    this.tx = new SqliteTransaction(this.db);
  }

  transaction<T>(fn: (tx: MetadataTransaction) => T): T {
    return this.db.transaction(() => fn(this.tx)).immediate();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private migrate(): void {
    const version = Number(this.db.pragma('user_version', { simple: true }));
    if (version > SCHEMA_VERSION) throw new Error(`metadata database schema ${version} is newer than this lazypull (${SCHEMA_VERSION})`);
    this.db.exec(SCHEMA);
    this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }
}

class SqliteTransaction implements MetadataTransaction {
  private readonly byKey: Database.Statement<[string], Row>;
  private readonly insertRow: Database.Statement;
  private readonly deleteRow: Database.Statement<[string]>;
  private readonly childrenOf: Database.Statement<[string], { key: string }>;
  private readonly all: Database.Statement<[], Row>;

  constructor(private readonly db: Database.Database) {
    this.byKey = db.prepare('SELECT * FROM snapshots WHERE key = ?');
    this.insertRow = db.prepare(
      `INSERT INTO snapshots (key, kind, parent, labels, created_ms, updated_ms, usage_size, usage_inodes, fallback_reason)
       VALUES (@key, @kind, @parent, @labels, @created_ms, @updated_ms, @usage_size, @usage_inodes, @fallback_reason)`,
    );
    this.deleteRow = db.prepare('DELETE FROM snapshots WHERE key = ?');
    this.childrenOf = db.prepare('SELECT key FROM snapshots WHERE parent = ? ORDER BY key');
    this.all = db.prepare('SELECT * FROM snapshots ORDER BY key');
  }

  get(key: string): SnapshotRecord | undefined {
    const row = this.byKey.get(key);
    return row && recordOf(row);
  }

  insert(snapshot: NewSnapshot): SnapshotRecord {
    if (this.byKey.get(snapshot.key)) throw alreadyExists(`snapshot ${snapshot.key}: already exists`);
    this.insertRow.run({
      key: snapshot.key,
      kind: snapshot.kind,
      parent: snapshot.parent,
      labels: JSON.stringify(snapshot.labels),
      created_ms: snapshot.created.getTime(),
      updated_ms: snapshot.updated.getTime(),
      usage_size: snapshot.usage?.size ?? 0,
      usage_inodes: snapshot.usage?.inodes ?? 0,
      fallback_reason: snapshot.fallbackReason ?? null,
    });
    return this.get(snapshot.key) as SnapshotRecord;
  }

  update(key: string, changes: SnapshotChanges): SnapshotRecord {
    const current = this.get(key);
    if (!current) throw notFound(`snapshot ${key}: not found`);
    const newKey = changes.key ?? key;
    if (newKey !== key && this.byKey.get(newKey)) throw alreadyExists(`snapshot ${newKey}: already exists`);
    const columns: Record<string, string | number | null> = {};
    if (changes.key !== undefined) columns.key = changes.key;
    if (changes.kind !== undefined) columns.kind = changes.kind;
    if (changes.labels !== undefined) columns.labels = JSON.stringify(changes.labels);
    if (changes.created !== undefined) columns.created_ms = changes.created.getTime();
    if (changes.updated !== undefined) columns.updated_ms = changes.updated.getTime();
    if (changes.usage !== undefined) {
      columns.usage_size = changes.usage.size;
      columns.usage_inodes = changes.usage.inodes;
    }
    if (changes.fallbackReason !== undefined) columns.fallback_reason = changes.fallbackReason;
    const names = Object.keys(columns);
    if (names.length > 0) {
      // Column names come from the fixed list above, never from input.
      const assignments = names.map((name) => `${name} = @${name}`).join(', ');
      this.db.prepare(`UPDATE snapshots SET ${assignments} WHERE key = @whereKey`).run({ ...columns, whereKey: key });
    }
    return this.get(newKey) as SnapshotRecord;
  }

  delete(key: string): boolean {
    return this.deleteRow.run(key).changes > 0;
  }

  children(key: string): string[] {
    return this.childrenOf.all(key).map((row) => row.key);
  }

  list(): SnapshotRecord[] {
    return this.all.all().map(recordOf);
  }
}
