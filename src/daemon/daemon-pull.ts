/**
 * Pulls asked of the daemon (lazypull.v1.Pull, what `lazypull rpull` uses when a daemon answers): the
 * same lazy pull as the command's own (containerd/pull.ts), run here so the resolver opens every
 * layer's TOC as soon as the manifest is in instead of at containerd's first Prepare, over registry
 * connections that are already open.
 */
import { ContainerdConnection } from '../containerd/connection.js';
import { remotePull, type LayerOutcome, type PullEvents } from '../containerd/pull.js';
import type { PullEvent, PullRequest } from '../grpc/pull-protocol.js';
import type { RunPull } from '../grpc/pull-service.js';
import { parsePlatform, RegistryClient, type ImageManifest, type ImageReference, type RegistryClientOptions } from '../remote/index.js';
import type { Logger } from '../snapshot/snapshotter.js';
import type { Digest } from '../util/digest.js';

/** The resolver's side of a pull: warm the layers, then let go of what no Prepare took. */
export interface PullWarmer {
  expectImage(image: ImageReference, manifestDigest: Digest, manifest: ImageManifest): void;
  dropWarmLayersOf(manifestDigest: Digest): void;
}

export interface DaemonPullOptions {
  /** The daemon's registry client, the one lazy layers are read through. */
  registry: RegistryClient;
  /** How to make a client for pulls that ask for plain HTTP (made once, when first asked). */
  plainHttpRegistry: RegistryClientOptions;
  warmer: PullWarmer;
  log: Logger;
  /** Holds the chunk cache's disk writes back for at most `maxMs`; returns the release. */
  holdCacheWrites?(maxMs: number): () => void;
}

/**
 * How long a pull holds the cache's disk writes back at most. A lazy pull takes about a second; one
 * that falls back to downloading layers may take minutes, and its writes then go through after this.
 */
const PULL_WRITE_HOLD_MS = 10_000;

export class DaemonPuller {
  private plainHttp: RegistryClient | undefined;
  private readonly settling = new Set<Promise<unknown>>();

  constructor(private readonly options: DaemonPullOptions) {}

  readonly run: RunPull = async (request, emit, signal) => {
    const { warmer, log } = this.options;
    const started = performance.now();
    const platform = request.platform ? parsePlatform(request.platform) : undefined;
    const connection = ContainerdConnection.open({ address: request.containerd_address, namespace: request.namespace });
    connection.catch(() => undefined);
    let manifestDigest: Digest | undefined;
    const background: Promise<unknown>[] = [];
    // The prefetch the pull starts (python's 4.4 MB in benchmarks/hello) writes a cache entry per file;
    // those writes wait until the Prepares are through, the data readable from memory meanwhile.
    const releaseWrites = this.options.holdCacheWrites?.(PULL_WRITE_HOLD_MS);
    try {
      const result = await remotePull({
        reference: request.reference,
        snapshotter: request.snapshotter,
        registry: this.registryFor(request),
        connection,
        events: wireEvents(emit),
        signal,
        ...(platform ? { platform } : {}),
        onManifest: (image, digest, manifest) => {
          manifestDigest = digest;
          warmer.expectImage(image, digest, manifest);
        },
        background: (work) => background.push(work),
      });
      log.info('image pulled', { image: result.name, digest: result.target.digest, layers: result.layerResults.length, ms: Math.round(performance.now() - started) });
      emit({ done: result });
    } finally {
      releaseWrites?.();
      if (manifestDigest) warmer.dropWarmLayersOf(manifestDigest);
      // The call ends with the result; the lease is deleted and the connection closed behind it (one
      // round trip less for the client to wait), and close() waits for that.
      const settling = Promise.all(background)
        .then(async () => (await connection.catch(() => undefined))?.close())
        .finally(() => this.settling.delete(settling));
      this.settling.add(settling);
    }
  };

  async close(): Promise<void> {
    await Promise.allSettled([...this.settling]);
    await this.plainHttp?.close();
  }

  private registryFor(request: PullRequest): RegistryClient {
    if (!request.plain_http) return this.options.registry;
    this.plainHttp ??= new RegistryClient({ ...this.options.plainHttpRegistry, plainHttp: true });
    return this.plainHttp;
  }
}

/** A declined layer's download progress goes out at most this often: a message per content write would flood the stream. */
const BYTES_EVENT_INTERVAL_MS = 100;

/** The pull's progress as messages of the response stream. */
function wireEvents(emit: (event: PullEvent) => void): PullEvents {
  const lastBytesEvent = new Map<number, number>();
  return {
    resolved: (image) => emit({ resolved: image }),
    layerStarted: (index) => emit({ layer_started: { index } }),
    layerBytes: (index, bytes) => {
      const now = performance.now();
      if (now - (lastBytesEvent.get(index) ?? -Infinity) < BYTES_EVENT_INTERVAL_MS) return;
      lastBytesEvent.set(index, now);
      emit({ layer_bytes: { index, bytes } });
    },
    layerApplying: (index) => emit({ layer_applying: { index } }),
    layerDone: (index, outcome: LayerOutcome) => emit({ layer_done: { index, outcome } }),
  };
}
