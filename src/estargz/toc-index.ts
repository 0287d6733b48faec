import type { ChunkEncoding, ChunkRef, FileType, LayerEntry, LayerFormat } from '../layer/layer-index.js';
import { UnsafePathError, baseName, cleanLayerPath, parentPath } from '../layer/paths.js';
import { isDigest, type Digest } from '../util/digest.js';
import { NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK, parseModtime, type TocEntryJson } from './toc.js';

export interface TocLimits {
  /** Largest uncompressed chunk a reader will inflate into memory. */
  maxChunkSize: number;
  /** Largest file size accepted. */
  maxFileSize: number;
  /** Most entries accepted. */
  maxEntries: number;
}

export const DEFAULT_TOC_LIMITS: TocLimits = {
  maxChunkSize: 256 << 20,
  maxFileSize: 2 ** 44, // 16 TiB
  maxEntries: 10_000_000,
};

export class TocValidationError extends Error {
  override name = 'TocValidationError';
}

export interface TocTree {
  root: LayerEntry;
  entries: Map<string, LayerEntry>;
  prefetchRange?: { start: number; end: number };
  noPrefetch: boolean;
}

interface BuildContext {
  format: LayerFormat;
  /** End of the data region: the TOC's compressed offset. Payload offsets must lie below it. */
  dataEnd: number;
  encoding: ChunkEncoding;
  requireDigests: boolean;
  limits: TocLimits;
  /**
   * For formats whose file contents are not TOC offsets (SOCI: slices of spans), the chunks of each
   * regular file with data; they must cover the file. Offsets, endOffset and chunk entries are then unused.
   */
  chunksOf?: (entry: TocEntryJson, index: number) => ChunkRef[];
}

const TYPES: ReadonlySet<string> = new Set(['dir', 'reg', 'symlink', 'hardlink', 'char', 'block', 'fifo', 'chunk']);
/** The type each known field must have; other fields are ignored, as the reference readers do. */
const FIELD_KINDS: ReadonlyMap<string, 'integer' | 'string'> = new Map([
  ...(['size', 'mode', 'uid', 'gid', 'offset', 'endOffset', 'innerOffset', 'devMajor', 'devMinor', 'chunkOffset', 'chunkSize'] as const).map((f) => [f, 'integer'] as const),
  ...(['modtime', 'linkName', 'userName', 'groupName', 'digest', 'chunkDigest', 'chunkType'] as const).map((f) => [f, 'string'] as const),
]);
/** Slack per member for tar metadata we cannot size from the TOC (PAX records such as atime, comments). */
const MEMBER_SLACK = 64 << 10;

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type MutableEntry = Mutable<LayerEntry> & { chunks: ChunkRef[]; children?: Map<string, MutableEntry> };

interface PendingChunk {
  entry: TocEntryJson;
  fileOffset: number;
  size: number;
}

function fail(index: number, entry: { name?: unknown } | undefined, rule: string): never {
  const name = entry && typeof entry.name === 'string' ? JSON.stringify(entry.name) : '(no name)';
  throw new TocValidationError(`TOC entry ${index} ${name}: ${rule}`);
}

/** Checks field types so that later code can trust the JSON shape. */
function checkShape(raw: unknown, i: number): TocEntryJson {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(i, undefined, 'is not an object');
  const e = raw as Record<string, unknown>;
  if (typeof e.name !== 'string') fail(i, undefined, 'has no name');
  if (typeof e.type !== 'string' || !TYPES.has(e.type)) fail(i, e, `unknown type ${JSON.stringify(e.type)}`);
  // The fields an entry has (about ten), not all eighteen known ones: half the work per entry.
  for (const field in e) {
    const kind = FIELD_KINDS.get(field);
    const v = e[field];
    if (kind === undefined || v === undefined) continue;
    if (kind === 'integer' && (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)) fail(i, e, `${field} must be a non-negative integer`);
    if (kind === 'string' && typeof v !== 'string') fail(i, e, `${field} must be a string`);
  }
  if (e.xattrs !== undefined && (typeof e.xattrs !== 'object' || e.xattrs === null || Array.isArray(e.xattrs))) fail(i, e, 'xattrs must be an object');
  return e as unknown as TocEntryJson;
}

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The xattrs of every entry without any: one shared map, not one per entry (read-only to everyone). */
const NO_XATTRS: ReadonlyMap<string, Buffer> = new Map();

function decodeXattrs(e: TocEntryJson, i: number): ReadonlyMap<string, Buffer> {
  if (!e.xattrs) return NO_XATTRS;
  const out = new Map<string, Buffer>();
  for (const [key, value] of Object.entries(e.xattrs)) {
    if (typeof value !== 'string' || !BASE64_RE.test(value)) fail(i, e, `xattr ${JSON.stringify(key)} is not base64`);
    if (key.includes('\0') || key === '') fail(i, e, 'xattr name is empty or has a NUL byte');
    out.set(key, Buffer.from(value, 'base64'));
  }
  return out;
}

function headerAllowance(e: TocEntryJson): number {
  let xattrBytes = 0;
  // No Object.entries: an array per entry, for the few that have xattrs at all.
  if (e.xattrs) for (const k in e.xattrs) xattrBytes += k.length + 32 + (e.xattrs[k] as string).length;
  return 3 * 512 + 2 * (Buffer.byteLength(e.name) + (e.linkName ? Buffer.byteLength(e.linkName) : 0)) + xattrBytes + 1024;
}

/**
 * Turns validated TOC entries into the entry tree of a LayerIndex: implicit parents, hardlinks resolved
 * and counted, chunks checked for gaps and overlaps, whiteouts and landmarks flagged. Every error names
 * the entry and the rule it broke.
 */
export function buildTocTree(rawEntries: unknown, ctx: BuildContext): TocTree {
  const steps = buildSteps(rawEntries, ctx);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/**
 * Entries handled between two turns of the event loop by `buildTocTreeYielding`: about a millisecond of
 * work. The daemon's own pulls go through containerd and back while another layer's TOC opens, each
 * call needing a few turns: at 1000 entries a turn, python's stdlib TOC held its next Prepare 100 ms.
 */
const ENTRIES_PER_TURN = 250;

/**
 * buildTocTree in slices of ENTRIES_PER_TURN entries, giving the event loop a turn between them: the
 * daemon opening a 5,700-entry TOC (100-150 ms) keeps answering FUSE reads of running containers,
 * containerd's calls and registry responses meanwhile.
 */
export async function buildTocTreeYielding(rawEntries: unknown, ctx: BuildContext): Promise<TocTree> {
  const steps = buildSteps(rawEntries, ctx);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** The work of buildTocTree; yields where a caller may let other work run. */
function* buildSteps(rawEntries: unknown, ctx: BuildContext): Generator<void, TocTree> {
  if (!Array.isArray(rawEntries)) throw new TocValidationError('TOC has no entries array');
  if (rawEntries.length > ctx.limits.maxEntries) throw new TocValidationError(`TOC has ${rawEntries.length} entries, over the limit of ${ctx.limits.maxEntries}`);
  const entries: TocEntryJson[] = [];
  for (let i = 0; i < rawEntries.length; i++) {
    if (i > 0 && i % ENTRIES_PER_TURN === 0) yield;
    entries.push(checkShape(rawEntries[i], i));
  }
  yield;
  const members = ctx.chunksOf ? { starts: [], bounds: new Map() } : memberExtents(entries, ctx);
  yield;
  let nextIno = 1;
  const root = newDir('', nextIno++);
  const byPath = new Map<string, MutableEntry>([['', root]]);
  const hardlinks: { path: string; target: string; index: number }[] = [];
  let current: { entry: MutableEntry; json: TocEntryJson; index: number; covered: number } | undefined;
  let prefetchRange: TocTree['prefetchRange'];
  let noPrefetch = false;
  // The reference writers record a user or group name only when it changes for that id; later entries inherit it.
  const userNames = new Map<number, string>();
  const groupNames = new Map<number, string>();

  const finishCurrent = (): void => {
    if (current && current.covered !== current.entry.size) {
      fail(current.index, current.json, `chunks cover ${current.covered} of ${current.entry.size} bytes`);
    }
    current = undefined;
  };

  const ensureDir = (path: string): MutableEntry => {
    const existing = byPath.get(path);
    if (existing) {
      if (existing.type !== 'dir') throw new TocValidationError(`TOC entry ${JSON.stringify(path)} is used as a directory but is a ${existing.type}`);
      return existing;
    }
    const parent = ensureDir(parentPath(path));
    const dir = newDir(path, nextIno++);
    attach(parent, dir);
    byPath.set(path, dir);
    return dir;
  };

  // A layer's files mostly share a handful of modification times: parse each distinct one once.
  const modtimes = new Map<string, { sec: number; nsec: number } | undefined>();
  const parsedModtime = (text: string) => {
    if (!modtimes.has(text)) modtimes.set(text, parseModtime(text));
    return modtimes.get(text);
  };
  for (let i = 0; i < entries.length; i++) {
    if (i > 0 && i % ENTRIES_PER_TURN === 0) yield;
    const e = entries[i]!;
    let path: string;
    try {
      path = cleanLayerPath(e.name);
    } catch (err) {
      if (err instanceof UnsafePathError) fail(i, e, err.message);
      throw err;
    }
    if (e.linkName?.includes('\0')) fail(i, e, 'linkName contains a NUL byte');
    if (e.type === 'chunk') {
      if (!current || current.entry.name !== path) fail(i, e, 'chunk does not follow its regular file');
      const chunkOffset = e.chunkOffset ?? 0;
      if (chunkOffset !== current.covered) fail(i, e, `chunkOffset ${chunkOffset} leaves a gap or overlap (expected ${current.covered})`);
      current.covered += addChunk(current.entry, { entry: e, fileOffset: chunkOffset, size: chunkLength(e, current.entry.size, chunkOffset, i) }, i, members, ctx);
      continue;
    }
    finishCurrent();
    const size = e.type === 'reg' ? (e.size ?? 0) : 0;
    if (size > ctx.limits.maxFileSize) fail(i, e, `size ${size} exceeds the ${ctx.limits.maxFileSize}-byte limit`);
    const mtime = e.modtime ? parsedModtime(e.modtime) : { sec: 0, nsec: 0 };
    if (!mtime) fail(i, e, `modtime ${JSON.stringify(e.modtime)} is not RFC 3339`);
    if (e.digest !== undefined && !isDigest(e.digest)) fail(i, e, 'digest is not a sha256 digest');
    if (e.userName) userNames.set(e.uid ?? 0, e.userName);
    if (e.groupName) groupNames.set(e.gid ?? 0, e.groupName);
    if (e.type === 'hardlink') {
      if (!e.linkName) fail(i, e, 'hardlink without linkName');
      hardlinks.push({ path, target: safeClean(e.linkName, i, e), index: i });
      continue;
    }
    if (path === '' && e.type !== 'dir') fail(i, e, 'the root must be a directory');
    const attrs: EntryAttrs = {
      type: e.type as FileType,
      mode: (e.mode ?? 0) & 0o7777,
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      userName: userNames.get(e.uid ?? 0) ?? '',
      groupName: groupNames.get(e.gid ?? 0) ?? '',
      size,
      mtimeSec: mtime.sec,
      mtimeNsec: mtime.nsec,
      linkName: e.type === 'symlink' ? (e.linkName ?? '') : '',
      devMajor: e.devMajor ?? 0,
      devMinor: e.devMinor ?? 0,
      xattrs: decodeXattrs(e, i),
      digest: e.digest as Digest | undefined,
    };
    const existing = byPath.get(path);
    let entry: MutableEntry;
    if (existing && existing.type === 'dir' && attrs.type === 'dir') {
      entry = Object.assign(existing, attrs); // a repeated directory updates attributes, keeps children
    } else {
      const parent = ensureDir(parentPath(path));
      if (existing) detach(parent, existing);
      entry = newEntry(path, nextIno++, attrs, 1);
      attach(parent, entry);
      byPath.set(path, entry);
    }
    flagSpecial(entry, path, byPath);
    if (path === NO_PREFETCH_LANDMARK) noPrefetch = true;
    if (attrs.type === 'reg') {
      current = { entry, json: e, index: i, covered: 0 };
      if (size > 0 && ctx.chunksOf) current.covered += addProvidedChunks(entry, ctx.chunksOf(e, i), i, e);
      else if (size > 0) current.covered += addChunk(entry, { entry: e, fileOffset: 0, size: chunkLength(e, size, 0, i) }, i, members, ctx);
    }
    if (path === PREFETCH_LANDMARK) {
      // Everything before the landmark's member is prioritized; when packing put the landmark inside a
      // member with prioritized files, that whole member belongs to the region.
      const chunk = entry.chunks[0];
      prefetchRange = { start: 0, end: chunk && chunk.innerOffset > 0 ? chunk.compressedEnd : (e.offset ?? 0) };
    }
  }
  finishCurrent();

  for (const link of hardlinks) {
    const target = byPath.get(link.target);
    if (!target) fail(link.index, { name: link.path }, `hardlink target ${JSON.stringify(link.target)} is not in the layer`);
    if (target.type === 'dir') fail(link.index, { name: link.path }, 'hardlink to a directory');
    if (link.path === link.target) continue;
    const parent = ensureDir(parentPath(link.path));
    const existing = byPath.get(link.path);
    if (existing) detach(parent, existing);
    parent.children!.set(baseName(link.path), target);
    byPath.set(link.path, target);
    target.nlink++;
  }
  countDirLinks(root);
  return { root, entries: byPath, prefetchRange, noPrefetch };
}

function safeClean(name: string, i: number, e: TocEntryJson): string {
  try {
    return cleanLayerPath(name);
  } catch (err) {
    if (err instanceof UnsafePathError) fail(i, e, `linkName: ${err.message}`);
    throw err;
  }
}

type EntryAttrs = Pick<MutableEntry, 'type' | 'mode' | 'uid' | 'gid' | 'userName' | 'groupName' | 'size' | 'mtimeSec' | 'mtimeNsec' | 'linkName' | 'devMajor' | 'devMinor' | 'xattrs' | 'digest'>;

function newDir(name: string, ino: number): MutableEntry {
  const attrs: EntryAttrs = { type: 'dir', mode: 0o755, uid: 0, gid: 0, userName: '', groupName: '', size: 0, mtimeSec: 0, mtimeNsec: 0, linkName: '', devMajor: 0, devMinor: 0, xattrs: NO_XATTRS, digest: undefined };
  return newEntry(name, ino, attrs, 2);
}

/**
 * Every entry is built by this one literal, every field present, so all entries share one object shape:
 * spreading attributes into a literal made each entry a slow dictionary object (the distro layer of
 * benchmarks/hello, 5,700 entries: 100 ms to index instead of 37 warm, 240 ms to open instead of 135 cold).
 */
function newEntry(name: string, ino: number, attrs: EntryAttrs, nlink: number): MutableEntry {
  return {
    ino,
    name,
    type: attrs.type,
    mode: attrs.mode,
    uid: attrs.uid,
    gid: attrs.gid,
    userName: attrs.userName,
    groupName: attrs.groupName,
    size: attrs.size,
    mtimeSec: attrs.mtimeSec,
    mtimeNsec: attrs.mtimeNsec,
    linkName: attrs.linkName,
    devMajor: attrs.devMajor,
    devMinor: attrs.devMinor,
    xattrs: attrs.xattrs,
    digest: attrs.digest,
    chunks: [],
    nlink,
    children: attrs.type === 'dir' ? new Map() : undefined,
    opaque: undefined,
    special: undefined,
  };
}

function attach(parent: MutableEntry, child: MutableEntry): void {
  parent.children!.set(baseName(child.name), child);
}

function detach(parent: MutableEntry, child: MutableEntry): void {
  const key = baseName(child.name);
  if (parent.children!.get(key) === child) parent.children!.delete(key);
}

function flagSpecial(entry: MutableEntry, path: string, byPath: Map<string, MutableEntry>): void {
  const base = baseName(path);
  if (base === '.wh..wh..opq') {
    entry.special = 'opaque-marker';
    byPath.get(parentPath(path))!.opaque = true;
  } else if (base.startsWith('.wh.')) entry.special = 'whiteout';
  else if (path === PREFETCH_LANDMARK || path === NO_PREFETCH_LANDMARK) entry.special = 'landmark';
}

function countDirLinks(dir: MutableEntry): void {
  let subdirs = 0;
  for (const child of dir.children!.values()) {
    if (child.type === 'dir') {
      subdirs++;
      countDirLinks(child as MutableEntry);
    }
  }
  dir.nlink = 2 + subdirs;
}

function chunkLength(e: TocEntryJson, fileSize: number, chunkOffset: number, i: number): number {
  const remaining = fileSize - chunkOffset;
  if (remaining <= 0) fail(i, e, `chunkOffset ${chunkOffset} is past the end of the ${fileSize}-byte file`);
  const length = e.chunkSize ? e.chunkSize : remaining;
  if (length > remaining) fail(i, e, `chunk of ${length} bytes at ${chunkOffset} runs past the end of the ${fileSize}-byte file`);
  return length;
}

interface MemberExtents {
  /** Sorted distinct compressed offsets where payload members start, plus the data end. */
  starts: number[];
  /** Inflation bound per member start. */
  bounds: Map<number, number>;
}

/**
 * Where each member ends (the next member's start) and how far it may inflate: its payload plus the
 * tar headers of the entries written into it after the payload (the writer appends the following
 * entries' headers to the open member).
 */
function memberExtents(entries: TocEntryJson[], ctx: BuildContext): MemberExtents {
  const bounds = new Map<number, number>();
  let member = 0;
  const add = (n: number): void => void bounds.set(member, (bounds.get(member) ?? 0) + n);
  entries.forEach((e, i) => {
    if (e.type !== 'chunk') add(headerAllowance(e));
    const hasPayload = (e.type === 'reg' && (e.size ?? 0) > 0) || e.type === 'chunk';
    if (!hasPayload) return;
    if (e.chunkType === 'zeros') {
      // A hole is never fetched, but containers/storage still writes it as a frame of zeros at its offset:
      // that frame ends the member before it, so the data chunk's range stops short of the zeros.
      const hole = e.offset ?? 0;
      if (hole > member && hole < ctx.dataEnd && !bounds.has(hole)) bounds.set(hole, 0);
      return;
    }
    const offset = e.offset ?? 0;
    if (offset >= ctx.dataEnd) fail(i, e, `offset ${offset} is outside the data region (which ends at ${ctx.dataEnd})`);
    if (e.endOffset !== undefined && (e.endOffset <= offset || e.endOffset > ctx.dataEnd)) fail(i, e, `endOffset ${e.endOffset} is outside [offset, data end]`);
    member = offset;
    const length = e.chunkSize || (e.size ?? 0) - (e.chunkOffset ?? 0);
    add(Math.max(0, length) + 512);
  });
  const starts = [...new Set([...bounds.keys(), ctx.dataEnd])].sort((a, b) => a - b);
  return { starts, bounds };
}

function nextStart(starts: number[], offset: number): number {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (starts[mid]! > offset) hi = mid;
    else lo = mid + 1;
  }
  return starts[lo]!;
}

function addProvidedChunks(file: MutableEntry, chunks: ChunkRef[], i: number, e: TocEntryJson): number {
  let covered = 0;
  for (const chunk of chunks) {
    if (chunk.fileOffset !== covered) fail(i, e, `chunk at ${chunk.fileOffset} leaves a gap or overlap (expected ${covered})`);
    file.chunks.push(chunk);
    covered += chunk.size;
  }
  return covered;
}

function addChunk(file: MutableEntry, pending: PendingChunk, i: number, members: MemberExtents, ctx: BuildContext): number {
  const e = pending.entry;
  if (pending.size > ctx.limits.maxChunkSize) fail(i, e, `chunk of ${pending.size} bytes exceeds the ${ctx.limits.maxChunkSize}-byte limit`);
  if (e.chunkType !== undefined && e.chunkType !== 'zeros' && e.chunkType !== '') fail(i, e, `unknown chunkType ${JSON.stringify(e.chunkType)}`);
  if (e.chunkType === 'zeros') {
    file.chunks.push({ fileOffset: pending.fileOffset, size: pending.size, compressedOffset: 0, compressedEnd: 0, innerOffset: 0, encoding: 'zeros', maxInflated: 0 });
    return pending.size;
  }
  const chunkDigest = e.chunkDigest ?? (pending.fileOffset === 0 && pending.size === file.size ? e.digest : undefined);
  if (chunkDigest !== undefined && !isDigest(chunkDigest)) fail(i, e, 'chunkDigest is not a sha256 digest');
  if (ctx.requireDigests && chunkDigest === undefined) fail(i, e, 'chunk has no chunkDigest (required for verification)');
  const offset = e.offset ?? 0;
  const innerOffset = e.innerOffset ?? 0;
  const end = Math.min(e.endOffset ?? Infinity, nextStart(members.starts, offset));
  const maxInflated = innerOffset + pending.size + (members.bounds.get(offset) ?? 0) + MEMBER_SLACK;
  file.chunks.push({
    fileOffset: pending.fileOffset,
    size: pending.size,
    compressedOffset: offset,
    compressedEnd: end,
    innerOffset,
    encoding: ctx.encoding,
    maxInflated,
    digest: chunkDigest as Digest | undefined,
  });
  return pending.size;
}
