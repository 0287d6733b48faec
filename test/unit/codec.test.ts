import { describe, expect, it } from 'vitest';
import { CorruptDataError, DecompressionBombError, gzipCodec, zstdCodec } from '../../src/compression/codec.js';

describe.each([gzipCodec, zstdCodec])('$name codec', (codec) => {
  const data = Buffer.alloc(1 << 20, 7);

  it('round-trips', () => {
    expect(codec.decompress(codec.compress(data, 3), data.length).equals(data)).toBe(true);
  });

  it('refuses to inflate past the bound', () => {
    expect(() => codec.decompress(codec.compress(data, 3), 1000)).toThrow(DecompressionBombError);
  });

  it('reports corrupt input', () => {
    expect(() => codec.decompress(Buffer.from('definitely not compressed'), 1000)).toThrow(CorruptDataError);
  });
});

describe('gunzipBounded', () => {
  it('inflates large outputs whole and small ones without holding a large piece of memory', async () => {
    const { gunzipBounded } = await import('../../src/compression/compress-core.js');
    const large = Buffer.from(Array.from({ length: 60_000 }, (_, i) => `{"name":"usr/lib/file-${i}","type":"reg"},`).join(''));
    const small = Buffer.from('a small file\n');
    const inflatedLarge = gunzipBounded(gzipCodec.compress(large, 6), 64 << 20);
    expect(inflatedLarge.equals(large)).toBe(true);
    // Guessing an output far larger than it is (a TOC's 64 MiB bound, a member's slack) leaves no big buffer behind.
    const inflatedSmall = gunzipBounded(gzipCodec.compress(small, 6), 64 << 20, 1 << 20);
    expect(inflatedSmall.equals(small)).toBe(true);
    expect(inflatedSmall.buffer.byteLength).toBeLessThanOrEqual(small.length + (16 << 10));
    expect(() => gunzipBounded(gzipCodec.compress(large, 6), 1000)).toThrow();
  });
});
