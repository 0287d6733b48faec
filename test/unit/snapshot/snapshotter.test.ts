import { existsSync } from 'node:fs';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SnapshotError, type SnapshotErrorCode } from '../../../src/snapshot/errors.js';
import { MAX_LABEL_BYTES, Snapshotter } from '../../../src/snapshot/snapshotter.js';
import type { Mount } from '../../../src/snapshot/types.js';
import { STORE_KINDS, useSnapshotters } from './fixtures.js';

async function expectCode(promise: Promise<unknown>, code: SnapshotErrorCode): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeInstanceOf(SnapshotError);
  expect((err as SnapshotError).code).toBe(code);
}

/** The snapshot id in a mount: the directory above `fs` in a bind source or an upperdir. */
function idOf(mount: Mount | undefined): string {
  const path = mount?.type === 'bind' ? mount.source : mount?.options.find((o) => o.startsWith('upperdir='))?.slice('upperdir='.length);
  return (path as string).split('/').at(-2) as string;
}

/** Builds base <- mid <- top, committed, and returns their ids. */
async function chainOfThree(core: Snapshotter): Promise<string[]> {
  const ids: string[] = [];
  let parent = '';
  for (const name of ['base', 'mid', 'top']) {
    ids.push(idOf((await core.prepare(`${name}-active`, parent))[0]));
    await core.commit(name, `${name}-active`);
    parent = name;
  }
  return ids;
}

describe.each(STORE_KINDS)('snapshotter core (%s store)', (kind) => {
  const { open } = useSnapshotters();

  it('prepares a writable bind mount without a parent, with fs and work dirs', async () => {
    const { core, root } = await open(kind);
    const mounts = await core.prepare('a', '');
    expect(mounts).toEqual([{ type: 'bind', source: join(root, 'snapshots', '1', 'fs'), options: ['rw', 'rbind'] }]);
    expect((await stat(join(root, 'snapshots', '1', 'work'))).isDirectory()).toBe(true);
    expect((await stat(join(root, 'snapshots', '1', 'fs'))).mode & 0o777).toBe(0o755);
    expect(await core.mounts('a')).toEqual(mounts);
    const info = await core.stat('a');
    expect(info).toMatchObject({ name: 'a', parent: '', kind: 'active', labels: {} });
  });

  it('gives a view without a parent a read-only bind and no work dir', async () => {
    const { core, root } = await open(kind);
    expect(await core.view('v', '')).toEqual([{ type: 'bind', source: join(root, 'snapshots', '1', 'fs'), options: ['ro', 'rbind'] }]);
    expect(existsSync(join(root, 'snapshots', '1', 'work'))).toBe(false);
    expect((await core.stat('v')).kind).toBe('view');
  });

  it('stacks parents as overlay lowerdirs, nearest first, with upperdir and workdir', async () => {
    const { core, root } = await open(kind);
    const [base, mid, top] = await chainOfThree(core);
    const dir = (id: string | undefined) => join(root, 'snapshots', id as string);
    const mounts = await core.prepare('work', 'top');
    const id = idOf(mounts[0]);
    expect(mounts).toEqual([
      {
        type: 'overlay',
        source: 'overlay',
        options: [`workdir=${dir(String(id))}/work`, `upperdir=${dir(String(id))}/fs`, `lowerdir=${dir(top)}/fs:${dir(mid)}/fs:${dir(base)}/fs`],
      },
    ]);
  });

  it('gives views read-only mounts: a bind of a single parent, overlay lowerdirs for more', async () => {
    const { core, root } = await open(kind);
    const [base, mid] = await chainOfThree(core);
    expect(await core.view('v1', 'base')).toEqual([{ type: 'bind', source: join(root, 'snapshots', base as string, 'fs'), options: ['ro', 'rbind'] }]);
    const stacked = await core.view('v2', 'mid');
    expect(stacked).toEqual([{ type: 'overlay', source: 'overlay', options: [`lowerdir=${join(root, 'snapshots', mid as string, 'fs')}:${join(root, 'snapshots', base as string, 'fs')}`] }]);
  });

  it('adds index=off to overlay mounts when asked (as containerd does when the kernel has the option)', async () => {
    const { core } = await open(kind, { overlayIndexOff: true });
    await core.prepare('a', '');
    await core.commit('b', 'a');
    expect((await core.prepare('c', 'b'))[0]?.options[0]).toBe('index=off');
  });

  it('commits: the key becomes the name, kind committed, labels from the commit, usage recorded', async () => {
    const { core } = await open(kind);
    const [mount] = await core.prepare('a', '', { before: 'x' });
    await writeFile(join(mount?.source as string, 'data'), Buffer.alloc(20_000, 1));
    await core.commit('layer', 'a', { 'containerd.io/snapshot/x': 'y' });
    await expectCode(core.stat('a'), 'NotFound');
    expect(await core.stat('layer')).toMatchObject({ name: 'layer', kind: 'committed', labels: { 'containerd.io/snapshot/x': 'y' } });
    const usage = await core.usage('layer');
    expect(usage.size).toBeGreaterThanOrEqual(20_000);
    expect(usage.inodes).toBe(2);
    await expectCode(core.mounts('layer'), 'FailedPrecondition');
  });

  it('measures active snapshots on each Usage call', async () => {
    const { core } = await open(kind);
    const [mount] = await core.prepare('a', '');
    const before = await core.usage('a');
    await writeFile(join(mount?.source as string, 'f1'), Buffer.alloc(10_000, 1));
    await mkdir(join(mount?.source as string, 'sub'));
    const after = await core.usage('a');
    expect(after.inodes).toBe(before.inodes + 2);
    expect(after.size).toBeGreaterThanOrEqual(before.size + 10_000);
  });

  it('answers with the error classes containerd expects', async () => {
    const { core } = await open(kind);
    await core.prepare('a', '');
    await expectCode(core.prepare('a', ''), 'AlreadyExists');
    await expectCode(core.prepare('b', 'missing'), 'NotFound');
    await expectCode(core.prepare('b', 'a'), 'InvalidArgument'); // parent not committed
    await expectCode(core.prepare('', ''), 'InvalidArgument');
    await expectCode(core.stat('missing'), 'NotFound');
    await expectCode(core.mounts('missing'), 'NotFound');
    await expectCode(core.usage('missing'), 'NotFound');
    await expectCode(core.remove('missing'), 'NotFound');
    await expectCode(core.commit('x', 'missing'), 'NotFound');
    await core.view('v', '');
    await expectCode(core.commit('x', 'v'), 'FailedPrecondition');
    await core.prepare('c', '');
    await core.commit('done', 'c');
    await expectCode(core.commit('done', 'a'), 'AlreadyExists');
    await expectCode(core.prepare('big', '', { k: 'v'.repeat(MAX_LABEL_BYTES) }), 'InvalidArgument');
    await expectCode(core.prepare('empty-label', '', { '': 'v' }), 'InvalidArgument');
    // Nothing of the failed requests was left behind.
    expect((await core.list()).map((i) => i.name)).toEqual(['a', 'done', 'v']);
  });

  it('refuses to remove a parent (FailedPrecondition) and removes it once its children are gone', async () => {
    const { core, root } = await open(kind);
    await core.prepare('a', '');
    await core.commit('parent', 'a');
    await core.prepare('child', 'parent');
    await expectCode(core.remove('parent'), 'FailedPrecondition');
    await core.remove('child');
    await core.remove('parent');
    expect(await core.list()).toEqual([]);
    expect(await readdir(join(root, 'snapshots'))).toEqual([]);
  });

  it('updates labels by field mask like containerd: labels.<key>, labels, and none', async () => {
    const { core } = await open(kind);
    await core.prepare('a', '', { keep: '1', change: 'old', drop: 'x' });
    const created = await core.stat('a');
    await new Promise((r) => setTimeout(r, 5));
    const one = await core.update({ name: 'a', labels: { change: 'new', ignored: 'y' } }, ['labels.change']);
    expect(one.labels).toEqual({ keep: '1', change: 'new', drop: 'x' });
    expect(one.updated.getTime()).toBeGreaterThan(created.updated.getTime());
    expect(one.created).toEqual(created.created);
    expect((await core.update({ name: 'a', labels: {} }, ['labels.drop'])).labels).toEqual({ keep: '1', change: 'new' });
    expect((await core.update({ name: 'a', labels: { only: 'this' } }, ['labels'])).labels).toEqual({ only: 'this' });
    expect((await core.update({ name: 'a', labels: { all: 'new' } })).labels).toEqual({ all: 'new' });
    expect((await core.stat('a')).labels).toEqual({ all: 'new' });
    await expectCode(core.update({ name: 'a', labels: {} }, ['parent']), 'InvalidArgument');
    await expectCode(core.update({ name: 'missing', labels: {} }, ['labels']), 'NotFound');
    await expectCode(core.update({ name: '', labels: {} }), 'InvalidArgument');
    expect((await core.stat('a')).labels).toEqual({ all: 'new' });
  });

  it('lists with containerd filters: fields, quoted label keys, presence, AND within, OR across', async () => {
    const { core } = await open(kind);
    await core.prepare('a', '', { 'containerd.io/snapshot.ref': 'sha256:aaa', team: 'x' });
    await core.commit('base', 'a', { 'containerd.io/snapshot.ref': 'sha256:aaa', team: 'x' });
    await core.prepare('child', 'base', { team: 'y' });
    await core.view('v', 'base');
    const names = async (...filters: string[]) => (await core.list(filters)).map((i) => i.name);
    expect(await names()).toEqual(['base', 'child', 'v']);
    expect(await names('parent==base')).toEqual(['child', 'v']);
    expect(await names('kind==committed')).toEqual(['base']);
    expect(await names('labels.team')).toEqual(['base', 'child']);
    expect(await names('labels.team!=x')).toEqual(['child', 'v']);
    expect(await names('labels.team==y', 'kind==view')).toEqual(['child', 'v']);
    expect(await names('parent==base,kind==active')).toEqual(['child']);
    expect(await names('name~=^(b|v)')).toEqual(['base', 'v']);
    // What containerd's metadata layer sends to find a remote snapshot after AlreadyExists.
    expect(await names('labels."containerd.io/snapshot.ref"==sha256:aaa,parent==""')).toEqual(['base']);
    await expectCode(core.list(['labels.team==']), 'InvalidArgument');
    await expectCode(core.list(['parent=base']), 'InvalidArgument');
    await expectCode(core.list(['name~=(']), 'InvalidArgument');
  });

  it('rolls a failed creation back completely, and Cleanup clears what blocked it', async () => {
    const { core, root } = await open(kind);
    // A directory squatting on the id the next snapshot gets (as a crash between rename and commit leaves).
    await mkdir(join(root, 'snapshots', '1', 'fs'), { recursive: true });
    await writeFile(join(root, 'snapshots', '1', 'fs', 'stale'), 'x');
    await expect(core.prepare('a', '')).rejects.toThrow();
    expect(await core.list()).toEqual([]);
    expect((await readdir(join(root, 'snapshots'))).filter((n) => n.startsWith('new-'))).toEqual([]);
    expect(await core.cleanup()).toEqual([join(root, 'snapshots', '1')]);
    await core.prepare('a', '');
    expect(existsSync(join(root, 'snapshots', '1', 'fs', 'stale'))).toBe(false);
  });

  it('removes orphan and half-created directories on Cleanup and at open, keeping live ones', async () => {
    const { core, root } = await open(kind);
    await core.prepare('live', '');
    await mkdir(join(root, 'snapshots', '99', 'fs'), { recursive: true });
    await mkdir(join(root, 'snapshots', 'new-abc123', 'fs'), { recursive: true });
    expect((await core.cleanup()).sort()).toEqual([join(root, 'snapshots', '99'), join(root, 'snapshots', 'new-abc123')]);
    expect(await readdir(join(root, 'snapshots'))).toEqual(['1']);
    if (kind === 'sqlite') {
      core.close();
      await mkdir(join(root, 'snapshots', '42'));
      const reopened = await open(kind, { root });
      expect(await readdir(join(root, 'snapshots'))).toEqual(['1']);
      expect((await reopened.core.stat('live')).kind).toBe('active');
    }
  });
});

describe('SQLite metadata', () => {
  const { open } = useSnapshotters();

  it('survives a restart: snapshots, labels, usage and parent links are read back', async () => {
    const first = await open('sqlite');
    const [mount] = await first.core.prepare('a', '', { l: 'v' });
    await writeFile(join(mount?.source as string, 'f'), Buffer.alloc(5000, 1));
    await first.core.commit('base', 'a', { l: 'v' });
    await first.core.prepare('child', 'base');
    const usage = await first.core.usage('base');
    first.core.close();
    const second = await open('sqlite', { root: first.root });
    expect(await second.core.stat('base')).toMatchObject({ kind: 'committed', labels: { l: 'v' } });
    expect(await second.core.usage('base')).toEqual(usage);
    await expectCode(second.core.remove('base'), 'FailedPrecondition');
    // Ids are not reused after a delete: a new snapshot never lands on an old directory name.
    await second.core.remove('child');
    await second.core.prepare('next', 'base');
    const [next] = await second.core.mounts('next');
    expect(next?.options.find((o) => o.startsWith('upperdir='))).toBe(`upperdir=${join(first.root, 'snapshots', '3', 'fs')}`);
  });
});
