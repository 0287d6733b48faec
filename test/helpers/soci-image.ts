/**
 * Adds a SOCI index to an image already in a test registry, built here from the layer blobs with
 * lazypull's zTOC builder and the index-manifest module, so daemon tests do not depend on the
 * `soci create` command they would otherwise be testing together with it.
 */
import { buildZtoc } from '../../src/soci/build.js';
import { EMPTY_CONFIG, SociAnnotations, referrersTagOf, serializeSociIndex, type SociIndexVersion, type SociZtocRef } from '../../src/soci/index-manifest.js';
import { BufferSource } from '../../src/io/random-access.js';
import type { Digest } from '../../src/util/digest.js';
import { sha256Digest, type TestRegistry } from './registry.js';
import type { RunnableImage } from './runnable-image.js';

export interface SociIndexed {
  indexDigest: Digest;
  /** The image to pull: for v2 the re-tagged manifest with the annotation; otherwise the image as it was. */
  ref: string;
  manifestDigest: string;
  ztocs: SociZtocRef[];
}

export interface SociIndexOptions {
  /** v2: annotate a new image manifest (tag `<tag>-soci`); v1: the `sha256-<hex>` tag; unbound: only push the index (for the label). */
  bind: 'v2' | 'v1' | 'unbound';
  spanSize?: number;
}

async function getJson(registry: TestRegistry, repo: string, what: string): Promise<Buffer> {
  const response = await fetch(`${registry.url}/v2/${repo}/${what}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  if (!response.ok) throw new Error(`GET ${what}: HTTP ${response.status}`);
  return Buffer.from(await response.arrayBuffer());
}

export async function addSociIndex(registry: TestRegistry, image: RunnableImage, options: SociIndexOptions): Promise<SociIndexed> {
  const [repoTag, tag] = image.ref.slice(registry.host.length + 1).split(':') as [string, string];
  const manifestBytes = await getJson(registry, repoTag, `manifests/${tag}`);
  const manifest = JSON.parse(manifestBytes.toString()) as { layers: { digest: string; mediaType: string; size: number }[]; annotations?: Record<string, string> };
  const ztocs: SociZtocRef[] = [];
  for (const layer of manifest.layers) {
    const blob = await getJson(registry, repoTag, `blobs/${layer.digest}`);
    const built = await buildZtoc(new BufferSource(blob), { minLayerSize: 0, ...(options.spanSize ? { spanSize: options.spanSize } : {}) });
    if (!built) continue;
    await registry.pushBlob(repoTag, built.bytes);
    ztocs.push({ digest: built.digest, size: built.bytes.length, layerDigest: layer.digest as Digest, layerMediaType: layer.mediaType, ...(options.spanSize ? { spanSize: options.spanSize } : {}), disableXattrs: false });
  }
  await registry.pushBlob(repoTag, EMPTY_CONFIG);
  const version: SociIndexVersion = options.bind === 'v1' ? 'v1' : 'v2';
  const subject = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256Digest(manifestBytes) as Digest, size: manifestBytes.length };
  const index = serializeSociIndex({ version, ztocs, ...(version === 'v1' ? { subject } : {}) });
  const indexDigest = sha256Digest(index) as Digest;
  await registry.pushManifest(repoTag, options.bind === 'v1' ? referrersTagOf(subject.digest) : indexDigest, index, 'application/vnd.oci.image.manifest.v1+json');
  if (options.bind !== 'v2') return { indexDigest, ref: image.ref, manifestDigest: image.manifestDigest, ztocs };
  const bound = Buffer.from(JSON.stringify({ ...manifest, annotations: { ...manifest.annotations, [SociAnnotations.indexDigest]: indexDigest } }));
  await registry.pushManifest(repoTag, `${tag}-soci`, bound, 'application/vnd.oci.image.manifest.v1+json');
  return { indexDigest, ref: `${registry.host}/${repoTag}:${tag}-soci`, manifestDigest: sha256Digest(bound), ztocs };
}
