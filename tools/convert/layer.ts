import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { openLayer } from '../../src/estargz/open.js';
import {
  ANNOTATION_TOC_DIGEST,
  ANNOTATION_UNCOMPRESSED_SIZE,
  ANNOTATION_ZSTD_MANIFEST_CHECKSUM,
  ANNOTATION_ZSTD_MANIFEST_POSITION,
  convertLayer,
  DEFAULT_CHUNK_SIZE,
  type ConvertOptions,
  type ConvertResult,
  type OutputFormat,
} from '../../src/estargz/writer.js';
import { PREFETCH_RANGES_ANNOTATION } from '../../src/layer/prefetch-ranges.js';
import { fileBody, MediaTypes, type Descriptor } from '../../src/remote/index.js';
import { isDigest, type Digest } from '../../src/util/digest.js';
import { decompressedTar, readPieces, verifiedPieces } from './blob-stream.js';
import type { ConvertProgress } from './progress.js';
import { partialReadChunkSizes, prefetchRangesOf, type FileReads } from './read-profile.js';
import type { BlobOutcome, ImageDestination, ImageSource } from './store.js';

export type LayerFormatOptions = Pick<ConvertOptions, 'chunkSize' | 'minChunkSize' | 'compressionLevel' | 'prioritizedFiles' | 'onMissingPrioritized' | 'workers' | 'chunkSizeFor'> & { format: OutputFormat };

export interface LayerJob {
  source: ImageSource;
  destination: ImageDestination;
  format: LayerFormatOptions;
  reuse: boolean;
  workDir: string;
  progress: ConvertProgress;
  /** Prioritized files by source layer digest (optimize's profile); replaces `format.prioritizedFiles`. */
  prioritizedFilesByLayer?: ReadonlyMap<Digest, string[]>;
  /** What the workload read of each file, by source layer digest: range-granular prefetch (optimize). */
  readsByLayer?: ReadonlyMap<Digest, FileReads>;
}

/** What became of one source layer. */
export interface ConvertedLayer {
  descriptor: Descriptor;
  diffID: Digest;
  /** converted: rewritten; reused: already in the target format (--reuse); kept: not a tar layer, copied as is. */
  action: 'converted' | 'reused' | 'kept';
  blob: BlobOutcome | 'not copied';
}

const TAR_LAYER_TYPES = new Set<string>([MediaTypes.ociLayer, MediaTypes.ociLayerGzip, MediaTypes.ociLayerZstd, MediaTypes.dockerLayerGzip, 'application/vnd.docker.image.rootfs.diff.tar']);
/** True for the layer media types the converter rewrites (tar, tar+gzip, tar+zstd). */
export const isTarLayer = (mediaType: string): boolean => TAR_LAYER_TYPES.has(mediaType);
/** Layers registries do not store (foreign / non-distributable): referenced by URL, never pushed. */
const isNonDistributable = (mediaType: string): boolean => mediaType.includes('nondistributable') || mediaType.includes('foreign');

/** Annotations describing the old blob's format; the new blob gets its own. */
const FORMAT_ANNOTATIONS = new Set([
  ANNOTATION_TOC_DIGEST,
  ANNOTATION_UNCOMPRESSED_SIZE,
  ANNOTATION_ZSTD_MANIFEST_CHECKSUM,
  ANNOTATION_ZSTD_MANIFEST_POSITION,
  'io.github.containers.zstd-chunked.manifest-checksum',
  'io.github.containers.zstd-chunked.manifest-position',
  'io.github.containers.zstd-chunked.tarsplit-checksum',
  'io.github.containers.zstd-chunked.tarsplit-position',
  'containerd.io/snapshot/stargz/layer.digest',
  // Offsets into the old blob: meaningless, and harmful, for the new one.
  PREFETCH_RANGES_ANNOTATION,
]);

const TARGET_MEDIA_TYPES: Record<OutputFormat, ReadonlySet<string>> = {
  estargz: new Set([MediaTypes.ociLayerGzip, MediaTypes.dockerLayerGzip]),
  'zstd:chunked': new Set([MediaTypes.ociLayerZstd]),
};

/** One layer of the source image, in the target format in the destination. `diffID` is the source config's entry. */
export async function convertImageLayer(job: LayerJob, layer: Descriptor, diffID: Digest): Promise<ConvertedLayer> {
  if (isNonDistributable(layer.mediaType)) return { descriptor: layer, diffID, action: 'kept', blob: 'not copied' };
  if (!isTarLayer(layer.mediaType)) return copyUnchanged(job, layer, diffID, 'kept');
  if (job.reuse) {
    const refusal = await reuseRefusal(job.source, layer, job.format.format);
    if (refusal === undefined) return copyUnchanged(job, { ...layer, mediaType: layer.mediaType === MediaTypes.dockerLayerGzip ? MediaTypes.ociLayerGzip : layer.mediaType }, diffID, 'reused');
    job.progress.note(`layer ${layer.digest}: converting, not reused: ${refusal}`);
  }
  return rewrite(job, layer);
}

async function copyUnchanged(job: LayerJob, descriptor: Descriptor, diffID: Digest, action: ConvertedLayer['action']): Promise<ConvertedLayer> {
  const blob = await job.source.openBlob(descriptor);
  try {
    const body = { size: descriptor.size, open: (start: number, end: number) => Readable.from(readPieces(blob, start, end)) };
    const outcome = await job.destination.putBlob(descriptor, body, job.source.registryRepository);
    job.progress.layerFinished(descriptor.digest, `${action} as is (${outcome})`);
    return { descriptor, diffID, action, blob: outcome };
  } finally {
    await blob.close?.();
  }
}

/**
 * Why a layer cannot be kept as it is under --reuse, or undefined when it can: the reference's rule
 * (target media type, a toc.digest annotation, and a TOC that verifies against it), read remotely
 * from the blob's tail only.
 */
export async function reuseRefusal(source: ImageSource, layer: Descriptor, format: OutputFormat): Promise<string | undefined> {
  if (!TARGET_MEDIA_TYPES[format].has(layer.mediaType)) return `media type ${layer.mediaType} is not ${format}`;
  const tocDigest = layer.annotations?.[ANNOTATION_TOC_DIGEST];
  if (!isDigest(tocDigest)) return 'no toc.digest annotation';
  if (!/^\d+$/.test(layer.annotations?.[ANNOTATION_UNCOMPRESSED_SIZE] ?? '')) return 'no uncompressed-size annotation';
  const blob = await source.openBlob(layer);
  try {
    const opened = await openLayer(blob, { expectedTocDigest: tocDigest });
    const expectedFooter = format === 'estargz' ? 'estargz' : 'zstd:chunked';
    return opened.footer.kind === expectedFooter ? undefined : `the blob is ${opened.footer.kind}, not ${expectedFooter}`;
  } catch (err) {
    return `its TOC does not verify: ${(err as Error).message}`;
  } finally {
    await blob.close?.();
  }
}

async function rewrite(job: LayerJob, layer: Descriptor): Promise<ConvertedLayer> {
  const tempPath = join(job.workDir, `${layer.digest.slice('sha256:'.length)}.${job.format.format === 'estargz' ? 'gz' : 'zst'}`);
  // Per-layer lists (optimize) replace the one list every layer gets; a layer without one gets none.
  const prioritized = job.prioritizedFilesByLayer ? { ...job.format, prioritizedFiles: job.prioritizedFilesByLayer.get(layer.digest) ?? [] } : job.format;
  const reads = job.readsByLayer?.get(layer.digest);
  const format = reads ? { ...prioritized, chunkSizeFor: partialReadChunkSizes(reads, job.format.chunkSize ?? DEFAULT_CHUNK_SIZE) } : prioritized;
  job.progress.layerStarted(layer.digest, layer.size);
  try {
    const result = await convertBlobToFile(job.source, layer, tempPath, format, (bytesIn, bytesOut) => job.progress.layerBytes(layer.digest, bytesIn, bytesOut));
    // A profiled layer the workload never read gets an empty profile: prefetch nothing, not the whole layer.
    const profile: Record<string, string> = job.readsByLayer ? { [PREFETCH_RANGES_ANNOTATION]: reads && reads.size > 0 ? await prefetchRangesOf(tempPath, result.tocDigest, reads) : '' } : {};
    const descriptor: Descriptor = { mediaType: result.mediaType, digest: result.digest, size: result.size, annotations: { ...carriedAnnotations(layer), ...result.annotations, ...profile } };
    const outcome = await job.destination.putBlob(descriptor, { ...fileBody(tempPath, result.size), path: tempPath });
    job.progress.layerFinished(layer.digest, `converted to ${result.digest.slice(0, 19)} ${(result.size / (1 << 20)).toFixed(1)} MiB (${outcome})`);
    return { descriptor, diffID: result.diffID, action: 'converted', blob: outcome };
  } finally {
    await rm(tempPath, { force: true });
  }
}

/**
 * Converts a source layer blob (checked against its digest as it streams) into a local file; the
 * caller removes the file. Errors say which layer and that it may not be a tar.
 */
export async function convertBlobToFile(
  source: ImageSource,
  layer: Descriptor,
  path: string,
  format: LayerFormatOptions,
  onBytes?: (bytesIn: number, bytesOut: number) => void,
): Promise<ConvertResult> {
  const blob = await source.openBlob(layer);
  try {
    let bytesIn = 0;
    let bytesOut = 0;
    const out = await open(path, 'w');
    try {
      const pieces = verifiedPieces(readPieces(blob), layer.digest, (n) => {
        bytesIn += n;
        onBytes?.(bytesIn, bytesOut);
      });
      const sink = {
        write: async (data: Uint8Array): Promise<void> => {
          await out.write(data);
          bytesOut += data.length;
        },
      };
      return await convertLayer(await decompressedTar(pieces), sink, format);
    } catch (err) {
      throw new Error(`layer ${layer.digest}: cannot convert it (is it a tar, tar.gz or tar.zst?): ${(err as Error).message}`, { cause: err });
    } finally {
      await out.close();
    }
  } finally {
    await blob.close?.();
  }
}

function carriedAnnotations(layer: Descriptor): Record<string, string> {
  return Object.fromEntries(Object.entries(layer.annotations ?? {}).filter(([name]) => !FORMAT_ANNOTATIONS.has(name)));
}
