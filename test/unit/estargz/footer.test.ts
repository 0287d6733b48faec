import { describe, expect, it } from 'vitest';
import {
  FooterError, detectFooter, estargzFooter, externalTocFooter, legacyStargzFooter, zstdChunkedContainersFooter, zstdChunkedFooter,
} from '../../../src/estargz/footer.js';

describe('footers', () => {
  it('writes the 51-byte eStargz footer byte for byte', () => {
    const footer = estargzFooter(0x1234);
    expect(footer.length).toBe(51);
    expect(footer.subarray(0, 10).toString('hex')).toBe('1f8b08040000000000ff');
    expect(footer.readUInt16LE(10)).toBe(26);
    expect(footer.toString('latin1', 12, 16)).toBe('SG\x16\x00');
    expect(footer.toString('latin1', 16, 38)).toBe('0000000000001234STARGZ');
    expect(footer.subarray(38).toString('hex')).toBe('0100' + '00ffff' + '0000000000000000');
  });

  it('finds each footer kind from a tail and computes the TOC location', () => {
    const data = Buffer.alloc(5000);
    const esgz = detectFooter(Buffer.concat([data, estargzFooter(4000)]), 5051);
    expect(esgz).toMatchObject({ kind: 'estargz', footerSize: 51, toc: { offset: 4000, compressedSize: 1000 } });
    const legacy = detectFooter(Buffer.concat([data, legacyStargzFooter(4000)]), 5047);
    expect(legacy).toMatchObject({ kind: 'stargz-legacy', footerSize: 47, toc: { offset: 4000, compressedSize: 1000 } });
    expect(legacyStargzFooter(1).length).toBe(47);
    expect(externalTocFooter().length).toBe(46);
    expect(detectFooter(Buffer.concat([data, externalTocFooter()]), 5046).kind).toBe('estargz-external-toc');
  });

  it('reads both zstd:chunked footers', () => {
    const toc = { offset: 108, compressedSize: 50, uncompressedSize: 300 };
    const stargzVariant = zstdChunkedFooter(toc);
    expect(stargzVariant.length).toBe(48);
    expect(stargzVariant.subarray(0, 8).toString('hex')).toBe('502a4d1828000000');
    expect(stargzVariant.subarray(40).toString('hex')).toBe('476e556c496e5578'); // "GnUlInUx", as ctr-remote writes it
    expect(detectFooter(Buffer.concat([Buffer.alloc(200), stargzVariant]), 248)).toMatchObject({ kind: 'zstd:chunked', toc });
    const tarSplit = { offset: 166, compressedSize: 20, uncompressedSize: 90 };
    const containers = zstdChunkedContainersFooter(toc, tarSplit);
    expect(containers.length).toBe(72);
    expect(containers.subarray(0, 8).toString('hex')).toBe('502a4d1840000000');
    expect(containers.toString('latin1', 64)).toBe('GNUlInUx');
    expect(detectFooter(Buffer.concat([Buffer.alloc(200), containers]), 272)).toMatchObject({ kind: 'zstd:chunked-containers', toc, tarSplit });
  });

  it('rejects tails without a footer, and footers pointing outside the blob', () => {
    expect(() => detectFooter(Buffer.alloc(100, 0x41), 100)).toThrow(FooterError);
    expect(() => detectFooter(estargzFooter(10), 51)).toThrow(/past the data/);
    const zstd = zstdChunkedFooter({ offset: 1000, compressedSize: 50, uncompressedSize: 10 });
    expect(() => detectFooter(Buffer.concat([Buffer.alloc(100), zstd]), 148)).toThrow(/outside the blob/);
  });
});
