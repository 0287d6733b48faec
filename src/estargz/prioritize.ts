import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { TarHeader } from '../tar/reader.js';
import { baseName, cleanLayerPath, parentPath } from '../layer/paths.js';
import { landmarkEntry, type SourceEntry } from './entry-source.js';
import { PREFETCH_LANDMARK } from './toc.js';

interface SpooledEntry {
  path: string;
  header: TarHeader;
  headerOffset: number;
  headerLength: number;
  payloadOffset: number;
  payloadLength: number;
  paddingLength: number;
}

/**
 * Reorders a layer so the prioritized files come first, in access order, each preceded by its parent
 * directories (and a hardlink by its target), then `.prefetch.landmark`, then everything else in archive
 * order. Reordering needs random access, so the input is spooled to a file in `workDir` first.
 */
export async function prioritizedEntries(
  entries: AsyncIterable<SourceEntry>,
  prioritized: string[],
  workDir: string,
  onMissing?: (path: string) => void,
): Promise<AsyncIterable<SourceEntry>> {
  const spool = await open(join(workDir, 'layer.tar'), 'w+');
  const spooled = await spoolEntries(entries, spool);
  const order = prioritizedOrder(spooled, prioritized, onMissing);
  return emit(spool, order);
}

async function spoolEntries(entries: AsyncIterable<SourceEntry>, spool: FileHandle): Promise<SpooledEntry[]> {
  const spooled: SpooledEntry[] = [];
  let position = 0;
  const append = async (data: Buffer): Promise<void> => {
    await spool.write(data, 0, data.length, position);
    position += data.length;
  };
  for await (const entry of entries) {
    const headerOffset = position;
    await append(entry.rawHeader);
    const payloadOffset = position;
    for (let piece = await entry.readPayload(1 << 20); piece.length > 0; piece = await entry.readPayload(1 << 20)) await append(piece);
    const payloadLength = position - payloadOffset;
    const padding = await entry.readPadding();
    await append(padding);
    spooled.push({ path: cleanLayerPath(entry.header.name), header: entry.header, headerOffset, headerLength: entry.rawHeader.length, payloadOffset, payloadLength, paddingLength: padding.length });
  }
  return spooled;
}

function prioritizedOrder(spooled: SpooledEntry[], prioritized: string[], onMissing?: (path: string) => void): (SpooledEntry | 'landmark')[] {
  const byPath = new Map<string, SpooledEntry>();
  for (const e of spooled) byPath.set(e.path, e); // the last entry of a name wins, as in tar
  const moved = new Set<SpooledEntry>();
  const front: SpooledEntry[] = [];
  const move = (path: string, seen: Set<string>): boolean => {
    if (seen.has(path)) return true;
    seen.add(path);
    const entry = byPath.get(path);
    if (path !== '') move(parentPath(path), seen);
    if (!entry) return false;
    if (entry.header.kind === 'hardlink') move(safeClean(entry.header.linkName), seen);
    if (!moved.has(entry)) {
      moved.add(entry);
      front.push(entry);
    }
    return true;
  };
  for (const raw of prioritized) {
    const path = safeClean(raw);
    if (path === '' && !byPath.has('')) continue;
    if (!move(path, new Set()) && baseName(path) !== '') onMissing?.(raw);
  }
  return [...front, 'landmark', ...spooled.filter((e) => !moved.has(e))];
}

function safeClean(path: string): string {
  try {
    return cleanLayerPath(path.replace(/^\/+/, ''));
  } catch {
    return '\0invalid';
  }
}

async function* emit(spool: FileHandle, order: (SpooledEntry | 'landmark')[]): AsyncGenerator<SourceEntry> {
  try {
    for (const item of order) {
      if (item === 'landmark') {
        yield landmarkEntry(PREFETCH_LANDMARK);
        continue;
      }
      yield await spooledEntry(spool, item);
    }
  } finally {
    await spool.close();
  }
}

async function spooledEntry(spool: FileHandle, e: SpooledEntry): Promise<SourceEntry> {
  let payloadRead = 0;
  const readAt = async (offset: number, length: number): Promise<Buffer> => {
    const buf = Buffer.allocUnsafe(length);
    const { bytesRead } = await spool.read(buf, 0, length, offset);
    if (bytesRead !== length) throw new Error(`spool file is short at ${offset}`);
    return buf;
  };
  return {
    header: e.header,
    rawHeader: await readAt(e.headerOffset, e.headerLength),
    async readPayload(max) {
      const length = Math.min(max, e.payloadLength - payloadRead);
      if (length <= 0) return Buffer.alloc(0);
      const buf = await readAt(e.payloadOffset + payloadRead, length);
      payloadRead += length;
      return buf;
    },
    readPadding: () => readAt(e.payloadOffset + e.payloadLength, e.paddingLength),
  };
}
