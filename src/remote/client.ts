import { isDigest, sha256, type Digest } from '../util/digest.js';
import { Authenticator, authMiddleware } from './auth/authenticator.js';
import { StaticCredentialStore, chainCredentialStores, type CredentialStore } from './auth/credentials.js';
import { DockerConfigCredentialStore, type DockerConfigOptions } from './auth/docker-config.js';
import { RegistryBlobSource, type BlobLocation, type BlobReadOptions, type OpenBlobOptions } from './blob-source.js';
import { AuthError, DigestMismatchError, HttpStatusError, ManifestError, ManifestNotFoundError, RegistryError, isAbortError } from './errors.js';
import { resolveHosts, type Capability, type HostEndpoint, type HostsOptions } from './hosts.js';
import { logMiddleware } from './http/log.js';
import { observeMiddleware } from './http/observe.js';
import { redirectMiddleware } from './http/redirect.js';
import { DEFAULT_RETRY_POLICY, retryMiddleware, type RetryPolicy } from './http/retry.js';
import { Transport } from './http/transport.js';
import { compose, header, type HttpResponse, type Send } from './http/types.js';
import { parseManifestDocument, selectPlatform, MAX_MANIFEST_BYTES, type Descriptor, type ImageIndex, type ImageManifest, type ManifestDocument } from './manifest.js';
import { MANIFEST_ACCEPT, MediaTypes } from './media-types.js';
import type { RemoteObserver } from './observer.js';
import { hostPlatform, type Platform } from './platform.js';
import { RangeSupport } from './range-support.js';
import { redactUrl } from './redact.js';
import { ImageReference, parseReference } from './reference.js';

export interface RegistryClientOptions extends HostsOptions {
  /** Where credentials come from; default: `settings` credentials, then docker's config.json. */
  credentials?: CredentialStore;
  /** Options of the default docker config.json store; `false` disables it. */
  dockerConfig?: DockerConfigOptions | false;
  retry?: Partial<RetryPolicy>;
  /** No headers or body bytes for this long fails an attempt. Default 30 s. */
  requestTimeoutMs?: number;
  /** Connections per host (undici Pool size). Default 8. */
  maxConnectionsPerHost?: number;
  blobRead?: Partial<BlobReadOptions>;
  observer?: RemoteObserver;
  /** Debug log, one line per HTTP exchange; URLs and headers are redacted. */
  log?: (line: string) => void;
}

export interface FetchedManifest {
  descriptor: Descriptor;
  document: ManifestDocument;
  /** The exact bytes, whose sha256 is `descriptor.digest`. */
  bytes: Buffer;
  /** Endpoint host that served it (a mirror or the registry). */
  host: string;
}

export interface ResolvedImage {
  /** The input reference pinned to the digest of what the tag pointed at. */
  reference: ImageReference;
  /** Set when the reference named an index / manifest list. */
  index?: { descriptor: Descriptor; index: ImageIndex };
  manifestDescriptor: Descriptor;
  manifest: ImageManifest;
  host: string;
}

/** Where and how to send a registry's write requests (see `RegistryClient.pushEndpoint`). */
export interface PushEndpoint {
  send: Send;
  /** host[:port]. */
  host: string;
  /** API root including `/v2`. */
  base: URL;
}

interface EndpointClient {
  endpoint: HostEndpoint;
  send: Send;
  transport: Transport;
}

/**
 * Entry point of registry access: resolves references (mirrors first, per hosts.toml), fetches
 * digest-checked manifests and opens blobs as range-reading RandomAccessSources. One instance per
 * process: it owns the connection pools, token caches and what it learnt about each host.
 */
export class RegistryClient {
  private readonly endpoints = new Map<string, EndpointClient>();
  private readonly credentials: CredentialStore;
  private readonly retry: RetryPolicy;
  private readonly rangeSupport = new RangeSupport();

  constructor(private readonly options: RegistryClientOptions = {}) {
    const stores: CredentialStore[] = [new StaticCredentialStore(options.settings ?? {})];
    if (options.dockerConfig !== false) stores.push(new DockerConfigCredentialStore(options.dockerConfig ?? {}));
    this.credentials = options.credentials ?? chainCredentialStores(...stores);
    this.retry = { ...DEFAULT_RETRY_POLICY, ...options.retry };
  }

  /** Resolves a tag or digest to one image manifest, choosing `platform` (default: this host's) from an index. */
  async resolve(reference: string | ImageReference, options: { platform?: Platform; signal?: AbortSignal } = {}): Promise<ResolvedImage> {
    const ref = typeof reference === 'string' ? parseReference(reference) : reference;
    const top = await this.fetchManifest(ref, ref.object, options.signal);
    const pinned = ref.withDigest(top.descriptor.digest);
    if (top.document.kind === 'manifest') return { reference: pinned, manifestDescriptor: top.descriptor, manifest: top.document.manifest, host: top.host };
    const chosen = selectPlatform(top.document.index, options.platform ?? hostPlatform());
    const child = await this.fetchManifest(ref, chosen.digest, options.signal);
    if (child.document.kind !== 'manifest') throw new ManifestError(`${ref}: index entry ${chosen.digest} is not an image manifest`);
    return {
      reference: pinned,
      index: { descriptor: top.descriptor, index: top.document.index },
      manifestDescriptor: { ...chosen, mediaType: child.descriptor.mediaType, size: child.bytes.length },
      manifest: child.document.manifest,
      host: child.host,
    };
  }

  /** One manifest or index by tag or digest; by digest, the bytes are checked against it. */
  async fetchManifest(ref: ImageReference, object: string, signal?: AbortSignal): Promise<FetchedManifest> {
    const capability: Capability = isDigest(object) ? 'pull' : 'resolve';
    return this.tryEndpoints(ref, capability, async (client) => {
      const url = this.objectUrl(client.endpoint, ref, 'manifests', object);
      const response = await client.send({
        method: 'GET',
        url,
        headers: { accept: MANIFEST_ACCEPT },
        maxBodyBytes: MAX_MANIFEST_BYTES,
        scope: pullScope(ref),
        labels: { kind: 'manifest' },
        ...(signal ? { signal } : {}),
      });
      if (response.status !== 200) throw statusError(response, `manifest ${ref.repository}:${object}`);
      const digest = sha256(response.body);
      if (isDigest(object) && digest !== object) throw new DigestMismatchError(`manifest ${ref.repository}@${object} from ${client.endpoint.host} has digest ${digest}`);
      const announced = header(response, 'docker-content-digest');
      if (announced && isDigest(announced) && announced !== digest) throw new DigestMismatchError(`manifest ${ref.repository}:${object} from ${client.endpoint.host}: Docker-Content-Digest ${announced} does not match the body (${digest})`);
      const document = parseManifestDocument(response.body, header(response, 'content-type'));
      const mediaType = document.kind === 'manifest' ? document.manifest.mediaType : document.index.mediaType;
      return { descriptor: { mediaType, digest, size: response.body.length }, document, bytes: response.body, host: client.endpoint.host };
    });
  }

  /**
   * The manifests that name `digest` as their subject (OCI referrers API), filtered by artifact type.
   * Undefined when the registry has no referrers API (404): callers then try the `sha256-<hex>` tag.
   */
  async fetchReferrers(ref: ImageReference, digest: Digest, options: { artifactType?: string; signal?: AbortSignal } = {}): Promise<Descriptor[] | undefined> {
    return this.tryEndpoints(ref, 'pull', async (client) => {
      const url = new URL(`${client.endpoint.base.href.replace(/\/+$/, '')}/${ref.repository}/referrers/${digest}`);
      if (options.artifactType) url.searchParams.set('artifactType', options.artifactType);
      const response = await client.send({
        method: 'GET',
        url,
        headers: { accept: MediaTypes.ociIndex },
        maxBodyBytes: MAX_MANIFEST_BYTES,
        scope: pullScope(ref),
        labels: { kind: 'manifest' },
        ...(options.signal ? { signal: options.signal } : {}),
      });
      if (response.status === 404) return undefined;
      if (response.status !== 200) throw statusError(response, `referrers of ${ref.repository}@${digest}`);
      const document = parseManifestDocument(response.body, MediaTypes.ociIndex);
      if (document.kind !== 'index') throw new ManifestError(`referrers of ${ref.repository}@${digest}: the registry answered with a manifest, not an index`);
      // Registries may ignore the filter (OCI-Filters-Applied says whether they did).
      return document.index.manifests.filter((m) => !options.artifactType || m.artifactType === options.artifactType);
    });
  }

  /** A small blob (image config) read whole and checked against its digest. */
  async fetchBlob(ref: ImageReference, descriptor: { digest: Digest; size: number }, signal?: AbortSignal): Promise<Buffer> {
    const source = await this.openBlob(ref, descriptor, { signal });
    const data = await source.readAt(0, source.size, signal);
    const actual = sha256(data);
    if (actual !== descriptor.digest) throw new DigestMismatchError(`blob ${descriptor.digest} has digest ${actual}`);
    return data;
  }

  /**
   * A blob as a RandomAccessSource. Pass the size from the manifest to skip the probe. Mirrors with
   * the `pull` capability are tried first; a failing one is left for the next.
   */
  async openBlob(ref: ImageReference, descriptor: { digest: Digest; size?: number }, options: { read?: Partial<BlobReadOptions>; signal?: AbortSignal } = {}): Promise<RegistryBlobSource> {
    return RegistryBlobSource.open(await this.blobOptions(ref, descriptor, options));
  }

  /** A blob and its last `tailBytes` bytes, read in one request that also learns its size (see RegistryBlobSource.openAtTail). */
  async openBlobAtTail(ref: ImageReference, descriptor: { digest: Digest; size?: number }, tailBytes: number, options: { read?: Partial<BlobReadOptions>; signal?: AbortSignal } = {}): Promise<{ source: RegistryBlobSource; tail: Buffer }> {
    return RegistryBlobSource.openAtTail(await this.blobOptions(ref, descriptor, options), tailBytes);
  }

  private async blobOptions(ref: ImageReference, descriptor: { digest: Digest; size?: number }, options: { read?: Partial<BlobReadOptions>; signal?: AbortSignal }): Promise<OpenBlobOptions> {
    const endpoints = (await this.endpointsFor(ref.registry, 'pull')).map(
      (client): BlobLocation => ({ send: client.send, url: this.objectUrl(client.endpoint, ref, 'blobs', descriptor.digest), scope: pullScope(ref) }),
    );
    return {
      digest: descriptor.digest,
      ...(descriptor.size !== undefined ? { size: descriptor.size } : {}),
      locations: endpoints,
      read: { ...this.options.blobRead, ...options.read },
      ...(this.options.observer ? { observer: this.options.observer } : {}),
      rangeSupport: this.rangeSupport,
      ...(options.signal ? { signal: options.signal } : {}),
    };
  }

  /**
   * The registry's own endpoint for writes, with the same retry, auth, redirect and observe stack as
   * reads. Pushes never go to mirrors: a mirror is a read cache of the registry.
   */
  async pushEndpoint(ref: ImageReference): Promise<PushEndpoint> {
    const client = (await this.endpointsFor(ref.registry, 'push')).find((c) => !c.endpoint.mirror);
    if (!client) throw new RegistryError(`${ref.registry}: no endpoint with capability push (check hosts.toml)`);
    return { send: client.send, host: client.endpoint.host, base: client.endpoint.base };
  }

  /** Why a host is limited to single-range requests, if it is. */
  multiRangeFallbackReason(host: string): string | undefined {
    return this.rangeSupport.reason(host);
  }

  async close(): Promise<void> {
    const clients = [...this.endpoints.values()];
    this.endpoints.clear();
    await Promise.all(clients.map((c) => c.transport.close()));
  }

  private objectUrl(endpoint: HostEndpoint, ref: ImageReference, kind: 'manifests' | 'blobs', object: string): URL {
    const url = new URL(`${endpoint.base.href.replace(/\/+$/, '')}/${ref.repository}/${kind}/${object}`);
    // containerd tells a mirror which upstream namespace is meant.
    if (endpoint.mirror) url.searchParams.set('ns', ref.registry);
    return url;
  }

  private async tryEndpoints<T>(ref: ImageReference, capability: Capability, operation: (client: EndpointClient) => Promise<T>): Promise<T> {
    const clients = await this.endpointsFor(ref.registry, capability);
    if (clients.length === 0) throw new RegistryError(`${ref}: no endpoint with capability ${capability} (check hosts.toml)`);
    const failures: string[] = [];
    let lastError: unknown;
    for (const client of clients) {
      try {
        return await operation(client);
      } catch (err) {
        if (isAbortError(err) || !(err instanceof RegistryError)) throw err;
        lastError = err;
        failures.push(`${client.endpoint.host}: ${err.message}`);
      }
    }
    if (clients.length === 1) throw lastError;
    throw new RegistryError(`${ref}: every endpoint failed:\n  ${failures.join('\n  ')}`, { cause: lastError });
  }

  private async endpointsFor(registry: string, capability: Capability): Promise<EndpointClient[]> {
    const endpoints = await resolveHosts(registry, this.options);
    return endpoints.filter((e) => e.capabilities.has(capability)).map((e) => this.endpointClient(e));
  }

  private endpointClient(endpoint: HostEndpoint): EndpointClient {
    const key = JSON.stringify([endpoint.base.origin, endpoint.skipVerify, endpoint.ca, endpoint.headers]);
    const existing = this.endpoints.get(key);
    if (existing) return { ...existing, endpoint };
    const maxConnections = this.options.settings?.[endpoint.host]?.maxConnections ?? this.options.maxConnectionsPerHost ?? 8;
    const transport = new Transport({ maxConnections, requestTimeoutMs: this.options.requestTimeoutMs ?? 30_000, ca: endpoint.ca, skipVerify: endpoint.skipVerify, headers: endpoint.headers });
    const observe = observeMiddleware(this.options.observer);
    const log = logMiddleware(this.options.log);
    const tokenSend = compose(transport.send, retryMiddleware(this.retry), redirectMiddleware(), observe, log);
    const authenticator = new Authenticator(endpoint.base.origin, endpoint.host, this.credentials, tokenSend);
    // Retries are outermost so a retried request is re-authenticated and re-redirected; metrics see every hop.
    const send = compose(transport.send, retryMiddleware(this.retry), authMiddleware(authenticator), redirectMiddleware(), observe, log);
    const client = { endpoint, send, transport };
    this.endpoints.set(key, client);
    return client;
  }
}

export function pullScope(ref: ImageReference): string {
  return `repository:${ref.repository}:pull`;
}

function statusError(response: HttpResponse, what: string): RegistryError {
  if (response.status === 401) return new AuthError(`${what} on ${response.url.host}: authentication required or credentials refused (HTTP 401)`);
  if (response.status === 404) return new ManifestNotFoundError(`${what} not found on ${response.url.host} (HTTP 404, ${redactUrl(response.url)})`);
  return new HttpStatusError('GET', response.url, response.status, what);
}
