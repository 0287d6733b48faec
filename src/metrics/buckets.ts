/** Histogram buckets in seconds. */

/** Mounts and TOC fetches: tens of milliseconds on a warm cache up to the resolve deadline. */
export const SLOW_OPERATION_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Registry requests: a loopback round trip to a multi-second large range. */
export const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** FUSE reads: microseconds from the memory cache, milliseconds from disk, a round trip or more from the registry, up to the 30 s fetch deadline. */
export const READ_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
