/**
 * `lazypull rpull`: through the running daemon when one answers (lazypull.v1.Pull), else in this
 * process (rpull-in-process.ts). Only what the daemon path needs is loaded at start: no gRPC library,
 * no registry client.
 */
import type { Command } from 'commander';
import type { MultiBar, SingleBar } from 'cli-progress';
import { DEFAULT_CONTAINERD_ADDRESS, DEFAULT_DAEMON_ADDRESS, DEFAULT_HOSTS_DIR } from '../../config/paths.js';
import { DaemonUnavailableError, pullThroughDaemon } from '../../grpc/pull-client.js';
import type { PullEvent, WireDescriptor, WireLayerOutcome, WirePullResult, WireResolved } from '../../grpc/pull-protocol.js';
import { formatPlatform, type Platform } from '../../remote/platform.js';
import { humanSize, parsePlatformOption } from '../options.js';

export interface RpullOptions {
  address: string;
  namespace: string;
  snapshotter: string;
  plainHttp?: boolean;
  platform?: Platform;
  hostsDir: string;
  /** The daemon's socket, or false (`--no-daemon`). */
  daemon: string | false;
}

/** One line per finished layer: what scripts and logs read. */
export function formatLayerLine(layer: WireDescriptor, outcome: WireLayerOutcome): string {
  switch (outcome.kind) {
    case 'lazy':
      return `layer ${layer.digest} lazy`;
    case 'present':
      return `layer ${layer.digest} already unpacked`;
    case 'fetched':
      return `layer ${layer.digest} fetched ${outcome.bytes} bytes (${outcome.reason})`;
  }
}

export function formatSummary(result: WirePullResult, snapshotter: string, seconds: number): string {
  const count = (kind: WireLayerOutcome['kind']) => result.layerResults.filter((l) => l.outcome.kind === kind).length;
  const share = result.imageBytes > 0 ? ` (${((100 * result.downloadedBytes) / result.imageBytes).toFixed(1)}%)` : '';
  return [
    `image ${result.name} ${result.image}: ${result.target.digest}, snapshotter ${snapshotter}`,
    `layers: ${result.layerResults.length} (${count('lazy')} lazy, ${count('fetched')} fetched, ${count('present')} already unpacked)`,
    `downloaded ${humanSize(result.downloadedBytes)} of ${humanSize(result.imageBytes)}${share} in ${seconds.toFixed(2)} s`,
    '',
  ].join('\n');
}

/** Progress of a pull: bars on a terminal, plain lines elsewhere. */
export interface PullDisplay {
  resolved(image: WireResolved): void;
  layerStarted?(index: number, layer: WireDescriptor): void;
  layerBytes?(index: number, bytes: number): void;
  layerApplying?(index: number): void;
  layerDone(index: number, outcome: WireLayerOutcome): void;
  stop(): void;
}

class LineDisplay implements PullDisplay {
  private layers: WireDescriptor[] = [];
  constructor(private readonly out: NodeJS.WriteStream) {}
  resolved(image: WireResolved): void {
    this.layers = image.layers;
    this.out.write(`resolved ${image.pinned} (${image.layers.length} layers)\n`);
  }
  layerDone(index: number, outcome: WireLayerOutcome): void {
    const layer = this.layers[index];
    if (layer) this.out.write(`${formatLayerLine(layer, outcome)}\n`);
  }
  stop(): void {}
}

class BarDisplay implements PullDisplay {
  private readonly multibar: MultiBar;
  private readonly bars = new Map<number, SingleBar>();
  private layers: WireDescriptor[] = [];

  private constructor(multibar: MultiBar) {
    this.multibar = multibar;
  }

  /** cli-progress is loaded only for a terminal: scripts and CI pay nothing for it at start. */
  static async create(out: NodeJS.WriteStream): Promise<BarDisplay> {
    const { MultiBar, Presets } = await import('cli-progress');
    return new BarDisplay(new MultiBar({ stream: out, hideCursor: true, clearOnComplete: false, autopadding: true, format: '{layer} [{bar}] {size} | {state}' }, Presets.shades_classic));
  }
  resolved(image: WireResolved): void {
    this.layers = image.layers;
    this.multibar.log(`resolved ${image.pinned}\n`);
  }
  layerStarted(index: number, layer: WireDescriptor): void {
    const short = layer.digest.replace(/^sha256:/, '').slice(0, 12);
    this.bars.set(index, this.multibar.create(Math.max(1, layer.size), 0, { layer: short, size: humanSize(layer.size), state: 'preparing' }));
  }
  layerBytes(index: number, bytes: number): void {
    this.bars.get(index)?.update(bytes, { state: `downloading ${humanSize(bytes)}` });
  }
  layerApplying(index: number): void {
    this.bars.get(index)?.update({ state: 'applying' });
  }
  layerDone(index: number, outcome: WireLayerOutcome): void {
    const bar = this.bars.get(index);
    const layer = this.layers[index];
    if (!bar || !layer) return;
    const state = outcome.kind === 'fetched' ? `fetched ${humanSize(outcome.bytes)} (${outcome.reason})` : outcome.kind === 'lazy' ? 'lazy' : 'already unpacked';
    // A lazy layer's bar stays empty: nothing was downloaded.
    bar.update(outcome.kind === 'lazy' ? 0 : bar.getTotal(), { state });
  }
  private stopped = false;
  /** Idempotent: a second stop() would redraw the bars over the summary. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.multibar.stop();
  }
}

/** The daemon's progress messages, drawn as the in-process pull's events are. */
function replay(display: PullDisplay, layers: () => WireDescriptor[], event: PullEvent): void {
  if ('resolved' in event) display.resolved(event.resolved);
  else if ('layer_started' in event) {
    const layer = layers()[event.layer_started.index];
    if (layer) display.layerStarted?.(event.layer_started.index, layer);
  } else if ('layer_bytes' in event) display.layerBytes?.(event.layer_bytes.index, event.layer_bytes.bytes);
  else if ('layer_applying' in event) display.layerApplying?.(event.layer_applying.index);
  else if ('layer_done' in event) display.layerDone(event.layer_done.index, event.layer_done.outcome);
}

/**
 * Asks the daemon; undefined when none answers at the default socket (the caller then pulls by itself).
 * A socket named with --daemon must answer.
 */
async function pullViaDaemon(reference: string, options: RpullOptions, explicitDaemon: boolean, display: PullDisplay, signal: AbortSignal): Promise<WirePullResult | undefined> {
  if (options.daemon === false) return undefined;
  let layers: WireDescriptor[] = [];
  const request = {
    reference,
    containerd_address: options.address,
    namespace: options.namespace,
    snapshotter: options.snapshotter,
    ...(options.platform ? { platform: formatPlatform(options.platform) } : {}),
    ...(options.plainHttp ? { plain_http: true } : {}),
  };
  try {
    return await pullThroughDaemon(options.daemon, request, (event) => {
      if ('resolved' in event) layers = event.resolved.layers;
      replay(display, () => layers, event);
    }, signal);
  } catch (err) {
    if (err instanceof DaemonUnavailableError && !explicitDaemon) return undefined;
    throw err;
  }
}

async function makeDisplay(): Promise<PullDisplay> {
  return process.stdout.isTTY ? await BarDisplay.create(process.stdout) : new LineDisplay(process.stdout);
}

/** `lazypull rpull REF`: pull an image into containerd, lazily through the lazypull snapshotter. */
export function registerRpull(program: Command): void {
  const command = program
    .command('rpull')
    .description('pull an image into containerd with lazy layers (like ctr-remote images rpull): only layers the snapshotter cannot mount remotely are downloaded')
    .argument('<reference>', 'image reference, e.g. 127.0.0.1:5000/app:v1 or ghcr.io/org/app@sha256:...')
    .option('--address <socket>', "containerd's gRPC socket", DEFAULT_CONTAINERD_ADDRESS)
    .option('--namespace <ns>', 'containerd namespace', 'default')
    .option('--snapshotter <name>', "snapshotter name in containerd's config (proxy_plugins)", 'lazypull')
    .option('--plain-http', 'talk plain HTTP to the registry (default only for localhost and 127.0.0.0/8)')
    .option('--platform <os/arch[/variant]>', "platform to pick from an index (default: this host's)", parsePlatformOption)
    .option('--hosts-dir <dir>', "containerd's hosts.toml directory (mirrors, CAs) for a pull in this process; the daemon uses its own [registry] hosts_dir", DEFAULT_HOSTS_DIR)
    .option('--daemon <socket>', "let the lazypull daemon on this socket do the pull (it then opens every layer's TOC as soon as it has the manifest); without one there, pull in this process", DEFAULT_DAEMON_ADDRESS)
    .option('--no-daemon', 'pull in this process even when a daemon is running');
  command.action(async (reference: string, options: RpullOptions) => {
    const started = performance.now();
    const display = await makeDisplay();
    // Ctrl-C stops between steps and still removes the half-made snapshot and the lease.
    const abort = new AbortController();
    const onSignal = () => abort.abort(new Error('interrupted'));
    process.once('SIGINT', onSignal);
    try {
      const explicitDaemon = command.getOptionValueSource('daemon') === 'cli';
      const viaDaemon = await pullViaDaemon(reference, options, explicitDaemon, display, abort.signal);
      const result = viaDaemon ?? (await (await import('./rpull-in-process.js')).pullInProcess(reference, options, display, abort.signal));
      display.stop();
      if (viaDaemon) process.stdout.write(`pulled by the lazypull daemon at ${options.daemon}\n`);
      process.stdout.write(formatSummary(result, options.snapshotter, (performance.now() - started) / 1000));
    } finally {
      display.stop();
      process.off('SIGINT', onSignal);
    }
  });
}
