import { gunzipBounded, gzipCompress, zstdBinding, zstdCompress } from './compress-core.js';

/**
 * Whole-member compression used by both the writer (one gzip member or zstd frame per chunk) and the
 * readers. Decompression is always bounded: a member may not inflate past `maxOutput`.
 */
export interface Codec {
  readonly name: 'gzip' | 'zstd';
  compress(data: Uint8Array, level: number): Buffer;
  /** Throws DecompressionBombError past `maxOutput` bytes and CorruptDataError on invalid input. */
  decompress(data: Uint8Array, maxOutput: number): Buffer;
}

export class DecompressionBombError extends Error {
  override name = 'DecompressionBombError';
}

export class CorruptDataError extends Error {
  override name = 'CorruptDataError';
}

export const gzipCodec: Codec = {
  name: 'gzip',
  compress: gzipCompress,
  decompress(data, maxOutput) {
    try {
      return gunzipBounded(data, maxOutput);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'ERR_BUFFER_TOO_LARGE') throw new DecompressionBombError(`compressed data inflates past the ${maxOutput}-byte bound`);
      throw new CorruptDataError(`invalid gzip data: ${(err as Error).message}`);
    }
  },
};

// zstd-napi's high-level decompress() sizes its output from the frame header without a limit; the raw
// binding lets us hand it a fixed-size buffer, which is what makes decompression bounded.
let dctx: ReturnType<typeof newDecompressContext> | undefined;
const newDecompressContext = () => new zstdBinding.DCtx();

export const zstdCodec: Codec = {
  name: 'zstd',
  compress: zstdCompress,
  decompress(data, maxOutput) {
    dctx ??= newDecompressContext();
    const out = Buffer.allocUnsafe(maxOutput);
    try {
      const n = dctx.decompress(out, data);
      return out.subarray(0, n);
    } catch (err) {
      const message = (err as Error).message;
      if (/too small/i.test(message)) throw new DecompressionBombError(`compressed data inflates past the ${maxOutput}-byte bound`);
      throw new CorruptDataError(`invalid zstd data: ${message}`);
    }
  },
};

/** gzip 6, not the reference's 9: on real layers 9 costs about 6x the CPU for a blob about 1.5% smaller. */
export const DEFAULT_LEVEL = { gzip: 6, zstd: 3 } as const;

export function codecByName(name: 'gzip' | 'zstd'): Codec {
  return name === 'gzip' ? gzipCodec : zstdCodec;
}
