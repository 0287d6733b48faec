/** Shared test data for the SOCI unit tests. */

/** Deterministic content mixing compressible text and incompressible bytes, so deflate emits varied blocks. */
export function mixedContent(length: number, seed = 7): Buffer {
  const out = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  let pos = 0;
  while (pos < length) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const run = 1000 + (x % 20000);
    if (x & 1) {
      for (let i = 0; i < run && pos < length; i++) {
        x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
        out[pos++] = x & 0xff;
      }
    } else {
      const line = Buffer.from(`line ${x} of some text, repeated with variations ${x % 97}\n`);
      for (let i = 0; i < run && pos < length; i++) out[pos++] = line[i % line.length]!;
    }
  }
  return out;
}

import { gzipSync } from 'node:zlib';
import { TAR_EOF, paddingFor, tarFileEntry, ustarHeader } from '../../../src/tar/header.js';
import { buildZtoc } from '../../../src/soci/build.js';

const PAX_LOCAL = 0x78; // 'x'
const DIR = 0x35; // '5'

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let length = body.length + 1;
  while (String(length).length + body.length !== length) length++;
  return Buffer.concat([Buffer.from(String(length)), body]);
}

/** A tar entry preceded by a PAX header carrying `records`. */
export function paxFileEntry(name: string, payload: Buffer, records: Record<string, Buffer>): Buffer {
  const pax = Buffer.concat(Object.entries(records).map(([k, v]) => paxRecord(k, v)));
  const header = ustarHeader({ name: 'PaxHeaders/x', size: pax.length, mode: 0o644, typeflag: PAX_LOCAL });
  return Buffer.concat([header, pax, Buffer.alloc(paddingFor(pax.length)), tarFileEntry(name, payload)]);
}

export interface SampleLayer {
  tar: Buffer;
  files: Map<string, Buffer>;
}

/** A tar with a directory, many small files (they share spans), a large file (several spans) and PAX xattrs. */
export function sampleTar(): SampleLayer {
  const files = new Map<string, Buffer>();
  const parts: Buffer[] = [ustarHeader({ name: 'dir/', size: 0, mode: 0o755, typeflag: DIR })];
  for (let i = 0; i < 40; i++) {
    const data = Buffer.from(`small file ${i}\n`.repeat(1 + i * 13));
    files.set(`dir/small-${i}.txt`, data);
    parts.push(tarFileEntry(`dir/small-${i}.txt`, data));
  }
  const big = mixedContent(300_000, 3);
  files.set('big.bin', big);
  parts.push(tarFileEntry('big.bin', big));
  const withXattr = Buffer.from('has an xattr\n');
  files.set('dir/xattr.txt', withXattr);
  parts.push(paxFileEntry('dir/xattr.txt', withXattr, { 'SCHILY.xattr.user.note': Buffer.from([0, 1, 2, 0xff]), mtime: Buffer.from('1700000000.123456789') }));
  files.set('empty', Buffer.alloc(0));
  parts.push(tarFileEntry('empty', Buffer.alloc(0)));
  parts.push(TAR_EOF);
  return { tar: Buffer.concat(parts), files };
}

export const SMALL_SPAN = 16 * 1024;

export async function sampleZtoc(blob: Buffer, spanSize = SMALL_SPAN) {
  const built = await buildZtoc((async function* () { yield blob; })(), { spanSize, minLayerSize: 0 });
  if (!built) throw new Error('no zTOC built');
  return built;
}

export const gzipped = (tar: Buffer): Buffer => gzipSync(tar, { level: 6 });
