import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { sha256, type Digest } from '../util/digest.js';
import type { PushEndpoint, RegistryClient } from './client.js';
import { DigestMismatchError, HttpStatusError, InvalidResponseError } from './errors.js';
import { header, type HttpRequest, type HttpResponse } from './http/types.js';
import type { ImageReference } from './reference.js';

/** What a blob push did: the registry already had it, mounted it from another repository, or received it. */
export type BlobPushOutcome = 'exists' | 'mounted' | 'uploaded';

export interface BlobPushOptions {
  /** Another repository on the same registry that holds the blob: mounted instead of uploaded when the registry allows it. */
  mountFrom?: string;
  /** Upload in PATCH requests of this many bytes instead of one PUT (for proxies that cap request bodies). */
  chunkSize?: number;
  signal?: AbortSignal;
}

/** Bytes to upload, readable again from any offset (a retried request starts over). */
export interface UploadBody {
  size: number;
  /** A stream of bytes [start, end). */
  open(start: number, end: number): Readable;
}

export function fileBody(path: string, size: number): UploadBody {
  return { size, open: (start, end) => createReadStream(path, { start, end: end - 1, highWaterMark: 1 << 20 }) };
}

export function bytesBody(bytes: Buffer): UploadBody {
  return { size: bytes.length, open: (start, end) => Readable.from([bytes.subarray(start, end)]) };
}

/** Registry answers to writes are small JSON errors or empty bodies. */
const MAX_WRITE_RESPONSE_BYTES = 64 * 1024;

/**
 * The write side of the distribution API for one repository: blob existence by HEAD, cross-repository
 * mounts, monolithic or chunked uploads finished with the digest, and manifest PUTs with their media
 * type. Requests go through the client's retry/auth/redirect stack, with a push scope.
 */
export class RegistryPusher {
  private constructor(
    private readonly endpoint: PushEndpoint,
    readonly reference: ImageReference,
  ) {}

  static async open(client: RegistryClient, reference: ImageReference): Promise<RegistryPusher> {
    return new RegistryPusher(await client.pushEndpoint(reference), reference);
  }

  /** Whether the repository already holds the blob (HEAD). */
  async hasBlob(digest: Digest, signal?: AbortSignal): Promise<boolean> {
    const response = await this.send({ method: 'HEAD', url: this.url(`blobs/${digest}`), headers: {}, ...withSignal(signal) });
    if (response.status === 200) return true;
    if (response.status === 404) return false;
    throw writeError(response, 'HEAD', `blob ${digest}`);
  }

  /** Makes the blob present in the repository with as little transfer as the registry allows. */
  async pushBlob(blob: { digest: Digest; size: number }, body: UploadBody, options: BlobPushOptions = {}): Promise<BlobPushOutcome> {
    if (body.size !== blob.size) throw new RangeError(`blob ${blob.digest}: ${body.size} bytes to upload, descriptor says ${blob.size}`);
    if (await this.hasBlob(blob.digest, options.signal)) return 'exists';
    const started = await this.startUpload(blob.digest, options);
    if (started === 'mounted') return 'mounted';
    const location = options.chunkSize ? await this.uploadChunks(started, body, options.chunkSize, options.signal) : started;
    await this.finishUpload(location, blob.digest, options.chunkSize ? undefined : body, options.signal);
    return 'uploaded';
  }

  /** PUTs a manifest or index under a tag or its digest; returns the digest the registry stored. */
  async pushManifest(tagOrDigest: string, bytes: Buffer, mediaType: string, signal?: AbortSignal): Promise<Digest> {
    const digest = sha256(bytes);
    const response = await this.send({
      method: 'PUT',
      url: this.url(`manifests/${tagOrDigest}`),
      headers: { 'content-type': mediaType, 'content-length': String(bytes.length) },
      body: bytes,
      labels: { kind: 'manifest' },
      ...withSignal(signal),
    });
    if (response.status !== 201 && response.status !== 200) throw writeError(response, 'PUT', `manifest ${this.reference.repository}:${tagOrDigest}`);
    const stored = header(response, 'docker-content-digest');
    if (stored && stored !== digest) throw new DigestMismatchError(`registry stored manifest ${this.reference.repository}:${tagOrDigest} as ${stored}, expected ${digest}`);
    return digest;
  }

  /** POST to the uploads endpoint: a mount answered 201 is done; otherwise the upload session's URL. */
  private async startUpload(digest: Digest, options: BlobPushOptions): Promise<URL | 'mounted'> {
    const url = this.url('blobs/uploads/');
    const mountFrom = options.mountFrom && options.mountFrom !== this.reference.repository ? options.mountFrom : undefined;
    if (mountFrom) {
      url.searchParams.set('mount', digest);
      url.searchParams.set('from', mountFrom);
    }
    const scope = mountFrom ? `${this.pushScope()} repository:${mountFrom}:pull` : this.pushScope();
    const response = await this.send({ method: 'POST', url, headers: { 'content-length': '0' }, body: '', scope, ...withSignal(options.signal) });
    if (mountFrom && response.status === 201) return 'mounted';
    if (response.status !== 202) throw writeError(response, 'POST', `start upload of ${digest}`);
    return this.location(response);
  }

  private async uploadChunks(location: URL, body: UploadBody, chunkSize: number, signal?: AbortSignal): Promise<URL> {
    let current = location;
    for (let start = 0; start < body.size; start += chunkSize) {
      const end = Math.min(body.size, start + chunkSize);
      const response = await this.send({
        method: 'PATCH',
        url: current,
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(end - start), 'content-range': `${start}-${end - 1}` },
        body: () => body.open(start, end),
        labels: { kind: 'blob' },
        ...withSignal(signal),
      });
      if (response.status !== 202) throw writeError(response, 'PATCH', `upload bytes ${start}-${end - 1}`);
      current = this.location(response);
    }
    return current;
  }

  /** The closing PUT carries the digest (and, for a monolithic upload, every byte). */
  private async finishUpload(location: URL, digest: Digest, body: UploadBody | undefined, signal?: AbortSignal): Promise<void> {
    const url = new URL(location);
    url.searchParams.set('digest', digest);
    const size = body?.size ?? 0;
    const response = await this.send({
      method: 'PUT',
      url,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
      body: body ? () => body.open(0, size) : '',
      labels: { kind: 'blob', blob: digest },
      ...withSignal(signal),
    });
    if (response.status !== 201) throw writeError(response, 'PUT', `finish upload of ${digest}`);
  }

  private location(response: HttpResponse): URL {
    const value = header(response, 'location');
    if (!value) throw new InvalidResponseError(`${this.reference.registry}: upload answer (HTTP ${response.status}) has no Location`);
    return new URL(value, response.url);
  }

  private send(request: Omit<HttpRequest, 'maxBodyBytes'>): Promise<HttpResponse> {
    return this.endpoint.send({ scope: this.pushScope(), ...request, maxBodyBytes: MAX_WRITE_RESPONSE_BYTES });
  }

  private pushScope(): string {
    return `repository:${this.reference.repository}:pull,push`;
  }

  private url(path: string): URL {
    return new URL(`${this.endpoint.base.href.replace(/\/+$/, '')}/${this.reference.repository}/${path}`);
  }
}

function withSignal(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal ? { signal } : {};
}

/** The registry's own explanation (`{"errors":[{"code","message"}]}`) goes into the error. */
function writeError(response: HttpResponse, method: HttpRequest['method'], what: string): HttpStatusError {
  return new HttpStatusError(method, response.url, response.status, `${what}${registryErrorDetail(response.body)}`);
}

function registryErrorDetail(body: Buffer): string {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: { code?: unknown; message?: unknown }[] };
    const errors = (parsed.errors ?? []).map((e) => [e.code, e.message].filter((v) => typeof v === 'string').join(': ')).filter(Boolean);
    return errors.length > 0 ? `: ${errors.join('; ')}` : '';
  } catch {
    return '';
  }
}
