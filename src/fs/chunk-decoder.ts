import type { ChunkRef, LayerIndex } from '../layer/layer-index.js';

/** Turns a fetched compressed member into the verified bytes of one chunk (throws on any mismatch). */
export interface ChunkDecoder {
  decode(index: LayerIndex, chunk: ChunkRef, compressed: Buffer): Promise<Buffer>;
  close?(): Promise<void>;
}

/** Decodes on the calling thread: the format's own decode, verification included. */
export const inlineDecoder: ChunkDecoder = {
  async decode(index, chunk, compressed) {
    return index.decode(chunk, compressed);
  },
};
