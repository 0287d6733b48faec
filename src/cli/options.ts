import { InvalidArgumentError } from 'commander';
import { parsePlatform, type Platform } from '../remote/platform.js';

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

/** `--platform os/arch[/variant]` as a commander option parser. */
export function parsePlatformOption(value: string): Platform {
  try {
    return parsePlatform(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** Bytes for people: `512 B`, `66.1 KiB`, `1.5 GiB`. */
export function humanSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}
