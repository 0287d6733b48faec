import { ByteStream } from '../util/byte-stream.js';
import { BLOCK, TypeFlag, cString, headerChecksumOk, paddingFor, parseNumeric } from './header.js';

export type EntryKind = 'reg' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface TarHeader {
  name: string;
  linkName: string;
  kind: EntryKind;
  /** The raw mode field (permission, setuid/setgid/sticky, and whatever type bits a tool put there). */
  mode: number;
  uid: number;
  gid: number;
  userName: string;
  groupName: string;
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  devMajor: number;
  devMinor: number;
  xattrs: Map<string, Buffer>;
}

export interface TarEntry {
  header: TarHeader;
  /** Every header block of this entry as it was in the input (PAX, GNU long names, the main header). */
  rawHeader: Buffer;
  /** Stream offset of the first payload byte. */
  payloadOffset: number;
}

const KINDS = new Map<number, EntryKind>([
  [TypeFlag.Reg, 'reg'],
  [TypeFlag.RegOld, 'reg'],
  [TypeFlag.Contiguous, 'reg'],
  [TypeFlag.Link, 'hardlink'],
  [TypeFlag.Symlink, 'symlink'],
  [TypeFlag.Char, 'char'],
  [TypeFlag.Block, 'block'],
  [TypeFlag.Dir, 'dir'],
  [TypeFlag.Fifo, 'fifo'],
]);

const XATTR_PREFIX = 'SCHILY.xattr.';
/** Extension headers are metadata; bound them so a hostile tar cannot make us buffer gigabytes. */
const MAX_EXTENSION_SIZE = 16 << 20;

export class TarFormatError extends Error {
  override name = 'TarFormatError';
}

/** PAX records: `"%d %s=%s\n"` where the length counts the whole record in bytes. Values stay bytes. */
export function parsePaxRecords(data: Buffer): Map<string, Buffer> {
  const records = new Map<string, Buffer>();
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break;
    const space = data.indexOf(0x20, pos);
    if (space === -1) throw new TarFormatError('malformed PAX record: no length');
    const len = Number(data.toString('latin1', pos, space));
    if (!Number.isSafeInteger(len) || len <= space - pos || pos + len > data.length) throw new TarFormatError('malformed PAX record length');
    const record = data.subarray(space + 1, pos + len - 1);
    const eq = record.indexOf(0x3d);
    if (eq === -1 || data[pos + len - 1] !== 0x0a) throw new TarFormatError('malformed PAX record');
    const key = record.toString('utf8', 0, eq);
    const value = record.subarray(eq + 1);
    // An empty value deletes a (global) record.
    if (value.length === 0) records.delete(key);
    else records.set(key, Buffer.from(value));
    pos += len;
  }
  return records;
}

function parsePaxTime(text: string): { sec: number; nsec: number } {
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text);
  if (!m) throw new TarFormatError(`malformed PAX time ${JSON.stringify(text)}`);
  const sec = Number(m[2]) * (m[1] ? -1 : 1);
  const nsec = m[3] ? Number(m[3].slice(0, 9).padEnd(9, '0')) * (m[1] ? -1 : 1) : 0;
  return nsec < 0 ? { sec: sec - 1, nsec: nsec + 1e9 } : { sec, nsec };
}

function paxNumber(records: Map<string, Buffer>, key: string, fallback: number): number {
  const v = records.get(key);
  if (!v) return fallback;
  const n = Number(v.toString('latin1'));
  if (!Number.isSafeInteger(n) || n < 0) throw new TarFormatError(`malformed PAX ${key}`);
  return n;
}

/**
 * A streaming tar parser that keeps each entry's header bytes exactly as they came, so a writer can
 * copy every bit of metadata (nanosecond times, xattrs, large ids) without re-encoding it.
 * Use: `for (let e; (e = await r.next()); ) { ...read payload with readPayload()... }`.
 */
export class TarReader {
  private readonly input: ByteStream;
  private globalPax = new Map<string, Buffer>();
  private payloadLeft = 0;
  private paddingLeft = 0;
  private entryName = '';

  constructor(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>) {
    this.input = new ByteStream(source);
  }

  get position(): number {
    return this.input.position;
  }

  /** The next entry, or null at the end of the archive. Unread payload of the previous entry is skipped. */
  async next(): Promise<TarEntry | null> {
    await this.skipRest();
    const raw: Buffer[] = [];
    let localPax = new Map<string, Buffer>();
    let longName: string | undefined;
    let longLink: string | undefined;
    for (;;) {
      const block = await this.input.read(BLOCK);
      if (block.length === 0) return null; // tolerate archives without EOF blocks
      if (block.length < BLOCK) throw new TarFormatError(`truncated tar header after ${this.entryName || 'the start'}`);
      if (isZeroBlock(block)) {
        if (raw.length > 0) throw new TarFormatError('tar ends inside an extended header');
        return null;
      }
      if (!headerChecksumOk(block)) throw new TarFormatError(`bad tar header checksum at offset ${this.input.position - BLOCK} (after ${this.entryName || 'the start'})`);
      raw.push(block);
      const typeflag = block[156]!;
      const size = parseNumeric(block, 124, 12, 'size');
      if (typeflag === TypeFlag.PaxLocal || typeflag === TypeFlag.PaxGlobal || typeflag === TypeFlag.GnuLongName || typeflag === TypeFlag.GnuLongLink) {
        if (size > MAX_EXTENSION_SIZE) throw new TarFormatError(`tar extension header of ${size} bytes exceeds the ${MAX_EXTENSION_SIZE}-byte limit`);
        const data = await this.input.readExactly(size + paddingFor(size), 'a tar extension header');
        raw.push(data);
        const body = data.subarray(0, size);
        if (typeflag === TypeFlag.PaxLocal) localPax = parsePaxRecords(body);
        else if (typeflag === TypeFlag.PaxGlobal) for (const [k, v] of parsePaxRecords(body)) this.globalPax.set(k, v);
        else if (typeflag === TypeFlag.GnuLongName) longName = cString(body, 0, body.length);
        else longLink = cString(body, 0, body.length);
        continue;
      }
      const pax = new Map([...this.globalPax, ...localPax]);
      const header = this.decode(block, pax, longName, longLink);
      this.entryName = header.name;
      const payloadSize = header.kind === 'dir' || header.kind === 'symlink' || header.kind === 'hardlink' && size === 0 ? 0 : header.size;
      this.payloadLeft = header.kind === 'dir' ? 0 : payloadSize;
      this.paddingLeft = paddingFor(this.payloadLeft);
      return { header, rawHeader: raw.length === 1 ? raw[0]! : Buffer.concat(raw), payloadOffset: this.input.position };
    }
  }

  private decode(block: Buffer, pax: Map<string, Buffer>, longName?: string, longLink?: string): TarHeader {
    const magic = block.toString('latin1', 257, 263);
    const isPosixUstar = magic === 'ustar\0';
    let name = cString(block, 0, 100);
    if (isPosixUstar) {
      const prefix = cString(block, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    name = pax.get('path')?.toString('utf8') ?? longName ?? name;
    const linkName = pax.get('linkpath')?.toString('utf8') ?? longLink ?? cString(block, 157, 100);
    const typeflag = block[156]!;
    const kind = KINDS.get(typeflag);
    if (!kind) throw new TarFormatError(`unsupported tar entry type ${JSON.stringify(String.fromCharCode(typeflag))} for ${JSON.stringify(name)}`);
    const mtime = pax.has('mtime') ? parsePaxTime(pax.get('mtime')!.toString('latin1')) : { sec: parseNumeric(block, 136, 12, 'mtime'), nsec: 0 };
    const xattrs = new Map<string, Buffer>();
    for (const [k, v] of pax) if (k.startsWith(XATTR_PREFIX)) xattrs.set(k.slice(XATTR_PREFIX.length), v);
    const hasDevice = magic.startsWith('ustar');
    return {
      name,
      linkName,
      kind: name.endsWith('/') && kind === 'reg' ? 'dir' : kind,
      mode: parseNumeric(block, 100, 8, 'mode'),
      uid: paxNumber(pax, 'uid', parseNumeric(block, 108, 8, 'uid')),
      gid: paxNumber(pax, 'gid', parseNumeric(block, 116, 8, 'gid')),
      userName: pax.get('uname')?.toString('utf8') ?? cString(block, 265, 32),
      groupName: pax.get('gname')?.toString('utf8') ?? cString(block, 297, 32),
      size: paxNumber(pax, 'size', parseNumeric(block, 124, 12, 'size')),
      mtimeSec: mtime.sec,
      mtimeNsec: mtime.nsec,
      devMajor: hasDevice ? parseNumeric(block, 329, 8, 'devmajor') : 0,
      devMinor: hasDevice ? parseNumeric(block, 337, 8, 'devminor') : 0,
      xattrs,
    };
  }

  /** Up to `max` bytes of the current entry's payload; an empty buffer when it is all read. */
  async readPayload(max: number): Promise<Buffer> {
    if (this.payloadLeft === 0) return Buffer.alloc(0);
    const want = Math.min(max, this.payloadLeft);
    const buf = await this.input.readExactly(want, `the payload of ${JSON.stringify(this.entryName)}`);
    this.payloadLeft -= want;
    return buf;
  }

  /** The zero padding after the payload, once the payload has been read. */
  async readPadding(): Promise<Buffer> {
    if (this.payloadLeft !== 0) throw new Error('readPadding before the payload was consumed');
    const pad = await this.input.readExactly(this.paddingLeft, `the padding of ${JSON.stringify(this.entryName)}`);
    this.paddingLeft = 0;
    return pad;
  }

  private async skipRest(): Promise<void> {
    while (this.payloadLeft > 0) await this.readPayload(1 << 20);
    if (this.paddingLeft > 0) await this.readPadding();
  }

  /** Reads whatever follows the EOF marker so that a digest over the input stream covers it all. */
  async drain(): Promise<void> {
    await this.input.drain();
  }
}

function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}
