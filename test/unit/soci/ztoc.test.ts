import { constants as zlibConstants, crc32, deflateRawSync, gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { DEFAULT_TOC_LIMITS } from '../../../src/estargz/toc-index.js';
import { BufferSource } from '../../../src/io/random-access.js';
import { ChunkVerificationError } from '../../../src/layer/chunked-index.js';
import type { ChunkRef } from '../../../src/layer/layer-index.js';
import { readFileRange } from '../../../src/layer/read.js';
import { buildZtoc, formatRfc3339Nano, localPaxRecords } from '../../../src/soci/build.js';
import { encodeGzipZinfo, decodeGzipZinfo } from '../../../src/soci/checkpoints.js';
import { openSociLayer } from '../../../src/soci/layer-index.js';
import { ZtocError, readTarZinfo, readZtoc, writeTarZinfo, writeZtoc, type Ztoc } from '../../../src/soci/ztoc.js';
import { sha256 } from '../../../src/util/digest.js';
import { SMALL_SPAN, gzipped, paxFileEntry, sampleTar, sampleZtoc } from './helpers.js';

const sample = sampleTar();
const gz = gzipped(sample.tar);

/** Minimal independent flatbuffer reading for the layout checks: table field positions from the vtable. */
function fieldAt(buf: Buffer, table: number, id: number): number | undefined {
  const vtable = table - buf.readInt32LE(table);
  const slot = 4 + 2 * id;
  if (slot >= buf.readUInt16LE(vtable)) return undefined;
  const offset = buf.readUInt16LE(vtable + slot);
  return offset === 0 ? undefined : table + offset;
}
const deref = (buf: Buffer, at: number) => at + buf.readUInt32LE(at);
const stringAt = (buf: Buffer, at: number) => {
  const s = deref(buf, at);
  return buf.toString('utf8', s + 4, s + 4 + buf.readUInt32LE(s));
};

describe('zTOC of a gzip layer', () => {
  it('lists every tar entry with its data offset and cuts the blob into spans with digests and checkpoints', async () => {
    const { ztoc, bytes, digest } = await sampleZtoc(gz);
    expect(digest).toBe(sha256(bytes));
    expect(ztoc.version).toBe('0.9');
    expect(ztoc.algorithm).toBe('gzip');
    expect(ztoc.compressedArchiveSize).toBe(gz.length);
    expect(ztoc.uncompressedArchiveSize).toBe(sample.tar.length);
    expect(ztoc.files.map((f) => f.name)).toEqual(['dir/', ...[...Array(40).keys()].map((i) => `dir/small-${i}.txt`), 'big.bin', 'dir/xattr.txt', 'empty']);
    for (const f of ztoc.files.filter((x) => x.type === 'reg')) {
      expect(sample.tar.subarray(f.uncompressedOffset, f.uncompressedOffset + f.uncompressedSize).equals(sample.files.get(f.name)!), f.name).toBe(true);
    }
    const xattrFile = ztoc.files.find((f) => f.name === 'dir/xattr.txt')!;
    expect(xattrFile.xattrs.map((x) => x.key)).toEqual(['SCHILY.xattr.user.note', 'mtime']);
    expect(xattrFile.modTime).toBe('2023-11-14T22:13:20.123456789Z');
    const zinfo = decodeGzipZinfo(ztoc.checkpoints);
    expect(zinfo.spanSize).toBe(SMALL_SPAN);
    expect(ztoc.maxSpanId).toBe(zinfo.checkpoints.length - 1);
    expect(ztoc.spanDigests).toHaveLength(zinfo.checkpoints.length);
    expect(zinfo.checkpoints.length).toBeGreaterThan(4);
    // Each digest is the sha256 of the span's compressed bytes.
    const { spans } = readZtoc(bytes);
    for (const s of spans) expect(sha256(gz.subarray(s.compressedStart, s.compressedEnd))).toBe(ztoc.spanDigests[s.id]);
  });

  it('writes and reads back to identical bytes', async () => {
    const { bytes } = await sampleZtoc(gz);
    const parsed = readZtoc(bytes);
    expect(writeZtoc(parsed.ztoc).equals(bytes)).toBe(true);
    expect(encodeGzipZinfo(parsed.gzip!).equals(parsed.ztoc.checkpoints)).toBe(true);
  });

  it('lays the flatbuffer out as the schema says: root Ztoc, field ids 0..5, TOC.metadata, FileMetadata ids 0..13, CompressionInfo ids 0..3', async () => {
    const { bytes, ztoc } = await sampleZtoc(gz);
    const root = bytes.readUInt32LE(0);
    expect(stringAt(bytes, fieldAt(bytes, root, 0)!)).toBe('0.9');
    expect(stringAt(bytes, fieldAt(bytes, root, 1)!)).toBe('lazypull');
    expect(Number(bytes.readBigInt64LE(fieldAt(bytes, root, 2)!))).toBe(gz.length);
    expect(Number(bytes.readBigInt64LE(fieldAt(bytes, root, 3)!))).toBe(sample.tar.length);
    const toc = deref(bytes, fieldAt(bytes, root, 4)!);
    const metadata = deref(bytes, fieldAt(bytes, toc, 0)!);
    expect(bytes.readUInt32LE(metadata)).toBe(ztoc.files.length);
    const second = deref(bytes, metadata + 4 + 4); // dir/small-0.txt
    expect(stringAt(bytes, fieldAt(bytes, second, 0)!)).toBe('dir/small-0.txt');
    expect(stringAt(bytes, fieldAt(bytes, second, 1)!)).toBe('reg');
    expect(Number(bytes.readBigInt64LE(fieldAt(bytes, second, 2)!))).toBe(1024); // after dir/ (512) and its own header (512)
    expect(Number(bytes.readBigInt64LE(fieldAt(bytes, second, 3)!))).toBe(sample.files.get('dir/small-0.txt')!.length);
    expect(Number(bytes.readBigInt64LE(fieldAt(bytes, second, 5)!))).toBe(0o644);
    expect(fieldAt(bytes, second, 6)).toBeUndefined(); // uid 0 is the default: not stored, as Go's builder does
    expect(stringAt(bytes, fieldAt(bytes, second, 10)!)).toBe('1970-01-01T00:00:00Z');
    const xattrFile = deref(bytes, metadata + 4 + 4 * 42);
    const xattrs = deref(bytes, fieldAt(bytes, xattrFile, 13)!);
    const firstXattr = deref(bytes, xattrs + 4);
    expect(stringAt(bytes, fieldAt(bytes, firstXattr, 0)!)).toBe('SCHILY.xattr.user.note');
    const info = deref(bytes, fieldAt(bytes, root, 5)!);
    expect(fieldAt(bytes, info, 0)).toBeUndefined(); // Gzip = 1 is the default
    expect(bytes.readInt32LE(fieldAt(bytes, info, 1)!)).toBe(ztoc.maxSpanId);
    const digests = deref(bytes, fieldAt(bytes, info, 2)!);
    expect(bytes.readUInt32LE(digests)).toBe(ztoc.maxSpanId + 1);
    expect(stringAt(bytes, digests + 4)).toBe(ztoc.spanDigests[0]);
    const checkpoints = deref(bytes, fieldAt(bytes, info, 3)!);
    expect(bytes.readUInt32LE(checkpoints)).toBe(12 + (ztoc.maxSpanId + 1) * 32785);
    expect(bytes.subarray(checkpoints + 4, checkpoints + 4 + 12).equals(ztoc.checkpoints.subarray(0, 12))).toBe(true);
  });

  it('serves every file byte for byte through span reads; small files share a span, the big one crosses several', async () => {
    const { bytes } = await sampleZtoc(gz);
    const index = openSociLayer(bytes, { layerSize: gz.length });
    const source = new BufferSource(gz);
    expect(index.format).toBe('soci');
    expect(index.tocDigest).toBe(sha256(bytes));
    for (const [name, data] of sample.files) {
      const entry = index.lookup(name)!;
      expect(entry.size, name).toBe(data.length);
      expect((await readFileRange(index, source, entry, 0, data.length)).equals(data), name).toBe(true);
    }
    const big = index.lookup('big.bin')!;
    expect(big.chunks.length).toBeGreaterThan(3);
    expect((await readFileRange(index, source, big, 12_345, 100_000)).equals(sample.files.get('big.bin')!.subarray(12_345, 112_345))).toBe(true);
    // Pieces of one span: plan() hands out the same whole-span chunk for both files.
    const [slice0] = index.plan(index.lookup('dir/small-0.txt')!, 0, 10);
    const [slice1] = index.plan(index.lookup('dir/small-1.txt')!, 0, 10);
    expect(slice1!.chunk).toBe(slice0!.chunk);
    expect(slice1!.chunk.size).toBe(slice1!.chunk.maxInflated);
    expect(slice1!.start).toBe(index.lookup('dir/small-1.txt')!.chunks[0]!.innerOffset);
    expect(slice1!.start).toBeGreaterThan(0);
    expect(index.lookup('dir')!.type).toBe('dir');
    expect(index.lookup('dir/xattr.txt')!.xattrs.get('user.note')).toEqual(Buffer.from([0, 1, 2, 0xff]));
    expect(index.lookup('dir/xattr.txt')!.mtimeNsec).toBe(123456789);
    // The cache key binds the checkpoint: two spans with the same compressed bytes but different windows
    // decode differently and must not share a cache entry.
    const twin = openSociLayer(writeZtoc({ ...index.parsed.ztoc, checkpoints: encodeGzipZinfo({ ...index.parsed.gzip!, checkpoints: index.parsed.gzip!.checkpoints.map((c, i) => (i === 0 ? c : { ...c, window: Buffer.alloc(c.window.length, 7) })) }) }));
    expect(twin.lookup('big.bin')!.chunks[2]!.digest).not.toBe(big.chunks[2]!.digest);
    expect(twin.lookup('dir/small-0.txt')!.chunks[0]!.digest).toBe(index.lookup('dir/small-0.txt')!.chunks[0]!.digest); // span 0's checkpoint is unchanged
    expect(big.chunks.every((c) => c.digest !== undefined && !index.parsed.ztoc.spanDigests.includes(c.digest))).toBe(true);
  });

  it('keys every chunk by exactly what decode returns, so a digest-keyed cache never serves one file another\'s bytes', async () => {
    const { bytes } = await sampleZtoc(gz);
    const index = openSociLayer(bytes);
    // What the read path does: fetch, decode, cache decode output under chunk.digest, serve later hits from the cache.
    const cache = new Map<string, Buffer>();
    let decodes = 0;
    const load = (chunk: ChunkRef): Buffer => {
      let data = cache.get(chunk.digest!);
      if (!data) {
        decodes++;
        data = index.decode(chunk, gz.subarray(chunk.compressedOffset, chunk.compressedEnd));
        cache.set(chunk.digest!, data);
      }
      return data;
    };
    for (const [name, data] of sample.files) {
      const entry = index.lookup(name)!;
      const viaPlan = Buffer.concat(index.plan(entry, 0, data.length).map((s) => load(s.chunk).subarray(s.start, s.end)));
      expect(viaPlan.equals(data), `${name} via plan`).toBe(true);
      const viaPieces = Buffer.concat(entry.chunks.map(load));
      expect(viaPieces.equals(data), `${name} via entry.chunks`).toBe(true);
    }
    // Reads through plan() decode each span once, however many files share it.
    cache.clear();
    decodes = 0;
    for (const [name, data] of sample.files) for (const s of index.plan(index.lookup(name)!, 0, data.length)) load(s.chunk);
    expect(decodes).toBe(index.fetchUnits().length);
  });

  it('refuses a span whose compressed bytes do not match its digest, returning no bytes', async () => {
    const { bytes } = await sampleZtoc(gz);
    const index = openSociLayer(bytes);
    const entry = index.lookup('big.bin')!;
    const target = entry.chunks[3]!;
    const damaged = Buffer.from(gz);
    damaged[target.compressedOffset + 7]! ^= 0x40;
    await expect(readFileRange(index, new BufferSource(damaged), entry, target.fileOffset, 10)).rejects.toThrow(ChunkVerificationError);
    await expect(readFileRange(index, new BufferSource(damaged), entry, target.fileOffset, 10)).rejects.toThrow(/span \d+ at compressed offset \d+ has digest sha256:[0-9a-f]{64}, expected/);
  });

  it('streams from a RandomAccessSource and skips layers under the minimum size', async () => {
    const fromSource = await buildZtoc(new BufferSource(gz), { spanSize: SMALL_SPAN, minLayerSize: 0 });
    expect(fromSource!.bytes.equals((await sampleZtoc(gz)).bytes)).toBe(true);
    expect(await buildZtoc(new BufferSource(gz), { minLayerSize: gz.length + 1 })).toBeUndefined();
    expect(await buildZtoc(new BufferSource(gz), { minLayerSize: gz.length })).toBeDefined();
    await expect(buildZtoc(new BufferSource(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0])), { minLayerSize: 0 })).rejects.toThrow(/zstd/);
    // A stream that trickles in byte by byte is still recognised as gzip and gives the same zTOC.
    const small = gzipped(paxFileEntry('a', Buffer.from('tiny'), {}));
    const trickle = async function* () {
      for (const byte of small) yield Uint8Array.of(byte);
    };
    const trickled = await buildZtoc(trickle(), { spanSize: SMALL_SPAN, minLayerSize: 0 });
    expect(trickled!.ztoc.algorithm).toBe('gzip');
    expect(trickled!.bytes.equals((await sampleZtoc(small)).bytes)).toBe(true);
  });
});

describe('a gzip layer ending in an empty final block (as Go\'s gzip writer makes them)', () => {
  it('gets an empty last span and still serves every file', async () => {
    // Full flush after all the data, then finish: the final deflate block is empty, and the block
    // boundary before it is more than a span after the previous checkpoint.
    const tar = sampleTar().tar;
    const raw = Buffer.concat([deflateRawSync(tar, { finishFlush: zlibConstants.Z_FULL_FLUSH }), Buffer.from([0x03, 0x00])]);
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(crc32(tar), 0);
    trailer.writeUInt32LE(tar.length, 4);
    const blob = Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]), raw, trailer]);
    expect(gunzipSync(blob).equals(tar)).toBe(true);
    const { bytes } = await sampleZtoc(blob, SMALL_SPAN);
    const parsed = readZtoc(bytes);
    const last = parsed.spans[parsed.spans.length - 1]!;
    expect(last.uncompressedEnd - last.uncompressedStart).toBe(0);
    const index = openSociLayer(bytes);
    const source = new BufferSource(blob);
    for (const [name, data] of sample.files) expect((await readFileRange(index, source, index.lookup(name)!, 0, data.length)).equals(data), name).toBe(true);
  });
});

describe('zTOC of an uncompressed layer', () => {
  it('uses algorithm Uncompressed and a TarZinfo with fixed spans', async () => {
    const { ztoc, bytes } = await sampleZtoc(sample.tar);
    expect(ztoc.algorithm).toBe('uncompressed');
    expect(readTarZinfo(ztoc.checkpoints)).toEqual({ spanSize: SMALL_SPAN, size: sample.tar.length });
    expect(ztoc.maxSpanId).toBe(Math.ceil(sample.tar.length / SMALL_SPAN) - 1);
    expect(ztoc.spanDigests[0]).toBe(sha256(sample.tar.subarray(0, SMALL_SPAN)));
    expect(writeZtoc(readZtoc(bytes).ztoc).equals(bytes)).toBe(true);
    // Hand layout of the TarZinfo: root table, version 2 is the schema default (not stored), span_size id 1, size id 2.
    const tz = ztoc.checkpoints;
    const root = tz.readUInt32LE(0);
    expect(fieldAt(tz, root, 0)).toBeUndefined();
    expect(Number(tz.readBigInt64LE(fieldAt(tz, root, 1)!))).toBe(SMALL_SPAN);
    expect(Number(tz.readBigInt64LE(fieldAt(tz, root, 2)!))).toBe(sample.tar.length);
    const index = openSociLayer(bytes);
    const source = new BufferSource(sample.tar);
    for (const [name, data] of sample.files) expect((await readFileRange(index, source, index.lookup(name)!, 0, data.length)).equals(data), name).toBe(true);
  });
});

describe('bad zTOCs', () => {
  const base = async (): Promise<Ztoc> => (await sampleZtoc(gz)).ztoc;
  const rejects = (ztoc: Ztoc, message: RegExp) => {
    expect(() => readZtoc(writeZtoc(ztoc))).toThrow(ZtocError);
    expect(() => readZtoc(writeZtoc(ztoc))).toThrow(message);
  };

  it('turns every truncation and garbage into a ZtocError, never a crash or a wrong answer', async () => {
    const { bytes } = await sampleZtoc(gzipped(paxFileEntry('a', Buffer.from('x'), { 'SCHILY.xattr.user.k': Buffer.from('v') })), 1 << 20);
    for (let length = 0; length < bytes.length; length += length < 200 ? 1 : 97) {
      expect(() => readZtoc(bytes.subarray(0, length)), `truncated to ${length}`).toThrow(ZtocError);
    }
    let seed = 12345;
    for (let round = 0; round < 300; round++) {
      const garbage = Buffer.from(bytes);
      for (let k = 0; k < 4; k++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        garbage[seed % garbage.length] = seed >>> 24;
      }
      try {
        readZtoc(garbage);
      } catch (err) {
        expect(err, `round ${round}`).toBeInstanceOf(ZtocError);
      }
    }
    expect(() => readZtoc(Buffer.from([0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4]))).toThrow(/runs past the end/);
  });

  it('checks the version, entry offsets and sizes', async () => {
    const z = await base();
    rejects({ ...z, version: '0.8' }, /unsupported zTOC version "0.8"/);
    const files = [...z.files];
    files[3] = { ...files[3]!, uncompressedOffset: files[1]!.uncompressedOffset };
    rejects({ ...z, files }, /file 3 "dir\/small-2.txt" starts at \d+, before the end of the previous entry/);
    rejects({ ...z, uncompressedArchiveSize: 1000 }, /ends at \d+, past the 1000-byte tar/);
    rejects({ ...z, files: [{ ...z.files[0]!, type: 'socket' as 'reg' }] }, /unknown type "socket"/);
  });

  it('checks span digests, max_span_id and the checkpoint blob', async () => {
    const z = await base();
    rejects({ ...z, spanDigests: z.spanDigests.slice(1) }, /span digests for max_span_id/);
    rejects({ ...z, spanDigests: ['md5:abc', ...z.spanDigests.slice(1)] as typeof z.spanDigests }, /span digest 0 "md5:abc" is not sha256/);
    rejects({ ...z, maxSpanId: z.maxSpanId + 1, spanDigests: [...z.spanDigests, z.spanDigests[0]!] }, /checkpoints for max_span_id/);
    rejects({ ...z, checkpoints: z.checkpoints.subarray(0, z.checkpoints.length - 5) }, /does not fit/);
    const zinfo = decodeGzipZinfo(z.checkpoints);
    const swapped = [...zinfo.checkpoints];
    [swapped[2], swapped[3]] = [swapped[3]!, swapped[2]!];
    rejects({ ...z, checkpoints: encodeGzipZinfo({ ...zinfo, checkpoints: swapped }) }, /checkpoint 3 is not after checkpoint 2/);
    rejects({ ...z, compressedArchiveSize: 100 }, /outside the 100-byte blob/);
    rejects({ ...z, algorithm: 'uncompressed' }, /TarZinfo|uncompressed layer checkpoints/);
    rejects({ ...z, algorithm: 'uncompressed', checkpoints: writeTarZinfo(SMALL_SPAN, 5) }, /TarZinfo size 5 differs/);
  });

  it('checks the zTOC digest and the layer size when opening', async () => {
    const { bytes } = await sampleZtoc(gz);
    expect(() => openSociLayer(bytes, { expectedZtocDigest: `sha256:${'0'.repeat(64)}` })).toThrow(/zTOC has digest/);
    expect(() => openSociLayer(bytes, { layerSize: gz.length + 1 })).toThrow(/indexes a \d+-byte layer/);
    // A span too large to inflate into memory (a hostile zTOC can place checkpoints far apart).
    expect(() => openSociLayer(bytes, { limits: { ...DEFAULT_TOC_LIMITS, maxChunkSize: 1000 } })).toThrow(/span 0 inflates to \d+ bytes, over the 1000-byte limit/);
  });
});

describe('helpers', () => {
  it('formats times as Go RFC3339Nano in UTC', () => {
    expect(formatRfc3339Nano(0, 0)).toBe('1970-01-01T00:00:00Z');
    expect(formatRfc3339Nano(1700000000, 120000000)).toBe('2023-11-14T22:13:20.12Z');
    expect(formatRfc3339Nano(-1, 500)).toBe('1969-12-31T23:59:59.0000005Z');
  });

  it('reads only the entry\'s own PAX records', () => {
    const entry = paxFileEntry('a', Buffer.from('x'), { 'SCHILY.xattr.user.k': Buffer.from('v'), path: Buffer.from('a') });
    const headerBytes = entry.subarray(0, 1024 + 512);
    expect(localPaxRecords(headerBytes).map((r) => [r.key, r.value.toString()])).toEqual([['SCHILY.xattr.user.k', 'v'], ['path', 'a']]);
  });
});
