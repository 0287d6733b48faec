import { checkRange, type RandomAccessSource } from '../io/random-access.js';
import { Digester, type Digest } from '../util/digest.js';
import { AuthError, DeadlineExceededError, DigestMismatchError, HttpStatusError, InvalidResponseError, RegistryError, ResponseTooLargeError, isAbortError } from './errors.js';
import { header, type HttpRequest, type HttpResponse, type Send } from './http/types.js';
import type { RemoteObserver } from './observer.js';
import { redactUrl } from './redact.js';
import { coalesceRanges, sliceFrom } from './ranges/coalesce.js';
import { parseContentRange, rangeHeader, type ByteRange } from './ranges/content-range.js';
import { MalformedMultipartError, multipartBoundary, parseMultipartByteranges } from './ranges/multipart.js';
import { RangeSupport } from './range-support.js';

/** Where the blob can be fetched: one per endpoint (mirrors first), all with the same content. */
export interface BlobLocation {
  /** The endpoint's middleware stack (retries, auth, redirects, metrics). */
  send: Send;
  url: URL;
  /** Token scope, e.g. `repository:library/alpine:pull`. */
  scope: string;
}

export interface BlobReadOptions {
  /** Merge concurrent reads that are close together into one request. */
  coalesce: boolean;
  /** Reads closer than this many bytes are merged (the gap is downloaded and dropped). */
  maxGap: number;
  /** Largest single request built by merging. */
  maxRequestBytes: number;
  /** Ask for several ranges in one request (multipart/byteranges answers). */
  multiRange: boolean;
  maxRangesPerRequest: number;
  /** Every readAt settles within this time, retries included. */
  readDeadlineMs: number;
  /**
   * A registry that ignores Range answers with the whole blob; up to this size we take the bytes
   * we need from it instead of failing.
   */
  wholeBlobLimit: number;
}

export const DEFAULT_BLOB_READ_OPTIONS: BlobReadOptions = {
  coalesce: true,
  maxGap: 64 * 1024,
  maxRequestBytes: 16 * 1024 * 1024,
  multiRange: true,
  maxRangesPerRequest: 16,
  readDeadlineMs: 60_000,
  wholeBlobLimit: 1024 * 1024,
};

export interface OpenBlobOptions {
  digest: Digest;
  /** Known size (from a digest-verified manifest): skips the size probe. */
  size?: number;
  locations: BlobLocation[];
  read?: Partial<BlobReadOptions>;
  observer?: RemoteObserver;
  /** Shared memory of which hosts support multi-range requests. */
  rangeSupport?: RangeSupport;
  signal?: AbortSignal;
}

/** A registry that answers range requests with the whole blob: lazy reads cannot work against it. */
export class RangeNotSupportedError extends RegistryError {
  override name = 'RangeNotSupportedError';
}

interface PendingRead {
  range: ByteRange;
  signal?: AbortSignal;
  resolve(data: Buffer): void;
  reject(err: unknown): void;
}

interface Attempt {
  signal: AbortSignal;
  deadline: number;
}

/** Multipart framing per part (boundary line, Content-Type, Content-Range): generous upper bound. */
const MULTIPART_OVERHEAD_PER_PART = 512;
const PROBE_MAX_BYTES = 2;

/**
 * A registry blob as a RandomAccessSource: exact byte ranges over HTTP, with size probing, remembered
 * redirects, coalescing, multi-range requests with remembered fallback, mirror fallback and a
 * deadline per read. A response that does not match the request is an error, never data.
 */
export class RegistryBlobSource implements RandomAccessSource {
  private readonly options: BlobReadOptions;
  private readonly rangeSupport: RangeSupport;
  private locationIndex = 0;
  /** Final URL of the last redirect (object storage), used directly until it stops working. */
  private directUrl?: URL;
  private queue: PendingRead[] = [];
  private flushScheduled = false;
  private closed = false;

  private constructor(
    readonly digest: Digest,
    private sizeValue: number,
    private readonly locations: BlobLocation[],
    options: Partial<BlobReadOptions>,
    private readonly observer: RemoteObserver | undefined,
    rangeSupport: RangeSupport | undefined,
  ) {
    this.options = { ...DEFAULT_BLOB_READ_OPTIONS, ...options };
    this.rangeSupport = rangeSupport ?? new RangeSupport();
  }

  static async open(options: OpenBlobOptions): Promise<RegistryBlobSource> {
    if (options.locations.length === 0) throw new RegistryError(`no endpoint can serve blob ${options.digest}`);
    const source = new RegistryBlobSource(options.digest, options.size ?? -1, options.locations, options.read ?? {}, options.observer, options.rangeSupport);
    if (options.size === undefined) source.sizeValue = await source.probeSize(options.signal);
    return source;
  }

  /**
   * The blob and its last `tailBytes` bytes (all of it when smaller), in one request: a suffix range
   * (`bytes=-N`) whose answer also tells the size, so there is no size probe first (a round trip less
   * for a layer's footer and TOC). A known size reads the tail as any range.
   */
  static async openAtTail(options: OpenBlobOptions, tailBytes: number): Promise<{ source: RegistryBlobSource; tail: Buffer }> {
    if (options.size !== undefined) {
      const source = await RegistryBlobSource.open(options);
      const length = Math.min(source.size, tailBytes);
      return { source, tail: await source.readAt(source.size - length, length, options.signal) };
    }
    if (options.locations.length === 0) throw new RegistryError(`no endpoint can serve blob ${options.digest}`);
    const source = new RegistryBlobSource(options.digest, -1, options.locations, options.read ?? {}, options.observer, options.rangeSupport);
    const attempt = source.attempt(options.signal);
    for (;;) {
      try {
        return { source, tail: await source.readSuffixAt(tailBytes, attempt) };
      } catch (err) {
        if (!source.shouldTryNextLocation(err, attempt)) throw err;
        source.locationIndex++;
      }
    }
  }

  get size(): number {
    return this.sizeValue;
  }

  /** Host[:port] of the endpoint currently serving the blob. */
  get host(): string {
    return this.location.url.host;
  }

  private get location(): BlobLocation {
    return this.locations[this.locationIndex]!;
  }

  async readAt(offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    checkRange(offset, length, this.size);
    if (this.closed) throw new RegistryError(`blob ${this.digest} is closed`);
    signal?.throwIfAborted();
    if (length === 0) return Buffer.alloc(0);
    const started = performance.now();
    const report = (ok: boolean, bytes: number): void =>
      this.observer?.onRead?.({ blob: this.digest, host: this.host, bytes, durationMs: performance.now() - started, ok });
    try {
      const data = this.options.coalesce ? await this.enqueue({ start: offset, length }, signal) : await this.fetchBatch([{ start: offset, length }], this.attempt(signal)).then((r) => r[0]!);
      report(true, data.length);
      return data;
    } catch (err) {
      report(false, 0);
      throw err;
    }
  }

  /**
   * Several ranges at once (prefetch): coalesced and, where the registry allows, fetched with
   * multi-range requests. Results are in input order.
   */
  async readRanges(ranges: readonly ByteRange[], signal?: AbortSignal): Promise<Buffer[]> {
    for (const r of ranges) checkRange(r.start, r.length, this.size);
    const wanted = ranges.filter((r) => r.length > 0);
    const fetched = wanted.length === 0 ? [] : await this.fetchBatch(wanted, this.attempt(signal));
    let next = 0;
    return ranges.map((r) => (r.length === 0 ? Buffer.alloc(0) : fetched[next++]!));
  }

  /** The whole blob, streamed in large range reads and verified against the digest at the end. */
  async *stream(chunkBytes = 8 * 1024 * 1024, signal?: AbortSignal): AsyncGenerator<Buffer> {
    const digester = new Digester();
    for (let offset = 0; offset < this.size; offset += chunkBytes) {
      const data = await this.fetchBatch([{ start: offset, length: Math.min(chunkBytes, this.size - offset) }], this.attempt(signal)).then((r) => r[0]!);
      digester.update(data);
      yield data;
    }
    const actual = digester.digest();
    if (actual !== this.digest) throw new DigestMismatchError(`blob ${this.digest} has digest ${actual}`);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private attempt(signal?: AbortSignal): Attempt {
    return { signal: signal ?? new AbortController().signal, deadline: Date.now() + this.options.readDeadlineMs };
  }

  private enqueue(range: ByteRange, signal?: AbortSignal): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      this.queue.push({ range, resolve, reject, ...(signal ? { signal } : {}) });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        // Reads issued in the same turn of the event loop (FUSE readahead, prefetch) share requests.
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.queue.filter((read) => {
      if (!read.signal?.aborted) return true;
      read.reject(read.signal.reason);
      return false;
    });
    this.queue = [];
    if (batch.length === 0) return;
    const controller = new AbortController();
    let live = batch.length;
    const detachers = batch.map((read) => {
      const onAbort = (): void => {
        read.reject(read.signal?.reason);
        // The shared request is only cancelled when nobody waits for it any more.
        if (--live === 0) controller.abort(read.signal?.reason);
      };
      read.signal?.addEventListener('abort', onAbort, { once: true });
      return () => read.signal?.removeEventListener('abort', onAbort);
    });
    const attempt = { signal: controller.signal, deadline: Date.now() + this.options.readDeadlineMs };
    this.fetchBatchSettled(
      batch.map((r) => r.range),
      attempt,
    )
      .then(
        (results) => batch.forEach((read, i) => (results[i] instanceof Buffer ? read.resolve(results[i]) : read.reject(results[i]))),
        (err: unknown) => batch.forEach((read) => read.reject(err)),
      )
      .finally(() => detachers.forEach((detach) => detach()));
  }

  /** Fetches every range of `wanted` (in order); throws the first failure. */
  private async fetchBatch(wanted: ByteRange[], attempt: Attempt): Promise<Buffer[]> {
    return (await this.fetchBatchSettled(wanted, attempt)).map((result) => {
      if (result instanceof Buffer) return result;
      throw result;
    });
  }

  /**
   * Fetches every range of `wanted`, each settled on its own: a failed request fails only the reads
   * it was carrying. When nothing at all could be fetched, the next mirror is tried.
   */
  private async fetchBatchSettled(wanted: ByteRange[], attempt: Attempt): Promise<Array<Buffer | Error>> {
    for (;;) {
      const merged = this.options.coalesce ? coalesceRanges(wanted, { maxGap: this.options.maxGap, maxLength: this.options.maxRequestBytes }) : wanted.map((r) => ({ ...r }));
      const settled = await Promise.allSettled(this.groupForRequests(merged).map((group) => this.fetchGroup(group, attempt)));
      const pieces = settled.flatMap((s) => (s.status === 'fulfilled' ? s.value : [])).sort((a, b) => a.range.start - b.range.start);
      const failures = settled.flatMap((s) => (s.status === 'rejected' ? [s.reason as unknown] : []));
      const firstFailure = failures[0];
      if (firstFailure !== undefined && pieces.length === 0 && this.shouldTryNextLocation(firstFailure, attempt)) {
        this.locationIndex++;
        this.directUrl = undefined;
        continue;
      }
      const failure = firstFailure instanceof Error ? firstFailure : new RegistryError(`bytes of blob ${this.digest} missing from the responses`);
      return wanted.map((range) => {
        try {
          return sliceFrom(pieces, range);
        } catch {
          return failure;
        }
      });
    }
  }

  private shouldTryNextLocation(err: unknown, attempt: Attempt): boolean {
    if (this.locationIndex + 1 >= this.locations.length) return false;
    if (isAbortError(err) || attempt.signal.aborted || err instanceof DeadlineExceededError || Date.now() >= attempt.deadline) return false;
    return err instanceof RegistryError;
  }

  private fetchGroup(group: ByteRange[], attempt: Attempt): Promise<Array<{ range: ByteRange; data: Buffer }>> {
    if (group.length > 1) return this.fetchMulti(group, attempt);
    const range = group[0]!;
    return this.fetchSingle(range, attempt).then((data) => [{ range, data }]);
  }

  private groupForRequests(merged: ByteRange[]): ByteRange[][] {
    if (!this.options.multiRange || !this.rangeSupport.multiRangeAllowed(this.host)) return merged.map((r) => [r]);
    const groups: ByteRange[][] = [];
    let current: ByteRange[] = [];
    let bytes = 0;
    for (const range of merged) {
      if (current.length > 0 && (current.length >= this.options.maxRangesPerRequest || bytes + range.length > this.options.maxRequestBytes)) {
        groups.push(current);
        current = [];
        bytes = 0;
      }
      current.push(range);
      bytes += range.length;
    }
    if (current.length > 0) groups.push(current);
    return groups;
  }

  private async fetchSingle(range: ByteRange, attempt: Attempt): Promise<Buffer> {
    let response: HttpResponse;
    try {
      response = await this.get(rangeHeader([range]), this.bodyLimit(range.length), attempt, 'blob');
    } catch (err) {
      if (err instanceof ResponseTooLargeError && err.status === 200) {
        throw new RangeNotSupportedError(`${this.host} ignored the Range header and answered with the whole blob ${this.digest} (${this.size} bytes): it cannot be read lazily`);
      }
      throw err;
    }
    if (response.status === 200) return this.sliceWholeBlob(response, [range])[0]!;
    this.checkPartial(response);
    return this.checkedPart(response, response.body, range, header(response, 'content-range'));
  }

  private async fetchMulti(ranges: ByteRange[], attempt: Attempt): Promise<Array<{ range: ByteRange; data: Buffer }>> {
    const total = ranges.reduce((sum, r) => sum + r.length, 0);
    let response: HttpResponse;
    try {
      response = await this.get(rangeHeader(ranges), this.bodyLimit(total + ranges.length * MULTIPART_OVERHEAD_PER_PART), attempt, 'blob');
    } catch (err) {
      if (!(err instanceof ResponseTooLargeError && err.status === 200)) throw err;
      return this.fallBackToSingleRanges(ranges, attempt, 'answered 200 with the whole blob');
    }
    if (response.status === 400 || response.status === 416) return this.fallBackToSingleRanges(ranges, attempt, `answered ${response.status}`);
    if (response.status === 200) {
      this.rangeSupport.rejectMultiRange(this.host, 'answered 200 with the whole blob');
      const slices = this.sliceWholeBlob(response, ranges);
      return ranges.map((range, i) => ({ range, data: slices[i]! }));
    }
    this.checkPartial(response);
    const boundary = multipartBoundary(header(response, 'content-type'));
    if (!boundary) {
      // One part covering all ranges is a valid answer (servers may merge close ranges).
      const first = ranges[0]!;
      const last = ranges[ranges.length - 1]!;
      const covering = { start: first.start, length: last.start + last.length - first.start };
      const data = this.checkedPart(response, response.body, covering, header(response, 'content-range'), true);
      return ranges.map((range) => ({ range, data: data.subarray(range.start - first.start, range.start - first.start + range.length) }));
    }
    try {
      const parts = parseMultipartByteranges(response.body, boundary);
      return ranges.map((range) => {
        const part = parts.find((p) => p.range.start <= range.start && p.range.end >= range.start + range.length - 1);
        if (!part) throw new MalformedMultipartError(`no part covers bytes ${range.start}-${range.start + range.length - 1}`);
        if (part.range.total !== undefined && part.range.total !== this.size) throw new MalformedMultipartError(`part reports blob size ${part.range.total}, expected ${this.size}`);
        return { range, data: part.data.subarray(range.start - part.range.start, range.start - part.range.start + range.length) };
      });
    } catch (err) {
      if (!(err instanceof MalformedMultipartError)) throw err;
      return this.fallBackToSingleRanges(ranges, attempt, `sent a malformed multipart body (${err.message})`);
    }
  }

  private async fallBackToSingleRanges(ranges: ByteRange[], attempt: Attempt, why: string): Promise<Array<{ range: ByteRange; data: Buffer }>> {
    this.rangeSupport.rejectMultiRange(this.host, why);
    return Promise.all(ranges.map(async (range) => ({ range, data: await this.fetchSingle(range, attempt) })));
  }

  /** Room for the whole blob when it is small, so a registry ignoring Range still serves it. */
  private bodyLimit(wanted: number): number {
    return this.size >= 0 && this.size <= this.options.wholeBlobLimit ? Math.max(wanted, this.size) : wanted;
  }

  private sliceWholeBlob(response: HttpResponse, ranges: ByteRange[]): Buffer[] {
    if (response.body.length !== this.size) {
      throw new InvalidResponseError(`GET ${redactUrl(response.url)}: 200 response has ${response.body.length} bytes, blob ${this.digest} has ${this.size}`);
    }
    return ranges.map((r) => response.body.subarray(r.start, r.start + r.length));
  }

  private checkPartial(response: HttpResponse): void {
    if (response.status !== 206) throw this.statusError(response);
  }

  /** The bytes of a 206 answer for `range`, after checking Content-Range and length against the request. */
  private checkedPart(response: HttpResponse, body: Buffer, range: ByteRange, contentRange: string | undefined, allowLarger = false): Buffer {
    const parsed = parseContentRange(contentRange);
    const end = range.start + range.length - 1;
    const where = `GET ${redactUrl(response.url)}`;
    if (!parsed) throw new InvalidResponseError(`${where}: 206 without a valid Content-Range (${JSON.stringify(contentRange ?? null)})`);
    const matches = allowLarger ? parsed.start <= range.start && parsed.end >= end : parsed.start === range.start && parsed.end === end;
    if (!matches) throw new InvalidResponseError(`${where}: asked for bytes ${range.start}-${end}, Content-Range says ${parsed.start}-${parsed.end}`);
    if (parsed.total !== undefined && parsed.total !== this.size) throw new InvalidResponseError(`${where}: Content-Range reports blob size ${parsed.total}, expected ${this.size}`);
    if (body.length !== parsed.end - parsed.start + 1) throw new InvalidResponseError(`${where}: body has ${body.length} bytes, Content-Range announces ${parsed.end - parsed.start + 1}`);
    return body.subarray(range.start - parsed.start, range.start - parsed.start + range.length);
  }

  /**
   * One GET, directly to the remembered storage URL when there is one. When storage refuses it
   * (401/403/404: an expired signature), the registry is asked again for a fresh redirect.
   */
  private async get(range: string, maxBodyBytes: number, attempt: Attempt, kind: 'blob' | 'probe'): Promise<HttpResponse> {
    const location = this.location;
    const request = (url: URL): HttpRequest => ({
      method: 'GET',
      url,
      headers: { range },
      maxBodyBytes,
      scope: location.scope,
      signal: attempt.signal,
      deadline: attempt.deadline,
      labels: { kind, blob: this.digest },
    });
    const direct = this.directUrl;
    if (direct) {
      const response = await location.send(request(direct));
      if (response.status !== 401 && response.status !== 403 && response.status !== 404) return response;
      if (this.directUrl === direct) this.directUrl = undefined;
    }
    const response = await location.send(request(location.url));
    if (response.url.href !== location.url.href && (response.status === 200 || response.status === 206)) this.directUrl = response.url;
    return response;
  }

  /** HEAD for Content-Length; registries that refuse HEAD or omit the length get `GET bytes=0-1`. */
  private async probeSize(signal?: AbortSignal): Promise<number> {
    const attempt = this.attempt(signal);
    for (;;) {
      try {
        return await this.probeSizeAt(attempt);
      } catch (err) {
        if (!this.shouldTryNextLocation(err, attempt)) throw err;
        this.locationIndex++;
      }
    }
  }

  private async probeSizeAt(attempt: Attempt): Promise<number> {
    const location = this.location;
    const head = await location.send({ method: 'HEAD', url: location.url, headers: {}, maxBodyBytes: 0, scope: location.scope, signal: attempt.signal, deadline: attempt.deadline, labels: { kind: 'probe', blob: this.digest } });
    const length = Number(header(head, 'content-length'));
    if (head.status === 200 && header(head, 'content-length') && Number.isSafeInteger(length)) return length;
    if (head.status === 404 || head.status === 401) throw this.statusError(head, 'HEAD');
    const response = await this.get(rangeHeader([{ start: 0, length: PROBE_MAX_BYTES }]), PROBE_MAX_BYTES, attempt, 'probe');
    if (response.status === 206) {
      const total = parseContentRange(header(response, 'content-range'))?.total;
      if (total !== undefined) return total;
      throw new InvalidResponseError(`GET ${redactUrl(response.url)}: 206 without the blob size in Content-Range`);
    }
    // Blobs of 0-2 bytes come back whole; anything larger was refused by the body limit above.
    if (response.status === 200) return response.body.length;
    if (response.status === 416) return 0;
    throw this.statusError(response);
  }

  /** `GET bytes=-length`: sets the size from Content-Range (or a whole-blob answer) and returns the bytes. */
  private async readSuffixAt(length: number, attempt: Attempt): Promise<Buffer> {
    const limit = Math.max(length, this.options.wholeBlobLimit);
    let response: HttpResponse;
    try {
      response = await this.get(`bytes=-${length}`, limit, attempt, 'blob');
    } catch (err) {
      if (err instanceof ResponseTooLargeError && err.status === 200) throw new RangeNotSupportedError(`${this.host} ignored the Range header and answered with the whole blob ${this.digest}: it cannot be read lazily`);
      throw err;
    }
    if (response.status === 200) {
      this.sizeValue = response.body.length;
      return response.body.subarray(Math.max(0, response.body.length - length));
    }
    // An empty blob has no last bytes to give.
    if (response.status === 416) {
      this.sizeValue = 0;
      return Buffer.alloc(0);
    }
    this.checkPartial(response);
    const where = `GET ${redactUrl(response.url)}`;
    const parsed = parseContentRange(header(response, 'content-range'));
    if (parsed?.total === undefined) throw new InvalidResponseError(`${where}: 206 without the blob size in Content-Range`);
    if (parsed.end !== parsed.total - 1 || parsed.start !== Math.max(0, parsed.total - length)) {
      throw new InvalidResponseError(`${where}: asked for the last ${length} bytes, Content-Range says ${parsed.start}-${parsed.end}/${parsed.total}`);
    }
    if (response.body.length !== parsed.end - parsed.start + 1) throw new InvalidResponseError(`${where}: body has ${response.body.length} bytes, Content-Range announces ${parsed.end - parsed.start + 1}`);
    this.sizeValue = parsed.total;
    return response.body;
  }

  private statusError(response: HttpResponse, method = 'GET'): RegistryError {
    if (response.status === 401) return new AuthError(`${method} ${redactUrl(response.url)}: authentication required or refused (HTTP 401)`);
    return new HttpStatusError(method, response.url, response.status, `blob ${this.digest}`);
  }
}
