/**
 * `lazypull optimize`: run an image's workload on lazypull's own FUSE layers in recording mode, then
 * convert the image with what the workload touched put first in each layer, in access order.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openLayer } from '../../src/estargz/open.js';
import { FileSource } from '../../src/io/random-access.js';
import type { LayerIndex } from '../../src/layer/layer-index.js';
import type { ByteRange } from '../../src/layer/prefetch-ranges.js';
import { hostPlatform, ManifestError, selectPlatform, type Descriptor, type ImageManifest, type Platform } from '../../src/remote/index.js';
import type { Digest } from '../../src/util/digest.js';
import { convertBlobToFile, convertImage, isTarLayer, readImageConfig, type ConvertImageResult, type ConvertProgress, type FileReads, type ImageDestination, type ImageSource, type LayerFormatOptions } from '../convert/index.js';
import { AccessLog, attributeToLayers, type AccessedPath, type ByteRanges } from './access-log.js';
import { formatAccessList } from './access-list.js';
import { runWorkload, type WorkloadRun } from './container.js';
import { parsePattern } from './glob.js';
import { ContainerRootfs, type MountableLayer } from './rootfs.js';
import { imageRunConfig, runtimeSpec, workloadProcess, type UserDatabase, type WorkloadOverrides } from './runtime-spec.js';

export interface OptimizeOptions extends LayerFormatOptions {
  /** The index entry to run and convert (default: this machine's). */
  platform?: Platform;
  /** How long the workload runs at most. */
  periodMs: number;
  workload: WorkloadOverrides;
  waitOnLine?: string;
  /** `--prefetch-list` lines: paths or globs added after the recorded accesses. */
  prefetchPatterns?: string[];
  /** Where the recorded list is written (before the conversion, so it survives a refused push). */
  recordOut?: string;
  /** Where the per-layer read ranges are written as JSON (see ReadProfile). */
  profileOut?: string;
  /**
   * Range-granular prefetch (default true): large files read only in parts get small chunks, and each
   * layer a `dev.lazypull.prefetch-ranges` annotation naming the chunks the workload read. False keeps
   * file-granular prefetch (the landmark region).
   */
  rangeProfile?: boolean;
  parallelLayers?: number;
  workDir?: string;
  progress?: ConvertProgress;
  /** Progress and warnings, one line each. */
  log?: (message: string) => void;
  onOutput?: (stream: 'stdout' | 'stderr', line: string) => void;
  runc?: string;
  /** Aborts until the conversion starts: the workload is stopped, everything is unmounted and removed, nothing is converted. */
  signal?: AbortSignal;
  /** Called when nothing is mounted any more and the conversion starts (the signal no longer applies). */
  onConverting?: () => void;
}

export interface OptimizeResult {
  run: WorkloadRun;
  /** Every path in the order the workload first touched it, then the --prefetch-list additions. */
  prioritized: string[];
  /** Per source layer (bottom first): its prioritized paths. */
  layerLists: string[][];
  /** --prefetch-list lines that matched nothing. */
  unmatchedPatterns: string[];
  convert: ConvertImageResult;
}

/** `--profile-out`: what was read of each file, per layer, by the DST layer digest the ranges belong to. */
export interface ReadProfile {
  version: 1;
  layers: { sourceDigest: string; digest: string; files: { path: string; ranges: ByteRanges }[] }[];
}

export async function optimizeImage(source: ImageSource, destination: ImageDestination, options: OptimizeOptions): Promise<OptimizeResult> {
  const log = options.log ?? (() => undefined);
  const manifest = await imageManifest(source, options.platform ?? hostPlatform());
  const config = await readImageConfig(source, manifest);
  const runConfig = imageRunConfig(config.json);
  // Checked before anything is mounted: a bad --entrypoint/--env fails fast.
  workloadProcess(runConfig, { ...options.workload, user: '' });
  const workDir = await mkdtemp(join(options.workDir ?? tmpdir(), 'lazypull-optimize-'));
  try {
    const indexes = await mountableLayers(source, manifest.layers, workDir, log);
    try {
      options.signal?.throwIfAborted();
    } catch (err) {
      await Promise.allSettled(indexes.map((l) => l.close()));
      throw err;
    }
    const accessLog = new AccessLog(manifest.layers.length);
    const run = await profile(indexes, accessLog, runConfig, workDir, options, log);
    const recorded = accessLog.accessed();
    const { added, unmatched } = patternMatches(options.prefetchPatterns ?? [], indexes.map((l) => l.index));
    const all = [...recorded, ...added];
    const layerLists = attributeToLayers(all, manifest.layers.length);
    const prioritized = [...new Set(all.map((a) => a.path))].filter((p) => p !== '/');
    if (options.recordOut) {
      const { text, omitted } = formatAccessList(prioritized, 'lazypull optimize: paths in order of first access (use with --prioritized-files)');
      for (const path of omitted) log(`cannot write ${JSON.stringify(path)} to the list (its name has "#", a line break or surrounding spaces): left out`);
      await writeFile(options.recordOut, text);
    }
    const byLayer = new Map<Digest, string[]>();
    manifest.layers.forEach((layer, i) => byLayer.set(layer.digest, [...new Set([...(byLayer.get(layer.digest) ?? []), ...layerLists[i]!])]));
    options.signal?.throwIfAborted();
    options.onConverting?.();
    log(`converting: ${layerLists.map((l, i) => `layer ${i}: ${l.length} prioritized`).join(', ')}`);
    const converted = await convertImage(source, destination, {
      ...formatOptions(options),
      platform: options.platform ?? hostPlatform(),
      prioritizedFilesByLayer: byLayer,
      ...(options.rangeProfile !== false ? { readsByLayer: readsByLayer(manifest.layers, accessLog) } : {}),
      ...(options.parallelLayers ? { parallelLayers: options.parallelLayers } : {}),
      ...(options.workDir ? { workDir: options.workDir } : {}),
      ...(options.progress ? { progress: options.progress } : {}),
    });
    if (options.profileOut) await writeFile(options.profileOut, `${JSON.stringify(readProfile(manifest.layers, converted, accessLog), null, 1)}\n`);
    return { run, prioritized, layerLists, unmatchedPatterns: unmatched, convert: converted };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

async function imageManifest(source: ImageSource, platform: Platform): Promise<ImageManifest> {
  const root = await source.root();
  if (root.document.kind === 'manifest') return root.document.manifest;
  const chosen = await source.manifest(selectPlatform(root.document.index, platform));
  if (chosen.document.kind !== 'manifest') throw new ManifestError(`${source.description}: the index entry for the platform is not an image manifest`);
  return chosen.document.manifest;
}

/**
 * Each source layer as a locally mountable eStargz blob. A plain tar(.gz/.zst) layer has no index to
 * mount, and lazypull's writer is fast, so every layer is converted once into the work dir with the
 * same converter the final pass uses (digest checked as it streams) and opened from the file: one code
 * path for every source format, and local random access without range requests to the registry.
 */
async function mountableLayers(source: ImageSource, layers: Descriptor[], workDir: string, log: (m: string) => void): Promise<(MountableLayer & { close(): Promise<void> })[]> {
  await mkdir(join(workDir, 'blobs'));
  const out: (MountableLayer & { close(): Promise<void> })[] = [];
  for (const [i, layer] of layers.entries()) {
    if (!isTarLayer(layer.mediaType)) throw new Error(`layer ${i} (${layer.digest}) has media type ${layer.mediaType}: optimize runs images made of tar layers only`);
    const path = join(workDir, 'blobs', `${i}.gz`);
    const written = await convertBlobToFile(source, layer, path, { format: 'estargz' });
    const file = await FileSource.open(path);
    const index: LayerIndex = await openLayer(file, { expectedTocDigest: written.tocDigest }).catch(async (err: unknown) => {
      await file.close();
      throw err;
    });
    out.push({ index, source: file, digest: layer.digest, close: () => file.close() });
    log(`layer ${i} (${layer.digest.slice(0, 19)}) ready: ${index.entries.size} entries`);
  }
  return out;
}

async function profile(
  layers: (MountableLayer & { close(): Promise<void> })[],
  accessLog: AccessLog,
  runConfig: ReturnType<typeof imageRunConfig>,
  workDir: string,
  options: OptimizeOptions,
  log: (m: string) => void,
): Promise<WorkloadRun> {
  try {
    const rootfs = await ContainerRootfs.mount(workDir, layers, accessLog);
    try {
      const users = (options.workload.user ?? runConfig.User ?? '').split(':').some((part) => part !== '' && !/^\d+$/.test(part)) ? await userDatabase(rootfs.path) : {};
      const process = workloadProcess(runConfig, options.workload, users);
      const bundle = join(workDir, 'bundle');
      await mkdir(bundle);
      await writeFile(join(bundle, 'config.json'), JSON.stringify(runtimeSpec(process, { rootfs: rootfs.path })));
      log(`running ${JSON.stringify(process.args)} for up to ${options.periodMs / 1000} s${options.waitOnLine !== undefined ? ` or until a line contains ${JSON.stringify(options.waitOnLine)}` : ''}`);
      const run = await runWorkload({
        bundle,
        stateDir: join(workDir, 'runc'),
        id: `lazypull-optimize-${process.user.uid}-${randomBytes(4).toString('hex')}`,
        periodMs: options.periodMs,
        ...(options.waitOnLine !== undefined ? { waitOnLine: options.waitOnLine } : {}),
        ...(options.onOutput ? { onOutput: options.onOutput } : {}),
        ...(options.runc ? { runc: options.runc } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      accessLog.freeze();
      const failure = run.stderrTail.find((line) => /runc run failed|unable to start container/.test(line));
      if (failure) throw new Error(`the container did not start: ${failure}`);
      log(describeRun(run));
      return run;
    } finally {
      accessLog.freeze();
      await rootfs.close();
    }
  } finally {
    await Promise.allSettled(layers.map((l) => l.close()));
  }
}

/** One line on how the workload ended. */
export function describeRun(run: WorkloadRun): string {
  const seconds = (run.elapsedMs / 1000).toFixed(1);
  if (run.stoppedBy === 'aborted') return `workload stopped: interrupted after ${seconds} s`;
  if (run.stoppedBy === 'line') return `the awaited line appeared after ${seconds} s: workload stopped`;
  const line = run.lineSeen === false ? '; the awaited line was not seen' : '';
  if (run.stoppedBy === 'period') return `workload stopped at the end of the period (${seconds} s)${line}`;
  return `workload exited by itself with status ${run.status ?? 'unknown'} after ${seconds} s${run.status === 0 ? '' : ' (what it read is recorded anyway)'}${line}`;
}

async function userDatabase(rootfs: string): Promise<UserDatabase> {
  const read = (path: string): Promise<string | undefined> => readFile(join(rootfs, path), 'utf8').catch(() => undefined);
  const [passwd, group] = await Promise.all([read('etc/passwd'), read('etc/group')]);
  return { ...(passwd !== undefined ? { passwd } : {}), ...(group !== undefined ? { group } : {}) };
}

/**
 * --prefetch-list lines: each layer path a pattern matches (in the layer's archive order), with every
 * layer that has it, so it goes to the topmost. Whiteouts and landmarks are not paths of the image.
 */
export function patternMatches(patterns: string[], indexes: LayerIndex[]): { added: AccessedPath[]; unmatched: string[] } {
  const added = new Map<string, Set<number>>();
  const unmatched: string[] = [];
  for (const text of patterns) {
    const pattern = parsePattern(text);
    let matched = false;
    indexes.forEach((index, layer) => {
      for (const [name, entry] of index.entries) {
        if (name === '' || entry.name.split('/').pop()!.startsWith('.wh.') || !pattern.matches(name)) continue;
        const path = `/${name}`;
        let layers = added.get(path);
        if (!layers) added.set(path, (layers = new Set()));
        layers.add(layer);
        matched = true;
      }
    });
    if (!matched) unmatched.push(text);
  }
  return { added: [...added].map(([path, layers]) => ({ path, layers })), unmatched };
}

function formatOptions(options: OptimizeOptions): LayerFormatOptions {
  const { format, chunkSize, minChunkSize, compressionLevel, workers } = options;
  return { format, chunkSize, minChunkSize, compressionLevel, workers, onMissingPrioritized: () => undefined };
}

/** What the workload read through each source layer's mount, by layer digest (a digest listed twice merges). */
function readsByLayer(layers: Descriptor[], accessLog: AccessLog): Map<Digest, FileReads> {
  const byDigest = new Map<Digest, Map<string, ByteRange[]>>();
  layers.forEach((layer, i) => {
    let files = byDigest.get(layer.digest);
    if (!files) byDigest.set(layer.digest, (files = new Map()));
    for (const [path, ranges] of accessLog.readRanges(i)) files.set(path, [...(files.get(path) ?? []), ...ranges.map(([start, end]) => ({ start, end }))]);
  });
  return byDigest;
}

function readProfile(layers: Descriptor[], converted: ConvertImageResult, accessLog: AccessLog): ReadProfile {
  const dstLayers = converted.manifests[0]?.layers ?? [];
  return {
    version: 1,
    layers: layers.map((layer, i) => ({
      sourceDigest: layer.digest,
      digest: dstLayers[i]?.descriptor.digest ?? '',
      files: [...accessLog.readRanges(i)].map(([path, ranges]) => ({ path, ranges })),
    })),
  };
}
