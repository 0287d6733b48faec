import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { descriptorsJson } from '../../../scripts/grpc-descriptors.mjs';
import { loadService, warmMessageCodecs } from '../../../src/grpc/protos.js';

describe('src/grpc/descriptors.json', () => {
  it('is what scripts/grpc-descriptors.mjs makes of the vendored .proto tree (run it after changing a .proto)', () => {
    expect(readFileSync(new URL('../../../src/grpc/descriptors.json', import.meta.url), 'utf8')).toBe(descriptorsJson());
  });

  it.each([
    'containerd.services.content.v1.Content',
    'containerd.services.diff.v1.Diff',
    'containerd.services.images.v1.Images',
    'containerd.services.leases.v1.Leases',
    'containerd.services.snapshots.v1.Snapshots',
    'lazypull.v1.Status',
  ])('defines %s with its methods', (name) => {
    const { service } = loadService(name);
    expect(Object.keys(service).length).toBeGreaterThan(0);
    for (const method of Object.values(service)) expect(method.path.startsWith(`/${name}/`)).toBe(true);
  });

  it('keeps field names as written and turns timestamps and int64 into plain numbers', () => {
    const prepare = loadService('containerd.services.snapshots.v1.Snapshots').service.Stat!;
    const info = { info: { name: 'n', parent: 'p', kind: 'COMMITTED', created_at: { seconds: 5, nanos: 6 }, updated_at: { seconds: 7, nanos: 8 }, labels: { a: 'b' } } };
    expect(prepare.responseDeserialize(prepare.responseSerialize(info))).toEqual(info);
  });

  it('makes the codecs of every method of every service ahead (what a daemon does at start)', () => {
    const methods = ['Content', 'Diff', 'Images', 'Leases', 'Snapshots'].reduce((n, name) => n + Object.keys(loadService(`containerd.services.${name.toLowerCase()}.v1.${name}`).service).length, 0) + Object.keys(loadService('lazypull.v1.Status').service).length;
    expect(warmMessageCodecs()).toBe(methods);
  });
});
