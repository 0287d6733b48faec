import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { readFile } from 'node:fs/promises';
import { convertImage, openImageDestination, openImageSource, parseImageLocation, terminalProgress, type ConvertImageResult, type ImageDestination, type ImageSource, type LayerFormatOptions } from '../../../tools/convert/index.js';
import { DEFAULT_HOSTS_DIR, formatPlatform, RegistryClient, type Platform } from '../../remote/index.js';
import { parsePlatformOption, parseSize, readPathList } from '../options.js';

interface ConvertCommandOptions {
  estargz?: boolean;
  zstdchunked?: boolean;
  oci?: boolean;
  chunkSize?: number;
  minChunkSize?: number;
  compressionLevel?: number;
  platform?: Platform;
  allPlatforms?: boolean;
  reuse?: boolean;
  prioritizedFiles?: string;
  plainHttp?: boolean;
  hostsDir: string;
  parallelLayers: number;
  uploadChunkSize?: number;
}

/** `convert`: an image (registry or OCI layout) into eStargz or zstd:chunked, without containerd or root. */
export function registerConvert(program: Command): void {
  const command = program
    .command('convert')
    .description('convert an image to eStargz (default) or zstd:chunked; SRC and DST are registry references or oci:DIR[:TAG]')
    .argument('<src>', 'source image: registry reference or oci:DIR[:TAG]')
    .argument('<dst>', 'destination: registry reference (a tag) or oci:DIR[:TAG] (default tag latest)');
  addFormatOptions(command)
    .option('--platform <os/arch[/variant]>', "convert this platform's entry of an index (default: this machine's)", parsePlatformOption)
    .option('--all-platforms', 'convert every entry of an index')
    .option('--reuse', 'keep layers already in the target format whose TOC verifies against their toc.digest annotation')
    .option('--prioritized-files <file>', 'paths in access order, one per line, put first in every layer that has them, with a prefetch landmark');
  addTransferOptions(command)
    .action(async (src: string, dst: string, options: ConvertCommandOptions) => {
      if (options.estargz && options.zstdchunked) throw new InvalidArgumentError('--estargz and --zstdchunked exclude each other');
      if (options.platform && options.allPlatforms) throw new InvalidArgumentError('--platform and --all-platforms exclude each other');
      const prioritizedFiles = options.prioritizedFiles ? readPathList(await readFile(options.prioritizedFiles, 'utf8')) : undefined;
      const client = new RegistryClient({ hostsDir: options.hostsDir, ...(options.plainHttp ? { plainHttp: true } : {}) });
      const progress = terminalProgress(process.stderr);
      try {
        const { source, destination } = await openEndpoints(src, dst, client, options);
        const result = await convertImage(source, destination, {
          ...layerFormat(options),
          prioritizedFiles,
          onMissingPrioritized: () => undefined,
          ...(options.platform ? { platform: options.platform } : {}),
          allPlatforms: options.allPlatforms ?? false,
          reuse: options.reuse ?? false,
          parallelLayers: options.parallelLayers,
          progress,
        });
        progress.stop();
        process.stdout.write(summary(dst, result));
      } finally {
        progress.stop();
        await client.close();
      }
    });
}

/** The output format options convert and optimize share (--estargz ... --compression-level). */
export function addFormatOptions(command: Command): Command {
  return command
    .option('--estargz', 'write eStargz (the default)')
    .option('--zstdchunked', 'write zstd:chunked')
    .option('--oci', 'OCI media types (always on: the toc.digest annotations need them; accepted for ctr-remote compatibility)')
    .option('--chunk-size <bytes>', 'uncompressed bytes per chunk (default 4MiB)', parseSize)
    .option('--min-chunk-size <bytes>', 'let small files share a compressed member up to this size (default 0: off)', parseSize)
    .option('--compression-level <n>', 'gzip 0-9 (default 6) or zstd 1-22 (default 3)', parseLevel);
}

/** The registry and pipeline options convert and optimize share (--plain-http ... --upload-chunk-size). */
export function addTransferOptions(command: Command): Command {
  return command
    .option('--plain-http', 'talk plain HTTP to every registry (default only for localhost / 127.0.0.0/8)')
    .option('--hosts-dir <dir>', "containerd's certs.d directory (mirrors, CAs)", DEFAULT_HOSTS_DIR)
    .option('--parallel-layers <n>', 'layers converted at the same time', parseCount, 2)
    .option('--upload-chunk-size <bytes>', 'upload blobs in PATCH requests of this size instead of one PUT', parseSize);
}

/** SRC and DST as the image source and destination they name. */
export async function openEndpoints(src: string, dst: string, client: RegistryClient, options: { uploadChunkSize?: number }): Promise<{ source: ImageSource; destination: ImageDestination }> {
  const source = await openImageSource(parseImageLocation(src), client);
  const destination = await openImageDestination(parseImageLocation(dst), client, { ...(options.uploadChunkSize ? { uploadChunkSize: options.uploadChunkSize } : {}) });
  return { source, destination };
}

/** The layer format the format options ask for. */
export function layerFormat(options: { zstdchunked?: boolean; chunkSize?: number; minChunkSize?: number; compressionLevel?: number }): LayerFormatOptions {
  return { format: options.zstdchunked ? 'zstd:chunked' : 'estargz', chunkSize: options.chunkSize, minChunkSize: options.minChunkSize, compressionLevel: options.compressionLevel };
}

function summary(dst: string, result: ConvertImageResult): string {
  const lines = [`${dst}@${result.descriptor.digest} (${result.descriptor.mediaType})`];
  for (const manifest of result.manifests) {
    const counts = new Map<string, number>();
    for (const layer of manifest.layers) counts.set(layer.action, (counts.get(layer.action) ?? 0) + 1);
    const platform = manifest.platform ? formatPlatform(manifest.platform) : 'manifest';
    lines.push(`  ${platform}: ${manifest.descriptor.digest}, ${manifest.layers.length} layers (${[...counts].map(([action, n]) => `${n} ${action}`).join(', ')})`);
  }
  return `${lines.join('\n')}\n`;
}

function parseCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new InvalidArgumentError(`${JSON.stringify(value)} is not a count from 1 to 64`);
  return n;
}

/** Same rule as convert-layer's (which does not export it; the lead may move both to options.ts). */
function parseLevel(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < -7 || n > 22) throw new InvalidArgumentError(`compression level ${JSON.stringify(value)} is not an integer level`);
  return n;
}
