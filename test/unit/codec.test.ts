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
