import { describe, expect, it } from 'vitest';
import { formatLayerLine, formatSummary } from '../../../src/cli/commands/rpull.js';
import type { PullResult } from '../../../src/containerd/pull.js';
import type { Descriptor } from '../../../src/remote/index.js';

const layer = (n: number): Descriptor => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${String(n).repeat(64)}`, size: 1000 * n });

describe('rpull output', () => {
  it('says per layer whether it is lazy, fetched (how much and why) or already there', () => {
    expect(formatLayerLine(layer(1), { kind: 'lazy' })).toBe(`layer ${layer(1).digest} lazy`);
    expect(formatLayerLine(layer(2), { kind: 'fetched', bytes: 2000, reason: 'no TOC' })).toBe(`layer ${layer(2).digest} fetched 2000 bytes (no TOC)`);
    expect(formatLayerLine(layer(3), { kind: 'present' })).toBe(`layer ${layer(3).digest} already unpacked`);
  });

  it('sums up layers, bytes downloaded against the image size, and time', () => {
    const layers = [layer(1), layer(2), layer(3)];
    const result: PullResult = {
      name: '127.0.0.1:5000/app:v1',
      pinned: '127.0.0.1:5000/app:v1@sha256:' + 'a'.repeat(64),
      target: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'a'.repeat(64)}`, size: 500 },
      manifest: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'a'.repeat(64)}`, size: 500 },
      layers,
      imageBytes: 4 << 20,
      chainId: `sha256:${'c'.repeat(64)}`,
      layerResults: [
        { descriptor: layers[0] as Descriptor, chainId: 'x', outcome: { kind: 'lazy' } },
        { descriptor: layers[1] as Descriptor, chainId: 'y', outcome: { kind: 'fetched', bytes: 1 << 20, reason: 'r' } },
        { descriptor: layers[2] as Descriptor, chainId: 'z', outcome: { kind: 'present' } },
      ],
      downloadedBytes: 1 << 20,
      image: 'created',
    };
    expect(formatSummary(result, 'lazypull', 1.234)).toBe(
      [
        `image 127.0.0.1:5000/app:v1 created: sha256:${'a'.repeat(64)}, snapshotter lazypull`,
        'layers: 3 (1 lazy, 1 fetched, 1 already unpacked)',
        'downloaded 1.0 MiB of 4.0 MiB (25.0%) in 1.23 s',
        '',
      ].join('\n'),
    );
  });
});
