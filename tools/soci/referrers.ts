/**
 * The image's own repository (a registry repository or an OCI layout) as `soci create --v1` and
 * `soci index list` see it: where the zTOCs and a v1 index go, the OCI referrers API when the registry
 * has one, and the `sha256-<hex>` referrers tag (the OCI tag schema) when it does not.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ImageReference, ManifestNotFoundError, type Descriptor, type RegistryClient } from '../../src/remote/index.js';
import type { Digest } from '../../src/util/digest.js';
import { openImageDestination, openImageSource, type ImageDestination, type ImageLocation } from '../convert/index.js';
import type { FetchedDocument } from '../convert/store.js';

/** Read side: what refers to a manifest. */
export interface ReferrersLookup {
  /** The referrers the registry lists for `digest` (OCI referrers API), or undefined when it has no such API. */
  listed(digest: Digest, artifactType?: string): Promise<Descriptor[] | undefined>;
  /** What a tag of the repository names, or undefined when the tag does not exist. */
  readTag(tag: string): Promise<FetchedDocument | undefined>;
}

/** Write side: blobs and manifests into the repository (untagged), and a destination whose commit point is a tag. */
export interface ReferrersStore extends ReferrersLookup {
  readonly description: string;
  readonly destination: ImageDestination;
  openTag(tag: string): Promise<ImageDestination>;
}

/** The lookups for the repository of an image location (a registry reference or oci:DIR[:TAG]). */
export function referrersLookup(location: ImageLocation, client: RegistryClient): ReferrersLookup {
  return {
    async listed(digest, artifactType) {
      if (location.kind !== 'registry') return undefined;
      return client.fetchReferrers(location.reference, digest, artifactType ? { artifactType } : {});
    },
    async readTag(tag) {
      if (location.kind === 'oci-layout' && !(await layoutHasTag(location.dir, tag))) return undefined;
      try {
        return await (await openImageSource(withTag(location, tag), client)).root();
      } catch (err) {
        if (err instanceof ManifestNotFoundError) return undefined;
        throw err;
      }
    },
  };
}

export async function openReferrersStore(location: ImageLocation, client: RegistryClient): Promise<ReferrersStore> {
  // Its tag is never written: only blobs and untagged manifests go through it.
  const destination = await openImageDestination(withTag(location, 'latest'), client);
  const description = location.kind === 'registry' ? `${location.reference.registry}/${location.reference.repository}` : `oci:${location.dir}`;
  return { ...referrersLookup(location, client), description, destination, openTag: (tag) => openImageDestination(withTag(location, tag), client) };
}

/** The same repository (or layout) under another tag. */
export function withTag(location: ImageLocation, tag: string): ImageLocation {
  return location.kind === 'registry' ? { kind: 'registry', reference: new ImageReference(location.reference.registry, location.reference.repository, tag) } : { ...location, tag };
}

async function layoutHasTag(dir: string, tag: string): Promise<boolean> {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests?: Descriptor[] };
  return (index.manifests ?? []).some((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
}
