/** SOCI's write side and registry lookups: `lazypull soci create`, `soci index list`, `soci ztoc info DIGEST`. */
import type { RegistryClient } from '../../src/remote/index.js';
import { sha256, type Digest } from '../../src/util/digest.js';
import { OciLayoutSource, type ImageLocation } from '../convert/index.js';

export { createSociV1, createSociV2, referrersIndex, selectImageEntries, type CreateSociOptions, type CreateSociResult, type SociLayerOutcome, type SociManifestOutcome } from './create.js';
export { listSociIndexes, type ListedSociIndex, type SociDiscovery } from './list.js';
export { openReferrersStore, referrersLookup, withTag, type ReferrersLookup, type ReferrersStore } from './referrers.js';

/** Largest blob fetched whole by digest (a zTOC): far above any real one, low enough to bound memory. */
const MAX_BLOB_BYTES = 256 << 20;

/** A blob of the image's repository (or OCI layout) by digest alone, checked against it. */
export async function fetchBlobByDigest(location: ImageLocation, client: RegistryClient, digest: Digest): Promise<Buffer> {
  if (location.kind === 'oci-layout') {
    // The layout source finds and checks the blob by its digest; the size is not needed for that.
    return (await OciLayoutSource.open(location.dir, location.tag)).blobBytes({ mediaType: 'application/octet-stream', digest, size: 0 });
  }
  const blob = await client.openBlob(location.reference, { digest });
  try {
    if (blob.size > MAX_BLOB_BYTES) throw new Error(`blob ${digest} has ${blob.size} bytes: too large for a zTOC`);
    const bytes = await blob.readAt(0, blob.size);
    const actual = sha256(bytes);
    if (actual !== digest) throw new Error(`blob ${digest} from ${location.reference.registry} has digest ${actual}`);
    return bytes;
  } finally {
    await blob.close();
  }
}
