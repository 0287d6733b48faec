import { describe, expect, it } from 'vitest';
import { parseManifestDocument } from '../../../src/remote/manifest.js';
import {
  EMPTY_CONFIG,
  EMPTY_CONFIG_DIGEST,
  parseSociIndex,
  referrersTagOf,
  serializeSociIndex,
  SociAnnotations,
  SociIndexError,
  SociMediaTypes,
  v1IndexesAtReferrersTag,
  type SociIndex,
} from '../../../src/soci/index-manifest.js';
import { sha256, type Digest } from '../../../src/util/digest.js';

const digest = (c: string): Digest => `sha256:${c.repeat(64)}` as Digest;
const subject = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: digest('e'), size: 1234 };
const ztocs: SociIndex['ztocs'] = [
  { digest: digest('a'), size: 100, layerDigest: digest('1'), layerMediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', spanSize: 4194304, disableXattrs: false },
  { digest: digest('b'), size: 200, layerDigest: digest('2'), disableXattrs: true },
];

function manifest(overrides: Record<string, unknown>): Buffer {
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: SociMediaTypes.indexV2, digest: EMPTY_CONFIG_DIGEST, size: 2 }, layers: [], ...overrides }));
}

describe('SOCI index manifests', () => {
  it('the empty config is the 2-byte {} with its digest', () => {
    expect(EMPTY_CONFIG.toString()).toBe('{}');
    expect(sha256(EMPTY_CONFIG)).toBe(EMPTY_CONFIG_DIGEST);
  });

  it('v2 round trip: every zTOC and annotation survives, no subject', () => {
    const bytes = serializeSociIndex({ version: 'v2', ztocs, buildTool: 'test-tool' });
    const json = JSON.parse(bytes.toString()) as { config: { mediaType: string; digest: string; size: number }; layers: { mediaType: string; annotations: Record<string, string> }[]; subject?: unknown; annotations: Record<string, string> };
    expect(json.config).toEqual({ mediaType: SociMediaTypes.indexV2, digest: EMPTY_CONFIG_DIGEST, size: 2 });
    expect(json.layers.map((l) => l.mediaType)).toEqual([SociMediaTypes.ztoc, SociMediaTypes.ztoc]);
    expect(json.layers[0]!.annotations).toEqual({
      [SociAnnotations.imageLayerDigest]: digest('1'),
      [SociAnnotations.imageLayerMediaType]: 'application/vnd.oci.image.layer.v1.tar+gzip',
      [SociAnnotations.spanSize]: '4194304',
    });
    expect(json.layers[1]!.annotations).toEqual({ [SociAnnotations.imageLayerDigest]: digest('2'), [SociAnnotations.disableXattrs]: 'true' });
    expect(json.subject).toBeUndefined();
    expect(json.annotations[SociAnnotations.buildTool]).toBe('test-tool');
    expect(parseSociIndex(bytes)).toEqual({ version: 'v2', ztocs, buildTool: 'test-tool' });
    // Parsing as a generic manifest works too (the registry client reads it that way).
    expect(parseManifestDocument(bytes).kind).toBe('manifest');
  });

  it('v1 round trip keeps the subject; a v1 index without one cannot be written', () => {
    const bytes = serializeSociIndex({ version: 'v1', ztocs, subject });
    const parsed = parseSociIndex(bytes);
    expect(parsed).toEqual({ version: 'v1', ztocs, subject, buildTool: 'lazypull' });
    expect((JSON.parse(bytes.toString()) as { config: { mediaType: string } }).config.mediaType).toBe(SociMediaTypes.indexV1);
    expect(() => serializeSociIndex({ version: 'v1', ztocs })).toThrow(SociIndexError);
    expect(() => serializeSociIndex({ version: 'v1', ztocs })).toThrow(/needs the image manifest as its subject/);
    // v2 never writes one, even when given.
    expect(parseSociIndex(serializeSociIndex({ version: 'v2', ztocs, subject })).subject).toBeUndefined();
  });

  it('bad inputs are SociIndexErrors that say what is wrong', () => {
    const bad: [Buffer, RegExp][] = [
      [Buffer.from('{not json'), /not JSON/],
      [Buffer.from('[]'), /not an image manifest/],
      [manifest({ layers: undefined }), /config and layers missing/],
      [manifest({ config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: EMPTY_CONFIG_DIGEST, size: 2 } }), /"application\/vnd.oci.image.config.v1\+json" is not a SOCI index/],
      [manifest({ layers: [{ mediaType: SociMediaTypes.ztoc, digest: digest('a'), size: 1, annotations: { [SociAnnotations.imageLayerDigest]: 'sha256:abc' } }] }), /layer 0: annotation com.amazon.soci.image-layer-digest is missing or not a digest/],
      [manifest({ layers: [{ mediaType: SociMediaTypes.ztoc, digest: digest('a'), size: 1 }] }), /layer 0: annotation com.amazon.soci.image-layer-digest/],
      [manifest({ layers: [{ mediaType: SociMediaTypes.ztoc, digest: 'md5:00', size: 1, annotations: { [SociAnnotations.imageLayerDigest]: digest('1') } }] }), /layer 0: digest "md5:00" is not a sha256 digest/],
      [manifest({ layers: [{ mediaType: SociMediaTypes.ztoc, digest: digest('a'), size: -1, annotations: { [SociAnnotations.imageLayerDigest]: digest('1') } }] }), /layer 0: invalid size -1/],
    ];
    for (const [bytes, message] of bad) {
      expect(() => parseSociIndex(bytes), bytes.toString()).toThrow(SociIndexError);
      expect(() => parseSociIndex(bytes), bytes.toString()).toThrow(message);
    }
  });

  it('prefetch blobs are skipped; a malformed span size is dropped, not trusted', () => {
    const layers = [
      { mediaType: SociMediaTypes.prefetch, digest: digest('f'), size: 50 },
      { mediaType: SociMediaTypes.ztoc, digest: digest('a'), size: 100, annotations: { [SociAnnotations.imageLayerDigest]: digest('1'), [SociAnnotations.spanSize]: '4MiB' } },
    ];
    expect(parseSociIndex(manifest({ layers })).ztocs).toEqual([{ digest: digest('a'), size: 100, layerDigest: digest('1'), disableXattrs: false }]);
  });

  it('the referrers tag: sha256-<hex>, naming an index of referrers or a v1 index itself', () => {
    expect(referrersTagOf(digest('e'))).toBe(`sha256-${'e'.repeat(64)}`);
    const referrers = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: digest('c'), size: 10, artifactType: SociMediaTypes.indexV1 },
          { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: digest('d'), size: 10, artifactType: 'application/vnd.example.signature' },
        ],
      }),
    );
    expect(v1IndexesAtReferrersTag({ digest: sha256(referrers), document: parseManifestDocument(referrers) })).toEqual([digest('c')]);
    const v1 = serializeSociIndex({ version: 'v1', ztocs, subject });
    expect(v1IndexesAtReferrersTag({ digest: sha256(v1), document: parseManifestDocument(v1) })).toEqual([sha256(v1)]);
    const v2 = serializeSociIndex({ version: 'v2', ztocs });
    expect(v1IndexesAtReferrersTag({ digest: sha256(v2), document: parseManifestDocument(v2) })).toEqual([]);
  });
});
