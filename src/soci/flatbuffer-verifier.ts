/**
 * A bounds checker for the flatbuffer tables we read from untrusted blobs. The generated flatbuffers
 * readers trust every offset: on a truncated or hostile buffer they read `undefined` as 0, decode strings
 * past the end or loop over a vector length of 2^31. Walking the structure here first (every table,
 * vtable, string and vector inside the buffer) lets the generated code read only checked positions.
 */

export class FlatbufferShapeError extends Error {
  override name = 'FlatbufferShapeError';
}

/** A table whose vtable and inline fields lie inside the buffer. */
export class VerifiedTable {
  constructor(
    private readonly v: FlatbufferVerifier,
    readonly position: number,
    private readonly vtable: number,
    private readonly vtableSize: number,
    private readonly tableSize: number,
    readonly what: string,
  ) {}

  /** Absolute position of field `id` (inline part of `size` bytes), or undefined when absent. */
  field(id: number, size: number): number | undefined {
    const slot = 4 + 2 * id;
    if (slot + 2 > this.vtableSize) return undefined;
    const offset = this.v.u16(this.vtable + slot);
    if (offset === 0) return undefined;
    if (offset + size > this.tableSize) throw new FlatbufferShapeError(`${this.what}: field ${id} lies outside its table`);
    return this.position + offset;
  }

  /** Checks an optional string field (bytes and NUL terminator inside the buffer). */
  string(id: number, name: string): void {
    const at = this.field(id, 4);
    if (at !== undefined) this.v.string(this.v.indirect(at, `${this.what}.${name}`), `${this.what}.${name}`);
  }

  /** Checks an optional scalar field. */
  scalar(id: number, size: number): void {
    this.field(id, size);
  }

  /** Checks an optional sub-table field and returns it. */
  table(id: number, name: string): VerifiedTable | undefined {
    const at = this.field(id, 4);
    return at === undefined ? undefined : this.v.table(this.v.indirect(at, `${this.what}.${name}`), `${this.what}.${name}`);
  }

  /** Checks an optional vector field of `elementSize`-byte elements; returns its element positions' start and length. */
  vector(id: number, elementSize: number, name: string): { start: number; length: number } | undefined {
    const at = this.field(id, 4);
    return at === undefined ? undefined : this.v.vector(this.v.indirect(at, `${this.what}.${name}`), elementSize, `${this.what}.${name}`);
  }
}

export class FlatbufferVerifier {
  constructor(private readonly buf: Uint8Array) {}

  private need(position: number, length: number, what: string): void {
    if (!Number.isSafeInteger(position) || position < 0 || position + length > this.buf.length) {
      throw new FlatbufferShapeError(`${what} at byte ${position} runs past the end of the ${this.buf.length}-byte buffer`);
    }
  }

  u16(position: number): number {
    this.need(position, 2, 'a vtable entry');
    return this.buf[position]! | (this.buf[position + 1]! << 8);
  }

  private u32(position: number, what: string): number {
    this.need(position, 4, what);
    return (this.buf[position]! | (this.buf[position + 1]! << 8) | (this.buf[position + 2]! << 16) | (this.buf[position + 3]! << 24)) >>> 0;
  }

  private i32(position: number, what: string): number {
    return this.u32(position, what) | 0;
  }

  /** The position an offset field at `position` points to. */
  indirect(position: number, what: string): number {
    return position + this.u32(position, what);
  }

  root(what: string): VerifiedTable {
    return this.table(this.u32(0, 'the root offset'), what);
  }

  table(position: number, what: string): VerifiedTable {
    const vtable = position - this.i32(position, what);
    this.need(vtable, 4, `${what}'s vtable`);
    const vtableSize = this.u16(vtable);
    const tableSize = this.u16(vtable + 2);
    if (vtableSize < 4 || vtableSize % 2 !== 0) throw new FlatbufferShapeError(`${what}'s vtable has a bad size ${vtableSize}`);
    this.need(vtable, vtableSize, `${what}'s vtable`);
    if (tableSize < 4) throw new FlatbufferShapeError(`${what} has a bad size ${tableSize}`);
    this.need(position, tableSize, what);
    return new VerifiedTable(this, position, vtable, vtableSize, tableSize, what);
  }

  string(position: number, what: string): void {
    const length = this.u32(position, what);
    this.need(position + 4, length + 1, what);
  }

  vector(position: number, elementSize: number, what: string): { start: number; length: number } {
    const length = this.u32(position, what);
    this.need(position + 4, length * elementSize, `${what} (${length} elements)`);
    return { start: position + 4, length };
  }

  /** The tables of a vector of tables, each checked. */
  tables(vector: { start: number; length: number } | undefined, what: string): VerifiedTable[] {
    const out: VerifiedTable[] = [];
    if (!vector) return out;
    for (let i = 0; i < vector.length; i++) out.push(this.table(this.indirect(vector.start + 4 * i, `${what}[${i}]`), `${what}[${i}]`));
    return out;
  }

  /** Checks every string of a vector of strings. */
  strings(vector: { start: number; length: number } | undefined, what: string): void {
    if (!vector) return;
    for (let i = 0; i < vector.length; i++) this.string(this.indirect(vector.start + 4 * i, `${what}[${i}]`), `${what}[${i}]`);
  }
}
