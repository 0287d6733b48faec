/**
 * Hooks for the daemon's metrics: every HTTP exchange and every blob read is reported here. The
 * daemon maps them onto Prometheus counters and histograms; tests and benchmarks count with
 * CountingObserver.
 */
export interface ExchangeEvent {
  /** host[:port] the request went to (a mirror or storage host after redirects). */
  host: string;
  method: string;
  kind: 'manifest' | 'blob' | 'token' | 'probe' | 'other';
  blob?: string;
  /** Undefined when the exchange failed without a response. */
  status?: number;
  bytes: number;
  durationMs: number;
  error?: string;
}

export interface ReadEvent {
  blob: string;
  /** Registry host the blob belongs to. */
  host: string;
  /** Caller-visible bytes served by this read. */
  bytes: number;
  durationMs: number;
  ok: boolean;
}

export interface RemoteObserver {
  onExchange?(event: ExchangeEvent): void;
  onRead?(event: ReadEvent): void;
}

export interface Totals {
  requests: number;
  bytes: number;
  errors: number;
  totalMs: number;
}

function emptyTotals(): Totals {
  return { requests: 0, bytes: 0, errors: 0, totalMs: 0 };
}

/** In-memory aggregation per host and per blob. */
export class CountingObserver implements RemoteObserver {
  readonly byHost = new Map<string, Totals>();
  readonly byBlob = new Map<string, Totals>();
  readonly exchanges: ExchangeEvent[] = [];

  onExchange(event: ExchangeEvent): void {
    this.exchanges.push(event);
    const failed = event.status === undefined || event.status >= 400;
    for (const [map, key] of [
      [this.byHost, event.host],
      [this.byBlob, event.blob],
    ] as const) {
      if (key === undefined) continue;
      const totals = map.get(key) ?? emptyTotals();
      totals.requests++;
      totals.bytes += event.bytes;
      totals.totalMs += event.durationMs;
      if (failed) totals.errors++;
      map.set(key, totals);
    }
  }

  requestsTo(host: string): number {
    return this.byHost.get(host)?.requests ?? 0;
  }
}

/** Observers of several consumers (metrics + a test) at once. */
export function combineObservers(...observers: (RemoteObserver | undefined)[]): RemoteObserver {
  const present = observers.filter((o): o is RemoteObserver => o !== undefined);
  return {
    onExchange: (event) => present.forEach((o) => o.onExchange?.(event)),
    onRead: (event) => present.forEach((o) => o.onRead?.(event)),
  };
}
