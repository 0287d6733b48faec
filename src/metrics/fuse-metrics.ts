import { constants } from 'node:os';
import { Histogram, type Registry } from 'prom-client';
import type { FuseObserver, FuseOperationName } from '../fs/fuse-observer.js';
import { READ_BUCKETS } from './buckets.js';
import { cumulativeCounter } from './cumulative-counter.js';

/** errno number -> name (2 -> ENOENT), for readable labels. */
const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, number]) => [number, name]));

function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? String(errno);
}

/**
 * Counts FUSE operations in plain maps on the hot path (no label hashing per operation) and copies
 * them into the counters when scraped; only reads go straight to their histogram.
 */
export class FuseMetrics implements FuseObserver {
  private readonly operations = new Map<FuseOperationName, number>();
  /** op -> errno -> count. */
  private readonly errors = new Map<FuseOperationName, Map<number, number>>();
  private readonly readDuration: Histogram;

  constructor(registry: Registry) {
    const { operations, errors } = this;
    cumulativeCounter(registry, 'lazypull_fuse_operations_total', 'FUSE operations answered, by operation (a path lookup is a getattr), errors included.', ['op'], function* () {
      for (const [op, count] of operations) yield [{ op }, count] as const;
    });
    cumulativeCounter(registry, 'lazypull_fuse_errors_total', 'FUSE operations answered with an error, by operation and errno name.', ['op', 'errno'], function* () {
      for (const [op, byErrno] of errors) for (const [errno, count] of byErrno) yield [{ op, errno: errnoName(errno) }, count] as const;
    });
    this.readDuration = new Histogram({
      name: 'lazypull_ondemand_read_duration_seconds',
      help: 'Latency of FUSE reads (page-cache hits never reach lazypull): chunk cache hits, and registry fetches on demand.',
      buckets: READ_BUCKETS,
      registers: [registry],
    });
  }

  onOperation(op: FuseOperationName, durationMs: number, errno?: number): void {
    this.operations.set(op, (this.operations.get(op) ?? 0) + 1);
    if (op === 'read') this.readDuration.observe(durationMs / 1000);
    if (errno !== undefined) this.countError(op, errno);
  }

  private countError(op: FuseOperationName, errno: number): void {
    let byErrno = this.errors.get(op);
    if (byErrno === undefined) this.errors.set(op, (byErrno = new Map()));
    byErrno.set(errno, (byErrno.get(errno) ?? 0) + 1);
  }
}
