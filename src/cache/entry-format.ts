/**
 * The on-disk form of one cache entry: a small header, then the chunk bytes.
 *
 * Entries are renamed into place only after they are fully written (and fsynced), so a crash never
 * leaves a partial file under an entry's name. The header still guards every read, because a power loss,
 * a full disk or a stray editor can leave a file that is short, zero-filled or altered: its length,
 * key and checksums must all match before a byte is served. crc32 (about 5 GB/s here) is used rather
 * than re-hashing with sha256 (about 1.6 GB/s), which stays available as an option for digest keys.
 *
 * The data is checksummed in 64 KiB blocks, so a reader can verify a 128 KiB FUSE read by reading only
 * the blocks it covers instead of the whole 4 MiB chunk (version 1 had one crc over all the data; its
 * entries read as damaged and are fetched again).
 *
 * Layout, little-endian:
 *   0  magic "LZPC"        4 bytes
 *   4  format version      u16 (2)
 *   6  key length          u16
 *   8  data length         u64
 *  16  block size          u32
 *  20  crc32 of the header u32 (bytes 0-19, then the key, then the block checksums)
 *  24  key (utf-8)
 *      crc32 of each data block, u32 each
 *      data
 */
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';

const MAGIC = Buffer.from('LZPC', 'latin1');
const FORMAT_VERSION = 2;
const FIXED_HEADER_BYTES = 24;
const MAX_KEY_BYTES = 0xffff;
const DIGEST_KEY = /^sha256:[0-9a-f]{64}$/;
/** Checksum granularity: divides the 128 KiB FUSE reads and every power-of-two chunk size above it. */
export const ENTRY_BLOCK_BYTES = 64 * 1024;
/** Enough to hold the header of an entry with a long key and a 16 MiB chunk in one read. */
export const ENTRY_HEADER_PROBE_BYTES = 4096;

export type EntryCheck = { ok: true; data: Buffer } | { ok: false; reason: string };

/** What a range reader needs from an entry's header. */
export interface EntryHeader {
  dataStart: number;
  dataLength: number;
  blockBytes: number;
  /** crc32 of each data block. */
  blockChecksums: Uint32Array;
}

export type HeaderCheck = { ok: true; header: EntryHeader } | { ok: false; reason: string; needBytes?: number };

export function encodeEntryHeader(key: string, data: Uint8Array): Buffer {
  const keyBytes = Buffer.from(key, 'utf8');
  if (keyBytes.length > MAX_KEY_BYTES) throw new RangeError(`cache key longer than ${MAX_KEY_BYTES} bytes`);
  const blocks = blockCount(data.length, ENTRY_BLOCK_BYTES);
  const header = Buffer.alloc(FIXED_HEADER_BYTES + keyBytes.length + 4 * blocks);
  MAGIC.copy(header, 0);
  header.writeUInt16LE(FORMAT_VERSION, 4);
  header.writeUInt16LE(keyBytes.length, 6);
  header.writeBigUInt64LE(BigInt(data.length), 8);
  header.writeUInt32LE(ENTRY_BLOCK_BYTES, 16);
  keyBytes.copy(header, FIXED_HEADER_BYTES);
  const table = FIXED_HEADER_BYTES + keyBytes.length;
  for (let block = 0; block < blocks; block++) {
    const start = block * ENTRY_BLOCK_BYTES;
    header.writeUInt32LE(crc32(data.subarray(start, Math.min(data.length, start + ENTRY_BLOCK_BYTES))), table + 4 * block);
  }
  header.writeUInt32LE(headerChecksum(header), 20);
  return header;
}

/** Length of the file that stores `dataLength` bytes under `key`. */
export function entryFileLength(key: string, dataLength: number): number {
  return FIXED_HEADER_BYTES + Buffer.byteLength(key, 'utf8') + 4 * blockCount(dataLength, ENTRY_BLOCK_BYTES) + dataLength;
}

/**
 * Checks the header at the start of `head` (the whole file or its first bytes). When `head` is too short
 * for the block checksums, `needBytes` says how much to read.
 */
export function decodeEntryHeader(head: Buffer, expectedKey: string): HeaderCheck {
  if (head.length < FIXED_HEADER_BYTES) return fail(`file of ${head.length} bytes is shorter than a header`);
  if (!head.subarray(0, 4).equals(MAGIC)) return fail('bad magic');
  const version = head.readUInt16LE(4);
  if (version !== FORMAT_VERSION) return fail(`unknown format version ${version}`);
  const keyLength = head.readUInt16LE(6);
  const dataLength = Number(head.readBigUInt64LE(8));
  const blockBytes = head.readUInt32LE(16);
  if (blockBytes === 0 || !Number.isSafeInteger(dataLength)) return fail('bad block size or data length');
  const blocks = blockCount(dataLength, blockBytes);
  const dataStart = FIXED_HEADER_BYTES + keyLength + 4 * blocks;
  if (head.length < dataStart) return { ok: false, reason: 'file ends inside the header', needBytes: dataStart };
  if (headerChecksum(head.subarray(0, dataStart)) !== head.readUInt32LE(20)) return fail('header checksum mismatch');
  const key = head.toString('utf8', FIXED_HEADER_BYTES, FIXED_HEADER_BYTES + keyLength);
  if (key !== expectedKey) return fail(`entry holds key ${key}`);
  const table = FIXED_HEADER_BYTES + keyLength;
  const blockChecksums = new Uint32Array(blocks);
  for (let block = 0; block < blocks; block++) blockChecksums[block] = head.readUInt32LE(table + 4 * block);
  return { ok: true, header: { dataStart, dataLength, blockBytes, blockChecksums } };
}

/** True when `bytes`, which start at data block `firstBlock`, match their block checksums. */
export function blocksMatch(header: EntryHeader, firstBlock: number, bytes: Buffer): boolean {
  for (let at = 0, block = firstBlock; at < bytes.length; at += header.blockBytes, block++) {
    if (crc32(bytes.subarray(at, at + header.blockBytes)) !== header.blockChecksums[block]) return false;
  }
  return true;
}

/**
 * Checks a whole entry file read from disk and returns its data (a view into `file`).
 * `verifyDigest` re-hashes the data of `sha256:` keys as well, for callers that distrust the disk itself.
 */
export function decodeEntry(file: Buffer, expectedKey: string, verifyDigest: boolean): EntryCheck {
  const check = decodeEntryHeader(file, expectedKey);
  if (!check.ok) return fail(check.reason);
  const { dataStart, dataLength } = check.header;
  if (file.length - dataStart !== dataLength) return fail(`expected ${dataLength} data bytes, file has ${file.length - dataStart}`);
  const data = file.subarray(dataStart);
  if (!blocksMatch(check.header, 0, data)) return fail('data checksum mismatch');
  if (verifyDigest && DIGEST_KEY.test(expectedKey) && `sha256:${createHash('sha256').update(data).digest('hex')}` !== expectedKey) {
    return fail('data does not match its digest');
  }
  return { ok: true, data };
}

function blockCount(dataLength: number, blockBytes: number): number {
  return Math.ceil(dataLength / blockBytes);
}

function headerChecksum(header: Buffer): number {
  return crc32(header.subarray(FIXED_HEADER_BYTES), crc32(header.subarray(0, 20)));
}

function fail(reason: string): { ok: false; reason: string } {
  return { ok: false, reason };
}
