import { Counter, type LabelValues, type Registry } from 'prom-client';

export type Totals<L extends string> = () => Iterable<readonly [LabelValues<L>, number]>;

/**
 * A counter whose values are totals kept elsewhere (cache statistics, FUSE counts kept in plain maps),
 * copied in at scrape time. prom-client counters only go up by `inc`, so each scrape resets and re-adds.
 */
export function cumulativeCounter<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[], totals: Totals<L>): Counter<L> {
  return new Counter<L>({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, value] of totals()) this.inc(labels, value);
    },
  });
}
