import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BufferSource } from '../../../src/io/random-access.js';
import { bytesBody, type Descriptor } from '../../../src/remote/index.js';
import { sha256 } from '../../../src/util/digest.js';
import { decompressedTar, readPieces, verifiedPieces } from '../../../tools/convert/blob-stream.js';
import { OciLayoutDestination, OciLayoutSource, parseImageConfig, parseImageLocation } from '../../../tools/convert/index.js';
import { allSettledOrThrow, TaskLimiter } from '../../../tools/convert/limiter.js';
import { pseudoRandom } from '../../helpers/fixture-tree.js';

describe('parseImageLocation', () => {
  it('tells OCI layouts from registry references', () => {
    expect(parseImageLocation('oci:/tmp/x:v1')).toEqual({ kind: 'oci-layout', dir: '/tmp/x', tag: 'v1' });
    expect(parseImageLocation('oci:/tmp/x')).toEqual({ kind: 'oci-layout', dir: '/tmp/x' });
    expect(parseImageLocation('oci:./a:b/c')).toEqual({ kind: 'oci-layout', dir: './a:b/c' });
    const registry = parseImageLocation('127.0.0.1:5000/team/app:v2');
    expect(registry.kind === 'registry' && registry.reference.toString()).toBe('127.0.0.1:5000/team/app:v2');
  });

  it('refuses an empty directory or an invalid tag', () => {
    expect(() => parseImageLocation('oci::v1')).toThrow(/needs a directory/);
    expect(() => parseImageLocation('oci:/x:-bad')).toThrow(/not a valid tag/);
  });
});

describe('TaskLimiter', () => {
  it('never runs more than its concurrency, and skips tasks not started after cancel', async () => {
    const limiter = new TaskLimiter(2);
    let running = 0;
    let peak = 0;
    const task = async (): Promise<number> => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, 5));
      running--;
      return 1;
    };
    expect(await Promise.all(Array.from({ length: 7 }, () => limiter.run(task)))).toHaveLength(7);
    expect(peak).toBe(2);

    const failing = new TaskLimiter(1);
    let ranAfterFailure = false;
    const first = failing.run(async () => Promise.reject(new Error('boom')));
    const second = failing.run(async () => void (ranAfterFailure = true));
    await expect(allSettledOrThrow([first, second])).rejects.toThrow('boom');
    expect(ranAfterFailure).toBe(false);
  });
});

describe('parseImageConfig', () => {
  const config = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));
  const d = `sha256:${'a'.repeat(64)}`;

  it('accepts an image config and reads its platform', () => {
    expect(parseImageConfig(config({ os: 'linux', architecture: 'arm64', rootfs: { type: 'layers', diff_ids: [d] } }), 1, 'x')).toMatchObject({ diffIds: [d], platform: { os: 'linux', architecture: 'arm64' } });
  });

  it('refuses what is not an image config, or does not match the layers', () => {
    expect(() => parseImageConfig(Buffer.from('nope'), 0, 'x')).toThrow(/x is not a container image: its config is not JSON/);
    expect(() => parseImageConfig(config({ rootfs: {} }), 0, 'x')).toThrow(/no rootfs.diff_ids/);
    expect(() => parseImageConfig(config({ rootfs: { diff_ids: ['md5:1'] } }), 1, 'x')).toThrow(/not a sha256 digest/);
    expect(() => parseImageConfig(config({ rootfs: { diff_ids: [d] } }), 2, 'x')).toThrow(/1 diff_ids for 2 layers/);
  });
});

describe('blob streams', () => {
  const data = pseudoRandom(3, 9 * (1 << 20) + 7);

  it('reads a source sequentially in pieces and checks its digest', async () => {
    const source = new BufferSource(data);
    expect((await buffer(Readable.from(verifiedPieces(readPieces(source), sha256(data))))).equals(data)).toBe(true);
    await expect(buffer(Readable.from(verifiedPieces(readPieces(source), sha256(Buffer.from('other')))))).rejects.toThrow(/read back as/);
    expect((await buffer(Readable.from(readPieces(source, 100, 200)))).equals(data.subarray(100, 200))).toBe(true);
  });

  it('sniffs gzip and passes plain bytes through', async () => {
    const pieces = (bytes: Buffer): AsyncIterable<Buffer> => readPieces(new BufferSource(bytes));
    expect((await buffer(await decompressedTar(pieces(gzipSync(data))))).equals(data)).toBe(true);
    expect((await buffer(await decompressedTar(pieces(data)))).equals(data)).toBe(true);
    await expect(buffer(await decompressedTar(pieces(gzipSync(data).subarray(0, 1000))))).rejects.toThrow(/unexpected end of file/);
  });
});

describe('OCI layout destination and source', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lazypull-oci-unit-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('stores digest-checked blobs, replaces only its own tag in index.json, and reads the image back by tag', async () => {
    await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [] }));
    const destination = await OciLayoutDestination.open(dir, 'v1');
    const blob = Buffer.from('blob');
    expect(await destination.putBlob({ digest: sha256(blob), size: 4 }, bytesBody(blob))).toBe('written');
    expect(await destination.putBlob({ digest: sha256(blob), size: 4 }, bytesBody(blob))).toBe('exists');
    await expect(destination.putBlob({ digest: sha256(Buffer.from('else')), size: 4 }, bytesBody(blob))).rejects.toThrow(/was written as/);

    const config = Buffer.from(JSON.stringify({ rootfs: { type: 'layers', diff_ids: [] } }));
    await destination.putBlob({ digest: sha256(config), size: config.length }, bytesBody(config));
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length }, layers: [] }));
    const descriptor: Descriptor = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(manifest), size: manifest.length };
    await destination.tag(manifest, descriptor);
    await (await OciLayoutDestination.open(dir, 'v2')).tag(manifest, descriptor);
    await destination.tag(manifest, descriptor);
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
    expect(index.manifests.map((m) => m.annotations?.['org.opencontainers.image.ref.name'])).toEqual(['v2', 'v1']);

    const source = await OciLayoutSource.open(dir, 'v1');
    const root = await source.root();
    expect(root.descriptor.digest).toBe(descriptor.digest);
    expect(root.document.kind).toBe('manifest');
    await expect(OciLayoutSource.open(dir)).rejects.toThrow(/holds 2 images: name one with oci:DIR:TAG \(tags: v2, v1\)/);
    await expect(OciLayoutSource.open(dir, 'v3')).rejects.toThrow(/has no image tagged "v3"/);
    await expect(OciLayoutSource.open(join(dir, 'missing'))).rejects.toThrow(/is not an OCI image layout \(no index.json\)/);
  });
});
