/**
 * `--prefetch-list` patterns: paths or globs over image paths. `*` and `?` stay inside one path segment,
 * `**` spans any number of segments (`usr/**` is everything under usr, `**` + `/x` is x anywhere).
 * Patterns and paths are compared without their leading `/`.
 */

export interface PathPattern {
  readonly text: string;
  /** True when the pattern has no wildcard: a literal path. */
  readonly literal: boolean;
  matches(path: string): boolean;
}

const strip = (path: string): string => path.replace(/^\/+/, '').replace(/\/+$/, '');

export function isGlob(pattern: string): boolean {
  return /[*?]/.test(pattern);
}

/** The regular expression a glob stands for, anchored at both ends. */
export function globToRegExp(pattern: string): RegExp {
  const glob = strip(pattern);
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      const atStart = i === 0 || glob[i - 1] === '/';
      const slashAfter = glob[i + 2] === '/';
      i++;
      if (atStart && slashAfter) {
        out += '(?:.*/)?'; // `**/`: zero or more whole segments
        i++;
      } else if (atStart && i === glob.length - 1 && out.endsWith('/')) {
        out = `${out.slice(0, -1)}(?:/.*)?`; // `dir/**`: dir itself and everything under it
      } else {
        out += '.*';
      }
    } else if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else out += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${out}$`, 's');
}

export function parsePattern(text: string): PathPattern {
  if (!isGlob(text)) {
    const path = strip(text);
    return { text, literal: true, matches: (candidate) => strip(candidate) === path };
  }
  const regexp = globToRegExp(text);
  return { text, literal: false, matches: (candidate) => regexp.test(strip(candidate)) };
}
