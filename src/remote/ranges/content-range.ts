export interface ByteRange {
  /** First byte. */
  start: number;
  /** Bytes in the range (> 0). */
  length: number;
}

export interface ContentRange {
  start: number;
  /** Inclusive, as in the header. */
  end: number;
  /** Undefined for `*`. */
  total?: number;
}

/** `bytes a-b/total` (or `/*`); undefined for anything else, including unsatisfied `bytes *\/total`. */
export function parseContentRange(value: string | undefined): ContentRange | undefined {
  if (!value) return undefined;
  const match = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(value);
  if (!match) return undefined;
  const start = Number(match[1]);
  const end = Number(match[2]);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) return undefined;
  const total = match[3] === '*' ? undefined : Number(match[3]);
  if (total !== undefined && (!Number.isSafeInteger(total) || end >= total)) return undefined;
  return { start, end, ...(total !== undefined ? { total } : {}) };
}

/** `Range` header value for one or more ranges. */
export function rangeHeader(ranges: readonly ByteRange[]): string {
  return `bytes=${ranges.map((r) => `${r.start}-${r.start + r.length - 1}`).join(',')}`;
}
