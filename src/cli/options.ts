import { InvalidArgumentError } from 'commander';

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1 << 10, kb: 1000, kib: 1 << 10, m: 1 << 20, mb: 1e6, mib: 1 << 20, g: 1 << 30, gb: 1e9, gib: 1 << 30 };

/** Sizes as users write them: 4194304, 4MiB, 512k, 1.5GB. */
export function parseSize(value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new InvalidArgumentError(`${JSON.stringify(value)} is not a size (examples: 65536, 64KiB, 4MiB)`);
  const bytes = Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes)) throw new InvalidArgumentError(`${JSON.stringify(value)} is too large`);
  return bytes;
}

/** One path per line; blank lines and `#` comments are ignored. */
export function readPathList(text: string): string[] {
  return text.split('\n').map((line) => line.replace(/#.*$/, '').trim()).filter((line) => line !== '');
}
