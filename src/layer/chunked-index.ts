import { CorruptDataError, codecByName } from '../compression/codec.js';
import { sha256, type Digest } from '../util/digest.js';
import type { ChunkRef, ChunkSlice, LayerEntry, LayerFormat, LayerIndex } from './layer-index.js';
import { cleanLayerPath } from './paths.js';

export class ChunkVerificationError extends Error {
  override name = 'ChunkVerificationError';
}

export interface ChunkedIndexInit {
  format: LayerFormat;
  tocDigest: Digest;
  root: LayerEntry;
  entries: ReadonlyMap<string, LayerEntry>;
  prefetchRange?: { start: number; end: number };
  noPrefetch: boolean;
  verified: boolean;
}

/**
 * A LayerIndex over an entry tree whose files are lists of independently compressed chunks: the shape
 * shared by eStargz, legacy stargz and zstd:chunked (and by SOCI spans).
 */
export class ChunkedLayerIndex implements LayerIndex {
  readonly format: LayerFormat;
  readonly tocDigest: Digest;
  readonly root: LayerEntry;
  readonly entries: ReadonlyMap<string, LayerEntry>;
  readonly prefetchRange?: { start: number; end: number };
  readonly noPrefetch: boolean;
  readonly verified: boolean;

  constructor(init: ChunkedIndexInit) {
    this.format = init.format;
    this.tocDigest = init.tocDigest;
    this.root = init.root;
    this.entries = init.entries;
    this.prefetchRange = init.prefetchRange;
    this.noPrefetch = init.noPrefetch;
    this.verified = init.verified;
  }

  lookup(path: string): LayerEntry | undefined {
    try {
      return this.entries.get(cleanLayerPath(path.replace(/^\/+/, '')));
    } catch {
      return undefined;
    }
  }

  fetchUnits(): readonly ChunkRef[] {
    const units: ChunkRef[] = [];
    for (const entry of new Set(this.entries.values())) units.push(...entry.chunks);
    return units.sort((a, b) => a.compressedOffset - b.compressedOffset || a.innerOffset - b.innerOffset);
  }

  plan(entry: LayerEntry, offset: number, length: number): ChunkSlice[] {
    if (entry.type !== 'reg') throw new Error(`${entry.name} is not a regular file`);
    const end = Math.min(entry.size, offset + length);
    const slices: ChunkSlice[] = [];
    if (offset >= end) return slices;
    const chunks = entry.chunks;
    for (let i = firstChunkAt(chunks, offset); i < chunks.length; i++) {
      const chunk = chunks[i]!;
      if (chunk.fileOffset >= end) break;
      slices.push({
        chunk,
        start: Math.max(0, offset - chunk.fileOffset),
        end: Math.min(chunk.size, end - chunk.fileOffset),
      });
    }
    return slices;
  }

  decode(chunk: ChunkRef, compressed: Buffer): Buffer {
    if (chunk.encoding === 'zeros') return Buffer.alloc(chunk.size);
    if (chunk.encoding === 'soci-span') throw new Error(`chunk at ${chunk.compressedOffset} is a SOCI span piece: only the SOCI index can decode it`);
    const inflated = codecByName(chunk.encoding).decompress(compressed, chunk.maxInflated);
    if (inflated.length < chunk.innerOffset + chunk.size) {
      throw new CorruptDataError(`member at ${chunk.compressedOffset} inflates to ${inflated.length} bytes, short of the chunk's ${chunk.innerOffset + chunk.size}`);
    }
    const data = inflated.subarray(chunk.innerOffset, chunk.innerOffset + chunk.size);
    if (this.verified) {
      if (!chunk.digest) throw new ChunkVerificationError(`chunk at ${chunk.compressedOffset} has no digest to verify`);
      const actual = sha256(data);
      if (actual !== chunk.digest) throw new ChunkVerificationError(`chunk at compressed offset ${chunk.compressedOffset} has digest ${actual}, expected ${chunk.digest}`);
    }
    return data;
  }
}

function firstChunkAt(chunks: readonly ChunkRef[], offset: number): number {
  let lo = 0;
  let hi = chunks.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (chunks[mid]!.fileOffset <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
