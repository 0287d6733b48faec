/**
 * A range-granular prefetch profile: the compressed byte ranges of a layer blob that a workload read,
 * kept as a layer annotation in the image manifest (other tools ignore unknown annotations). A mount
 * prefetches exactly the chunks these ranges touch, instead of every chunk of every file before the
 * landmark, so a large library of which a workload maps a few MiB costs a few MiB.
 *
 * Text form: `START+LENGTH` pairs in decimal, comma separated, e.g. `0+4096,1048576+65536`.
 */
export const PREFETCH_RANGES_ANNOTATION = 'dev.lazypull.prefetch-ranges';

/** More than this many ranges is not a profile anyone wrote on purpose. */
const MAX_RANGES = 100_000;

export interface ByteRange {
  start: number;
  end: number;
}

export class PrefetchRangesError extends Error {
  override name = 'PrefetchRangesError';
}

/** Sorted, merged ranges, so lookups can binary-search and text stays short. */
export function normalizeRanges(ranges: readonly ByteRange[]): ByteRange[] {
  const sorted = ranges.filter((r) => r.end > r.start).sort((a, b) => a.start - b.start);
  const merged: ByteRange[] = [];
  for (const range of sorted) {
    const last = merged.at(-1);
    if (last && range.start <= last.end) last.end = Math.max(last.end, range.end);
    else merged.push({ ...range });
  }
  return merged;
}

export function formatPrefetchRanges(ranges: readonly ByteRange[]): string {
  return normalizeRanges(ranges)
    .map((r) => `${r.start}+${r.end - r.start}`)
    .join(',');
}

/** Parses the annotation; `blobSize` bounds every range. Anything malformed is a PrefetchRangesError. */
export function parsePrefetchRanges(text: string, blobSize: number): ByteRange[] {
  if (text === '') return [];
  const items = text.split(',');
  if (items.length > MAX_RANGES) throw new PrefetchRangesError(`${PREFETCH_RANGES_ANNOTATION}: ${items.length} ranges, more than ${MAX_RANGES}`);
  const ranges = items.map((item) => {
    const match = /^(\d{1,15})\+(\d{1,15})$/.exec(item);
    if (!match) throw new PrefetchRangesError(`${PREFETCH_RANGES_ANNOTATION}: ${JSON.stringify(item.slice(0, 40))} is not START+LENGTH`);
    const start = Number(match[1]);
    const end = start + Number(match[2]);
    if (end > blobSize) throw new PrefetchRangesError(`${PREFETCH_RANGES_ANNOTATION}: range ${item} ends after the ${blobSize}-byte blob`);
    return { start, end };
  });
  return normalizeRanges(ranges);
}

/** Whether [start, end) overlaps any of the normalized `ranges`. */
export function overlapsAny(ranges: readonly ByteRange[], start: number, end: number): boolean {
  let lo = 0;
  let hi = ranges.length - 1;
  // The last range starting before `end` is the only candidate: normalized ranges do not overlap.
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (ranges[mid]!.start < end) lo = mid + 1;
    else hi = mid - 1;
  }
  const candidate = ranges[hi];
  return candidate !== undefined && candidate.end > start;
}
