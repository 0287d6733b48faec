/**
 * Work a container is waiting for on the registry link: on-demand reads and mount-time prefetches, of
 * every layer that shares the link. Background fetching runs in the quiet gaps only. One instance
 * is shared by all mounts of a daemon (MountManager): a container starts once all its layers'
 * prefetches are done, so one small layer's background pass must not compete with another layer's
 * prefetch (measured on the node image of benchmarks/hello: the idle npm layer fetched 3.9 MiB in
 * the background while the container waited for the binary's prefetch).
 */
export class FetchActivity {
  private busy = 0;
  private lastFetchAt = performance.now();
  private idleWaiters: (() => void)[] = [];

  /** Urgent fetches in progress. */
  get pending(): number {
    return this.busy;
  }

  /** Marks urgent work as started; the returned function ends it, saying whether it used the link. */
  begin(): (usedLink: boolean) => void {
    this.busy++;
    let ended = false;
    return (usedLink) => {
      if (ended) return;
      ended = true;
      if (usedLink) this.noteFetch();
      if (--this.busy === 0) this.wakeIdle();
    };
  }

  /** Counts now as the last urgent use of the link (a new mount: its reader is about to start). */
  noteFetch(): void {
    this.lastFetchAt = performance.now();
  }

  /** Resolves when no urgent work is in progress. */
  whenIdle(): Promise<void> {
    if (this.busy === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Resolves once nothing urgent is in progress and nothing urgent has used the link for `quietMs`. */
  async whenQuiet(quietMs: number): Promise<void> {
    for (;;) {
      await this.whenIdle();
      const wait = this.lastFetchAt + quietMs - performance.now();
      if (wait <= 0 && this.busy === 0) return;
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  private wakeIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const wake of waiters) wake();
  }
}
