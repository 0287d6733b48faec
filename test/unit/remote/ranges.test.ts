import { describe, expect, it } from 'vitest';
import { coalesceRanges, sliceFrom } from '../../../src/remote/ranges/coalesce.js';
import { parseContentRange, rangeHeader } from '../../../src/remote/ranges/content-range.js';
import { MalformedMultipartError, multipartBoundary, parseMultipartByteranges } from '../../../src/remote/ranges/multipart.js';

function multipart(boundary: string, blob: Buffer, parts: Array<[number, number]>, size = blob.length): Buffer {
  const chunks: Buffer[] = [];
  for (const [start, end] of parts) {
    chunks.push(Buffer.from(`\r\n--${boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes ${start}-${end}/${size}\r\n\r\n`));
    chunks.push(blob.subarray(start, end + 1));
  }
  chunks.push(Buffer.from(`\r\n--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

describe('Content-Range and Range', () => {
  it('parses valid values and rejects the rest', () => {
    expect(parseContentRange('bytes 0-1/100')).toEqual({ start: 0, end: 1, total: 100 });
    expect(parseContentRange('bytes 5-9/*')).toEqual({ start: 5, end: 9 });
    for (const bad of [undefined, '', 'bytes */100', 'bytes 9-5/100', 'bytes 0-100/100', 'items 0-1/2']) expect(parseContentRange(bad)).toBeUndefined();
  });

  it('builds single and multi-range headers with inclusive ends', () => {
    expect(rangeHeader([{ start: 0, length: 100 }, { start: 1000, length: 1 }])).toBe('bytes=0-99,1000-1000');
  });
});

describe('coalesceRanges', () => {
  const options = { maxGap: 100, maxLength: 1000 };
  it('merges overlapping, adjacent and nearby ranges, keeps distant ones apart', () => {
    const merged = coalesceRanges(
      [
        { start: 500, length: 10 },
        { start: 0, length: 100 },
        { start: 50, length: 100 },
        { start: 150, length: 10 },
        { start: 250, length: 10 },
        { start: 2000, length: 5 },
      ],
      options,
    );
    expect(merged).toEqual([
      { start: 0, length: 260 },
      { start: 500, length: 10 },
      { start: 2000, length: 5 },
    ]);
  });

  it('never grows a merged range past maxLength', () => {
    const merged = coalesceRanges([0, 400, 800, 1200].map((start) => ({ start, length: 300 })), options);
    expect(merged.every((r) => r.length <= 1000)).toBe(true);
    expect(merged).toHaveLength(2);
  });

  it('slices the wanted bytes from fetched pieces, across piece boundaries', () => {
    const blob = Buffer.from('0123456789abcdefghij');
    const fetched = [
      { range: { start: 0, length: 10 }, data: blob.subarray(0, 10) },
      { range: { start: 10, length: 10 }, data: blob.subarray(10, 20) },
    ];
    expect(sliceFrom(fetched, { start: 8, length: 4 }).toString()).toBe('89ab');
    expect(() => sliceFrom(fetched.slice(0, 1), { start: 8, length: 4 })).toThrow(/not fetched/);
  });
});

describe('multipart/byteranges', () => {
  const blob = Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 251));

  it('finds the boundary (quoted or not) only for multipart/byteranges', () => {
    expect(multipartBoundary('multipart/byteranges; boundary=abc123')).toBe('abc123');
    expect(multipartBoundary('multipart/byteranges; boundary="a b"')).toBe('a b');
    expect(multipartBoundary('application/octet-stream')).toBeUndefined();
  });

  it('parses parts by their Content-Range, even when the data contains the boundary', () => {
    const evil = Buffer.concat([Buffer.from('xx\r\n--B\r\nContent-Range: bytes 0-0/1\r\n\r\n'), blob]);
    const body = multipart('B', evil, [
      [0, 40],
      [100, 199],
    ]);
    const parts = parseMultipartByteranges(body, 'B');
    expect(parts.map((p) => [p.range.start, p.range.end])).toEqual([
      [0, 40],
      [100, 199],
    ]);
    expect(parts[0]!.data.equals(evil.subarray(0, 41))).toBe(true);
    expect(parts[1]!.data.equals(evil.subarray(100, 200))).toBe(true);
  });

  it.each([
    ['truncated', (b: Buffer) => b.subarray(0, b.length - 60)],
    ['no boundary', () => Buffer.from('hello')],
    ['part without Content-Range', () => Buffer.from('--B\r\nContent-Type: x\r\n\r\nabc\r\n--B--')],
    ['no parts', () => Buffer.from('--B--\r\n')],
    ['length mismatch', (b: Buffer) => Buffer.from(b.toString('latin1').replace('bytes 100-199', 'bytes 100-150'), 'latin1')],
  ])('rejects a %s body', (_name, mutate) => {
    const body = mutate(multipart('B', blob, [[0, 40], [100, 199]]));
    expect(() => parseMultipartByteranges(body, 'B')).toThrow(MalformedMultipartError);
  });
});
