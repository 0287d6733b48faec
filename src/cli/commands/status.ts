import * as grpc from '@grpc/grpc-js';
import type { Command } from 'commander';
import { DEFAULT_DAEMON_CONFIG } from '../../config/config.js';
import type { DaemonStatus, LayerStatus } from '../../daemon/status.js';
import { loadStatusService } from '../../grpc/protos.js';
import { humanSize } from '../options.js';

const CALL_TIMEOUT_MS = 10_000;

/** Asks the daemon on `address` (lazypull.v1.Status/Get). */
export async function fetchStatus(address: string): Promise<DaemonStatus> {
  const { Client } = loadStatusService();
  const client = new Client(`unix:${address}`, grpc.credentials.createInsecure());
  try {
    return await new Promise<DaemonStatus>((resolve, reject) => {
      const get = (client as unknown as Record<string, (req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: DaemonStatus) => void) => void>)['Get']!.bind(client);
      get({}, { deadline: Date.now() + CALL_TIMEOUT_MS }, (err, res) => (err ? reject(new Error(`lazypull daemon at ${address}: ${err.details || err.message}`)) : resolve(res)));
    });
  } finally {
    client.close();
  }
}

function layerLine(layer: LayerStatus): string {
  const digest = layer.digest ? layer.digest.slice(0, 19) : layer.snapshot.slice(0, 19);
  if (layer.state !== 'lazy') return `  ${digest}  ${layer.state.padEnd(11)}  ${layer.reason}`;
  const prefetch = layer.prefetch_bytes === 0 ? 'no prefetch' : layer.prefetch_done ? `prefetched ${humanSize(layer.prefetch_bytes)}` : `prefetching ${humanSize(layer.prefetch_bytes)}`;
  const fetched = `fetched ${humanSize(layer.fetched_bytes)} of ${humanSize(layer.total_bytes)}${layer.background_done ? ' (complete)' : ''}`;
  return `  ${digest}  ${'lazy'.padEnd(11)}  ${layer.format}, ${fetched}, ${prefetch}${layer.warning ? `; warning: ${layer.warning}` : ''}`;
}

/** Layers grouped by image, then the cache line. */
export function formatStatus(status: DaemonStatus): string {
  const byImage = new Map<string, LayerStatus[]>();
  for (const layer of status.layers) byImage.set(layer.image, [...(byImage.get(layer.image) ?? []), layer]);
  const lines: string[] = [];
  for (const [image, layers] of byImage) {
    const lazy = layers.filter((l) => l.state === 'lazy').length;
    lines.push(`${image || '(image not named by the client)'}: ${lazy} of ${layers.length} layer(s) lazy`);
    lines.push(...layers.map(layerLine));
  }
  if (status.layers.length === 0) lines.push('no image layers yet');
  const c = status.cache;
  lines.push(`cache ${c.dir}: ${humanSize(c.disk_bytes)} of ${humanSize(c.max_disk_bytes)} on disk (${c.disk_entries} chunks), ${humanSize(c.memory_bytes)} of ${humanSize(c.max_memory_bytes)} in memory; ${c.hits} hits, ${c.misses} misses, ${c.evictions} evictions`);
  return `${lines.join('\n')}\n`;
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('ask the running daemon which layers are lazy, which were pulled normally and why, and how much is fetched')
    .option('--address <socket>', "the daemon's unix socket", DEFAULT_DAEMON_CONFIG.address)
    .option('--json', 'print the status as JSON')
    .action(async (flags: { address: string; json?: boolean }) => {
      const status = await fetchStatus(flags.address);
      process.stdout.write(flags.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
    });
}
