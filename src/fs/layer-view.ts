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

export class LayerView {
  /** By absolute FUSE path ('/' is the root). */
  private readonly nodes = new Map<string, FsNode>();

  constructor(index: LayerIndex) {
    this.addDirectory('/', index.root);
  }

  get(path: string): FsNode | undefined {
    return this.nodes.get(path);
  }

  get size(): number {
    return this.nodes.size;
  }

  private addDirectory(path: string, dir: LayerEntry): void {
    const join = (name: string) => (path === '/' ? `/${name}` : `${path}/${name}`);
    const childNames: string[] = [];
    let subdirs = 0;
    for (const [name, child] of dir.children ?? []) {
      if (child.special === 'landmark' || child.special === 'opaque-marker') continue;
      if (child.special === 'whiteout') {
        const hidden = name.slice(WHITEOUT_PREFIX.length);
        // A real entry of the same name in this layer wins over its whiteout, as when unpacking in order.
        if (hidden === '' || dir.children?.has(hidden)) continue;
        this.nodes.set(join(hidden), whiteoutNode(child));
        childNames.push(hidden);
      } else if (child.type === 'dir') {
        subdirs++;
        this.addDirectory(join(name), child);
        childNames.push(name);
      } else {
        this.nodes.set(join(name), fileNode(child));
        childNames.push(name);
      }
    }
    this.nodes.set(path, directoryNode(dir, childNames.sort(compareBytes), subdirs));
  }
}

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function mtimeMs(entry: LayerEntry): number {
  return Math.max(0, entry.mtimeSec * 1000 + Math.floor(entry.mtimeNsec / 1_000_000));
}

function common(entry: LayerEntry): Omit<FsNode, 'type' | 'nlink' | 'childNames' | 'entry' | 'xattrs' | 'mode'> {
  return {
    ino: entry.ino,
    uid: entry.uid,
    gid: entry.gid,
    size: entry.type === 'reg' ? entry.size : 0,
    mtimeMs: mtimeMs(entry),
    devMajor: entry.devMajor,
    devMinor: entry.devMinor,
    linkName: entry.linkName,
  };
}

function fileNode(entry: LayerEntry): FsNode {
  return { ...common(entry), type: entry.type, mode: entry.mode, nlink: entry.nlink, xattrs: entry.xattrs, ...(entry.type === 'reg' ? { entry } : {}) };
}

function directoryNode(dir: LayerEntry, childNames: string[], subdirs: number): FsNode {
  const xattrs = dir.opaque ? new Map([...dir.xattrs, [OPAQUE_XATTR, OPAQUE_VALUE]]) : dir.xattrs;
  return { ...common(dir), type: 'dir', mode: dir.mode, nlink: 2 + subdirs, xattrs, childNames };
}

/** An overlayfs whiteout: a character device 0/0 with no permission bits, owned as the marker was. */
function whiteoutNode(marker: LayerEntry): FsNode {
  return { ...common(marker), type: 'char', mode: 0, size: 0, devMajor: 0, devMinor: 0, linkName: '', nlink: 1, xattrs: new Map() };
}
