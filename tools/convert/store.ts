import type { RandomAccessSource } from '../../src/io/random-access.js';
import type { BlobPushOutcome, Descriptor, ManifestDocument, UploadBody } from '../../src/remote/index.js';
import type { Digest } from '../../src/util/digest.js';

/** A manifest or index with the exact bytes its digest covers. */
export interface FetchedDocument {
  descriptor: Descriptor;
  bytes: Buffer;
  document: ManifestDocument;
}

/** Where a blob lives in a registry, so a destination on the same registry can mount it. */
export interface RegistryRepository {
  registry: string;
  repository: string;
}

/** Read side of the converter: a registry image or an OCI layout entry. */
export interface ImageSource {
  readonly description: string;
  readonly registryRepository?: RegistryRepository;
  /** The document SRC names: an image manifest or an index. */
  root(): Promise<FetchedDocument>;
  /** A manifest an index points at, checked against its digest. */
  manifest(descriptor: Descriptor): Promise<FetchedDocument>;
  /** A small blob (the config) read whole and checked against its digest. */
  blobBytes(descriptor: Descriptor): Promise<Buffer>;
  /** A blob for range reads (layers stream through it; reuse checks read only the TOC). */
  openBlob(descriptor: Descriptor): Promise<RandomAccessSource>;
  close(): Promise<void>;
}

/** A blob to store: its bytes, and the local file holding them when there is one (a copy can then be a reflink). */
export interface BlobBody extends UploadBody {
  path?: string;
}

/** What storing a blob did. `written` is a new file in an OCI layout. */
export type BlobOutcome = BlobPushOutcome | 'written';

/** Write side of the converter. Nothing is visible under DST's name until `tag`, which runs last. */
export interface ImageDestination {
  readonly description: string;
  /** Makes the blob present; `from` lets a registry mount it from the source's repository instead of receiving it. */
  putBlob(blob: { digest: Digest; size: number }, body: BlobBody, from?: RegistryRepository): Promise<BlobOutcome>;
  /** Stores a manifest an index will point at (by digest, untagged). */
  putManifest(bytes: Buffer, mediaType: string): Promise<void>;
  /** Stores the root document and points DST's tag at it: the commit point of a conversion. */
  tag(bytes: Buffer, descriptor: Descriptor): Promise<void>;
  close(): Promise<void>;
}
