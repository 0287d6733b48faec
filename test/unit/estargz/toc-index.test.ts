import { describe, expect, it } from 'vitest';
import { DEFAULT_TOC_LIMITS, TocValidationError, buildTocTree, buildTocTreeYielding } from '../../../src/estargz/toc-index.js';
import type { TocEntryJson } from '../../../src/estargz/toc.js';

const D = (c: string) => `sha256:${c.repeat(64)}`;
const ctx = { format: 'estargz' as const, dataEnd: 100_000, encoding: 'gzip' as const, requireDigests: true, limits: DEFAULT_TOC_LIMITS };
const build = (entries: unknown[], overrides: Partial<typeof ctx> = {}) => buildTocTree(entries, { ...ctx, ...overrides });
const reg = (name: string, extra: Partial<TocEntryJson> = {}): TocEntryJson => ({ name, type: 'reg', size: 10, offset: 100, mode: 0o644, chunkDigest: D('a'), ...extra });

describe('TOC validation', () => {
  it.each([
    [[{ name: '/etc/passwd', type: 'reg' }], /entry 0 "\/etc\/passwd": absolute path/],
    [[{ name: 'a/../../etc', type: 'dir' }], /entry 0 "a\/..\/..\/etc": '\.\.' escapes the layer root/],
    [[{ name: 'a\0b', type: 'dir' }], /NUL byte/],
    [[{ name: 'x', type: 'socket' }], /entry 0 "x": unknown type "socket"/],
    [[{ type: 'dir' }], /entry 0 \(no name\): has no name/],
    [['nope'], /entry 0 \(no name\): is not an object/],
    [[{ name: 'x', type: 'reg', size: -1 }], /size must be a non-negative integer/],
    [[{ name: 'x', type: 'reg', size: 1.5 }], /size must be a non-negative integer/],
    [[reg('x', { size: 2 ** 50 })], /exceeds the 17592186044416-byte limit/],
    [[reg('x', { offset: 100_000 })], /offset 100000 is outside the data region/],
    [[reg('x', { chunkDigest: undefined })], /no chunkDigest/],
    [[reg('x', { chunkDigest: 'md5:abc' })], /chunkDigest is not a sha256 digest/],
    [[reg('x', { modtime: 'yesterday' })], /modtime "yesterday" is not RFC 3339/],
    [[reg('x', { xattrs: { 'user.a': '***' } })], /xattr "user.a" is not base64/],
    [[{ name: 'l', type: 'hardlink', linkName: 'missing' }], /hardlink target "missing" is not in the layer/],
    [[{ name: 'd', type: 'dir' }, { name: 'l', type: 'hardlink', linkName: 'd' }], /hardlink to a directory/],
    [[{ name: 'f', type: 'chunk', chunkOffset: 0 }], /chunk does not follow its regular file/],
    [[{ name: 'f', type: 'reg', size: 0 }, { name: 'f/x', type: 'reg', size: 0 }], /used as a directory but is a reg/],
  ])('rejects %j', (entries, message) => {
    expect(() => build(entries)).toThrow(TocValidationError);
    expect(() => build(entries)).toThrow(message);
  });

  it('rejects chunk lists with gaps, overlaps, short coverage and oversize chunks', () => {
    const base = reg('f', { size: 30, chunkSize: 10 });
    const chunk = (chunkOffset: number, extra: Partial<TocEntryJson> = {}) => ({ name: 'f', type: 'chunk', offset: 200 + chunkOffset, chunkOffset, chunkSize: 10, chunkDigest: D('b'), ...extra });
    expect(() => build([base, chunk(10), chunk(25)])).toThrow(/entry 2 "f": chunkOffset 25 leaves a gap or overlap \(expected 20\)/);
    expect(() => build([base, chunk(10), chunk(15)])).toThrow(/gap or overlap/);
    expect(() => build([base, chunk(10)])).toThrow(/entry 0 "f": chunks cover 20 of 30 bytes/);
    expect(() => build([base, chunk(10), chunk(20, { chunkSize: 20 })])).toThrow(/runs past the end/);
    expect(() => build([reg('big', { size: 1000 })], { limits: { ...DEFAULT_TOC_LIMITS, maxChunkSize: 999 } })).toThrow(/chunk of 1000 bytes exceeds the 999-byte limit/);
    const ok = build([base, chunk(10), chunk(20, { chunkSize: 0 })]);
    expect(ok.entries.get('f')!.chunks.map((c) => [c.fileOffset, c.size, c.compressedOffset])).toEqual([[0, 10, 100], [10, 10, 210], [20, 10, 220]]);
  });
});

describe('TOC tree', () => {
  it('creates implicit parents, resolves and counts hardlinks, and assigns stable inodes', () => {
    const tree = build([
      { name: './', type: 'dir', mode: 0o755, uid: 5 },
      reg('a/b/file', { size: 10 }),
      { name: 'c/link', type: 'hardlink', linkName: './a/b/file' },
      { name: 'c/link2', type: 'hardlink', linkName: 'a/b/file' },
      { name: 'sym', type: 'symlink', linkName: '/abs/target', mode: 0o777 },
    ]);
    expect(tree.root.uid).toBe(5);
    const file = tree.entries.get('a/b/file')!;
    expect(tree.entries.get('c/link')).toBe(file);
    expect(tree.entries.get('c')!.children!.get('link2')).toBe(file);
    expect(file.nlink).toBe(3);
    const implicit = tree.entries.get('a/b')!;
    expect(implicit).toMatchObject({ type: 'dir', mode: 0o755, nlink: 2 });
    expect(tree.root.nlink).toBe(2 + 2); // a and c
    expect(tree.entries.get('sym')!.linkName).toBe('/abs/target');
    const again = build([{ name: './', type: 'dir' }, reg('a/b/file'), { name: 'c/link', type: 'hardlink', linkName: 'a/b/file' }]);
    expect(again.entries.get('a/b/file')!.ino).toBe(file.ino);
  });

  it('flags whiteouts, opaque dirs and landmarks and finds the prefetch region', () => {
    const tree = build([
      reg('usr/bin/app', { offset: 50 }),
      { name: '.prefetch.landmark', type: 'reg', size: 1, offset: 500, chunkDigest: D('c') },
      { name: 'etc/.wh.old', type: 'reg' },
      { name: 'var/.wh..wh..opq', type: 'reg' },
    ]);
    expect(tree.entries.get('etc/.wh.old')!.special).toBe('whiteout');
    expect(tree.entries.get('var/.wh..wh..opq')!.special).toBe('opaque-marker');
    expect(tree.entries.get('var')!.opaque).toBe(true);
    expect(tree.entries.get('.prefetch.landmark')!.special).toBe('landmark');
    expect(tree.prefetchRange).toEqual({ start: 0, end: 500 });
    expect(tree.noPrefetch).toBe(false);
    expect(build([{ name: '.no.prefetch.landmark', type: 'reg', size: 1, offset: 10, chunkDigest: D('d') }]).noPrefetch).toBe(true);
  });

  it('decodes xattrs, modes, devices and nanosecond mtimes', () => {
    const tree = build([
      { name: 'dev/null', type: 'char', devMajor: 1, devMinor: 3, mode: 0o20666 },
      { name: 'tmp', type: 'dir', mode: 0o41777, modtime: '2021-03-04T05:06:07.123456789Z', xattrs: { 'user.x': Buffer.from([0, 1, 2]).toString('base64') } },
    ]);
    expect(tree.entries.get('dev/null')).toMatchObject({ type: 'char', devMajor: 1, devMinor: 3, mode: 0o666 });
    const tmp = tree.entries.get('tmp')!;
    expect(tmp.mode).toBe(0o1777);
    expect(tmp.mtimeSec).toBe(Date.UTC(2021, 2, 4, 5, 6, 7) / 1000);
    expect(tmp.mtimeNsec).toBe(123456789);
    expect([...tmp.xattrs.get('user.x')!]).toEqual([0, 1, 2]);
  });

  it('bounds member inflation by the chunk plus the headers written after it', () => {
    const tree = build([reg('f', { size: 10, offset: 100 }), { name: 'd', type: 'dir' }, reg('g', { size: 5, offset: 300 })]);
    const chunk = tree.entries.get('f')!.chunks[0]!;
    expect(chunk.compressedEnd).toBe(300);
    expect(chunk.maxInflated).toBeGreaterThan(10 + 512);
    expect(chunk.maxInflated).toBeLessThan(256 << 10);
    expect(tree.entries.get('g')!.chunks[0]!.compressedEnd).toBe(100_000);
  });
});

describe('buildTocTreeYielding', () => {
  const many = Array.from({ length: 3500 }, (_, i) => ({ name: `d${i % 7}/f${i}`, type: 'symlink', linkName: 'x' }));

  it('builds the same tree as buildTocTree, giving the event loop turns while it works', async () => {
    let turns = 0;
    let counting = true;
    const tick = (): void => {
      turns++;
      if (counting) setImmediate(tick);
    };
    setImmediate(tick);
    const tree = await buildTocTreeYielding(many, ctx);
    counting = false;
    expect(turns).toBeGreaterThanOrEqual(3);
    expect([...tree.entries.keys()]).toEqual([...buildTocTree(many, ctx).entries.keys()]);
  });

  it('reports a bad entry as buildTocTree does', async () => {
    const bad = [...many, { name: '../escape', type: 'reg' }];
    await expect(buildTocTreeYielding(bad, ctx)).rejects.toThrow(TocValidationError);
  });
});
