import type { Command } from 'commander';
import { humanSize, parsePlatformOption } from '../options.js';
import { detectFooter, MAX_FOOTER_SIZE, type FooterInfo } from '../../estargz/footer.js';
import { DEFAULT_HOSTS_DIR, formatPlatform, RegistryClient, type Descriptor, type Platform, type ResolvedImage } from '../../remote/index.js';

const TOC_DIGEST_ANNOTATION = 'containerd.io/snapshot/stargz/toc.digest';
const ZSTD_CHUNKED_CHECKSUM_ANNOTATIONS = ['io.containers.zstd-chunked.manifest-checksum', 'io.github.containers.zstd-chunked.manifest-checksum'];

export type LayerFormat = FooterInfo['kind'] | 'plain' | 'empty' | 'unknown';

export interface LayerReport {
  descriptor: Descriptor;
  format: LayerFormat;
  /** Whether lazypull can mount it lazily, and why not when it cannot: the per-layer answer users ask for. */
  lazy: boolean;
  reason: string;
  /** Whether the layer carries a TOC digest to verify the TOC against. */
  tocDigest?: string;
  /** Where the footer says the TOC starts. */
  tocOffset?: number;
}

export interface InspectReport {
  image: ResolvedImage;
  platform?: string;
  layers: LayerReport[];
}

/**
 * The footer decides the format; detection lives in the estargz module. Isolated here so the
 * inspect command has exactly one dependency on it.
 */
function footerOf(tail: Buffer, blobSize: number): FooterInfo | undefined {
  try {
    return detectFooter(tail, blobSize);
  } catch {
    return undefined;
  }
}

function tocDigestOf(descriptor: Descriptor): string | undefined {
  const annotations = descriptor.annotations ?? {};
  return annotations[TOC_DIGEST_ANNOTATION] ?? ZSTD_CHUNKED_CHECKSUM_ANNOTATIONS.map((name) => annotations[name]).find((v) => v !== undefined);
}

function classify(descriptor: Descriptor, footer: FooterInfo | undefined): Omit<LayerReport, 'descriptor'> {
  const tocDigest = tocDigestOf(descriptor);
  const withDigest = tocDigest ? { tocDigest } : {};
  if (!footer) return { format: 'plain', lazy: false, reason: 'no eStargz/zstd:chunked footer: pulled in full', ...withDigest };
  const located = { ...withDigest, tocOffset: footer.toc.offset };
  switch (footer.kind) {
    case 'estargz':
    case 'zstd:chunked':
      return tocDigest
        ? { format: footer.kind, lazy: true, reason: 'TOC digest annotation present: TOC and chunks verified', ...located }
        : { format: footer.kind, lazy: true, reason: 'no TOC digest annotation: the TOC cannot be checked against the manifest', ...located };
    case 'zstd:chunked-containers':
      return { format: footer.kind, lazy: true, reason: 'containers/storage zstd:chunked (manifest checksum annotation)', ...located };
    case 'stargz-legacy':
      return { format: footer.kind, lazy: true, reason: 'legacy stargz: no chunk digests, read without verification', ...located };
    case 'estargz-external-toc':
      return { format: footer.kind, lazy: false, reason: 'TOC stored outside the layer: not supported', ...withDigest };
  }
}

/** Resolves `reference` and finds, per layer, what lazypull can do with it by reading the footer remotely. */
export async function inspectImage(client: RegistryClient, reference: string, platform?: Platform): Promise<InspectReport> {
  const image = await client.resolve(reference, platform ? { platform } : {});
  // All layers at once: one round trip of latency for the whole image, not one per layer.
  const layers = await Promise.all(
    image.manifest.layers.map(async (descriptor): Promise<LayerReport> => {
      if (descriptor.size === 0) return { descriptor, format: 'empty', lazy: true, reason: 'empty layer' };
      try {
        const source = await client.openBlob(image.reference, descriptor);
        const tailLength = Math.min(MAX_FOOTER_SIZE, source.size);
        const tail = await source.readAt(source.size - tailLength, tailLength);
        return { descriptor, ...classify(descriptor, footerOf(tail, source.size)) };
      } catch (err) {
        return { descriptor, format: 'unknown', lazy: false, reason: `footer not readable: ${(err as Error).message}` };
      }
    }),
  );
  return { image, ...(platform ? { platform: formatPlatform(platform) } : {}), layers };
}

export function formatInspectReport(report: InspectReport): string {
  const { image } = report;
  const lines = [`reference: ${image.reference}`, `served by: ${image.host}`];
  if (image.index) lines.push(`index:     ${image.index.descriptor.digest} (${image.index.descriptor.mediaType}, ${image.index.index.manifests.length} manifests)`);
  const platform = image.manifestDescriptor.platform ? formatPlatform(image.manifestDescriptor.platform) : report.platform;
  lines.push(`manifest:  ${image.manifestDescriptor.digest} (${image.manifestDescriptor.mediaType}${platform ? `, ${platform}` : ''})`);
  lines.push(`config:    ${image.manifest.config.digest} (${humanSize(image.manifest.config.size)})`);
  const lazyCount = report.layers.filter((l) => l.lazy).length;
  lines.push(`layers:    ${report.layers.length} (${lazyCount} lazy)`);
  report.layers.forEach((layer, i) => {
    const d = layer.descriptor;
    lines.push(`  [${i}] ${d.digest}  ${humanSize(d.size)}  ${d.mediaType}`);
    lines.push(`      format: ${layer.format}  lazy: ${layer.lazy ? 'yes' : 'no'}  (${layer.reason})`);
    lines.push(`      toc digest: ${layer.tocDigest ?? 'absent'}${layer.tocOffset !== undefined ? `  toc offset: ${layer.tocOffset}` : ''}`);
    for (const [name, value] of Object.entries(d.annotations ?? {})) lines.push(`      ${name}=${value}`);
  });
  return `${lines.join('\n')}\n`;
}

interface InspectOptions {
  plainHttp?: boolean;
  platform?: Platform;
  hostsDir?: string;
  json?: boolean;
}

/** `lazypull inspect REF`: the resolved manifest and, per layer, whether lazypull can pull it lazily. */
export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('print the resolved manifest of an image and, per layer, whether it can be pulled lazily')
    .argument('<reference>', 'image reference, e.g. ghcr.io/org/app:tag or 127.0.0.1:5000/app@sha256:...')
    .option('--plain-http', 'talk plain HTTP to the registry (default only for localhost and 127.0.0.0/8)')
    .option('--platform <os/arch[/variant]>', "platform to pick from an index (default: this host's)", parsePlatformOption)
    .option('--hosts-dir <dir>', "containerd's hosts.toml directory", DEFAULT_HOSTS_DIR)
    .option('--json', 'print the report as JSON')
    .action(async (reference: string, options: InspectOptions) => {
      const client = new RegistryClient({ ...(options.plainHttp ? { plainHttp: true } : {}), ...(options.hostsDir ? { hostsDir: options.hostsDir } : {}) });
      try {
        const report = await inspectImage(client, reference, options.platform);
        process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatInspectReport(report));
      } finally {
        await client.close();
      }
    });
}
