/**
 * The list `--record-out` writes and `--prefetch-list` / `convert --prioritized-files` read: one path
 * per line in access order, blank lines and `#` comments ignored (the very parser convert uses, so a
 * recorded list always reads back the same). Paths that this format cannot carry (a `#`, a line break,
 * or leading or trailing white space) are left out and reported.
 */
import { readPathList } from '../../src/cli/options.js';

export { readPathList as parseAccessList };

/** Absolute image paths (`/usr/bin/x`); the root is not listed (it is always there). */
export function formatAccessList(paths: Iterable<string>, comment?: string): { text: string; omitted: string[] } {
  const lines: string[] = [];
  const omitted: string[] = [];
  if (comment !== undefined) for (const line of comment.split('\n')) lines.push(`# ${line}`);
  for (const raw of paths) {
    const path = `/${raw.replace(/^\/+/, '')}`;
    if (path === '/') continue;
    if (!representable(path)) omitted.push(raw);
    else lines.push(path);
  }
  return { text: lines.length > 0 ? `${lines.join('\n')}\n` : '', omitted };
}

function representable(path: string): boolean {
  return !/[#\n\r]/.test(path) && path.trim() === path;
}
