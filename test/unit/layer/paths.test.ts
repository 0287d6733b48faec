import { describe, expect, it } from 'vitest';
import { cleanLayerPath, UnsafePathError } from '../../../src/layer/paths.js';

/** The rule written out the long way: every component looked at. */
function reference(name: string): string {
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (parts.length === 0) throw new UnsafePathError('escapes');
      parts.pop();
    } else parts.push(part);
  }
  return parts.join('/');
}

describe('cleanLayerPath', () => {
  it('agrees with the component-by-component rule on every combination of tricky components', () => {
    const components = ['a', '.', '..', '', '...', '.a', 'a.', '..a', 'a..', '.wh.x'];
    const names = new Set<string>(['', 'a/', 'usr/lib/', './', '.']);
    for (const x of components) for (const y of components) for (const z of components) names.add(`${x}/${y}/${z}`).add(`${x}/${y}`).add(`${x}${y}/${z}/`);
    for (const name of names) {
      if (name.startsWith('/')) continue;
      let expected: string | Error;
      try {
        expected = reference(name);
      } catch (err) {
        expected = err as Error;
      }
      if (expected instanceof Error) expect(() => cleanLayerPath(name), name).toThrow(UnsafePathError);
      else expect(cleanLayerPath(name), name).toBe(expected);
    }
  });

  it('refuses absolute names and NUL bytes', () => {
    expect(() => cleanLayerPath('/etc/passwd')).toThrow(/absolute/);
    expect(() => cleanLayerPath('a\0b')).toThrow(/NUL/);
    expect(() => cleanLayerPath('../etc')).toThrow(/escapes/);
  });
});
