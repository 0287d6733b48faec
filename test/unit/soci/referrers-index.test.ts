import { describe, expect, it } from 'vitest';
import { parseManifestDocument, type Descriptor } from '../../../src/remote/manifest.js';
import { serializeSociIndex, SociMediaTypes } from '../../../src/soci/index-manifest.js';
import { sha256, type Digest } from '../../../src/util/digest.js';
import { referrersIndex } from '../../../tools/soci/index.js';

const digest = (c: string): Digest => `sha256:${c.repeat(64)}` as Digest;
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const entry: Descriptor = { mediaType: MANIFEST, digest: digest('c'), size: 300, artifactType: SociMediaTypes.indexV1 };

function fetched(bytes: Buffer): { descriptor: Descriptor; bytes: Buffer; document: ReturnType<typeof parseManifestDocument> } {
  const document = parseManifestDocument(bytes);
  return { descriptor: { mediaType: document.kind === 'index' ? document.index.mediaType : document.manifest.mediaType, digest: sha256(bytes), size: bytes.length }, bytes, document };
}

const manifestsOf = (bytes: Buffer): unknown[] => (JSON.parse(bytes.toString()) as { manifests: unknown[] }).manifests;

describe('the referrers tag index soci create --v1 writes', () => {
  it('a new tag: an OCI index listing only the SOCI index', () => {
    const bytes = referrersIndex(undefined, entry);
    expect(JSON.parse(bytes.toString())).toEqual({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [entry] });
  });

  it('keeps other referrers and their fields, replaces an entry of the same digest', () => {
    const signature = { mediaType: MANIFEST, digest: digest('d'), size: 10, artifactType: 'application/vnd.example.signature', annotations: { a: 'b' }, data: 'e30=' };
    const existing = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', annotations: { kept: 'yes' }, manifests: [signature, { ...entry, size: 1 }] }));
    const bytes = referrersIndex(fetched(existing), entry);
    expect(manifestsOf(bytes)).toEqual([signature, entry]);
    expect((JSON.parse(bytes.toString()) as { annotations: unknown }).annotations).toEqual({ kept: 'yes' });
  });

  it('a v1 index pushed straight under the tag becomes an entry of its own', () => {
    const old = serializeSociIndex({ version: 'v1', ztocs: [], subject: { mediaType: MANIFEST, digest: digest('e'), size: 5 } });
    expect(manifestsOf(referrersIndex(fetched(old), entry))).toEqual([{ mediaType: MANIFEST, digest: sha256(old), size: old.length, artifactType: SociMediaTypes.indexV1 }, entry]);
  });
});
