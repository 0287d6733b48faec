/**
 * The mounted tree of a layer equals the tree it was made from: the conformance fixture converted to
 * eStargz and zstd:chunked, pushed to a real docker-registry, opened through the registry client and
 * mounted with FUSE, then scanned with lstat/readlink/getxattr/sha256 and compared with the fixture's
 * oracle (which GNU tar's extraction of the same tar also matches: the conformance suite checks that).
 */
import { stat, statfs, readdir, readFile, open } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RegistryClient } from '../../../src/remote/index.js';
import { MountTracker, isMounted } from '../../helpers/fuse.js';
import { buildFixture, diffOracles, scanTree, type Fixture } from '../../helpers/fixture-tree.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { convertAndPush, mountTracked, mountedOracle, openRemoteLayer, testClient, type PushedLayer } from './harness.js';

let fixture: Fixture;
let registry: TestRegistry;
let client: RegistryClient;
const tracker = new MountTracker();

beforeAll(async () => {
  fixture = await buildFixture();
  registry = await startRegistry();
  client = testClient();
});

afterAll(async () => {
  await tracker.unmountAll();
  await client?.close();
  await registry?.stop();
  await fixture?.cleanup();
});

describe.each([
  { format: 'estargz' as const, options: { chunkSize: 64 * 1024 } },
  { format: 'zstd:chunked' as const, options: { chunkSize: 64 * 1024, minChunkSize: 16 * 1024 } },
])('a $format layer mounted from the registry', ({ format, options }) => {
  let layer: PushedLayer;
  let mountDir: string;

  beforeAll(async () => {
    const dir = await fixture.tempDir(`mount-${format.replace(':', '-')}`);
    layer = await convertAndPush(registry, fixture.tarPath, join(dir, 'blob'), { format, ...options });
    const { source, index } = await openRemoteLayer(client, registry.host, layer);
    const mount = await mountTracked(tracker, dir, 'mnt', { index, source, layerDigest: layer.written.digest, fetch: { background: false } });
    mountDir = mount.mountpoint;
  });

  it('shows every name, type, mode, owner, size, time, link target, device, xattr, hardlink and byte of the original', async () => {
    const actual = await scanTree(mountDir);
    expect(diffOracles(mountedOracle(fixture.expected), actual)).toEqual([]);
  });

  it('gives hardlinked names one inode number and link count, and distinct files distinct inodes', async () => {
    const a = await stat(join(mountDir, 'links/a/target.txt'));
    const b = await stat(join(mountDir, 'links/b/hard.txt'));
    const other = await stat(join(mountDir, 'files/hello.txt'));
    expect(b.ino).toBe(a.ino);
    expect(a.nlink).toBe(3);
    expect(other.ino).not.toBe(a.ino);
  });

  it('hides landmarks and opaque markers and shows whiteouts as 0/0 character devices', async () => {
    expect(await readdir(mountDir)).not.toContain('.wh.rootgone');
    const rootgone = await stat(join(mountDir, 'rootgone'));
    expect(rootgone.isCharacterDevice()).toBe(true);
    expect(rootgone.rdev).toBe(0);
    expect(await readdir(join(mountDir, 'whiteouts/opaque'))).toEqual(['nested', 'new.txt']);
  });

  it('is read-only and reports itself in statfs', async () => {
    await expect(open(join(mountDir, 'top.txt'), 'r+')).rejects.toMatchObject({ code: 'EROFS' });
    const fsStat = await statfs(mountDir);
    expect(fsStat.files).toBeGreaterThan(100);
    expect(await isMounted(mountDir)).toBe(true);
  });

  it('serves reads at any offset, across chunk boundaries', async () => {
    const original = await readFile(join(fixture.dir, 'big/random.bin'));
    const handle = await open(join(mountDir, 'big/random.bin'), 'r');
    try {
      for (const [offset, length] of [[65536 - 10, 20], [1_000_000, 300_000], [original.length - 5, 100]] as const) {
        const buf = Buffer.alloc(length);
        const { bytesRead } = await handle.read(buf, 0, length, offset);
        expect(buf.subarray(0, bytesRead).equals(original.subarray(offset, offset + length))).toBe(true);
      }
    } finally {
      await handle.close();
    }
  });
});
