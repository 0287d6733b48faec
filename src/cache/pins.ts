/** Reference counts of pinned names; each pin's release function works once, however often it is called. */
export class PinCounts {
  private readonly counts = new Map<string, number>();

  constructor(private readonly onLastRelease: (name: string) => void) {}

  pin(name: string): () => void {
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.release(name);
    };
  }

  has(name: string): boolean {
    return this.counts.has(name);
  }

  get size(): number {
    return this.counts.size;
  }

  private release(name: string): void {
    const count = (this.counts.get(name) ?? 1) - 1;
    if (count > 0) {
      this.counts.set(name, count);
      return;
    }
    this.counts.delete(name);
    this.onLastRelease(name);
  }
}
