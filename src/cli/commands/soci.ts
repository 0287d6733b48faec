import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { openSociLayer, type SociLayerIndex } from '../../soci/layer-index.js';
import { readTarZinfo } from '../../soci/ztoc.js';
import { isDigest } from '../../util/digest.js';

/** What `soci ztoc info` prints: the soci CLI's JSON shape (snake_case), plus the compression and digest. */
export interface ZtocInfo {
  digest: string;
  version: string;
  build_tool: string;
  compression: string;
  size: number;
  uncompressed_size: number;
  span_size: number;
  num_spans: number;
  num_files: number;
  num_multi_span_files: number;
  files: { filename: string; offset: number; size: number; type: string; start_span: number; end_span: number }[];
}

export function ztocInfo(index: SociLayerIndex): ZtocInfo {
  const { ztoc, gzip, spans } = index.parsed;
  const spanOf = (offset: number): number => {
    let lo = 0;
    let hi = spans.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (spans[mid]!.uncompressedStart <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };
  const files = ztoc.files.map((f) => ({
    filename: f.name,
    offset: f.uncompressedOffset,
    size: f.uncompressedSize,
    type: f.type,
    start_span: spanOf(f.uncompressedOffset),
    end_span: spanOf(f.uncompressedOffset + Math.max(0, f.uncompressedSize - 1)),
  }));
  return {
    digest: index.tocDigest,
    version: ztoc.version,
    build_tool: ztoc.buildToolIdentifier,
    compression: ztoc.algorithm,
    size: ztoc.compressedArchiveSize,
    uncompressed_size: ztoc.uncompressedArchiveSize,
    span_size: gzip ? gzip.spanSize : readTarZinfo(ztoc.checkpoints).spanSize,
    num_spans: spans.length,
    num_files: files.length,
    num_multi_span_files: files.filter((f) => f.end_span > f.start_span).length,
    files,
  };
}

/**
 * `lazypull soci ...`. Only `ztoc info FILE` exists so far: the DIGEST form needs the content store or a
 * registry, and `soci create` / `soci index list` need the registry write side.
 */
export function registerSoci(program: Command): void {
  const soci = program.command('soci').description('SOCI indexes and zTOCs');
  const ztoc = soci.command('ztoc').description('inspect zTOCs');
  ztoc
    .command('info')
    .description('print a zTOC: version, sizes, spans and files (JSON, as `soci ztoc info` does)')
    .argument('<file>', 'a zTOC file (a sha256 DIGEST needs containerd or a registry: not supported yet)')
    .action(async (file: string) => {
      if (isDigest(file) && !existsSync(file)) {
        throw new Error(`${file}: looking zTOCs up by digest needs containerd or a registry, which is not supported yet; pass a zTOC file`);
      }
      const index = openSociLayer(await readFile(file));
      process.stdout.write(`${JSON.stringify(ztocInfo(index), null, 2)}\n`);
    });
}
