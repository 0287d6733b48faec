/**
 * What a workload touched, across the layer mounts of one container rootfs: every path in order of
 * first access (whichever layer saw it), which layers' mounts saw it, and the byte ranges read per
 * layer and file. Layers are numbered bottom first, as in the manifest.
 */
import type { AccessKind, AccessRecorder } from '../../src/fs/access-recorder.js';

export interface AccessedPath {
  /** Absolute, as FUSE gives it: `/usr/bin/x`. */
  readonly path: string;
  /** Layers whose mount answered a lookup, open, read or readlink of it. */
  readonly layers: ReadonlySet<number>;
}

/** Half-open byte ranges, sorted and merged. */
export type ByteRanges = [start: number, end: number][];

export class AccessLog {
  private readonly paths = new Map<string, Set<number>>();
  private readonly reads: Map<string, ByteRanges>[];
  private frozen = false;

  constructor(readonly layerCount: number) {
    this.reads = Array.from({ length: layerCount }, () => new Map());
  }

  /** The recorder to give layer `layer`'s mount. */
  recorder(layer: number): AccessRecorder {
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.layerCount) throw new RangeError(`no layer ${layer}`);
    return { onAccess: (kind, path, offset, length) => this.record(layer, kind, path, offset, length) };
  }

  /** Ignores everything from now on (unmounting and teardown are not the workload's accesses). */
  freeze(): void {
    this.frozen = true;
  }

  record(layer: number, kind: AccessKind, path: string, offset?: number, length?: number): void {
    if (this.frozen) return;
    let layers = this.paths.get(path);
    if (!layers) this.paths.set(path, (layers = new Set()));
    layers.add(layer);
    if (kind === 'read' && offset !== undefined && length !== undefined && length > 0) {
      const files = this.reads[layer]!;
      let ranges = files.get(path);
      if (!ranges) files.set(path, (ranges = []));
      addRange(ranges, offset, offset + length);
    }
  }

  /** Every path in order of first access. */
  accessed(): AccessedPath[] {
    return [...this.paths].map(([path, layers]) => ({ path, layers }));
  }

  /** Ranges read from each file of layer `layer`, by path. */
  readRanges(layer: number): ReadonlyMap<string, ByteRanges> {
    return this.reads[layer] ?? new Map();
  }
}

/** Adds [start, end) to sorted, disjoint ranges, merging what touches or overlaps it. */
export function addRange(ranges: ByteRanges, start: number, end: number): void {
  let i = 0;
  while (i < ranges.length && ranges[i]![1] < start) i++;
  let j = i;
  let lo = start;
  let hi = end;
  while (j < ranges.length && ranges[j]![0] <= end) {
    lo = Math.min(lo, ranges[j]![0]);
    hi = Math.max(hi, ranges[j]![1]);
    j++;
  }
  ranges.splice(i, j - i, [lo, hi]);
}

/**
 * Per layer (bottom first), the paths it should prioritize, in the order given: each path goes to the
 * topmost layer that has it (the one a container sees it from). A path no layer has is left out, and
 * so is the root: every layer has it, and prioritizing it alone would make an untouched layer look used.
 */
export function attributeToLayers(paths: Iterable<AccessedPath>, layerCount: number): string[][] {
  const lists: string[][] = Array.from({ length: layerCount }, () => []);
  const placed = new Set<string>();
  for (const { path, layers } of paths) {
    if (placed.has(path) || path === '/' || path === '') continue;
    const top = Math.max(-1, ...[...layers].filter((l) => l >= 0 && l < layerCount));
    if (top < 0) continue;
    placed.add(path);
    lists[top]!.push(path);
  }
  return lists;
}
