import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';
import { readFile } from 'node:fs/promises';
import { terminalProgress } from '../../../tools/convert/index.js';
import { describeRun, optimizeImage, parseAccessList, parseArgvJson } from '../../../tools/optimize/index.js';
import { RegistryClient, type Platform } from '../../remote/index.js';
import { parsePlatformOption } from '../options.js';
import { addFormatOptions, addTransferOptions, layerFormat, openEndpoints } from './convert.js';

interface OptimizeCommandOptions {
  estargz?: boolean;
  zstdchunked?: boolean;
  oci?: boolean;
  chunkSize?: number;
  minChunkSize?: number;
  compressionLevel?: number;
  platform?: Platform;
  plainHttp?: boolean;
  hostsDir: string;
  parallelLayers: number;
  uploadChunkSize?: number;
  period: number;
  entrypoint?: string[];
  args?: string[];
  env: string[];
  cwd?: string;
  user?: string;
  waitOnLine?: string;
  recordOut?: string;
  prefetchList?: string;
  profileOut?: string;
  rangeProfile: boolean;
}

/** `optimize`: profile an image's workload in a runc container on recording FUSE layers, then convert with what it read first. */
export function registerOptimize(program: Command): void {
  const command = program
    .command('optimize')
    .description('run the image in a container (runc, on lazypull FUSE layers in recording mode), then convert it with the files the workload accessed first in each layer')
    .argument('<src>', 'source image: registry reference or oci:DIR[:TAG]')
    .argument('<dst>', 'destination: registry reference (a tag) or oci:DIR[:TAG] (default tag latest)');
  addTransferOptions(addFormatOptions(command))
    .option('--platform <os/arch[/variant]>', "the index entry to run and convert (default: this machine's)", parsePlatformOption)
    .addOption(new Option('--period <duration>', 'how long the workload runs at most (10s, 1m, 500ms; a number is seconds)').argParser(parseDuration).default(10_000, '10s'))
    .option('--entrypoint <json>', 'entrypoint as a JSON array (replaces the image\'s, and drops its Cmd unless --args is given)', (v: string) => argv(v, '--entrypoint'))
    .option('--args <json>', "arguments as a JSON array (replace the image's Cmd)", (v: string) => argv(v, '--args'))
    .option('--env <K=V>', 'environment variable (repeatable; replaces the image\'s)', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--cwd <dir>', "working directory (default: the image's WorkingDir, or /)")
    .option('--user <user[:group]>', "user to run as, names or ids (default: the image's User, or root)")
    .option('--wait-on-line <text>', 'stop as soon as a line of the workload\'s stdout contains this text')
    .option('--record-out <file>', 'write the accessed paths in order (usable as convert --prioritized-files)')
    .option('--prefetch-list <file>', 'more paths or globs (*, ?, **; # comments) to prioritize after the recorded ones')
    .option('--profile-out <file>', 'write the byte ranges read of each file, per layer, as JSON')
    .option('--no-range-profile', 'prefetch whole prioritized files (the landmark region) instead of only the chunks the workload read')
    .action(async (src: string, dst: string, options: OptimizeCommandOptions) => {
      if (options.estargz && options.zstdchunked) throw new InvalidArgumentError('--estargz and --zstdchunked exclude each other');
      const prefetchPatterns = options.prefetchList ? parseAccessList(await readFile(options.prefetchList, 'utf8')) : [];
      const client = new RegistryClient({ hostsDir: options.hostsDir, ...(options.plainHttp ? { plainHttp: true } : {}) });
      const progress = terminalProgress(process.stderr);
      const log = (message: string): void => progress.note(message);
      // Until the conversion starts, Ctrl-C / SIGTERM stop the container and unmount everything before the process ends.
      const interrupt = new AbortController();
      const onSignal = (signal: NodeJS.Signals): void => {
        log(`${signal}: stopping the workload and cleaning up`);
        interrupt.abort(new Error(`interrupted by ${signal}: nothing was converted`));
      };
      const restoreSignals = (): void => void process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
      process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
      try {
        const { source, destination } = await openEndpoints(src, dst, client, options);
        const result = await optimizeImage(source, destination, {
          ...layerFormat(options),
          ...(options.platform ? { platform: options.platform } : {}),
          periodMs: options.period,
          workload: {
            ...(options.entrypoint ? { entrypoint: options.entrypoint } : {}),
            ...(options.args ? { args: options.args } : {}),
            ...(options.env.length > 0 ? { env: options.env } : {}),
            ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
            ...(options.user !== undefined ? { user: options.user } : {}),
          },
          ...(options.waitOnLine !== undefined ? { waitOnLine: options.waitOnLine } : {}),
          prefetchPatterns,
          ...(options.recordOut ? { recordOut: options.recordOut } : {}),
          ...(options.profileOut ? { profileOut: options.profileOut } : {}),
          rangeProfile: options.rangeProfile,
          parallelLayers: options.parallelLayers,
          progress,
          log,
          onOutput: (stream, line) => progress.note(`workload ${stream}: ${line}`),
          signal: interrupt.signal,
          onConverting: restoreSignals,
        });
        progress.stop();
        for (const pattern of result.unmatchedPatterns) process.stderr.write(`lazypull: warning: --prefetch-list ${JSON.stringify(pattern)} matches nothing in the image\n`);
        const lines = [
          `${dst}@${result.convert.descriptor.digest} (${result.convert.descriptor.mediaType})`,
          `  ${describeRun(result.run)}`,
          `  ${result.prioritized.length} paths prioritized: ${result.layerLists.map((list, i) => `layer ${i}: ${list.length}`).join(', ')}`,
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
      } finally {
        restoreSignals();
        progress.stop();
        await client.close();
      }
    });
}

function argv(value: string, option: string): string[] {
  try {
    return parseArgvJson(value, option);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** `10s`, `500ms`, `2m`, `1h`; a bare number is seconds. */
export function parseDuration(value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value);
  if (!m) throw new InvalidArgumentError(`${JSON.stringify(value)} is not a duration (examples: 10s, 500ms, 2m)`);
  const ms = Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  if (!(ms > 0) || !Number.isSafeInteger(Math.round(ms))) throw new InvalidArgumentError(`${JSON.stringify(value)} is not a positive duration`);
  return Math.round(ms);
}
