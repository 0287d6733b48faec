/**
 * Holds the disk tier's writes back while someone asks it to: while a pull's Prepares go through, each
 * entry write (open, write, fsync, close, rename) costs the daemon's one thread turns and its thread
 * pool threads that the Prepares, FUSE mounts and TOC opens are waiting for. The data stays readable
 * from the memory tier meanwhile. A hold ends when released or after its time limit, and writes go
 * through anyway once the bytes held back pass a budget, so memory stays bounded.
 */
export class WriteHold {
  /** The time limit of each hold in force; a hold is released by clearing and deleting its timer. */
  private readonly holds = new Set<NodeJS.Timeout>();
  private heldBytes = 0;
  private opened: Promise<void> | undefined;
  private open: (() => void) | undefined;

  constructor(private readonly maxHeldBytes: number) {}

  /** Holds writes until the returned function is called (once is enough) or `maxMs` have passed. */
  hold(maxMs: number): () => void {
    if (this.opened === undefined) this.opened = new Promise((resolve) => (this.open = resolve));
    const timer: NodeJS.Timeout = setTimeout(() => release(), maxMs).unref();
    this.holds.add(timer);
    const release = (): void => {
      if (!this.holds.delete(timer)) return;
      clearTimeout(timer);
      if (this.holds.size === 0) this.reopen();
    };
    return release;
  }

  get held(): boolean {
    return this.holds.size > 0;
  }

  /** Resolves when a write of `bytes` may go to disk: at once without a hold or past the budget. */
  async whenWritable(bytes: number): Promise<void> {
    if (this.opened === undefined || this.heldBytes + bytes > this.maxHeldBytes) return;
    this.heldBytes += bytes;
    await this.opened;
  }

  /** Ends every hold (shutdown: the writes held back go to disk before the store closes). */
  releaseAll(): void {
    for (const timer of this.holds) clearTimeout(timer);
    this.holds.clear();
    this.reopen();
  }

  private reopen(): void {
    this.open?.();
    this.open = undefined;
    this.opened = undefined;
    this.heldBytes = 0;
  }
}
