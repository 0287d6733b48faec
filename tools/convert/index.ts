/** Image-level converter: `lazypull convert` is a thin shell over this. */
import type { RegistryClient } from '../../src/remote/index.js';
import type { ImageLocation } from './location.js';
import { OciLayoutDestination, OciLayoutSource } from './oci-layout.js';
import { RegistryImageDestination, RegistryImageSource } from './registry-store.js';
import type { ImageDestination, ImageSource } from './store.js';

export { convertImage, parseImageConfig, readImageConfig, DEFAULT_PARALLEL_LAYERS, type ConvertImageOptions, type ConvertImageResult, type ConvertedManifest, type ImageConfig } from './convert-image.js';
export { convertBlobToFile, isTarLayer, reuseRefusal, type ConvertedLayer, type LayerFormatOptions } from './layer.js';
export { parseImageLocation, formatImageLocation, type ImageLocation } from './location.js';
export { OciLayoutDestination, OciLayoutSource, DEFAULT_LAYOUT_TAG } from './oci-layout.js';
export { RegistryImageDestination, RegistryImageSource } from './registry-store.js';
export { partialReadChunkSizes, prefetchRangesOf, PARTIAL_READ_CHUNK_SIZE, type FileReads } from './read-profile.js';
export { terminalProgress, silentProgress, type ConvertProgress } from './progress.js';
export type { ImageSource, ImageDestination, BlobOutcome, RegistryRepository } from './store.js';

export async function openImageSource(location: ImageLocation, client: RegistryClient): Promise<ImageSource> {
  return location.kind === 'registry' ? new RegistryImageSource(client, location.reference) : OciLayoutSource.open(location.dir, location.tag);
}

export async function openImageDestination(location: ImageLocation, client: RegistryClient, options: { uploadChunkSize?: number } = {}): Promise<ImageDestination> {
  return location.kind === 'registry' ? RegistryImageDestination.open(client, location.reference, options) : OciLayoutDestination.open(location.dir, location.tag);
}
