/**
 * The TOC JSON as the reference tools write and read it: field names, field order and omission of
 * zero values follow stargz-snapshotter's estargz package so that a TOC we write reads like one of theirs.
 */

export const TOC_TAR_NAME = 'stargz.index.json';
export const PREFETCH_LANDMARK = '.prefetch.landmark';
export const NO_PREFETCH_LANDMARK = '.no.prefetch.landmark';
export const LANDMARK_CONTENTS = 0x0f;

export type TocEntryType = 'dir' | 'reg' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo' | 'chunk';

export interface TocEntryJson {
  name: string;
  type: TocEntryType;
  size?: number;
  modtime?: string;
  linkName?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  userName?: string;
  groupName?: string;
  offset?: number;
  /** containers/storage zstd:chunked only: end of the compressed range. */
  endOffset?: number;
  innerOffset?: number;
  devMajor?: number;
  devMinor?: number;
  xattrs?: Record<string, string>;
  digest?: string;
  chunkOffset?: number;
  chunkSize?: number;
  chunkDigest?: string;
  /** containers/storage zstd:chunked only: "zeros" marks a hole with no stored data. */
  chunkType?: string;
}

export interface TocJson {
  version: number;
  entries: TocEntryJson[];
}

/** Go's field order; keys not listed here are never written. */
const FIELD_ORDER: (keyof TocEntryJson)[] = [
  'name', 'type', 'size', 'modtime', 'linkName', 'mode', 'uid', 'gid', 'userName', 'groupName',
  'offset', 'endOffset', 'innerOffset', 'devMajor', 'devMinor', 'xattrs', 'digest', 'chunkOffset', 'chunkSize', 'chunkDigest', 'chunkType',
];

function isZero(value: unknown): boolean {
  return value === undefined || value === 0 || value === '' || (typeof value === 'object' && value !== null && Object.keys(value).length === 0);
}

function orderedEntry(entry: TocEntryJson): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of FIELD_ORDER) {
    const value = entry[key];
    if (key === 'name' || key === 'type' || !isZero(value)) out[key] = key === 'xattrs' ? sortedKeys(value as Record<string, string>) : value;
  }
  return out;
}

function sortedKeys(map: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(map).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

const goEscape = (text: string): string => text.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/**
 * Tab-indented JSON with Go's HTML-safe escaping, shaped like json.MarshalIndent. Entries are encoded
 * one at a time so a TOC of a large layer never exists as a second full copy of objects or one huge string.
 */
export function serializeToc(entries: TocEntryJson[]): Buffer {
  const pieces: Buffer[] = [Buffer.from('{\n\t"version": 1,\n\t"entries": [')];
  entries.forEach((entry, i) => {
    const json = goEscape(JSON.stringify(orderedEntry(entry), null, '\t')).replace(/\n/g, '\n\t\t');
    pieces.push(Buffer.from(`${i === 0 ? '' : ','}\n\t\t${json}`));
  });
  pieces.push(Buffer.from(entries.length === 0 ? ']\n}' : '\n\t]\n}'));
  return Buffer.concat(pieces);
}

/**
 * RFC 3339 in UTC. The reference rounds to whole seconds; we keep nanoseconds (Go's parser accepts a
 * fraction) so a lazily mounted file has the same mtime as an unpacked one. Epoch means "no time".
 */
export function formatModtime(sec: number, nsec: number): string {
  if (sec === 0 && nsec === 0) return '';
  const date = new Date(sec * 1000);
  const year = date.getUTCFullYear();
  if (year < 0 || year > 9999) return '';
  const base = date.toISOString().slice(0, 19);
  const fraction = nsec ? `.${String(nsec).padStart(9, '0').replace(/0+$/, '')}` : '';
  return `${base}${fraction}Z`;
}

const MODTIME_RE = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;

export function parseModtime(text: string): { sec: number; nsec: number } | undefined {
  const m = MODTIME_RE.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, sign, oh, om] = m;
  const date = new Date(0);
  date.setUTCFullYear(Number(y), Number(mo) - 1, Number(d));
  date.setUTCHours(Number(h), Number(mi), Number(s), 0);
  let sec = Math.floor(date.getTime() / 1000);
  if (sign) sec -= (sign === '+' ? 1 : -1) * (Number(oh) * 3600 + Number(om) * 60);
  return { sec, nsec: frac ? Number(frac.padEnd(9, '0')) : 0 };
}
