import { execFileSync } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  CHECKPOINT_SIZE,
  CheckpointError,
  GzipCheckpointBuilder,
  SpanDecodeError,
  WINDOW_SIZE,
  decodeGzipZinfo,
  encodeGzipZinfo,
  gzipHeaderLength,
  gzipSpans,
  inflateSpan,
  tarSpans,
  type Checkpoint,
} from '../../../src/soci/checkpoints.js';
import { sha256 } from '../../../src/util/digest.js';
import { mixedContent } from './helpers.js';

const KiB64 = 64 * 1024;

async function build(gz: Buffer, spanSize: number, pieceSize = 100_003) {
  const builder = new GzipCheckpointBuilder(spanSize);
  const pieces: Buffer[] = [];
  const input = function* () {
    for (let i = 0; i < gz.length; i += pieceSize) yield gz.subarray(i, i + pieceSize);
  };
  for await (const out of builder.inflate(input())) pieces.push(out);
  return { output: Buffer.concat(pieces), ...builder.result() };
}

function checkEverySpan(gz: Buffer, plain: Buffer, checkpoints: readonly Checkpoint[], digests: readonly string[]): void {
  const spans = gzipSpans(checkpoints, gz.length, plain.length);
  expect(digests).toHaveLength(spans.length);
  for (const span of spans) {
    const compressed = gz.subarray(span.compressedStart, span.compressedEnd);
    expect(sha256(compressed), `span ${span.id} digest`).toBe(digests[span.id]);
    const out = inflateSpan(compressed, checkpoints[span.id]!, span.uncompressedEnd - span.uncompressedStart);
    expect(out.equals(plain.subarray(span.uncompressedStart, span.uncompressedEnd)), `span ${span.id} bytes`).toBe(true);
  }
}

describe('gzip checkpoints', () => {
  const plain = mixedContent(3 << 20);
  const gz = gzipSync(plain, { level: 6 });

  it('inflates the whole stream and cuts it into spans of just over the span size at block boundaries', async () => {
    const r = await build(gz, KiB64);
    expect(r.output.equals(plain)).toBe(true);
    expect(r.uncompressedSize).toBe(plain.length);
    expect(r.compressedSize).toBe(gz.length);
    const cps = r.zinfo.checkpoints;
    expect(cps[0]).toMatchObject({ compressedOffset: 10, uncompressedOffset: 0, bits: 0 });
    expect(cps[0]!.window.equals(Buffer.alloc(WINDOW_SIZE))).toBe(true);
    for (let i = 1; i < cps.length; i++) expect(cps[i]!.uncompressedOffset - cps[i - 1]!.uncompressedOffset).toBeGreaterThan(KiB64);
    expect(cps.length).toBeGreaterThan(20);
    // Spans that start mid-byte are what inflatePrime is for: the data must produce some.
    expect(cps.filter((c) => c.bits !== 0).length).toBeGreaterThan(3);
    const c = cps[5]!;
    expect(c.window.equals(plain.subarray(c.uncompressedOffset - WINDOW_SIZE, c.uncompressedOffset))).toBe(true);
    checkEverySpan(gz, plain, cps, r.spanDigests);
  });

  it('builds the same checkpoints whatever the input piece size', async () => {
    const small = gzipSync(plain.subarray(0, 400_000));
    const a = await build(small, 16 * 1024, 1);
    const b = await build(small, 16 * 1024, 1 << 20);
    expect(a.zinfo.checkpoints.some((c) => c.bits !== 0)).toBe(true);
    expect(encodeGzipZinfo(a.zinfo).equals(encodeGzipZinfo(b.zinfo))).toBe(true);
    expect(a.spanDigests).toEqual(b.spanDigests);
  }, 30_000);

  it('continues across gzip members (pigz output concatenated) and extracts spans that cross a member end', async () => {
    const parts = [plain.subarray(0, 700_001), plain.subarray(700_001, 1_900_000), plain.subarray(1_900_000)];
    const multi = Buffer.concat(parts.map((p) => execFileSync('pigz', ['-c', '-6', '-b', '128'], { input: p })));
    const r = await build(multi, KiB64);
    expect(r.output.equals(plain)).toBe(true);
    const spans = gzipSpans(r.zinfo.checkpoints, multi.length, plain.length);
    const crossing = spans.filter((s) => s.uncompressedStart < 700_001 && s.uncompressedEnd > 700_001);
    expect(crossing).toHaveLength(1);
    checkEverySpan(multi, plain, r.zinfo.checkpoints, r.spanDigests);
  });

  it('reports truncated and corrupt streams', async () => {
    await expect(build(gz.subarray(0, gz.length - 100), KiB64)).rejects.toThrow(SpanDecodeError);
    const bad = Buffer.from(gz);
    bad.fill(0xff, 5000, 5100);
    await expect(build(bad, KiB64)).rejects.toThrow(SpanDecodeError);
  });

  it('refuses to return bytes from a span whose data is wrong or short', async () => {
    const r = await build(gz, KiB64);
    const span = gzipSpans(r.zinfo.checkpoints, gz.length, plain.length)[4]!;
    const cp = r.zinfo.checkpoints[4]!;
    const compressed = Buffer.from(gz.subarray(span.compressedStart, span.compressedEnd));
    expect(() => inflateSpan(compressed.subarray(0, compressed.length >> 1), cp, span.uncompressedEnd - span.uncompressedStart)).toThrow(SpanDecodeError);
    compressed.fill(0xff, 100, 200);
    expect(() => inflateSpan(compressed, cp, span.uncompressedEnd - span.uncompressedStart)).toThrow(SpanDecodeError);
  });
});

describe('checkpoint blob layout', () => {
  const window = (fill: number) => Buffer.alloc(WINDOW_SIZE, fill);
  const zinfo = {
    spanSize: 4194304,
    checkpoints: [
      { compressedOffset: 10, uncompressedOffset: 0, bits: 0, window: window(0) },
      { compressedOffset: 0x0102030405, uncompressedOffset: 0x4000001, bits: 5, window: window(0xab) },
    ],
  };

  it('is int32 N, int64 span size, then N packed 32785-byte checkpoints, little endian', () => {
    const blob = encodeGzipZinfo(zinfo);
    expect(CHECKPOINT_SIZE).toBe(32785);
    expect(blob.length).toBe(12 + 2 * 32785);
    expect(blob.subarray(0, 12).toString('hex')).toBe('02000000' + '0000400000000000');
    const second = 12 + 32785;
    expect(blob.subarray(12, 12 + 17).toString('hex')).toBe('0a00000000000000' + '0000000000000000' + '00');
    expect(blob.subarray(second, second + 17).toString('hex')).toBe('0504030201000000' + '0100000400000000' + '05');
    expect(blob[second + 17]).toBe(0xab);
    expect(blob[blob.length - 1]).toBe(0xab);
    const back = decodeGzipZinfo(blob);
    expect(encodeGzipZinfo(back).equals(blob)).toBe(true);
    expect(back.checkpoints[1]).toMatchObject({ compressedOffset: 0x0102030405, uncompressedOffset: 0x4000001, bits: 5 });
  });

  it('reads the legacy layout without checkpoint 0 as {in 10, out 0, bits 0, zero window}', () => {
    const current = encodeGzipZinfo(zinfo);
    const legacy = Buffer.concat([current.subarray(0, 12), current.subarray(12 + CHECKPOINT_SIZE)]);
    expect(legacy.length).toBe(12 + CHECKPOINT_SIZE);
    const read = decodeGzipZinfo(legacy);
    expect(read.checkpoints).toHaveLength(2);
    expect(read.checkpoints[0]).toMatchObject({ compressedOffset: 10, uncompressedOffset: 0, bits: 0 });
    expect(read.checkpoints[0]!.window.equals(window(0))).toBe(true);
    expect(encodeGzipZinfo(read).equals(current)).toBe(true);
  });

  it('rejects other lengths, bad bits and checkpoints that go backwards', () => {
    const blob = encodeGzipZinfo(zinfo);
    expect(() => decodeGzipZinfo(blob.subarray(0, 11))).toThrow(/shorter than its 12-byte header/);
    expect(() => decodeGzipZinfo(blob.subarray(0, blob.length - 1))).toThrow(/does not fit 2 checkpoints/);
    const bits = Buffer.from(blob);
    bits[12 + CHECKPOINT_SIZE + 16] = 8;
    expect(() => decodeGzipZinfo(bits)).toThrow(/bits 8/);
    const backwards = encodeGzipZinfo({ ...zinfo, checkpoints: [zinfo.checkpoints[0]!, { ...zinfo.checkpoints[1]!, uncompressedOffset: 0 }] });
    expect(() => decodeGzipZinfo(backwards)).toThrow(CheckpointError);
    expect(() => decodeGzipZinfo(backwards)).toThrow(/checkpoint 1 is not after checkpoint 0/);
    const zero = Buffer.from(blob);
    zero.writeInt32LE(0, 0);
    expect(() => decodeGzipZinfo(zero)).toThrow(/at least 1/);
  });
});

describe('helpers', () => {
  it('measures gzip headers with optional fields', () => {
    const header = Buffer.from([0x1f, 0x8b, 8, 4 | 8 | 16 | 2, 0, 0, 0, 0, 0, 3, 2, 0, 0xaa, 0xbb, 0x61, 0, 0x62, 0x63, 0, 0x12, 0x34]);
    expect(gzipHeaderLength(header, 0)).toBe(header.length);
    expect(() => gzipHeaderLength(header.subarray(0, 15), 0)).toThrow(/cut short/);
    expect(() => gzipHeaderLength(Buffer.alloc(12), 0)).toThrow(/no gzip member header/);
  });

  it('cuts uncompressed layers into fixed spans', () => {
    expect(tarSpans(100, 250).map((s) => [s.compressedStart, s.compressedEnd])).toEqual([[0, 100], [100, 200], [200, 250]]);
    expect(tarSpans(100, 200)).toHaveLength(2);
  });
});
