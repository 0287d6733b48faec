/** Public API of registry access, used by the snapshotter, rpull, the converter and the CLI. */
export { RegistryClient, pullScope, type RegistryClientOptions, type ResolvedImage, type FetchedManifest, type PushEndpoint } from './client.js';
export { RegistryPusher, fileBody, bytesBody, type BlobPushOutcome, type BlobPushOptions, type UploadBody } from './push.js';
export { RegistryBlobSource, RangeNotSupportedError, DEFAULT_BLOB_READ_OPTIONS, type BlobReadOptions, type BlobLocation } from './blob-source.js';
export { ImageReference, parseReference, isLocalHost, DOCKER_HUB } from './reference.js';
export { parseManifestDocument, selectPlatform, MAX_MANIFEST_BYTES, type Descriptor, type ImageManifest, type ImageIndex, type ManifestDocument } from './manifest.js';
export { MediaTypes, MANIFEST_ACCEPT, isIndexMediaType, isManifestMediaType } from './media-types.js';
export { hostPlatform, parsePlatform, formatPlatform, platformMatches, type Platform } from './platform.js';
export { resolveHosts, DEFAULT_HOSTS_DIR, HostsConfigError, type HostSettings, type HostEndpoint, type HostsOptions, type Capability } from './hosts.js';
export { StaticCredentialStore, chainCredentialStores, type CredentialStore, type Credentials } from './auth/credentials.js';
export { DockerConfigCredentialStore, type DockerConfigOptions } from './auth/docker-config.js';
export { CountingObserver, combineObservers, type RemoteObserver, type ExchangeEvent, type ReadEvent } from './observer.js';
export { DEFAULT_RETRY_POLICY, type RetryPolicy } from './http/retry.js';
export { redactUrl } from './redact.js';
export * from './errors.js';
