/**
 * Where an entry lives: `<root>/entries/<first 2 hex chars>/<name>`.
 * A `sha256:` key is stored under its own hex digest, so a chunk shared by layers or images is one file.
 * Any other key (`unverified:<layer>:<offset>:<inner>`) may hold characters that are unsafe in a file name
 * and may be long, so it is stored under the sha256 of the key with a `.u` suffix; the entry header
 * keeps the key itself, and reads check it.
 */
import { createHash, randomBytes } from 'node:crypto';

const DIGEST_KEY = /^sha256:([0-9a-f]{64})$/;
const ENTRY_NAME = /^[0-9a-f]{64}(\.u)?$/;
const SHARD_NAME = /^[0-9a-f]{2}$/;
const HASHED_KEY_SUFFIX = '.u';

/** Prefix of files being written; any left at open belong to a process that died mid-write. */
export const TEMP_FILE_PREFIX = '.tmp-';

export function entryNameForKey(key: string): string {
  const digest = DIGEST_KEY.exec(key);
  if (digest?.[1] !== undefined) return digest[1];
  return createHash('sha256').update(key, 'utf8').digest('hex') + HASHED_KEY_SUFFIX;
}

export function shardOfEntry(name: string): string {
  return name.slice(0, 2);
}

export function isEntryName(name: string): boolean {
  return ENTRY_NAME.test(name);
}

export function isShardName(name: string): boolean {
  return SHARD_NAME.test(name);
}

export function newTempFileName(): string {
  return `${TEMP_FILE_PREFIX}${process.pid}-${randomBytes(8).toString('hex')}`;
}
