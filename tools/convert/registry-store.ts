import type { RandomAccessSource } from '../../src/io/random-access.js';
import { RegistryPusher, type Descriptor, type ImageReference, type RegistryClient } from '../../src/remote/index.js';
import { sha256, type Digest } from '../../src/util/digest.js';
import type { BlobBody, BlobOutcome, FetchedDocument, ImageDestination, ImageSource, RegistryRepository } from './store.js';

/** An image (manifest or index) in a registry, read through the shared client (mirrors, auth, range reads). */
export class RegistryImageSource implements ImageSource {
  readonly description: string;
  readonly registryRepository: RegistryRepository;

  constructor(
    private readonly client: RegistryClient,
    private readonly reference: ImageReference,
  ) {
    this.description = reference.toString();
    this.registryRepository = { registry: reference.registry, repository: reference.repository };
  }

  async root(): Promise<FetchedDocument> {
    const { descriptor, bytes, document } = await this.client.fetchManifest(this.reference, this.reference.object);
    return { descriptor, bytes, document };
  }

  async manifest(descriptor: Descriptor): Promise<FetchedDocument> {
    const { bytes, document } = await this.client.fetchManifest(this.reference, descriptor.digest);
    return { descriptor, bytes, document };
  }

  blobBytes(descriptor: Descriptor): Promise<Buffer> {
    return this.client.fetchBlob(this.reference, descriptor);
  }

  openBlob(descriptor: Descriptor): Promise<RandomAccessSource> {
    return this.client.openBlob(this.reference, descriptor);
  }

  async close(): Promise<void> {}
}

/**
 * A registry repository and tag. Every blob is checked by HEAD first, blobs of a source on the same
 * registry are mounted, the rest uploaded; the tag is the last PUT.
 */
export class RegistryImageDestination implements ImageDestination {
  readonly description: string;

  private constructor(
    private readonly pusher: RegistryPusher,
    private readonly tagName: string,
    private readonly uploadChunkSize: number | undefined,
  ) {
    this.description = pusher.reference.toString();
  }

  static async open(client: RegistryClient, reference: ImageReference, options: { uploadChunkSize?: number } = {}): Promise<RegistryImageDestination> {
    if (reference.digest) throw new Error(`${reference}: the destination must be a tag, not a digest (the converted image has a new digest)`);
    return new RegistryImageDestination(await RegistryPusher.open(client, reference), reference.tag ?? 'latest', options.uploadChunkSize);
  }

  putBlob(blob: { digest: Digest; size: number }, body: BlobBody, from?: RegistryRepository): Promise<BlobOutcome> {
    const sameRegistry = from !== undefined && from.registry === this.pusher.reference.registry;
    return this.pusher.pushBlob(blob, body, {
      ...(sameRegistry ? { mountFrom: from.repository } : {}),
      ...(this.uploadChunkSize ? { chunkSize: this.uploadChunkSize } : {}),
    });
  }

  async putManifest(bytes: Buffer, mediaType: string): Promise<void> {
    await this.pusher.pushManifest(sha256(bytes), bytes, mediaType);
  }

  async tag(bytes: Buffer, descriptor: Descriptor): Promise<void> {
    await this.pusher.pushManifest(this.tagName, bytes, descriptor.mediaType);
  }

  async close(): Promise<void> {}
}
