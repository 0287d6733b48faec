import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { MemoryMetadataStore } from '../../../src/snapshot/memory-store.js';
import type { MetadataStore } from '../../../src/snapshot/metadata-store.js';
import type { RemoteLayerResolver } from '../../../src/snapshot/remote-layer.js';
import { Snapshotter } from '../../../src/snapshot/snapshotter.js';
import { SqliteMetadataStore } from '../../../src/snapshot/sqlite-store.js';

export type StoreKind = 'memory' | 'sqlite';
export const STORE_KINDS: StoreKind[] = ['memory', 'sqlite'];

export function makeStore(kind: StoreKind, root: string): MetadataStore {
  return kind === 'memory' ? new MemoryMetadataStore() : new SqliteMetadataStore(join(root, 'metadata.db'));
}

/** Temp roots and snapshotters made here are closed and removed after each test, also when it fails. */
export function useSnapshotters(): {
  makeRoot: () => Promise<string>;
  open: (kind: StoreKind, options?: { root?: string; remote?: RemoteLayerResolver; store?: MetadataStore; overlayIndexOff?: boolean; restoreFailure?: 'report' | 'fail' }) => Promise<{ core: Snapshotter; root: string }>;
} {
  const roots: string[] = [];
  const cores: Snapshotter[] = [];
  afterEach(async () => {
    for (const core of cores.splice(0)) core.close();
    await Promise.all(roots.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
  });
  const makeRoot = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lazypull-snap-'));
    roots.push(dir);
    return dir;
  };
  return {
    makeRoot,
    open: async (kind, options = {}) => {
      const root = options.root ?? (await makeRoot());
      const core = await Snapshotter.open({
        root,
        store: options.store ?? makeStore(kind, root),
        overlayIndexOff: options.overlayIndexOff ?? false,
        ...(options.remote ? { remote: options.remote } : {}),
        ...(options.restoreFailure ? { restoreFailure: options.restoreFailure } : {}),
      });
      cores.push(core);
      return { core, root };
    },
  };
}
