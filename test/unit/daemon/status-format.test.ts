import { describe, expect, it } from 'vitest';
import { formatStatus } from '../../../src/cli/commands/status.js';
import type { DaemonStatus, LayerStatus } from '../../../src/daemon/status.js';

const base: LayerStatus = {
  image: 'r.io/app:v1', digest: `sha256:${'a'.repeat(64)}`, snapshot: 'sha256:chain', state: 'lazy', reason: '', format: 'estargz',
  fetched_bytes: 1536, total_bytes: 10 << 20, prefetch_bytes: 0, prefetch_done: true, completed_bytes: 0, background_done: false, served_bytes: 0, warning: '',
};

describe('lazypull status output', () => {
  it('groups layers by image and shows lazy progress, fallback reasons and the cache', () => {
    const status: DaemonStatus = {
      layers: [base, { ...base, digest: `sha256:${'b'.repeat(64)}`, state: 'fallback', reason: 'not-lazy-format: not an eStargz or zstd:chunked layer' }],
      cache: { dir: '/var/lib/lazypull/cache', disk_bytes: 2 << 20, max_disk_bytes: 10 * 1024 ** 3, disk_entries: 3, memory_bytes: 0, max_memory_bytes: 256 << 20, hits: 5, misses: 3, evictions: 0 },
    };
    const text = formatStatus(status);
    expect(text).toContain('r.io/app:v1: 1 of 2 layer(s) lazy');
    expect(text).toMatch(/sha256:aaaaaaaaaaaa\s+lazy\s+estargz, fetched 1\.5 KiB of 10\.0 MiB, no prefetch/);
    expect(text).toMatch(/sha256:bbbbbbbbbbbb\s+fallback\s+not-lazy-format: not an eStargz/);
    expect(text).toContain('cache /var/lib/lazypull/cache: 2.0 MiB of 10.0 GiB on disk (3 chunks)');
  });

  it('says so when there are no layers', () => {
    expect(formatStatus({ layers: [], cache: { dir: '/c', disk_bytes: 0, max_disk_bytes: 1, disk_entries: 0, memory_bytes: 0, max_memory_bytes: 1, hits: 0, misses: 0, evictions: 0 } })).toMatch(/^no image layers yet\n/);
  });
});
