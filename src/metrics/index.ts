export { DaemonMetrics } from './daemon-metrics.js';
export { serveMetrics, parseListenAddress, type MetricsServer } from './server.js';
export { FALLBACK_CATEGORIES, type FallbackCategory } from './fallback.js';
export type { WatchedLayer } from './layer-metrics.js';
export type { FuseObserver } from '../fs/fuse-observer.js';
