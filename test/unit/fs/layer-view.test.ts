import { describe, expect, it } from 'vitest';
import { makeDev, toStat } from '../../../src/fs/layer-filesystem.js';
import { LayerView, OPAQUE_XATTR } from '../../../src/fs/layer-view.js';
import { ReadAhead } from '../../../src/fs/read-ahead.js';
import { fakeLayer } from './fake-layer.js';

describe('LayerView', () => {
  const { index } = fakeLayer([
    { path: 'dir', type: 'dir' },
    { path: 'dir/kept', data: Buffer.from('kept') },
    { path: 'dir/.wh.gone', special: 'whiteout' },
    { path: 'opaque', type: 'dir' },
    { path: 'opaque/.wh..wh..opq', special: 'opaque-marker' },
    { path: 'opaque/new', data: Buffer.from('new') },
    { path: '.prefetch.landmark', data: Buffer.from([0x0f]), special: 'landmark' },
    { path: '.wh.both', special: 'whiteout' },
    { path: 'both', data: Buffer.from('the real entry wins') },
  ]);
  const view = new LayerView(index);

  it('shows a whiteout as a 0/0 character device under the hidden name', () => {
    const gone = view.get('/dir/gone')!;
    expect(gone.type).toBe('char');
    expect(toStat(gone).rdev).toBe(0);
    expect(toStat(gone).mode).toBe(0o020000);
    expect(view.get('/dir/.wh.gone')).toBeUndefined();
    expect(view.get('/dir')!.childNames).toEqual(['gone', 'kept']);
  });

  it('turns an opaque marker into trusted.overlay.opaque=y on its directory', () => {
    expect(view.get('/opaque')!.xattrs.get(OPAQUE_XATTR)?.toString()).toBe('y');
    expect(view.get('/opaque')!.childNames).toEqual(['new']);
    expect(view.get('/dir')!.xattrs.has(OPAQUE_XATTR)).toBe(false);
  });

  it('hides landmarks and lets a real entry win over its own whiteout', () => {
    expect(view.get('/.prefetch.landmark')).toBeUndefined();
    expect(view.get('/both')!.type).toBe('reg');
    expect(view.get('/')!.childNames).toEqual(['both', 'dir', 'opaque']);
  });

  it('lists names in the byte order of their UTF-8, also where UTF-16 order differs (astral vs U+E000..U+FFFF)', () => {
    const names = ['b', 'a', '\u{1F600}', '\uFF21', '\u00E9', 'B', '\uE000', 'ab'];
    const { index: unicode } = fakeLayer(names.map((name) => ({ path: name, data: Buffer.from(name) })));
    const byUtf8 = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    expect(byUtf8.indexOf('\uFF21')).toBeLessThan(byUtf8.indexOf('\u{1F600}')); // UTF-16 units sort them the other way
    expect(new LayerView(unicode).get('/')!.childNames).toEqual(byUtf8);
  });

  it('finds nothing under a file, nor a hidden name anywhere on the way', () => {
    expect(view.get('/both/x')).toBeUndefined();
    expect(view.get('/dir/.wh.gone/x')).toBeUndefined();
    expect(view.get('/nothing/at/all')).toBeUndefined();
  });

  it('counts the paths it shows, the root included, whether or not they were looked up', () => {
    const fresh = new LayerView(index);
    // /, both, dir, dir/gone, dir/kept, opaque, opaque/new
    expect(fresh.size).toBe(7);
    expect(view.size).toBe(7);
  });

  it('counts directory links as 2 + subdirectories', () => {
    expect(view.get('/')!.nlink).toBe(4);
    expect(view.get('/dir')!.nlink).toBe(2);
  });
});

describe('makeDev', () => {
  it('encodes like glibc makedev, split major/minor included', () => {
    expect(makeDev(1, 3)).toBe(0x103);
    expect(makeDev(511, 1048575)).toBe(0xfff1ffff);
  });
});

describe('ReadAhead', () => {
  it('fetches ahead only for sequential readers, once per half window', () => {
    const ra = new ReadAhead(1000);
    expect(ra.next(0, 100, 10_000)).toBeUndefined(); // one read proves nothing
    expect(ra.next(100, 100, 10_000)).toEqual({ offset: 200, length: 1000 });
    expect(ra.next(200, 100, 10_000)).toBeUndefined(); // still well inside the window
    expect(ra.next(5000, 100, 10_000)).toBeUndefined(); // a jump resets the streak
  });

  it('does nothing when disabled or at the end of the file', () => {
    const off = new ReadAhead(0);
    off.next(0, 100, 10_000);
    expect(off.next(100, 100, 10_000)).toBeUndefined();
    const ra = new ReadAhead(1000);
    ra.next(0, 100, 200);
    expect(ra.next(100, 100, 200)).toBeUndefined();
  });
});
