import { describe, expect, it } from 'vitest';
import { formatModtime, parseModtime, serializeToc } from '../../../src/estargz/toc.js';

describe('TOC JSON', () => {
  it("has json.MarshalIndent's shape: tabs, Go field order, zero fields omitted, sorted xattrs, HTML-safe escapes", () => {
    const toc = serializeToc([
      { name: 'a<b>&', type: 'reg', size: 3, mode: 0, uid: 0, offset: 7, chunkDigest: 'sha256:x', digest: 'sha256:y', xattrs: { 'user.b': 'AA==', 'user.a': 'AQ==' } },
      { name: 'd', type: 'dir', userName: '' },
    ]).toString();
    const expected = JSON.stringify(
      { version: 1, entries: [{ name: 'a<b>&', type: 'reg', size: 3, offset: 7, xattrs: { 'user.a': 'AQ==', 'user.b': 'AA==' }, digest: 'sha256:y', chunkDigest: 'sha256:x' }, { name: 'd', type: 'dir' }] },
      null,
      '\t',
    ).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026');
    expect(toc).toBe(expected);
    expect(serializeToc([]).toString()).toBe('{\n\t"version": 1,\n\t"entries": []\n}');
  });

  it('formats and parses RFC 3339 times with nanoseconds, zones and the zero time', () => {
    expect(formatModtime(1600000000, 0)).toBe('2020-09-13T12:26:40Z');
    expect(formatModtime(1600000000, 120000000)).toBe('2020-09-13T12:26:40.12Z');
    expect(formatModtime(0, 0)).toBe('');
    expect(parseModtime('2020-09-13T12:26:40.12Z')).toEqual({ sec: 1600000000, nsec: 120000000 });
    expect(parseModtime('2020-09-13T14:26:40+02:00')).toEqual({ sec: 1600000000, nsec: 0 });
    expect(parseModtime('0001-01-01T00:00:00Z')!.sec).toBe(-62135596800);
    expect(parseModtime('13 Sep 2020')).toBeUndefined();
  });
});
