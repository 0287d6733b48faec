/**
 * Two FUSE layers stacked with overlayfs show the same tree as applying both layer tars in order (the
 * upper's whiteouts delete, its opaque directory hides the lower's contents): the FUSE mounts present
 * whiteouts and opaque directories the way overlayfs expects of unpacked layers.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RegistryClient } from '../../../src/remote/index.js';
import { MountTracker } from '../../helpers/fuse.js';
import { extractTar, makeTar, run, scanTree, walk, type ExpectedEntry } from '../../helpers/fixture-tree.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { convertAndPush, mountTracked, openRemoteLayer, testClient } from './harness.js';

let work: string;
let registry: TestRegistry;
let client: RegistryClient;
const tracker = new MountTracker();

async function buildTree(dir: string, files: Record<string, string | null>): Promise<string[]> {
  for (const [path, content] of Object.entries(files)) {
    if (content === null) await mkdir(join(dir, path), { recursive: true });
    else {
      await mkdir(join(dir, path, '..'), { recursive: true });
      await writeFile(join(dir, path), content);
    }
  }
  return (await walk(dir)).filter((p) => p !== '');
}

/** What a container runtime does with the upper tar: whiteouts delete, opaque dirs are emptied, then extract. */
async function applyLayer(tarPath: string, paths: string[], dest: string): Promise<void> {
  for (const p of paths) {
    const slash = p.lastIndexOf('/');
    const dir = p.slice(0, slash + 1);
    const base = p.slice(slash + 1);
    if (base === '.wh..wh..opq') await run('sh', ['-c', 'find "$1" -mindepth 1 -maxdepth 1 -exec rm -rf {} +', 'sh', join(dest, dir)]);
    else if (base.startsWith('.wh.')) await rm(join(dest, dir, base.slice(4)), { recursive: true, force: true });
  }
  await run('tar', ['--xattrs', '--numeric-owner', '--same-owner', '-p', '--exclude=.wh.*', '-C', dest, '-xf', tarPath]);
}

/** Overlayfs reports 1 link for merged directories: compare everything else. */
function comparable(tree: Map<string, ExpectedEntry>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [p, e] of tree) {
    const xattrs = [...e.xattrs.keys()].filter((k) => !k.startsWith('trusted.overlay.')).sort().join(',');
    out[p] = [e.type, e.mode.toString(8), e.uid, e.gid, e.size, e.sha256 ?? '', e.linkName, xattrs, e.type === 'dir' ? '' : e.linkCount].join(' ');
  }
  return out;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'lazypull-fs-overlay-'));
  registry = await startRegistry();
  client = testClient();
});

afterAll(async () => {
  await tracker.unmountAll();
  await client?.close();
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('overlayfs over two FUSE layers', () => {
  it('equals extracting both tars in order, whiteouts and opaque directories applied', async () => {
    const lowerTree = join(work, 'lower-tree');
    const upperTree = join(work, 'upper-tree');
    const lowerPaths = await buildTree(lowerTree, {
      'keep.txt': 'lower keep\n',
      'gone-file': 'deleted by the upper layer\n',
      'gone-dir/inside': 'whole directory deleted\n',
      'mixed/a': 'lower a\n',
      'mixed/b': 'lower b, deleted\n',
      'opaque/old': 'hidden by the opaque upper dir\n',
      'opaque/sub/old2': 'also hidden\n',
      'replaced.txt': 'lower version\n',
    });
    const upperPaths = await buildTree(upperTree, {
      '.wh.gone-file': '',
      '.wh.gone-dir': '',
      'mixed/.wh.b': '',
      'mixed/c': 'upper c\n',
      'opaque/.wh..wh..opq': '',
      'opaque/new': 'only this survives\n',
      'replaced.txt': 'upper version\n',
      'upper-only/file': 'new directory\n',
    });
    await makeTar(lowerTree, lowerPaths, join(work, 'lower.tar'), false);
    await makeTar(upperTree, upperPaths, join(work, 'upper.tar'), false);

    const expectedDir = join(work, 'expected');
    await mkdir(expectedDir);
    await extractTar(join(work, 'lower.tar'), expectedDir);
    await applyLayer(join(work, 'upper.tar'), upperPaths, expectedDir);

    const mounts = [];
    for (const name of ['lower', 'upper']) {
      const layer = await convertAndPush(registry, join(work, `${name}.tar`), join(work, `${name}.blob`), {});
      const { source, index } = await openRemoteLayer(client, registry.host, layer);
      mounts.push(await mountTracked(tracker, work, `${name}-mnt`, { index, source, layerDigest: layer.written.digest, fetch: { background: false } }));
    }
    const merged = join(work, 'merged');
    await mkdir(merged);
    await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${mounts[1]!.mountpoint}:${mounts[0]!.mountpoint}`, merged]);
    tracker.trackPath(merged);

    const actual = comparable(await scanTree(merged));
    const expected = comparable(await scanTree(expectedDir));
    expect(actual).toEqual(expected);
    expect(Object.keys(actual)).not.toContain('gone-file');
    expect(Object.keys(actual)).not.toContain('opaque/old');
  });
});
