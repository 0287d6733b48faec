import type { Logger } from './snapshotter.js';

export type Level = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/**
 * One line per event on `write` (stderr by default, so journald keeps it):
 * `time=... level=info msg="..." key=value`, the logfmt containerd itself writes.
 */
export function createLogger(level: Level, write: (line: string) => void = (line) => process.stderr.write(line)): Logger & { error(message: string, fields?: Record<string, unknown>): void } {
  const emit = (at: Level) => (message: string, fields: Record<string, unknown> = {}) => {
    if (RANK[at] < RANK[level]) return;
    const pairs = Object.entries(fields).map(([key, value]) => `${key}=${logfmtValue(value)}`);
    write([`time=${new Date().toISOString()}`, `level=${at}`, `msg=${logfmtValue(message)}`, ...pairs].join(' ') + '\n');
  };
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') };
}

function logfmtValue(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return /^[^\s"=]+$/.test(text) ? text : JSON.stringify(text);
}
