import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fallbackHint, layerLabels, layerListLabel, MAX_LABEL_BYTES } from '../../../src/containerd/labels.js';
import type { Descriptor } from '../../../src/remote/index.js';

const digest = (n: number) => `sha256:${createHash('sha256').update(String(n)).digest('hex')}` as const;
const layer = (n: number, annotations?: Record<string, string>): Descriptor => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: digest(n), size: 100 + n, ...(annotations ? { annotations } : {}) });
const KEY = 'containerd.io/snapshot/cri.image-layers';

describe('layerListLabel', () => {
  it('joins all digests when they fit', () => {
    expect(layerListLabel(KEY, [digest(1), digest(2)])).toBe(`${digest(1)},${digest(2)}`);
  });

  it('keeps as many digests as fit in 4096 bytes of key and value, in order', () => {
    const all = Array.from({ length: 100 }, (_, i) => digest(i));
    const value = layerListLabel(KEY, all);
    expect(KEY.length + value.length).toBeLessThanOrEqual(MAX_LABEL_BYTES);
    const kept = value.split(',');
    expect(kept).toEqual(all.slice(0, kept.length));
    // One more would not have fitted.
    expect(KEY.length + value.length + 1 + 71).toBeGreaterThan(MAX_LABEL_BYTES);
  });

  it('accepts exactly 4096 bytes and cuts at 4097, as containerd labels.Validate does', () => {
    const item = 71; // "sha256:" + 64 hex
    const perItem = item + 1;
    // A key length at which n digests end exactly at 4096 bytes.
    const n = 10;
    const exactKey = 'k'.repeat(MAX_LABEL_BYTES - (n * perItem - 1));
    const digests = Array.from({ length: n + 1 }, (_, i) => digest(i));
    expect(layerListLabel(exactKey, digests).split(',')).toHaveLength(n);
    expect(layerListLabel(`${exactKey}k`, digests).split(',')).toHaveLength(n - 1);
  });

  it('always keeps the layer itself', () => {
    expect(layerListLabel('k'.repeat(4090), [digest(1), digest(2)])).toBe(digest(1));
  });
});

describe('layerLabels', () => {
  const layers = [layer(0), layer(1, { 'containerd.io/snapshot/stargz/toc.digest': digest(99), 'io.containers.estargz.uncompressed-size': '1234' }), layer(2)];
  const input = { reference: '127.0.0.1:5000/app:v1@' + digest(50), manifestDigest: digest(50), layers, index: 1, chainId: digest(77) };

  it('sets both the CRI and the ctr-remote label sets, the chainID, and the inherited annotations', () => {
    expect(layerLabels(input)).toEqual({
      'containerd.io/snapshot.ref': digest(77),
      'containerd.io/snapshot/cri.image-ref': input.reference,
      'containerd.io/snapshot/cri.layer-digest': digest(1),
      'containerd.io/snapshot/cri.image-layers': `${digest(1)},${digest(2)}`,
      'containerd.io/snapshot/cri.manifest-digest': digest(50),
      'containerd.io/snapshot/remote/stargz.reference': input.reference,
      'containerd.io/snapshot/remote/stargz.digest': digest(1),
      'containerd.io/snapshot/remote/stargz.layers': `${digest(1)},${digest(2)}`,
      'containerd.io/snapshot/stargz/toc.digest': digest(99),
    });
  });

  it('passes on only annotations under containerd.io/snapshot/', () => {
    expect(layerLabels(input)).not.toHaveProperty('io.containers.estargz.uncompressed-size');
  });

  it('cuts the layer lists of a very tall image to the label limit', () => {
    const tall = Array.from({ length: 200 }, (_, i) => layer(i));
    const labels = layerLabels({ ...input, layers: tall, index: 0 });
    for (const [key, value] of Object.entries(labels)) expect(key.length + value.length).toBeLessThanOrEqual(MAX_LABEL_BYTES);
    const listed = labels['containerd.io/snapshot/remote/stargz.layers']?.split(',') ?? [];
    expect(listed.length).toBeGreaterThan(40);
    expect(listed.length).toBeLessThan(200);
    expect(listed[0]).toBe(digest(0));
  });

  it('refuses an index outside the image', () => {
    expect(() => layerLabels({ ...input, index: 3 })).toThrow(/out of range/);
  });
});

describe('fallbackHint', () => {
  it('says a layer without a TOC digest is not a lazy format', () => {
    expect(fallbackHint(layer(0))).toMatch(/no TOC digest annotation/);
  });

  it('points to the snapshotter for a layer that has one', () => {
    expect(fallbackHint(layer(0, { 'containerd.io/snapshot/stargz/toc.digest': digest(1) }))).toMatch(/snapshotter did not mount it/);
  });
});
