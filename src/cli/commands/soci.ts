import { InvalidArgumentError, type Command } from 'commander';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { openImageDestination, openImageSource, parseImageLocation, type ImageLocation } from '../../../tools/convert/index.js';
import { createSociV1, createSociV2, fetchBlobByDigest, listSociIndexes, openReferrersStore, referrersLookup, type CreateSociResult, type ListedSociIndex } from '../../../tools/soci/index.js';
import { DEFAULT_HOSTS_DIR, formatPlatform, RegistryClient, type Platform } from '../../remote/index.js';
import { DEFAULT_MIN_LAYER_SIZE } from '../../soci/build.js';
import { DEFAULT_SPAN_SIZE } from '../../soci/checkpoints.js';
import { openSociLayer, type SociLayerIndex } from '../../soci/layer-index.js';
import { readTarZinfo } from '../../soci/ztoc.js';
import { isDigest } from '../../util/digest.js';
import { humanSize, parsePlatformOption, parseSize } from '../options.js';

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

interface RegistryOptions {
  plainHttp?: boolean;
  hostsDir: string;
}

interface CreateOptions extends RegistryOptions {
  spanSize: number;
  minLayerSize: number;
  platform?: Platform;
  allPlatforms?: boolean;
  v1?: boolean;
  v2?: boolean;
}

/**
 * `lazypull soci ...`: `create` (zTOCs and a SOCI index for an image, v2 by default), `index list` and
 * `ztoc info FILE | DIGEST --image REF`. The work is in tools/soci; this is the command shell.
 */
export function registerSoci(program: Command): void {
  const soci = program.command('soci').description('SOCI indexes and zTOCs: create them for an image, list and inspect them');
  addRegistryOptions(
    soci
      .command('create')
      .description('build zTOCs for the layers of an image and push a SOCI index (v2: a new image at DST that names it; v1: a referrer of the image in its repository)')
      .argument('<src>', 'the image: registry reference or oci:DIR[:TAG]')
      .argument('[dst]', 'v2: where the new image is tagged (default SRC); v1: omit, or name SRC\'s repository')
      .option('--span-size <bytes>', 'uncompressed bytes per span', parseSize, DEFAULT_SPAN_SIZE)
      .option('--min-layer-size <bytes>', 'layers smaller than this (compressed) get no zTOC', parseSize, DEFAULT_MIN_LAYER_SIZE)
      .option('--platform <os/arch[/variant]>', "index this platform's entry of an index (default: this machine's)", parsePlatformOption)
      .option('--all-platforms', 'index every image entry of an index')
      .option('--v1', 'v1 index: its subject is the image manifest, listed by the sha256-<hex> referrers tag')
      .option('--v2', 'v2 index, bound by a manifest annotation and an image index entry (the default)'),
  ).action(async (src: string, dst: string | undefined, options: CreateOptions) => {
    if (options.v1 && options.v2) throw new InvalidArgumentError('--v1 and --v2 exclude each other');
    if (options.platform && options.allPlatforms) throw new InvalidArgumentError('--platform and --all-platforms exclude each other');
    if (options.spanSize < 1) throw new InvalidArgumentError('--span-size must be at least 1 byte');
    const source = parseImageLocation(src);
    const target = dst === undefined ? source : parseImageLocation(dst);
    if (options.v1 && !sameRepository(source, target)) throw new InvalidArgumentError(`a v1 SOCI index is stored in the image's own repository (${repositoryOf(source)}): omit DST or name that repository`);
    await withClient(options, async (client) => {
      const createOptions = {
        spanSize: options.spanSize,
        minLayerSize: options.minLayerSize,
        ...(options.platform ? { platform: options.platform } : {}),
        allPlatforms: options.allPlatforms ?? false,
        note: (line: string) => void process.stderr.write(`${line}\n`),
      };
      const image = await openImageSource(source, client);
      const result = options.v1 ? await createSociV1(image, await openReferrersStore(source, client), createOptions) : await createSociV2(image, await openImageDestination(target, client), createOptions);
      process.stdout.write(createSummary(result));
    });
  });

  const index = soci.command('index').description('SOCI indexes');
  addRegistryOptions(
    index
      .command('list')
      .description('list the SOCI indexes of an image: v2 (manifest annotation, image index entries) and v1 (referrers API or sha256-<hex> tag)')
      .argument('<ref>', 'the image: registry reference or oci:DIR[:TAG]')
      .option('--json', 'print JSON'),
  ).action(async (ref: string, options: RegistryOptions & { json?: boolean }) => {
    await withClient(options, async (client) => {
      const location = parseImageLocation(ref);
      const listed = await listSociIndexes(await openImageSource(location, client), referrersLookup(location, client));
      process.stdout.write(options.json ? `${JSON.stringify(listed, null, 2)}\n` : listTable(listed));
    });
  });

  const ztoc = soci.command('ztoc').description('inspect zTOCs');
  addRegistryOptions(
    ztoc
      .command('info')
      .description('print a zTOC: version, sizes, spans and files (JSON, as `soci ztoc info` does)')
      .argument('<ztoc>', 'a zTOC file, or a zTOC digest with --image')
      .option('--image <ref>', "fetch the zTOC DIGEST from this image's repository (registry reference or oci:DIR[:TAG])"),
  ).action(async (ztocArg: string, options: RegistryOptions & { image?: string }) => {
    let bytes: Buffer;
    if (options.image !== undefined) {
      if (!isDigest(ztocArg)) throw new InvalidArgumentError(`with --image, ${JSON.stringify(ztocArg)} must be a zTOC digest (sha256:<64 hex>)`);
      const image = parseImageLocation(options.image);
      bytes = await withClient(options, (client) => fetchBlobByDigest(image, client, ztocArg));
    } else {
      if (isDigest(ztocArg) && !existsSync(ztocArg)) throw new InvalidArgumentError(`${ztocArg}: a zTOC digest needs --image REF, the image whose repository holds it`);
      bytes = await readFile(ztocArg);
    }
    const opened = openSociLayer(bytes, isDigest(ztocArg) ? { expectedZtocDigest: ztocArg } : {});
    process.stdout.write(`${JSON.stringify(ztocInfo(opened), null, 2)}\n`);
  });
}

function addRegistryOptions(command: Command): Command {
  return command
    .option('--plain-http', 'talk plain HTTP to every registry (default only for localhost / 127.0.0.0/8)')
    .option('--hosts-dir <dir>', "containerd's certs.d directory (mirrors, CAs)", DEFAULT_HOSTS_DIR);
}

async function withClient<T>(options: RegistryOptions, work: (client: RegistryClient) => Promise<T>): Promise<T> {
  const client = new RegistryClient({ hostsDir: options.hostsDir, ...(options.plainHttp ? { plainHttp: true } : {}) });
  try {
    return await work(client);
  } finally {
    await client.close();
  }
}

function repositoryOf(location: ImageLocation): string {
  return location.kind === 'registry' ? `${location.reference.registry}/${location.reference.repository}` : `oci:${resolve(location.dir)}`;
}

function sameRepository(a: ImageLocation, b: ImageLocation): boolean {
  return repositoryOf(a) === repositoryOf(b);
}

function createSummary(result: CreateSociResult): string {
  const lines: string[] = [];
  for (const m of result.manifests) {
    lines.push(`${m.platform ? formatPlatform(m.platform) : 'manifest'} ${m.image.digest}:`);
    for (const { layer, ztoc, skipped } of m.layers) {
      const what = ztoc ? `zTOC ${ztoc.digest} (${ztoc.spans} spans, ${ztoc.files} files, ${humanSize(ztoc.size)})` : `no zTOC: ${skipped}`;
      lines.push(`  layer ${layer.digest} ${humanSize(layer.size)}: ${what}`);
    }
    lines.push(`  SOCI index ${result.version}: ${m.index.digest}${m.bound ? ` (image manifest now ${m.bound.digest})` : ''}`);
  }
  for (const digest of result.listedByRegistry) lines.push(`listed by the registry's referrers API (no tag needed): ${digest}`);
  for (const t of result.tagged) lines.push(`tagged ${t.name}@${t.descriptor.digest} (${t.descriptor.mediaType})`);
  return `${lines.join('\n')}\n`;
}

function listTable(listed: ListedSociIndex[]): string {
  if (listed.length === 0) return 'no SOCI index found\n';
  const rows = [['INDEX', 'VERSION', 'IMAGE MANIFEST', 'PLATFORM', 'ZTOCS', 'FOUND BY']];
  for (const l of listed) rows.push([l.digest, l.version ?? '-', l.imageManifest, l.platform ? formatPlatform(l.platform) : '-', String(l.ztocs), `${l.foundBy.join(', ')}${l.error ? ` (error: ${l.error})` : ''}`]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}
