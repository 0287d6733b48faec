import { createReadStream } from 'node:fs';
import { mkdtemp, open, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { createGunzip, createGzip } from 'node:zlib';
import { DecompressStream } from 'zstd-napi';
import { DEFAULT_LEVEL, codecByName } from '../compression/codec.js';
import { TAR_EOF, TypeFlag, paddingFor, ustarHeader } from '../tar/header.js';
import { TarReader, type TarHeader } from '../tar/reader.js';
import { cleanLayerPath } from '../layer/paths.js';
import { Digester, type Digest } from '../util/digest.js';
import { landmarkEntry, streamEntries, type SourceEntry } from './entry-source.js';
import { estargzFooter, skippableFrame, zstdChunkedFooter } from './footer.js';
import { MemberPipeline, type ByteSink } from './member-pipeline.js';
import { prioritizedEntries } from './prioritize.js';
import { NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK, TOC_TAR_NAME, formatModtime, serializeToc, type TocEntryJson } from './toc.js';

export type OutputFormat = 'estargz' | 'zstd:chunked';

export interface ConvertOptions {
  format?: OutputFormat;
  /** Uncompressed bytes per chunk of a large file (default 4 MiB). */
  chunkSize?: number;
  /**
   * A chunk size for one file (by clean layer path), overriding `chunkSize` (undefined keeps it): e.g. small chunks for a
   * large file a workload reads only parts of, so a range-granular prefetch fetches little of it.
   */
  chunkSizeFor?: (name: string, size: number) => number | undefined;
  /** Small files share one member until it holds this many bytes (0, the default, turns it off). */
  minChunkSize?: number;
  compressionLevel?: number;
  /** Paths in access order; they go first, followed by `.prefetch.landmark`. */
  prioritizedFiles?: string[];
  /** Worker threads for compression (default: one per core). */
  workers?: number;
  /** Where prioritized conversion spools the input to reorder it (default: the OS temp dir). */
  spoolDir?: string;
  /** Receives prioritized paths that are not in the layer. */
  onMissingPrioritized?: (path: string) => void;
}

export interface ConvertResult {
  tocDigest: Digest;
  diffID: Digest;
  uncompressedSize: number;
  digest: Digest;
  size: number;
  mediaType: string;
  annotations: Record<string, string>;
}

export const DEFAULT_CHUNK_SIZE = 4 << 20;
const EMPTY_DIGEST: Digest = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

export const ANNOTATION_TOC_DIGEST = 'containerd.io/snapshot/stargz/toc.digest';
export const ANNOTATION_UNCOMPRESSED_SIZE = 'io.containers.estargz.uncompressed-size';
export const ANNOTATION_ZSTD_MANIFEST_CHECKSUM = 'io.containers.zstd-chunked.manifest-checksum';
export const ANNOTATION_ZSTD_MANIFEST_POSITION = 'io.containers.zstd-chunked.manifest-position';
export const MEDIA_TYPE_GZIP_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const MEDIA_TYPE_ZSTD_LAYER = 'application/vnd.oci.image.layer.v1.tar+zstd';

const ENTRY_TYPES: Record<TarHeader['kind'], TocEntryJson['type']> = {
  reg: 'reg', hardlink: 'hardlink', symlink: 'symlink', char: 'char', block: 'block', dir: 'dir', fifo: 'fifo',
};

/**
 * Streams a tar (plain, gzip or zstd) into an eStargz or zstd:chunked blob. Headers are copied byte for
 * byte from the input; payloads are cut into chunks, each starting a new gzip member or zstd frame that
 * workers compress in parallel. Output is deterministic for the same input and options.
 */
export class LayerWriter {
  private readonly format: OutputFormat;
  private readonly chunkSize: number;
  private readonly chunkSizeFor: ConvertOptions['chunkSizeFor'];
  private readonly minChunkSize: number;
  private readonly level: number;
  private readonly pipeline: MemberPipeline;
  private readonly toc: TocEntryJson[] = [];
  /** Files larger than one chunk are hashed as they stream by; the digest is set at the end. */
  private readonly hashedFiles: { entry: TocEntryJson; digester: Digester }[] = [];
  private readonly diffDigester = new Digester();
  private uncompressedSize = 0;
  private readonly userNames = new NameTable();
  private readonly groupNames = new NameTable();
  /** True while the open member already holds payload, so small files may join it (min-chunk-size). */
  private memberHoldsPayload = false;

  constructor(sink: ByteSink, options: ConvertOptions = {}) {
    this.format = options.format ?? 'estargz';
    this.chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    this.chunkSizeFor = options.chunkSizeFor;
    this.minChunkSize = options.minChunkSize ?? 0;
    if (!Number.isSafeInteger(this.chunkSize) || this.chunkSize <= 0) throw new RangeError(`chunk size must be a positive integer, got ${options.chunkSize}`);
    if (!Number.isSafeInteger(this.minChunkSize) || this.minChunkSize < 0) throw new RangeError(`min chunk size must be a non-negative integer, got ${options.minChunkSize}`);
    const codec = this.format === 'estargz' ? 'gzip' : 'zstd';
    this.level = options.compressionLevel ?? DEFAULT_LEVEL[codec];
    this.pipeline = new MemberPipeline(sink, { codec, level: this.level, workers: options.workers });
  }

  async write(entries: AsyncIterable<SourceEntry>): Promise<ConvertResult> {
    try {
      for await (const entry of entries) await this.addEntry(entry);
      return await this.finish();
    } finally {
      await this.pipeline.close();
    }
  }

  private appendUncompressed(data: Buffer): void {
    this.diffDigester.update(data);
    this.uncompressedSize += data.length;
    this.pipeline.append(data);
  }

  private async addEntry(source: SourceEntry): Promise<void> {
    const h = source.header;
    const entry = tocEntryFor(h);
    entry.userName = this.userNames.ifChanged(h.uid, h.userName);
    entry.groupName = this.groupNames.ifChanged(h.gid, h.groupName);
    this.appendUncompressed(source.rawHeader);
    if (h.kind !== 'reg' || h.size === 0) {
      if (h.kind === 'reg') entry.digest = EMPTY_DIGEST;
      this.toc.push(entry);
      await this.copyUnchunkedPayload(source);
      return;
    }
    await this.writeChunks(source, entry);
    this.appendUncompressed(await source.readPadding());
  }

  /** A regular file's payload as chunks: each gets a TOC entry whose offset and digest arrive later. */
  private async writeChunks(source: SourceEntry, fileEntry: TocEntryJson): Promise<void> {
    const size = source.header.size;
    const chunkSize = this.chunkSizeOf(fileEntry.name, size);
    // A file of one chunk has the chunk's digest; larger ones are hashed here as they stream by.
    const fileDigester = size > chunkSize ? new Digester() : undefined;
    if (fileDigester) this.hashedFiles.push({ entry: fileEntry, digester: fileDigester });
    let written = 0;
    let chunkEntry = fileEntry;
    while (written < size) {
      const remaining = size - written;
      const length = Math.min(chunkSize, remaining);
      if (remaining >= chunkSize) chunkEntry.chunkSize = chunkSize;
      await this.startPayloadMember();
      chunkEntry.chunkOffset = written || undefined;
      chunkEntry.innerOffset = this.pipeline.memberBytes || undefined;
      const target = chunkEntry;
      this.pipeline.whenWritten((offset) => void (target.offset = offset));
      this.pipeline.openDigest((digest) => {
        target.chunkDigest = digest;
        if (!fileDigester) target.digest = digest;
      });
      this.toc.push(chunkEntry);
      await this.copyPayload(source, length, fileDigester);
      this.pipeline.closeDigest();
      written += length;
      chunkEntry = { name: fileEntry.name, type: 'chunk' };
    }
  }

  /** The chunk size of one file; `chunkSizeFor` sees the clean layer path (`usr/lib/x.so`, no `./`). */
  private chunkSizeOf(name: string, size: number): number {
    if (!this.chunkSizeFor) return this.chunkSize;
    let path: string;
    try {
      path = cleanLayerPath(name);
    } catch {
      return this.chunkSize;
    }
    const chosen = this.chunkSizeFor(path, size);
    if (chosen === undefined) return this.chunkSize;
    if (!Number.isSafeInteger(chosen) || chosen <= 0) throw new RangeError(`chunk size for ${path} must be a positive integer, got ${chosen}`);
    return chosen;
  }

  /** Where a chunk's payload begins: a fresh member, unless min-chunk-size lets it share the open one. */
  private async startPayloadMember(): Promise<void> {
    const share = this.minChunkSize > 0 && this.memberHoldsPayload && this.pipeline.memberBytes < this.minChunkSize;
    if (!share) await this.pipeline.endMember();
    this.memberHoldsPayload = true;
  }

  private async copyPayload(source: SourceEntry, length: number, fileDigester?: Digester): Promise<void> {
    let left = length;
    while (left > 0) {
      const piece = await source.readPayload(left);
      if (piece.length === 0) throw new Error(`unexpected end of payload of ${JSON.stringify(source.header.name)}`);
      fileDigester?.update(piece);
      this.appendUncompressed(piece);
      left -= piece.length;
    }
  }

  /** Payload of entries that are not chunked (hardlinks with data, odd tars): copied into the open member. */
  private async copyUnchunkedPayload(source: SourceEntry): Promise<void> {
    for (let piece = await source.readPayload(1 << 20); piece.length > 0; piece = await source.readPayload(1 << 20)) this.appendUncompressed(piece);
    this.appendUncompressed(await source.readPadding());
  }

  private async finish(): Promise<ConvertResult> {
    await this.pipeline.flush();
    for (const { entry, digester } of this.hashedFiles) entry.digest = digester.digest();
    const tocJson = serializeToc(this.toc);
    const tocDigest = new Digester().update(tocJson).digest();
    const annotations: Record<string, string> = { [ANNOTATION_TOC_DIGEST]: tocDigest };
    if (this.format === 'estargz') await this.writeGzipToc(tocJson);
    else Object.assign(annotations, await this.writeZstdToc(tocJson));
    annotations[ANNOTATION_UNCOMPRESSED_SIZE] = String(this.uncompressedSize);
    return {
      tocDigest,
      diffID: this.diffDigester.digest(),
      uncompressedSize: this.uncompressedSize,
      digest: this.pipeline.blobDigest(),
      size: this.pipeline.written,
      mediaType: this.format === 'estargz' ? MEDIA_TYPE_GZIP_LAYER : MEDIA_TYPE_ZSTD_LAYER,
      annotations,
    };
  }

  private async writeGzipToc(tocJson: Buffer): Promise<void> {
    const tocTar = [ustarHeader({ name: TOC_TAR_NAME, size: tocJson.length, mode: 0o644, typeflag: TypeFlag.Reg }), tocJson, Buffer.alloc(paddingFor(tocJson.length)), TAR_EOF];
    for (const piece of tocTar) {
      this.diffDigester.update(piece);
      this.uncompressedSize += piece.length;
    }
    const tocOffset = this.pipeline.written;
    // Streamed so that a large TOC is not copied once more into a single tar buffer.
    const gzip = createGzip({ level: this.level });
    const compressed = buffer(gzip);
    for (const piece of tocTar) gzip.write(piece);
    gzip.end();
    await this.pipeline.writeRaw(await compressed);
    await this.pipeline.writeRaw(estargzFooter(tocOffset));
  }

  /** zstd:chunked keeps the TOC out of the tar stream: raw JSON in a skippable frame, then the footer. */
  private async writeZstdToc(tocJson: Buffer): Promise<Record<string, string>> {
    this.diffDigester.update(TAR_EOF);
    this.uncompressedSize += TAR_EOF.length;
    const zstd = codecByName('zstd');
    await this.pipeline.writeRaw(zstd.compress(TAR_EOF, this.level));
    const compressedToc = zstd.compress(tocJson, this.level);
    const tocOffset = this.pipeline.written + 8;
    await this.pipeline.writeRaw(skippableFrame(compressedToc));
    const location = { offset: tocOffset, compressedSize: compressedToc.length, uncompressedSize: tocJson.length };
    await this.pipeline.writeRaw(zstdChunkedFooter(location));
    return {
      [ANNOTATION_ZSTD_MANIFEST_CHECKSUM]: new Digester().update(compressedToc).digest(),
      [ANNOTATION_ZSTD_MANIFEST_POSITION]: `${location.offset}:${location.compressedSize}:${location.uncompressedSize}:1`,
    };
  }
}

/**
 * Like the reference writer, a user or group name is written only when it changes for its id; readers
 * carry the last one forward. Keeps TOCs of big layers small.
 */
class NameTable {
  private readonly last = new Map<number, string>();
  ifChanged(id: number, name: string): string | undefined {
    if (this.last.get(id) === name) return undefined;
    this.last.set(id, name);
    return name;
  }
}

function tocEntryFor(h: TarHeader): TocEntryJson {
  const entry: TocEntryJson = {
    name: h.name,
    type: ENTRY_TYPES[h.kind],
    size: h.kind === 'reg' ? h.size : undefined,
    modtime: formatModtime(h.mtimeSec, h.mtimeNsec),
    linkName: h.kind === 'symlink' || h.kind === 'hardlink' ? h.linkName : undefined,
    mode: h.mode,
    uid: h.uid,
    gid: h.gid,
  };
  if (h.kind === 'char' || h.kind === 'block') {
    entry.devMajor = h.devMajor;
    entry.devMinor = h.devMinor;
  }
  if (h.xattrs.size > 0) entry.xattrs = Object.fromEntries([...h.xattrs].map(([k, v]) => [k, v.toString('base64')]));
  return entry;
}

/** Names a previous conversion added; a new conversion drops them and writes its own. */
export function isGeneratedEntry(name: string): boolean {
  let clean: string;
  try {
    clean = cleanLayerPath(name);
  } catch {
    return false;
  }
  return clean === TOC_TAR_NAME || clean === PREFETCH_LANDMARK || clean === NO_PREFETCH_LANDMARK;
}

async function* withoutGenerated(entries: AsyncIterable<SourceEntry>): AsyncGenerator<SourceEntry> {
  for await (const entry of entries) if (!isGeneratedEntry(entry.header.name)) yield entry;
}

async function* withLeadingNoPrefetch(entries: AsyncIterable<SourceEntry>): AsyncGenerator<SourceEntry> {
  yield landmarkEntry(NO_PREFETCH_LANDMARK);
  yield* entries;
}

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** Reads a tar, tar.gz or tar.zst file as a plain tar stream (the compression is sniffed, not guessed from the name). */
export async function openTarStream(path: string): Promise<Readable> {
  const handle = await open(path, 'r');
  const head = Buffer.alloc(4);
  try {
    await handle.read(head, 0, 4, 0);
  } finally {
    await handle.close();
  }
  const file = createReadStream(path, { highWaterMark: 1 << 20 });
  if (head.subarray(0, 2).equals(GZIP_MAGIC)) return file.pipe(createGunzip({ chunkSize: 1 << 20 }));
  if (head.equals(ZSTD_MAGIC)) return file.pipe(new DecompressStream());
  return file;
}

/** Converts a tar stream, writing the blob to `sink`. */
export async function convertLayer(tar: AsyncIterable<Uint8Array>, sink: ByteSink, options: ConvertOptions = {}): Promise<ConvertResult> {
  const writer = new LayerWriter(sink, options);
  if (options.prioritizedFiles && options.prioritizedFiles.length > 0) {
    const workDir = await mkdtemp(join(options.spoolDir ?? tmpdir(), 'lazypull-spool-'));
    try {
      const entries = await prioritizedEntries(withoutGenerated(streamEntries(new TarReader(tar))), options.prioritizedFiles, workDir, options.onMissingPrioritized);
      return await writer.write(entries);
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
  }
  return writer.write(withLeadingNoPrefetch(withoutGenerated(streamEntries(new TarReader(tar)))));
}

/** Converts a layer file into `outputPath` atomically: a temp file next to it, renamed when complete. */
export async function convertLayerFile(inputPath: string, outputPath: string, options: ConvertOptions = {}): Promise<ConvertResult> {
  const temp = join(dirname(outputPath), `.${basename(outputPath)}.${process.pid}.tmp`);
  const out = await open(temp, 'w');
  try {
    const sink: ByteSink = { write: async (data) => void (await out.write(data)) };
    const result = await convertLayer(await openTarStream(inputPath), sink, options);
    await out.sync();
    await out.close();
    await rename(temp, outputPath);
    return result;
  } catch (err) {
    await out.close().catch(() => undefined);
    await rm(temp, { force: true });
    throw err;
  }
}
