/** Tar header encoding and decoding shared by the reader, the eStargz writer and tests. */

export const BLOCK = 512;

export const enum TypeFlag {
  Reg = 0x30, // '0'
  RegOld = 0x00,
  Link = 0x31,
  Symlink = 0x32,
  Char = 0x33,
  Block = 0x34,
  Dir = 0x35,
  Fifo = 0x36,
  Contiguous = 0x37,
  PaxLocal = 0x78, // 'x'
  PaxGlobal = 0x67, // 'g'
  GnuLongName = 0x4c, // 'L'
  GnuLongLink = 0x4b, // 'K'
}

export function paddingFor(size: number): number {
  const rem = size % BLOCK;
  return rem === 0 ? 0 : BLOCK - rem;
}

export function cString(buf: Buffer, start: number, length: number): string {
  const field = buf.subarray(start, start + length);
  const nul = field.indexOf(0);
  return field.subarray(0, nul === -1 ? field.length : nul).toString('utf8');
}

/** Octal (NUL/space terminated) or GNU base-256 numeric field. */
export function parseNumeric(buf: Buffer, start: number, length: number, field: string): number {
  const first = buf[start]!;
  if (first & 0x80) {
    // base-256: big-endian two's complement with the top bit of the first byte as marker
    let value = BigInt(first & 0x7f);
    if (first & 0x40) value -= 0x80n; // negative
    for (let i = 1; i < length; i++) value = (value << 8n) | BigInt(buf[start + i]!);
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new Error(`tar header field ${field} is out of range`);
    }
    return Number(value);
  }
  const text = buf.toString('latin1', start, start + length).replace(/[\0 ]+$/, '').replace(/^[\0 ]+/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new Error(`tar header field ${field} is not octal: ${JSON.stringify(text)}`);
  const value = parseInt(text, 8);
  if (!Number.isSafeInteger(value)) throw new Error(`tar header field ${field} is out of range`);
  return value;
}

export function headerChecksumOk(block: Buffer): boolean {
  const stored = parseNumeric(block, 148, 8, 'chksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

function writeOctal(block: Buffer, value: number, start: number, length: number): void {
  block.write(value.toString(8).padStart(length - 1, '0') + '\0', start, length, 'latin1');
}

export interface SimpleHeader {
  name: string;
  size: number;
  mode: number;
  typeflag: TypeFlag;
  mtime?: number;
}

/**
 * A plain ustar header for the entries lazypull itself adds (TOC, landmarks): short ASCII names only.
 */
export function ustarHeader(h: SimpleHeader): Buffer {
  if (Buffer.byteLength(h.name) > 100) throw new Error(`name too long for a ustar header: ${h.name}`);
  const block = Buffer.alloc(BLOCK);
  block.write(h.name, 0, 100, 'utf8');
  writeOctal(block, h.mode, 100, 8);
  writeOctal(block, 0, 108, 8);
  writeOctal(block, 0, 116, 8);
  writeOctal(block, h.size, 124, 12);
  writeOctal(block, h.mtime ?? 0, 136, 12);
  block[156] = h.typeflag;
  block.write('ustar\x0000', 257, 8, 'latin1');
  return sealHeader(block);
}

/** Fills in the checksum field of a header block whose other fields are written. */
export function sealHeader(block: Buffer): Buffer {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of block) sum += b;
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return block;
}

/** Zero bytes that pad a payload of `size` bytes to the next block. */
export function padding(size: number): Buffer {
  return Buffer.alloc(paddingFor(size));
}

/** A complete tar entry (header + payload + padding) for a small in-memory file. */
export function tarFileEntry(name: string, payload: Buffer, mode = 0o644): Buffer {
  return Buffer.concat([ustarHeader({ name, size: payload.length, mode, typeflag: TypeFlag.Reg }), payload, Buffer.alloc(paddingFor(payload.length))]);
}

export const TAR_EOF = Buffer.alloc(BLOCK * 2);
