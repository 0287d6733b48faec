import { randomBytes } from 'node:crypto';
import { constants, createWriteStream } from 'node:fs';
import { copyFile, mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FileSource, type RandomAccessSource } from '../../src/io/random-access.js';
import { bytesBody, DigestMismatchError, MediaTypes, parseManifestDocument, type Descriptor } from '../../src/remote/index.js';
import { Digester, isDigest, sha256, type Digest } from '../../src/util/digest.js';
import type { BlobBody, BlobOutcome, FetchedDocument, ImageDestination, ImageSource } from './store.js';

const REF_NAME = 'org.opencontainers.image.ref.name';
/** DST `oci:DIR` without a tag is tagged like a registry reference without one. */
export const DEFAULT_LAYOUT_TAG = 'latest';

interface LayoutIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  [key: string]: unknown;
}

function blobPath(dir: string, digest: string): string {
  if (!isDigest(digest)) throw new Error(`${JSON.stringify(digest)} is not a sha256 digest`);
  return join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length));
}

async function readLayoutIndex(dir: string): Promise<LayoutIndex | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, 'index.json'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const parsed = JSON.parse(text) as Partial<LayoutIndex>;
  if (!Array.isArray(parsed.manifests)) throw new Error(`${join(dir, 'index.json')}: not an OCI image layout index (no manifests array)`);
  return parsed as LayoutIndex;
}

/** An image in an OCI image layout directory, chosen by its ref.name tag (or the layout's only image). */
export class OciLayoutSource implements ImageSource {
  readonly description: string;

  private constructor(
    private readonly dir: string,
    private readonly entry: Descriptor,
  ) {
    this.description = `oci:${dir}@${entry.digest}`;
  }

  static async open(dir: string, tag?: string): Promise<OciLayoutSource> {
    const index = await readLayoutIndex(dir);
    if (!index) throw new Error(`oci:${dir} is not an OCI image layout (no index.json)`);
    const tags = index.manifests.map((m) => m.annotations?.[REF_NAME]).filter((t): t is string => t !== undefined);
    const entry = tag === undefined ? (index.manifests.length === 1 ? index.manifests[0] : undefined) : index.manifests.find((m) => m.annotations?.[REF_NAME] === tag);
    if (!entry) {
      const why = tag === undefined ? `holds ${index.manifests.length} images: name one with oci:DIR:TAG` : `has no image tagged ${JSON.stringify(tag)}`;
      throw new Error(`oci:${dir} ${why} (tags: ${tags.join(', ') || 'none'})`);
    }
    return new OciLayoutSource(dir, entry);
  }

  root(): Promise<FetchedDocument> {
    return this.manifest(this.entry);
  }

  async manifest(descriptor: Descriptor): Promise<FetchedDocument> {
    const bytes = await this.blobBytes(descriptor);
    const document = parseManifestDocument(bytes, descriptor.mediaType);
    const mediaType = document.kind === 'manifest' ? document.manifest.mediaType : document.index.mediaType;
    return { descriptor: { ...descriptor, mediaType }, bytes, document };
  }

  async blobBytes(descriptor: Descriptor): Promise<Buffer> {
    const bytes = await readFile(blobPath(this.dir, descriptor.digest));
    const actual = sha256(bytes);
    if (actual !== descriptor.digest) throw new DigestMismatchError(`oci:${this.dir}: blob ${descriptor.digest} has digest ${actual}`);
    return bytes;
  }

  async openBlob(descriptor: Descriptor): Promise<RandomAccessSource> {
    const source = await FileSource.open(blobPath(this.dir, descriptor.digest));
    if (source.size !== descriptor.size) {
      await source.close();
      throw new Error(`oci:${this.dir}: blob ${descriptor.digest} has ${source.size} bytes, its descriptor says ${descriptor.size}`);
    }
    return source;
  }

  async close(): Promise<void> {}
}

/**
 * Writes into an OCI image layout (created when missing). Blobs land under a temp name and are renamed
 * once their digest is checked; index.json is replaced atomically, last, so a failed conversion leaves
 * no new tag behind (only unreferenced blobs, which `oci` tools garbage-collect).
 */
export class OciLayoutDestination implements ImageDestination {
  readonly description: string;

  private constructor(
    private readonly dir: string,
    private readonly tagName: string,
  ) {
    this.description = `oci:${dir}:${tagName}`;
  }

  static async open(dir: string, tag = DEFAULT_LAYOUT_TAG): Promise<OciLayoutDestination> {
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    const layoutFile = join(dir, 'oci-layout');
    await writeFile(layoutFile, JSON.stringify({ imageLayoutVersion: '1.0.0' }), { flag: 'wx' }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    await readLayoutIndex(dir); // an existing index.json that is not one fails now, before any work
    return new OciLayoutDestination(dir, tag);
  }

  async putBlob(blob: { digest: Digest; size: number }, body: BlobBody): Promise<BlobOutcome> {
    const target = blobPath(this.dir, blob.digest);
    const existing = await stat(target).catch(() => undefined);
    if (existing?.size === blob.size) return 'exists';
    const temp = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      const actual = body.path !== undefined ? await copyLocalFile(body.path, temp) : await writeStreamed(body, temp);
      if (actual !== blob.digest) throw new DigestMismatchError(`blob ${blob.digest} was written as ${actual}`);
      await rename(temp, target);
      return 'written';
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
  }

  async putManifest(bytes: Buffer): Promise<void> {
    await this.putBytes(bytes);
  }

  async tag(bytes: Buffer, descriptor: Descriptor): Promise<void> {
    await this.putBytes(bytes);
    const index: LayoutIndex = (await readLayoutIndex(this.dir)) ?? { schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: [] };
    const others = index.manifests.filter((m) => m.annotations?.[REF_NAME] !== this.tagName);
    const entry: Descriptor = { ...descriptor, annotations: { ...descriptor.annotations, [REF_NAME]: this.tagName } };
    await writeFileAtomically(join(this.dir, 'index.json'), Buffer.from(JSON.stringify({ ...index, manifests: [...others, entry] })));
  }

  async close(): Promise<void> {}

  private async putBytes(bytes: Buffer): Promise<void> {
    await this.putBlob({ digest: sha256(bytes), size: bytes.length }, bytesBody(bytes));
  }
}

/** A reflink where the filesystem has them, else a kernel copy; then hashed from the copy. */
async function copyLocalFile(from: string, to: string): Promise<Digest> {
  await copyFile(from, to, constants.COPYFILE_FICLONE);
  const digester = new Digester();
  for await (const piece of (await open(to, 'r')).createReadStream({ highWaterMark: 1 << 20 })) digester.update(piece as Buffer);
  return digester.digest();
}

async function writeStreamed(body: BlobBody, to: string): Promise<Digest> {
  const digester = new Digester();
  const hashing = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      digester.update(chunk);
      done(null, chunk);
    },
  });
  await pipeline(body.open(0, body.size), hashing, createWriteStream(to, { flags: 'wx' }));
  return digester.digest();
}

async function writeFileAtomically(path: string, data: Buffer): Promise<void> {
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await open(temp, 'w');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, path);
}
