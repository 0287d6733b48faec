import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { zstdCodec } from '../../../src/compression/codec.js';
import { openLayer } from '../../../src/estargz/open.js';
import { convertLayerFile } from '../../../src/estargz/writer.js';
import { FileSource } from '../../../src/io/random-access.js';
import { readFileRange } from '../../../src/layer/read.js';
import { sha256 } from '../../../src/util/digest.js';

let dir: string;
let inputTar: string;
const big = Buffer.alloc(300_000);
for (let i = 0; i < big.length; i++) big[i] = (i * 7919) % 251;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lazypull-writer-'));
  const tree = join(dir, 'tree');
  await mkdir(join(tree, 'app/lib'), { recursive: true });
  await mkdir(join(tree, 'etc'), { recursive: true });
  await writeFile(join(tree, 'app/lib/big.bin'), big);
  await writeFile(join(tree, 'app/main.py'), 'print("hi")\n');
  await writeFile(join(tree, 'etc/conf'), 'a=1\n');
  await writeFile(join(tree, 'etc/other'), 'b=2\n');
  await symlink('../etc/conf', join(tree, 'app/conf'));
  inputTar = join(dir, 'in.tar');
  execFileSync('tar', ['-C', tree, '--sort=name', '--format=pax', '--mtime=@1600000000', '-cf', inputTar, '.']);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function convert(name: string, options: Parameters<typeof convertLayerFile>[2] = {}) {
  const out = join(dir, name);
  const result = await convertLayerFile(inputTar, out, options);
  return { out, result, blob: await readFile(out) };
}

function tarNames(tar: Buffer): string[] {
  return execFileSync('tar', ['-t'], { input: tar }).toString().trim().split('\n');
}

describe('eStargz writer', () => {
  it('is deterministic whatever the number of workers', async () => {
    const one = await convert('one.esgz', { workers: 1, chunkSize: 65536 });
    const two = await convert('two.esgz', { workers: 2, chunkSize: 65536 });
    expect(two.blob.equals(one.blob)).toBe(true);
    expect(one.result.digest).toBe(sha256(one.blob));
    expect(one.result.size).toBe(one.blob.length);
  });

  it('is still a valid tar.gz holding the original entries, the landmark and the TOC; diffID and size describe it', async () => {
    const { blob, result } = await convert('plain.esgz');
    const tar = gunzipSync(blob);
    expect(result.diffID).toBe(sha256(tar));
    expect(result.uncompressedSize).toBe(tar.length);
    const input = await readFile(inputTar);
    const names = tarNames(tar);
    expect(names[0]).toBe('.no.prefetch.landmark');
    expect(names.at(-1)).toBe('stargz.index.json');
    expect(names.slice(1, -1)).toEqual(tarNames(input));
    // headers are copied verbatim: the input's bytes (without its EOF) follow the landmark entry
    const inputEntries = input.subarray(0, input.length - 1024).toString('latin1').replace(/\0+$/, '');
    expect(tar.subarray(1024).toString('latin1').startsWith(inputEntries)).toBe(true);
    expect(result.annotations['containerd.io/snapshot/stargz/toc.digest']).toBe(result.tocDigest);
    expect(result.annotations['io.containers.estargz.uncompressed-size']).toBe(String(tar.length));
  });

  it('starts a gzip member at each chunk and records chunk and file digests', async () => {
    const { out, result } = await convert('chunks.esgz', { chunkSize: 100_000 });
    const source = await FileSource.open(out);
    try {
      const layer = await openLayer(source, { expectedTocDigest: result.tocDigest });
      const file = layer.lookup('app/lib/big.bin')!;
      expect(file.chunks.map((c) => [c.fileOffset, c.size])).toEqual([[0, 100_000], [100_000, 100_000], [200_000, 100_000]]);
      expect(new Set(file.chunks.map((c) => c.compressedOffset)).size).toBe(3);
      expect(file.digest).toBe(sha256(big));
      expect(file.chunks[1]!.digest).toBe(sha256(big.subarray(100_000, 200_000)));
      expect((await readFileRange(layer, source, file, 99_990, 20)).equals(big.subarray(99_990, 100_010))).toBe(true);
      const toc = JSON.parse(layer.tocJson.toString()) as { entries: { name: string; type: string; chunkSize?: number }[] };
      expect(toc.entries.filter((e) => e.name === './app/lib/big.bin').map((e) => [e.type, e.chunkSize])).toEqual([['reg', 100_000], ['chunk', 100_000], ['chunk', 100_000]]);
    } finally {
      await source.close();
    }
  });

  it('gives a file its own chunk size through chunkSizeFor (by clean path), keeping the default for the rest', async () => {
    const seen: string[] = [];
    const { out, result } = await convert('per-file.esgz', { chunkSize: 200_000, chunkSizeFor: (path) => (seen.push(path), path === 'app/lib/big.bin' ? 64 * 1024 : undefined) });
    expect(seen).toEqual(expect.arrayContaining(['app/lib/big.bin', 'app/main.py']));
    const source = await FileSource.open(out);
    try {
      const layer = await openLayer(source, { expectedTocDigest: result.tocDigest });
      const file = layer.lookup('app/lib/big.bin')!;
      expect(file.chunks.map((c) => c.size)).toEqual([65536, 65536, 65536, 65536, 300_000 - 4 * 65536]);
      expect((await readFileRange(layer, source, file, 65530, 20)).equals(big.subarray(65530, 65550))).toBe(true);
      expect(file.digest).toBe(sha256(big));
    } finally {
      await source.close();
    }
    await expect(convert('bad-size.esgz', { chunkSizeFor: (path) => (path === 'app/lib/big.bin' ? 0 : undefined) })).rejects.toThrow(/chunk size for app\/lib\/big.bin must be a positive integer/);
  });

  it('packs small files into shared members with innerOffset under min-chunk-size', async () => {
    const { out } = await convert('packed.esgz', { minChunkSize: 1 << 20 });
    const source = await FileSource.open(out);
    try {
      const layer = await openLayer(source);
      const conf = layer.lookup('etc/conf')!.chunks[0]!;
      const other = layer.lookup('etc/other')!.chunks[0]!;
      expect(other.compressedOffset).toBe(conf.compressedOffset);
      expect(other.innerOffset).toBeGreaterThan(conf.innerOffset);
      expect((await readFileRange(layer, source, layer.lookup('etc/other')!, 0, 100)).toString()).toBe('b=2\n');
    } finally {
      await source.close();
    }
  });

  it('puts prioritized files first in access order, parents along, then the landmark', async () => {
    const missing: string[] = [];
    const { out } = await convert('prio.esgz', { prioritizedFiles: ['etc/other', '/app/main.py', 'not/there'], onMissingPrioritized: (p) => missing.push(p) });
    expect(missing).toEqual(['not/there']);
    const names = tarNames(gunzipSync(await readFile(out))).slice(0, 7);
    expect(names).toEqual(['./', './etc/', './etc/other', './app/', './app/main.py', '.prefetch.landmark', './app/conf']);
    const source = await FileSource.open(out);
    try {
      const layer = await openLayer(source);
      expect(layer.prefetchRange!.end).toBe(layer.lookup('.prefetch.landmark')!.chunks[0]!.compressedOffset);
      expect(layer.lookup('app/main.py')!.chunks[0]!.compressedOffset).toBeLessThan(layer.prefetchRange!.end);
      expect(layer.noPrefetch).toBe(false);
    } finally {
      await source.close();
    }
  });

  it('writes zstd:chunked with its annotations, and the blob decompresses to the tar', async () => {
    const { blob, result } = await convert('layer.zst', { format: 'zstd:chunked' });
    expect(result.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
    const [offset, length, size, type] = result.annotations['io.containers.zstd-chunked.manifest-position']!.split(':').map(Number);
    expect(type).toBe(1);
    const compressedToc = blob.subarray(offset, offset! + length!);
    expect(result.annotations['io.containers.zstd-chunked.manifest-checksum']).toBe(sha256(compressedToc));
    const toc = zstdCodec.decompress(compressedToc, size!);
    expect(sha256(toc)).toBe(result.tocDigest);
    const tar = zstdCodec.decompress(blob, 10 << 20);
    expect(result.diffID).toBe(sha256(tar));
    expect(tarNames(tar)).toContain('./app/lib/big.bin');
  });

  it('reads tar.gz and tar.zst input to the same blob as the plain tar', async () => {
    const plain = await convert('from-tar.esgz');
    execFileSync('gzip', ['-kf', inputTar]);
    execFileSync('zstd', ['-qf', inputTar, '-o', `${inputTar}.zst`]);
    const fromGz = await convertLayerFile(`${inputTar}.gz`, join(dir, 'from-gz.esgz'));
    const fromZst = await convertLayerFile(`${inputTar}.zst`, join(dir, 'from-zst.esgz'));
    expect(fromGz.digest).toBe(plain.result.digest);
    expect(fromZst.digest).toBe(plain.result.digest);
  });

  it('fails on a corrupt tar without leaving an output file', async () => {
    const bad = join(dir, 'bad.tar');
    const input = await readFile(inputTar);
    input.writeUInt8(input.readUInt8(1024 + 10) ^ 0xff, 1024 + 10); // the name field of the first real header (after a PAX header and its data)
    await writeFile(bad, input);
    const out = join(dir, 'out', 'bad.esgz');
    await mkdir(join(dir, 'out'));
    await expect(convertLayerFile(bad, out)).rejects.toThrow(/bad tar header checksum/);
    expect(await readdir(join(dir, 'out'))).toEqual([]);
  });
});
