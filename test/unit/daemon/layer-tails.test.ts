import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NotLazyFormatError } from '../../../src/daemon/fallback.js';
import { fetchTail, TailSource, TailStore } from '../../../src/daemon/layer-tails.js';
import { openLayer } from '../../../src/estargz/open.js';
import { convertLayer } from '../../../src/estargz/writer.js';
import { BufferSource } from '../../../src/io/random-access.js';
import { readFileRange } from '../../../src/layer/read.js';
import { gzipSync } from 'node:zlib';
import { execFileSync } from 'node:child_process';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function estargzOf(files: Record<string, Buffer>): Promise<{ blob: Buffer; tocDigest: `sha256:${string}` }> {
  const stage = await mkdtemp(join(tmpdir(), 'lp-tail-'));
  dirs.push(stage);
  for (const [name, data] of Object.entries(files)) await writeFile(join(stage, name), data);
  const tar = execFileSync('tar', ['-C', stage, '-cf', '-', '.'], { maxBuffer: 64 << 20 });
  const parts: Buffer[] = [];
  const result = await convertLayer((async function* () { yield tar; })(), { write: async (d) => void parts.push(Buffer.from(d)) });
  return { blob: Buffer.concat(parts), tocDigest: result.tocDigest };
}

describe('layer tails', () => {
  it('fetchTail keeps exactly the TOC and footer, and a LayerIndex opens from it alone', async () => {
    const content = Buffer.alloc(300_000, 7);
    const { blob, tocDigest } = await estargzOf({ 'a.bin': content, 'b.txt': Buffer.from('hello') });
    const tail = await fetchTail(new BufferSource(blob), 1 << 20);
    expect(tail.size).toBe(blob.length);
    expect(tail.bytes.equals(blob.subarray(tail.offset))).toBe(true);
    expect(tail.offset).toBeGreaterThan(content.length / 1000); // the file data is not part of it
    const index = await openLayer(new TailSource(tail), { expectedTocDigest: tocDigest, tailSize: tail.bytes.length });
    expect(index.entries.get('b.txt')?.size).toBe(5);
    // Reading a file needs the blob itself: the tail source refuses, it never invents bytes.
    await expect(readFileRange(index, new TailSource(tail), index.entries.get('b.txt')!, 0, 5)).rejects.toThrow(/before the stored layer tail/);
  });

  it('fetchTail reads the TOC in a second request when it is larger than the first read', async () => {
    const files = Object.fromEntries(Array.from({ length: 1500 }, (_, i) => [`file-with-a-long-name-${i}.txt`, Buffer.from(String(i))]));
    const { blob, tocDigest } = await estargzOf(files);
    const reads: number[] = [];
    const source = new BufferSource(blob);
    const counting = { size: source.size, readAt: (o: number, l: number) => (reads.push(l), source.readAt(o, l)) };
    const tail = await fetchTail(counting, 16 << 20);
    expect(reads).toHaveLength(2);
    await expect(openLayer(new TailSource(tail), { expectedTocDigest: tocDigest, tailSize: tail.bytes.length })).resolves.toBeDefined();
  });

  it('a plain gzip layer is NotLazyFormat; a TOC over the limit too', async () => {
    await expect(fetchTail(new BufferSource(gzipSync(Buffer.alloc(100_000))), 1 << 20)).rejects.toThrow(NotLazyFormatError);
    const { blob } = await estargzOf({ 'x': Buffer.from('x') });
    await expect(fetchTail(new BufferSource(blob), 10)).rejects.toThrow(/more than the 10-byte limit/);
  });

  it('TailStore round-trips, and drops damaged or truncated files instead of serving them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lp-tails-'));
    dirs.push(dir);
    const store = new TailStore(dir);
    const digest = `sha256:${'a'.repeat(64)}` as const;
    expect(await store.get(digest)).toBeUndefined();
    const tail = { size: 1000, offset: 990, bytes: Buffer.from('0123456789') };
    await store.put(digest, tail);
    expect(await store.get(digest)).toEqual(tail);
    expect(await readdir(dir)).toEqual(['a'.repeat(64)]); // no temp files left
    await writeFile(join(dir, 'a'.repeat(64)), Buffer.from('LPTAIL1\0short'));
    expect(await store.get(digest)).toBeUndefined();
    expect(await readdir(dir)).toEqual([]);
  });
});
