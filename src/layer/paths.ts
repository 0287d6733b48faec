/** Path rules shared by every format: the names a layer may contain and how they are normalized. */

export class UnsafePathError extends Error {
  override name = 'UnsafePathError';
}

/**
 * Normalizes a tar member name to a clean relative path ('' is the root). Leading './' is dropped;
 * absolute names, NUL bytes and '..' that would climb above the root are refused.
 */
export function cleanLayerPath(name: string): string {
  if (name.includes('\0')) throw new UnsafePathError('name contains a NUL byte');
  if (name.startsWith('/')) throw new UnsafePathError('absolute path');
  // Most names are clean already but for the `./` the reference writers put first (`./usr/lib/x`, a
  // directory's `./usr/lib/`): no split and join for them. Only a component starting with a dot can be
  // `.` or `..`, and only `//` or a leading slash makes an empty one; anything else is taken apart.
  const rest = name.startsWith('./') ? name.slice(2) : name;
  if (!rest.startsWith('.') && !rest.startsWith('/') && !rest.includes('/.') && !rest.includes('//')) return rest.endsWith('/') ? rest.slice(0, -1) : rest;
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (parts.length === 0) throw new UnsafePathError("'..' escapes the layer root");
      parts.pop();
    } else parts.push(part);
  }
  return parts.join('/');
}

export function parentPath(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash === -1 ? '' : path.slice(0, slash);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}
