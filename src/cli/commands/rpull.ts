import type { Command } from 'commander';
import type { MultiBar, SingleBar } from 'cli-progress';
import { ContainerdConnection, DEFAULT_CONTAINERD_ADDRESS } from '../../containerd/connection.js';
import { remotePull, type LayerOutcome, type PullEvents, type PullResult, type ResolvedPull } from '../../containerd/pull.js';
import { DEFAULT_HOSTS_DIR, RegistryClient, type Descriptor, type Platform } from '../../remote/index.js';
import { humanSize, parsePlatformOption } from '../options.js';

interface RpullOptions {
  address: string;
  namespace: string;
  snapshotter: string;
  plainHttp?: boolean;
  platform?: Platform;
  hostsDir: string;
}

/** One line per finished layer: what scripts and logs read. */
export function formatLayerLine(layer: Descriptor, outcome: LayerOutcome): string {
  switch (outcome.kind) {
    case 'lazy':
      return `layer ${layer.digest} lazy`;
    case 'present':
      return `layer ${layer.digest} already unpacked`;
    case 'fetched':
      return `layer ${layer.digest} fetched ${outcome.bytes} bytes (${outcome.reason})`;
  }
}

export function formatSummary(result: PullResult, snapshotter: string, seconds: number): string {
  const count = (kind: LayerOutcome['kind']) => result.layerResults.filter((l) => l.outcome.kind === kind).length;
  const share = result.imageBytes > 0 ? ` (${((100 * result.downloadedBytes) / result.imageBytes).toFixed(1)}%)` : '';
  return [
    `image ${result.name} ${result.image}: ${result.target.digest}, snapshotter ${snapshotter}`,
    `layers: ${result.layerResults.length} (${count('lazy')} lazy, ${count('fetched')} fetched, ${count('present')} already unpacked)`,
    `downloaded ${humanSize(result.downloadedBytes)} of ${humanSize(result.imageBytes)}${share} in ${seconds.toFixed(2)} s`,
    '',
  ].join('\n');
}

/** Progress of a pull: bars on a terminal, plain lines elsewhere. */
interface PullDisplay extends PullEvents {
  stop(): void;
}

class LineDisplay implements PullDisplay {
  private layers: Descriptor[] = [];
  constructor(private readonly out: NodeJS.WriteStream) {}
  resolved(image: ResolvedPull): void {
    this.layers = image.layers;
    this.out.write(`resolved ${image.pinned} (${image.layers.length} layers)\n`);
  }
  layerDone(index: number, outcome: LayerOutcome): void {
    const layer = this.layers[index];
    if (layer) this.out.write(`${formatLayerLine(layer, outcome)}\n`);
  }
  stop(): void {}
}

class BarDisplay implements PullDisplay {
  private readonly multibar: MultiBar;
  private readonly bars = new Map<number, SingleBar>();
  private layers: Descriptor[] = [];

  private constructor(multibar: MultiBar) {
    this.multibar = multibar;
  }

  /** cli-progress is loaded only for a terminal: scripts and CI pay nothing for it at start. */
  static async create(out: NodeJS.WriteStream): Promise<BarDisplay> {
    const { MultiBar, Presets } = await import('cli-progress');
    return new BarDisplay(new MultiBar({ stream: out, hideCursor: true, clearOnComplete: false, autopadding: true, format: '{layer} [{bar}] {size} | {state}' }, Presets.shades_classic));
  }
  resolved(image: ResolvedPull): void {
    this.layers = image.layers;
    this.multibar.log(`resolved ${image.pinned}\n`);
  }
  layerStarted(index: number, layer: Descriptor): void {
    const short = layer.digest.replace(/^sha256:/, '').slice(0, 12);
    this.bars.set(index, this.multibar.create(Math.max(1, layer.size), 0, { layer: short, size: humanSize(layer.size), state: 'preparing' }));
  }
  layerBytes(index: number, bytes: number): void {
    this.bars.get(index)?.update(bytes, { state: `downloading ${humanSize(bytes)}` });
  }
  layerApplying(index: number): void {
    this.bars.get(index)?.update({ state: 'applying' });
  }
  layerDone(index: number, outcome: LayerOutcome): void {
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

/** `lazypull rpull REF`: pull an image into containerd, lazily through the lazypull snapshotter. */
export function registerRpull(program: Command): void {
  program
    .command('rpull')
    .description('pull an image into containerd with lazy layers (like ctr-remote images rpull): only layers the snapshotter cannot mount remotely are downloaded')
    .argument('<reference>', 'image reference, e.g. 127.0.0.1:5000/app:v1 or ghcr.io/org/app@sha256:...')
    .option('--address <socket>', "containerd's gRPC socket", DEFAULT_CONTAINERD_ADDRESS)
    .option('--namespace <ns>', 'containerd namespace', 'default')
    .option('--snapshotter <name>', "snapshotter name in containerd's config (proxy_plugins)", 'lazypull')
    .option('--plain-http', 'talk plain HTTP to the registry (default only for localhost and 127.0.0.0/8)')
    .option('--platform <os/arch[/variant]>', "platform to pick from an index (default: this host's)", parsePlatformOption)
    .option('--hosts-dir <dir>', "containerd's hosts.toml directory (mirrors, CAs)", DEFAULT_HOSTS_DIR)
    .action(async (reference: string, options: RpullOptions) => {
      const started = performance.now();
      // Connecting to containerd and fetching the image's documents overlap (remotePull awaits both).
      const connection = ContainerdConnection.open({ address: options.address, namespace: options.namespace });
      connection.catch(() => undefined);
      const registry = new RegistryClient({ hostsDir: options.hostsDir, ...(options.plainHttp ? { plainHttp: true } : {}) });
      const display: PullDisplay = process.stdout.isTTY ? await BarDisplay.create(process.stdout) : new LineDisplay(process.stdout);
      // Ctrl-C stops between steps and still removes the half-made snapshot and the lease.
      const abort = new AbortController();
      const onSignal = () => abort.abort(new Error('interrupted'));
      process.once('SIGINT', onSignal);
      try {
        const result = await remotePull({ reference, snapshotter: options.snapshotter, registry, connection, events: display, signal: abort.signal, ...(options.platform ? { platform: options.platform } : {}) });
        display.stop();
        process.stdout.write(formatSummary(result, options.snapshotter, (performance.now() - started) / 1000));
      } finally {
        display.stop();
        process.off('SIGINT', onSignal);
        (await connection.catch(() => undefined))?.close();
        await registry.close();
      }
    });
}
