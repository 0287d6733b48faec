import type { FileType, LayerEntry, LayerIndex } from '../layer/layer-index.js';

/**
 * What the mounted filesystem shows for one layer, derived once from the LayerIndex: the names an
 * unpacked layer would have on disk for overlayfs. Whiteouts `.wh.X` become X as a 0/0 character
 * device; `.wh..wh..opq` disappears and its directory carries `trusted.overlay.opaque=y`; landmarks
 * disappear. Everything else is the entry as the index describes it.
 */
export interface FsNode {
  readonly ino: number;
  readonly type: FileType;
  /** Permission bits (mode & 0o7777). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  /** Milliseconds since the epoch, clamped at 0 (see FuseStat). */
  readonly mtimeMs: number;
  readonly nlink: number;
  readonly devMajor: number;
  readonly devMinor: number;
  readonly linkName: string;
  readonly xattrs: ReadonlyMap<string, Buffer>;
  /** Visible child names in byte order (directories only). */
  readonly childNames?: readonly string[];
  /** The regular file whose bytes a read serves. */
  readonly entry?: LayerEntry;
}

export const OPAQUE_XATTR = 'trusted.overlay.opaque';
const OPAQUE_VALUE = Buffer.from('y');
const WHITEOUT_PREFIX = '.wh.';

/**
 * Nodes are made on first lookup, a directory's listing when it is first looked up: a mount answers
 * at once instead of walking the whole tree first (20-25 ms of the 5,700-entry distro layer's Prepare
 * in benchmarks/hello), and directories nothing visits cost nothing.
 */
export class LayerView {
  /** By absolute FUSE path ('/' is the root). */
  private readonly nodes = new Map<string, FsNode>();
  /** The entries of the directories made so far, by path: where their children are looked up. */
  private readonly dirs = new Map<string, LayerEntry>();
  private visibleCount: number | undefined;

  constructor(private readonly index: LayerIndex) {}

  get(path: string): FsNode | undefined {
    const known = this.nodes.get(path);
    if (known) return known;
    const made = this.make(path);
    if (made) this.nodes.set(path, made);
    return made;
  }

  /** How many paths the view shows, the root included (counted once, on first use: statfs). */
  get size(): number {
    this.visibleCount ??= countVisible(this.index.root);
    return this.visibleCount;
  }

  private make(path: string): FsNode | undefined {
    if (path === '/') return this.directory(path, this.index.root);
    const slash = path.lastIndexOf('/');
    if (slash < 0) return undefined;
    const parentPath = slash === 0 ? '/' : path.slice(0, slash);
    // Looking the parent up first registers its entry in `dirs` (when it is a directory).
    if (!this.get(parentPath)) return undefined;
    const parent = this.dirs.get(parentPath);
    const child = parent && visibleChild(parent, path.slice(slash + 1));
    if (!child) return undefined;
    if (child.special === 'whiteout') return whiteoutNode(child);
    return child.type === 'dir' ? this.directory(path, child) : fileNode(child);
  }

  private directory(path: string, dir: LayerEntry): FsNode {
    this.dirs.set(path, dir);
    const childNames: string[] = [];
    let subdirs = 0;
    for (const [name, child] of dir.children ?? []) {
      const shown = visibleName(dir, name, child);
      if (shown === undefined) continue;
      childNames.push(shown);
      if (child.type === 'dir' && shown === name) subdirs++;
    }
    return directoryNode(dir, childNames.sort(compareBytes), subdirs);
  }
}

/**
 * The name a child shows under, or undefined for what an unpacked layer would not have: landmarks,
 * opaque markers, and whiteouts of a name this layer has for real (the real entry wins, as when
 * unpacking in order). A whiteout `.wh.X` shows as X.
 */
function visibleName(dir: LayerEntry, name: string, child: LayerEntry): string | undefined {
  if (child.special === 'landmark' || child.special === 'opaque-marker') return undefined;
  if (child.special !== 'whiteout') return name;
  const hidden = name.slice(WHITEOUT_PREFIX.length);
  return hidden === '' || dir.children?.has(hidden) ? undefined : hidden;
}

/** The entry shown as `name` in `dir`: the real one, or the whiteout marker that shows as it. */
function visibleChild(dir: LayerEntry, name: string): LayerEntry | undefined {
  const real = dir.children?.get(name);
  if (real) return visibleName(dir, name, real) === name ? real : undefined;
  const marker = dir.children?.get(WHITEOUT_PREFIX + name);
  return marker !== undefined && visibleName(dir, WHITEOUT_PREFIX + name, marker) === name ? marker : undefined;
}

function countVisible(dir: LayerEntry): number {
  let count = 1;
  for (const [name, child] of dir.children ?? []) {
    const shown = visibleName(dir, name, child);
    if (shown === undefined) continue;
    count += child.type === 'dir' && shown === name ? countVisible(child) : 1;
  }
  return count;
}

/**
 * Byte order of the names' UTF-8, without encoding them (two Buffer.from per comparison: the
 * 5,700-entry view took 50-70 ms with them, 20-25 without): UTF-8 byte order is code point order,
 * which UTF-16 code unit order equals except where a surrogate meets U+E000..U+FFFF.
 */
function compareBytes(a: string, b: string): number {
  const common = Math.min(a.length, b.length);
  for (let i = 0; i < common; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) return Buffer.compare(Buffer.from(a.slice(i)), Buffer.from(b.slice(i)));
    return x - y;
  }
  return a.length - b.length;
}

function mtimeMs(entry: LayerEntry): number {
  return Math.max(0, entry.mtimeSec * 1000 + Math.floor(entry.mtimeNsec / 1_000_000));
}

type NodeFields = Pick<FsNode, 'type' | 'mode' | 'nlink' | 'xattrs'> & Partial<Pick<FsNode, 'size' | 'devMajor' | 'devMinor' | 'linkName' | 'childNames' | 'entry'>>;

/**
 * Every node is built by this one literal with every field present, so all nodes share one object shape
 * (spreading shared fields into literals made slow dictionary objects: a 5,700-entry layer's view took 95 ms).
 */
function makeNode(entry: LayerEntry, fields: NodeFields): FsNode {
  return {
    ino: entry.ino,
    type: fields.type,
    mode: fields.mode,
    uid: entry.uid,
    gid: entry.gid,
    size: fields.size ?? (entry.type === 'reg' ? entry.size : 0),
    mtimeMs: mtimeMs(entry),
    nlink: fields.nlink,
    devMajor: fields.devMajor ?? entry.devMajor,
    devMinor: fields.devMinor ?? entry.devMinor,
    linkName: fields.linkName ?? entry.linkName,
    xattrs: fields.xattrs,
    childNames: fields.childNames,
    entry: fields.entry,
  };
}

function fileNode(entry: LayerEntry): FsNode {
  return makeNode(entry, { type: entry.type, mode: entry.mode, nlink: entry.nlink, xattrs: entry.xattrs, entry: entry.type === 'reg' ? entry : undefined });
}

function directoryNode(dir: LayerEntry, childNames: string[], subdirs: number): FsNode {
  const xattrs = dir.opaque ? new Map([...dir.xattrs, [OPAQUE_XATTR, OPAQUE_VALUE]]) : dir.xattrs;
  return makeNode(dir, { type: 'dir', mode: dir.mode, nlink: 2 + subdirs, xattrs, childNames });
}

/** An overlayfs whiteout: a character device 0/0 with no permission bits, owned as the marker was. */
function whiteoutNode(marker: LayerEntry): FsNode {
  return makeNode(marker, { type: 'char', mode: 0, size: 0, devMajor: 0, devMinor: 0, linkName: '', nlink: 1, xattrs: new Map() });
}
