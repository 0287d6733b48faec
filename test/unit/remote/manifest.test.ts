import { describe, expect, it } from 'vitest';
import { ManifestError, MediaTypes, parseManifestDocument, parsePlatform, platformMatches, selectPlatform, type ImageIndex } from '../../../src/remote/index.js';

const d = (c: string): `sha256:${string}` => `sha256:${c.repeat(64)}`;

describe('parseManifestDocument', () => {
  it('reads an OCI manifest with annotations', () => {
    const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.ociManifest, config: { mediaType: MediaTypes.ociConfig, digest: d('1'), size: 10 }, layers: [{ mediaType: MediaTypes.ociLayerGzip, digest: d('2'), size: 20, annotations: { 'containerd.io/snapshot/stargz/toc.digest': d('3') } }] }));
    const doc = parseManifestDocument(body);
    expect(doc.kind).toBe('manifest');
    if (doc.kind === 'manifest') expect(doc.manifest.layers[0]?.annotations?.['containerd.io/snapshot/stargz/toc.digest']).toBe(d('3'));
  });

  it('takes the media type from Content-Type, then from the shape', () => {
    const list = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] }));
    expect(parseManifestDocument(list, `${MediaTypes.dockerManifestList}; charset=utf-8`)).toMatchObject({ kind: 'index', index: { mediaType: MediaTypes.dockerManifestList } });
    expect(parseManifestDocument(list)).toMatchObject({ kind: 'index', index: { mediaType: MediaTypes.ociIndex } });
  });

  it.each([
    ['not json', /not valid JSON/],
    [JSON.stringify({ schemaVersion: 1 }), /schemaVersion 1/],
    [JSON.stringify({ schemaVersion: 2, config: { mediaType: 'x', digest: d('1'), size: 1 }, layers: [{ mediaType: 'x', digest: 'md5:1', size: 1 }] }), /layers\[0\]: digest "md5:1"/],
    [JSON.stringify({ schemaVersion: 2, config: { mediaType: 'x', digest: d('1'), size: -1 }, layers: [] }), /config: invalid size -1/],
  ])('rejects %s', (text, reason) => {
    expect(() => parseManifestDocument(Buffer.from(text))).toThrow(ManifestError);
    expect(() => parseManifestDocument(Buffer.from(text))).toThrow(reason);
  });
});

describe('platform selection', () => {
  const entry = (c: string, platform: { os: string; architecture: string; variant?: string }, mediaType: string = MediaTypes.ociManifest) => ({ mediaType, digest: d(c), size: 1, platform });
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociIndex,
    manifests: [entry('0', { os: 'unknown', architecture: 'unknown' }, 'application/vnd.in-toto+json'), entry('1', { os: 'linux', architecture: 'amd64' }), entry('2', { os: 'linux', architecture: 'arm', variant: 'v6' }), entry('3', { os: 'linux', architecture: 'arm', variant: 'v7' }), entry('4', { os: 'linux', architecture: 'arm64', variant: 'v8' })],
  };

  it('picks the exact variant, treats arm64 and arm64/v8 alike', () => {
    expect(selectPlatform(index, parsePlatform('linux/arm/v7')).digest).toBe(d('3'));
    expect(selectPlatform(index, parsePlatform('linux/arm64')).digest).toBe(d('4'));
    expect(platformMatches(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64' })).toBe(true);
    expect(selectPlatform(index, parsePlatform('linux/amd64')).digest).toBe(d('1'));
  });

  it('skips artifacts listed beside the images (a SOCI index has an artifactType and the same platform), and keeps artifactType when parsing', () => {
    const soci = { ...entry('9', { os: 'linux', architecture: 'amd64' }), artifactType: 'application/vnd.amazon.soci.index.v2+json' };
    const parsed = parseManifestDocument(Buffer.from(JSON.stringify({ ...index, manifests: [soci, ...index.manifests] })));
    if (parsed.kind !== 'index') throw new Error('not an index');
    expect(parsed.index.manifests[0]?.artifactType).toBe('application/vnd.amazon.soci.index.v2+json');
    expect(selectPlatform(parsed.index, parsePlatform('linux/amd64')).digest).toBe(d('1'));
  });

  it('lists what is available when nothing matches', () => {
    expect(() => selectPlatform(index, parsePlatform('windows/amd64'))).toThrow(/no manifest for platform windows\/amd64.*linux\/amd64, linux\/arm\/v6/);
  });

  it('rejects a malformed platform string', () => {
    expect(() => parsePlatform('linux')).toThrow(/invalid platform "linux"/);
  });
});
