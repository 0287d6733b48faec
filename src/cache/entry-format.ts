/**
 * The on-disk form of one cache entry: a small header, then the chunk bytes.
 *
 * Entries are renamed into place only after they are fully written (and fsynced), so a crash never
 * leaves a partial file under an entry's name. The header still guards every read, because a power loss,
 * a full disk or a stray editor can leave a file that is short, zero-filled or altered: its length,
 * key and checksums must all match before a byte is served. crc32 (about 5 GB/s here) is used rather
 * than re-hashing with sha256 (about 1.6 GB/s), which stays available as an option for digest keys.
 *
 * Layout, little-endian:
 *   0  magic "LZPC"        4 bytes
 *   4  format version      u16
 *   6  key length          u16
 *   8  data length         u64
 *  16  crc32 of the data   u32
 *  20  crc32 of the header u32 (bytes 0-19, then the key)
 *  24  key (utf-8)
 *      data
 */
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';

const MAGIC = Buffer.from('LZPC', 'latin1');
const FORMAT_VERSION = 1;
const FIXED_HEADER_BYTES = 24;
const MAX_KEY_BYTES = 0xffff;
const DIGEST_KEY = /^sha256:[0-9a-f]{64}$/;

export type EntryCheck = { ok: true; data: Buffer } | { ok: false; reason: string };

export function encodeEntryHeader(key: string, data: Uint8Array): Buffer {
  const keyBytes = Buffer.from(key, 'utf8');
  if (keyBytes.length > MAX_KEY_BYTES) throw new RangeError(`cache key longer than ${MAX_KEY_BYTES} bytes`);
  const header = Buffer.alloc(FIXED_HEADER_BYTES + keyBytes.length);
  MAGIC.copy(header, 0);
  header.writeUInt16LE(FORMAT_VERSION, 4);
  header.writeUInt16LE(keyBytes.length, 6);
  header.writeBigUInt64LE(BigInt(data.length), 8);
  header.writeUInt32LE(crc32(data), 16);
  keyBytes.copy(header, FIXED_HEADER_BYTES);
  header.writeUInt32LE(headerChecksum(header), 20);
  return header;
}

/** Length of the file that stores `dataLength` bytes under `key`. */
export function entryFileLength(key: string, dataLength: number): number {
  return FIXED_HEADER_BYTES + Buffer.byteLength(key, 'utf8') + dataLength;
}

/**
 * Checks a whole entry file read from disk and returns its data (a view into `file`).
 * `verifyDigest` re-hashes the data of `sha256:` keys as well, for callers that distrust the disk itself.
 */
export function decodeEntry(file: Buffer, expectedKey: string, verifyDigest: boolean): EntryCheck {
  if (file.length < FIXED_HEADER_BYTES) return fail(`file of ${file.length} bytes is shorter than a header`);
  if (!file.subarray(0, 4).equals(MAGIC)) return fail('bad magic');
  const version = file.readUInt16LE(4);
  if (version !== FORMAT_VERSION) return fail(`unknown format version ${version}`);
  const keyLength = file.readUInt16LE(6);
  const dataStart = FIXED_HEADER_BYTES + keyLength;
  if (file.length < dataStart) return fail('file ends inside the header');
  if (headerChecksum(file.subarray(0, dataStart)) !== file.readUInt32LE(20)) return fail('header checksum mismatch');
  const key = file.toString('utf8', FIXED_HEADER_BYTES, dataStart);
  if (key !== expectedKey) return fail(`entry holds key ${key}`);
  const dataLength = file.readBigUInt64LE(8);
  if (BigInt(file.length - dataStart) !== dataLength) {
    return fail(`expected ${dataLength} data bytes, file has ${file.length - dataStart}`);
  }
  const data = file.subarray(dataStart);
  if (crc32(data) !== file.readUInt32LE(16)) return fail('data checksum mismatch');
  if (verifyDigest && DIGEST_KEY.test(key) && `sha256:${createHash('sha256').update(data).digest('hex')}` !== key) {
    return fail('data does not match its digest');
  }
  return { ok: true, data };
}

function headerChecksum(header: Buffer): number {
  return crc32(header.subarray(FIXED_HEADER_BYTES), crc32(header.subarray(0, 20)));
}

function fail(reason: string): EntryCheck {
  return { ok: false, reason };
}
