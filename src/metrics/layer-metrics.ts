import { Gauge, type Registry } from 'prom-client';
import type { LayerProgress } from '../fs/background-fetch.js';

export interface WatchedLayer {
  layerDigest: string;
  progress: LayerProgress;
}

export type LayerSource = () => Iterable<WatchedLayer>;

interface LayerGauge {
  name: string;
  help: string;
  value: (progress: LayerProgress) => number;
  /** Two mounts of one layer (in two chains) add their traffic; the layer's size is the same in both. */
  combine: 'sum' | 'same';
}

const LAYER_GAUGES: readonly LayerGauge[] = [
  { name: 'lazypull_layer_fetched_bytes', help: 'Compressed bytes of the layer fetched from the registry (on demand, prefetch and background).', value: (p) => p.fetchedBytes, combine: 'sum' },
  { name: 'lazypull_layer_prefetched_bytes', help: 'Compressed bytes of the layer the prefetch and background passes have confirmed cached.', value: (p) => p.completedBytes, combine: 'sum' },
  { name: 'lazypull_layer_size_bytes', help: 'Compressed bytes of all chunks of the layer.', value: (p) => p.totalBytes, combine: 'same' },
  { name: 'lazypull_layer_served_bytes', help: 'Uncompressed bytes of the layer handed to readers.', value: (p) => p.servedBytes, combine: 'sum' },
];

/**
 * Per-layer gauges, filled from the mounted layers at scrape time; each scrape starts from empty, so a
 * layer that was unmounted loses its series.
 */
export class LayerMetrics {
  private source: LayerSource | undefined;

  constructor(registry: Registry) {
    for (const spec of LAYER_GAUGES) this.register(registry, spec);
  }

  watch(source: LayerSource): void {
    this.source = source;
  }

  private register(registry: Registry, spec: LayerGauge): void {
    const layers = () => this.source?.() ?? [];
    new Gauge({
      name: spec.name,
      help: spec.help,
      labelNames: ['digest'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const { layerDigest, progress } of layers()) {
          if (spec.combine === 'sum') this.inc({ digest: layerDigest }, spec.value(progress));
          else this.set({ digest: layerDigest }, spec.value(progress));
        }
      },
    });
  }
}
