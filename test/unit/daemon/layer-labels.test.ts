import { describe, expect, it } from 'vitest';
import { LabelError, layerTargetOf } from '../../../src/daemon/layer-labels.js';
import { classifyFailure, MissingTocDigestError, NotLazyFormatError, ResolveTimeoutError } from '../../../src/daemon/fallback.js';
import { AuthError, HttpStatusError, ManifestNotFoundError, TransportError } from '../../../src/remote/index.js';
import { SociIndexError } from '../../../src/soci/index-manifest.js';
import { ZtocError } from '../../../src/soci/ztoc.js';
import { TocError } from '../../../src/estargz/open.js';

const digest = (c: string) => `sha256:${c.repeat(64)}`;

describe('layerTargetOf', () => {
  it('reads the CRI label set, with the layer list from this layer on and the manifest digest', () => {
    const target = layerTargetOf({
      'containerd.io/snapshot/cri.image-ref': '127.0.0.1:5000/app:v1',
      'containerd.io/snapshot/cri.layer-digest': digest('b'),
      'containerd.io/snapshot/cri.image-layers': [digest('a'), digest('b'), digest('c')].join(','),
      'containerd.io/snapshot/cri.manifest-digest': digest('d'),
      'containerd.io/snapshot/stargz/toc.digest': digest('e'),
    });
    expect(target.image.toString()).toBe('127.0.0.1:5000/app:v1');
    expect(target.digest).toBe(digest('b'));
    expect(target.layers).toEqual([digest('b'), digest('c')]);
    expect(target.layersTruncated).toBe(false);
    expect(target.manifestDigest).toBe(digest('d'));
    expect(target.tocDigest).toBe(digest('e'));
    expect(target.skipVerify).toBe(false);
  });

  it('reads the ctr-remote set, its prefetch size and skipverify', () => {
    const target = layerTargetOf({
      'containerd.io/snapshot/remote/stargz.reference': 'docker.io/library/alpine:3',
      'containerd.io/snapshot/remote/stargz.digest': digest('a'),
      'containerd.io/snapshot/remote/stargz.prefetch': '10485760',
      'containerd.io/snapshot/remote/stargz.skipverify': '',
    });
    expect(target.image.repository).toBe('library/alpine');
    expect(target.layers).toEqual([digest('a')]);
    expect(target.prefetchBytes).toBe(10485760);
    expect(target.skipVerify).toBe(true);
    expect(target.tocDigest).toBeUndefined();
  });

  it('flags a layer list that reaches the 4096-byte label limit as possibly cut', () => {
    const key = 'containerd.io/snapshot/cri.image-layers';
    const list = Array.from({ length: 56 }, (_, i) => digest((i % 10).toString())).join(',');
    expect(key.length + list.length).toBeGreaterThan(4096 - 72);
    expect(layerTargetOf({ 'containerd.io/snapshot/cri.image-ref': 'r.io/a:b', 'containerd.io/snapshot/cri.layer-digest': digest('0'), [key]: list }).layersTruncated).toBe(true);
  });

  it('rejects missing and malformed labels with a LabelError that says which', () => {
    expect(() => layerTargetOf({})).toThrow(LabelError);
    expect(() => layerTargetOf({})).toThrow(/plain `ctr pull` does not/);
    expect(() => layerTargetOf({ 'containerd.io/snapshot/cri.image-ref': 'UPPER CASE', 'containerd.io/snapshot/cri.layer-digest': digest('a') })).toThrow(/image reference label/);
    expect(() => layerTargetOf({ 'containerd.io/snapshot/cri.image-ref': 'r.io/a:b', 'containerd.io/snapshot/cri.layer-digest': 'sha256:zz' })).toThrow(/layer digest label "sha256:zz" is not a sha256 digest/);
    expect(() =>
      layerTargetOf({ 'containerd.io/snapshot/cri.image-ref': 'r.io/a:b', 'containerd.io/snapshot/cri.layer-digest': digest('a'), 'containerd.io/snapshot/stargz/toc.digest': 'x' }),
    ).toThrow(/TOC digest label/);
  });
});

describe('classifyFailure', () => {
  const url = new URL('http://127.0.0.1:1/v2/a/blobs/x');
  it.each([
    [new LabelError('no labels'), 'no-remote-labels'],
    [new NotLazyFormatError('plain gzip'), 'not-lazy-format'],
    [new TocError('the layer keeps its TOC in a separate image (external TOC), which lazypull does not read yet'), 'not-lazy-format'],
    [new TocError('TOC digest x does not match the expected y'), 'toc-invalid'],
    [new MissingTocDigestError('none'), 'no-toc-digest'],
    [new ResolveTimeoutError('slow'), 'timeout'],
    [new AuthError('denied'), 'auth'],
    [new HttpStatusError('GET', url, 403), 'auth'],
    [new HttpStatusError('GET', url, 404), 'other'],
    [new ManifestNotFoundError('manifest x not found'), 'other'],
    [new ZtocError('invalid zTOC: no toc'), 'toc-invalid'],
    [new SociIndexError('not a SOCI index'), 'toc-invalid'],
    [new HttpStatusError('GET', url, 503), 'registry-unreachable'],
    [new TransportError('GET', url, 'ECONNREFUSED'), 'registry-unreachable'],
    [new RangeError('bug'), 'other'],
  ])('%s -> %s', (error, category) => {
    expect(classifyFailure(error)).toEqual({ category, reason: error.message });
  });
});
