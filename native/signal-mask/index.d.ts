/** Calls `fn` with every blockable signal blocked in the calling thread; threads it creates keep them blocked. */
export function callWithSignalsBlocked<T>(fn: () => T): T;
