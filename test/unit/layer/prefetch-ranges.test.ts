import { describe, expect, it } from 'vitest';
import { PrefetchRangesError, formatPrefetchRanges, normalizeRanges, overlapsAny, parsePrefetchRanges } from '../../../src/layer/prefetch-ranges.js';

describe('prefetch ranges (range-granular profile)', () => {
  it('sorts and merges ranges, and round-trips through the annotation text', () => {
    const ranges = [{ start: 100, end: 200 }, { start: 0, end: 10 }, { start: 150, end: 300 }, { start: 300, end: 310 }, { start: 50, end: 50 }];
    expect(normalizeRanges(ranges)).toEqual([{ start: 0, end: 10 }, { start: 100, end: 310 }]);
    const text = formatPrefetchRanges(ranges);
    expect(text).toBe('0+10,100+210');
    expect(parsePrefetchRanges(text, 1000)).toEqual([{ start: 0, end: 10 }, { start: 100, end: 310 }]);
    expect(parsePrefetchRanges('', 1000)).toEqual([]);
  });

  it.each([
    ['0+10,junk', /"junk" is not START\+LENGTH/],
    ['-1+10', /is not START\+LENGTH/],
    ['990+20', /ends after the 1000-byte blob/],
    ['1e3+1', /is not START\+LENGTH/],
  ])('refuses %s', (text, message) => {
    expect(() => parsePrefetchRanges(text, 1000)).toThrow(PrefetchRangesError);
    expect(() => parsePrefetchRanges(text, 1000)).toThrow(message);
  });

  it('finds overlaps with half-open ranges', () => {
    const ranges = normalizeRanges([{ start: 10, end: 20 }, { start: 40, end: 50 }]);
    expect(overlapsAny(ranges, 0, 10)).toBe(false);
    expect(overlapsAny(ranges, 0, 11)).toBe(true);
    expect(overlapsAny(ranges, 19, 40)).toBe(true);
    expect(overlapsAny(ranges, 20, 40)).toBe(false);
    expect(overlapsAny(ranges, 45, 46)).toBe(true);
    expect(overlapsAny(ranges, 50, 60)).toBe(false);
    expect(overlapsAny([], 0, 100)).toBe(false);
  });
});
