/**
 * A small in-memory layer for unit tests of the read path: files cut into gzip members, concatenated
 * into a blob, described by a ChunkedLayerIndex (the same class the real formats build).
 */
import { gzipSync } from 'node:zlib';
import { ChunkedLayerIndex } from '../../../src/layer/chunked-index.js';
import type { ChunkRef, FileType, LayerEntry, SpecialEntry } from '../../../src/layer/layer-index.js';
import { sha256 } from '../../../src/util/digest.js';

export interface FakeFile {
  path: string;
  type?: FileType;
  data?: Buffer;
  chunkSize?: number;
  special?: SpecialEntry;
  mode?: number;
}

export interface FakeLayer {
  blob: Buffer;
  index: ChunkedLayerIndex;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function entry(ino: number, name: string, type: FileType, mode: number): Mutable<LayerEntry> {
  return {
    ino, name, type, mode, uid: 0, gid: 0, userName: '', groupName: '', size: 0, mtimeSec: 1_700_000_000, mtimeNsec: 0,
    linkName: '', devMajor: 0, devMinor: 0, xattrs: new Map(), chunks: [], nlink: type === 'dir' ? 2 : 1,
    ...(type === 'dir' ? { children: new Map<string, LayerEntry>() } : {}),
  };
}

export function fakeLayer(files: FakeFile[]): FakeLayer {
  const members: Buffer[] = [];
  let offset = 0;
  let ino = 1;
  const root = entry(ino++, '', 'dir', 0o755);
  const entries = new Map<string, LayerEntry>([['', root]]);
  for (const file of files) {
    const type = file.type ?? 'reg';
    const e = entry(ino++, file.path, type, file.mode ?? (type === 'dir' ? 0o755 : 0o644));
    if (file.special) e.special = file.special;
    const data = file.data ?? Buffer.alloc(0);
    const chunks: ChunkRef[] = [];
    const step = file.chunkSize ?? Math.max(1, data.length);
    for (let at = 0; at < data.length; at += step) {
      const piece = data.subarray(at, at + step);
      const member = gzipSync(piece);
      chunks.push({ fileOffset: at, size: piece.length, compressedOffset: offset, compressedEnd: offset + member.length, innerOffset: 0, encoding: 'gzip', maxInflated: piece.length, digest: sha256(piece) });
      members.push(member);
      offset += member.length;
    }
    Object.assign(e, { size: data.length, chunks });
    const slash = file.path.lastIndexOf('/');
    const parent = entries.get(slash < 0 ? '' : file.path.slice(0, slash))!;
    parent.children!.set(file.path.slice(slash + 1), e);
    if (file.path.endsWith('.wh..wh..opq')) parent.opaque = true;
    entries.set(file.path, e);
  }
  const index = new ChunkedLayerIndex({ format: 'estargz', tocDigest: sha256(Buffer.from('toc')), root, entries, noPrefetch: false, verified: true });
  return { blob: Buffer.concat(members), index };
}
