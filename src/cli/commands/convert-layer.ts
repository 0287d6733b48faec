import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { convertLayerFile, type OutputFormat } from '../../estargz/writer.js';
import { parseSize, readPathList } from '../options.js';

interface ConvertLayerOptions {
  zstdchunked?: boolean;
  chunkSize?: number;
  minChunkSize?: number;
  compressionLevel?: number;
  prioritizedFiles?: string;
}

/** `convert-layer`: one tar (plain, gzip or zstd) into one eStargz or zstd:chunked blob. */
export function registerConvertLayer(program: Command): void {
  program
    .command('convert-layer')
    .description('convert a layer tar (tar, tar.gz or tar.zst) to eStargz (default) or zstd:chunked; prints the result as JSON')
    .argument('<in>', 'input layer')
    .argument('<out>', 'output blob')
    .option('--zstdchunked', 'write zstd:chunked instead of eStargz')
    .option('--chunk-size <bytes>', 'uncompressed bytes per chunk (default 4MiB)', parseSize)
    .option('--min-chunk-size <bytes>', 'let small files share a compressed member up to this size (default 0: off)', parseSize)
    .option('--compression-level <n>', 'gzip 0-9 (default 6) or zstd 1-22 (default 3)', (v) => parseLevel(v))
    .option('--prioritized-files <file>', 'paths in access order, one per line, put first with a prefetch landmark')
    .action(async (input: string, output: string, options: ConvertLayerOptions) => {
      const format: OutputFormat = options.zstdchunked ? 'zstd:chunked' : 'estargz';
      const prioritizedFiles = options.prioritizedFiles ? readPathList(await readFile(options.prioritizedFiles, 'utf8')) : undefined;
      const result = await convertLayerFile(input, output, {
        format,
        chunkSize: options.chunkSize,
        minChunkSize: options.minChunkSize,
        compressionLevel: options.compressionLevel,
        prioritizedFiles,
        onMissingPrioritized: (path) => process.stderr.write(`lazypull: prioritized file not in the layer: ${path}\n`),
      });
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    });
}

function parseLevel(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < -7 || n > 22) throw new Error(`compression level ${JSON.stringify(value)} is not an integer level`);
  return n;
}
