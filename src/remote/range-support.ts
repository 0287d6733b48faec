/**
 * What each host has shown about multi-range requests. Once a host answered a multi-range request
 * with 400, the whole blob, or a malformed multipart body, every later read of every blob on it uses
 * single ranges: the failed attempt is not repeated.
 */
export class RangeSupport {
  private readonly singleOnly = new Map<string, string>();

  multiRangeAllowed(host: string): boolean {
    return !this.singleOnly.has(host);
  }

  rejectMultiRange(host: string, reason: string): void {
    if (!this.singleOnly.has(host)) this.singleOnly.set(host, reason);
  }

  /** Why a host is limited to single ranges, for `inspect` and logs. */
  reason(host: string): string | undefined {
    return this.singleOnly.get(host);
  }
}
