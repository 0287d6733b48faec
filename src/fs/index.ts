export { MountManager, cleanStaleMounts, findLazypullMounts } from './mount-manager.js';
export { LayerFetch, LayerMount, DEFAULT_FETCH_DEADLINE_MS, DEFAULT_READ_AHEAD_BYTES, DEFAULT_KERNEL_CACHE_SECONDS, FUSE_SUBTYPE, type LayerFetchOptions, type LayerMountOptions } from './layer-mount.js';
export { DEFAULT_BACKGROUND_FETCH, type BackgroundFetchOptions, type LayerProgress } from './background-fetch.js';
export { ChunkFetcher, FetchFailedError, type FetchCounters, type FetchPriority, type RangeSource } from './chunk-fetcher.js';
export { inlineDecoder, type ChunkDecoder } from './chunk-decoder.js';
export { LayerView, OPAQUE_XATTR, type FsNode } from './layer-view.js';
export { WorkerDecoder, ChunkDecodeError, DEFAULT_WORKER_DECODER, type WorkerDecoderOptions } from './worker-decoder.js';
export { observeOperations, type FuseObserver, type FuseOperationName } from './fuse-observer.js';
export { recordAccesses, type AccessRecorder, type AccessKind } from './access-recorder.js';
