import { describe, expect, it } from 'vitest';
import { SnapshotError } from '../../../src/snapshot/errors.js';
import { NoRemoteLayers, REMOTE_LABEL, SNAPSHOT_REF_LABEL, type RemoteLayerRequest, type RemoteLayerResolution, type RemoteLayerResolver, type RemoteSnapshot } from '../../../src/snapshot/remote-layer.js';
import { useSnapshotters } from './fixtures.js';

/** A resolver that answers what the test says and records what it was asked. */
class ScriptedResolver implements RemoteLayerResolver {
  readonly requests: RemoteLayerRequest[] = [];
  readonly released: string[] = [];
  readonly restored: RemoteSnapshot[] = [];
  readonly used: RemoteSnapshot[][] = [];
  restoreError?: Error;
  useError?: Error;
  constructor(private readonly answer: (request: RemoteLayerRequest) => RemoteLayerResolution) {}
  async restore(layer: RemoteSnapshot): Promise<void> {
    this.restored.push(layer);
    if (this.restoreError) throw this.restoreError;
  }
  async beforeUse(layers: readonly RemoteSnapshot[]): Promise<void> {
    this.used.push([...layers]);
    if (this.useError) throw this.useError;
  }
  async resolve(request: RemoteLayerRequest): Promise<RemoteLayerResolution> {
    this.requests.push(request);
    return this.answer(request);
  }
  async release(mountpoint: string): Promise<void> {
    this.released.push(mountpoint);
  }
}

const LAYER_LABELS = {
  [SNAPSHOT_REF_LABEL]: 'sha256:chain1',
  'containerd.io/snapshot/remote/stargz.reference': '127.0.0.1:5000/app:v1',
  'containerd.io/snapshot/stargz/toc.digest': 'sha256:toc',
};

async function errorOf(promise: Promise<unknown>): Promise<SnapshotError> {
  return promise.then(
    () => {
      throw new Error('expected a SnapshotError');
    },
    (err: SnapshotError) => err,
  );
}

describe('remote layer seam', () => {
  const { open } = useSnapshotters();

  it('commits a mounted layer under its chainID with the remote label and answers AlreadyExists', async () => {
    const resolver = new ScriptedResolver((request) => ({ mounted: request.mountpoint }));
    const { core, root } = await open('sqlite', { remote: resolver });
    const err = await errorOf(core.prepare('extract-1', '', LAYER_LABELS));
    expect(err.code).toBe('AlreadyExists');
    expect(resolver.requests).toHaveLength(1);
    expect(resolver.requests[0]).toMatchObject({ key: 'extract-1', parent: '', chainId: 'sha256:chain1', labels: LAYER_LABELS });
    expect(resolver.requests[0]?.mountpoint).toBe(`${root}/snapshots/1/fs`);
    const info = await core.stat('sha256:chain1');
    expect(info.kind).toBe('committed');
    expect(info.labels[REMOTE_LABEL]).toBeDefined();
    expect(info.labels[SNAPSHOT_REF_LABEL]).toBe('sha256:chain1');
    await expect(core.stat('extract-1')).rejects.toMatchObject({ code: 'NotFound' });
    // containerd then finds it with this filter.
    expect((await core.list(['labels."containerd.io/snapshot.ref"==sha256:chain1,parent==""'])).map((i) => i.name)).toEqual(['sha256:chain1']);
    // The same layer again: AlreadyExists before asking the resolver.
    expect((await errorOf(core.prepare('extract-2', '', LAYER_LABELS))).code).toBe('AlreadyExists');
    expect(resolver.requests).toHaveLength(1);
    // Removing a remote snapshot releases its mount before the directory goes.
    await core.remove('sha256:chain1');
    expect(resolver.released).toEqual([`${root}/snapshots/1/fs`]);
    expect(core.fallbacks()).toEqual([]);
  });

  it('falls back to an ordinary active snapshot and records why', async () => {
    const resolver = new ScriptedResolver(() => ({ fallback: 'no TOC digest annotation' }));
    const { core } = await open('memory', { remote: resolver });
    const mounts = await core.prepare('extract-1', '', LAYER_LABELS);
    expect(mounts[0]).toMatchObject({ type: 'bind', options: ['rw', 'rbind'] });
    expect(core.fallbacks()).toEqual([{ key: 'extract-1', reason: 'no TOC digest annotation' }]);
    // The reason stays with the layer once containerd has unpacked and committed it (containerd's
    // commit passes other labels), and so do the labels naming its image, for status.
    await core.commit('sha256:chain1', 'extract-1', { 'containerd.io/gc.root': 'x' });
    expect(core.fallbacks()).toEqual([{ key: 'sha256:chain1', reason: 'no TOC digest annotation' }]);
    const labels = (await core.stat('sha256:chain1')).labels;
    expect(labels).toEqual({ 'containerd.io/gc.root': 'x', 'containerd.io/snapshot/remote/stargz.reference': '127.0.0.1:5000/app:v1' });
    expect(labels[REMOTE_LABEL]).toBeUndefined();
  });

  it('treats a throwing resolver, or one that mounted elsewhere, as a fallback with the reason', async () => {
    const throwing = new ScriptedResolver(() => {
      throw new Error('registry unreachable: ECONNREFUSED');
    });
    const first = await open('memory', { remote: throwing });
    await first.core.prepare('k', '', LAYER_LABELS);
    expect(first.core.fallbacks()[0]?.reason).toBe('remote layer failed: registry unreachable: ECONNREFUSED');

    const misplaced = new ScriptedResolver(() => ({ mounted: '/somewhere/else' }));
    const second = await open('memory', { remote: misplaced });
    const mounts = await second.core.prepare('k', '', LAYER_LABELS);
    expect(mounts[0]?.type).toBe('bind');
    expect(misplaced.released).toEqual(['/somewhere/else']);
    expect(second.core.fallbacks()[0]?.reason).toMatch(/mounted at \/somewhere\/else instead of/);
  });

  it('does not consult the resolver without containerd.io/snapshot.ref', async () => {
    const resolver = new ScriptedResolver((request) => ({ mounted: request.mountpoint }));
    const { core } = await open('memory', { remote: resolver });
    await core.prepare('plain', '', { 'containerd.io/snapshot/remote/stargz.reference': 'x' });
    expect(resolver.requests).toEqual([]);
    expect(core.fallbacks()).toEqual([]);
  });

  it('NoRemoteLayers: every layer is pulled normally, with the reason recorded (the default)', async () => {
    const { core } = await open('sqlite');
    await core.prepare('extract-1', '', LAYER_LABELS);
    expect(core.fallbacks()).toEqual([{ key: 'extract-1', reason: NoRemoteLayers.REASON }]);
    expect(NoRemoteLayers.REASON).toBe('no remote layer resolver is configured');
  });

  it('mounts remote snapshots again at open; a failure is reported and kept, or fails open when configured', async () => {
    const resolver = new ScriptedResolver((request) => ({ mounted: request.mountpoint }));
    const first = await open('sqlite', { remote: resolver });
    await errorOf(first.core.prepare('extract-1', '', LAYER_LABELS));
    await first.core.prepare('plain', '', {});
    first.core.close();

    const again = new ScriptedResolver(() => ({ fallback: 'unused' }));
    const reopened = await open('sqlite', { root: first.root, remote: again });
    expect(again.restored).toEqual([{ chainId: 'sha256:chain1', labels: expect.objectContaining(LAYER_LABELS) as unknown, mountpoint: `${first.root}/snapshots/1/fs` }]);
    expect(reopened.core.restoreFailures).toEqual([]);
    reopened.core.close();

    const failing = new ScriptedResolver(() => ({ fallback: 'unused' }));
    failing.restoreError = new Error('registry unreachable');
    const reported = await open('sqlite', { root: first.root, remote: failing });
    expect(reported.core.restoreFailures).toEqual([{ chainId: 'sha256:chain1', reason: 'registry unreachable' }]);
    reported.core.close();
    await expect(open('sqlite', { root: first.root, remote: failing, restoreFailure: 'fail' })).rejects.toThrow(/1 remote snapshot\(s\) could not be restored, e.g. sha256:chain1: registry unreachable/);
  });

  it('checks the remote layers under a container before it starts, nearest first, and fails the Prepare as Unavailable when they cannot serve', async () => {
    const resolver = new ScriptedResolver((request) => ({ mounted: request.mountpoint }));
    const { core, root } = await open('memory', { remote: resolver });
    await errorOf(core.prepare('extract-1', '', LAYER_LABELS));
    await errorOf(core.prepare('extract-2', 'sha256:chain1', { ...LAYER_LABELS, [SNAPSHOT_REF_LABEL]: 'sha256:chain2' }));
    await core.prepare('container', 'sha256:chain2', {});
    expect(resolver.used.map((layers) => layers.map((l) => l.chainId))).toEqual([['sha256:chain2', 'sha256:chain1']]);
    expect(resolver.used[0]?.[1]?.mountpoint).toBe(`${root}/snapshots/1/fs`);
    await core.view('view', 'sha256:chain1', {});
    expect(resolver.used).toHaveLength(2);

    resolver.useError = new Error('layer sha256:x could not be restored');
    const err = await errorOf(core.prepare('container-2', 'sha256:chain2', {}));
    expect(err.code).toBe('Unavailable');
    expect(err.message).toBe('a lazily pulled layer cannot serve reads: layer sha256:x could not be restored');
    await expect(core.stat('container-2')).rejects.toMatchObject({ code: 'NotFound' });
    // No remote ancestors, or no parent: nothing to check.
    await core.prepare('scratch', '', {});
    expect(resolver.used).toHaveLength(3);
  });
});
