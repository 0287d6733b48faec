import { Counter, Histogram, type Registry } from 'prom-client';
import type { ExchangeEvent, RemoteObserver } from '../remote/observer.js';
import { REQUEST_BUCKETS } from './buckets.js';

/** Every HTTP exchange of the registry client: latency by kind and status, bytes by kind. */
export function registryObserver(registry: Registry): RemoteObserver {
  const duration = new Histogram({
    name: 'lazypull_registry_request_duration_seconds',
    help: 'Registry HTTP request latency by request kind and status code ("error": no response).',
    labelNames: ['kind', 'code'] as const,
    buckets: REQUEST_BUCKETS,
    registers: [registry],
  });
  const bytes = new Counter({
    name: 'lazypull_registry_bytes_total',
    help: 'Bytes received from registries (and their mirrors and storage redirects) by request kind.',
    labelNames: ['kind'] as const,
    registers: [registry],
  });
  return {
    onExchange(event: ExchangeEvent): void {
      duration.observe({ kind: event.kind, code: event.status === undefined ? 'error' : String(event.status) }, event.durationMs / 1000);
      if (event.bytes > 0) bytes.inc({ kind: event.kind }, event.bytes);
    },
  };
}
