/**
 * containerd's filter syntax (github.com/containerd/containerd/filters), which List requests carry:
 *
 *   filters   := filter*                    any filter may match (OR)
 *   filter    := selector ("," selector)*   every selector must match (AND)
 *   selector  := fieldpath [op value]       without op: the field is present
 *   fieldpath := field ("." field)*
 *   field     := quoted | [A-Za-z0-9_]+
 *   op        := "==" | "!=" | "~="
 *   value     := quoted | [^\s,]+
 *
 * Quoted strings use Go syntax in double quotes; `~=` also accepts /regex/ and |regex|. containerd
 * itself sends e.g. `labels."containerd.io/snapshot.ref"==sha256:...,parent=="..."` to find the
 * snapshot a remote snapshotter committed.
 */
import { invalidArgument } from './errors.js';
import type { SnapshotInfo } from './types.js';

type Operator = 'present' | '==' | '!=' | '~=';

interface Selector {
  fieldpath: string[];
  operator: Operator;
  value: string;
  pattern?: RegExp;
}

/** A parsed filter list: matches when any of its filters matches (and always when it is empty). */
export type SnapshotFilter = (info: SnapshotInfo) => boolean;

export function parseFilters(filters: readonly string[]): SnapshotFilter {
  const parsed = filters.filter((f) => f !== '').map(parseFilter);
  if (parsed.length === 0) return () => true;
  return (info) => parsed.some((selectors) => selectors.every((s) => matches(s, info)));
}

/** The value a fieldpath names on a snapshot, undefined when absent (containerd's adaptSnapshot). */
function fieldValue(info: SnapshotInfo, fieldpath: string[]): string | undefined {
  switch (fieldpath[0]) {
    case 'kind':
      return info.kind;
    case 'name':
      return info.name;
    case 'parent':
      return info.parent;
    case 'labels':
      return Object.hasOwn(info.labels, fieldpath.slice(1).join('.')) ? info.labels[fieldpath.slice(1).join('.')] : undefined;
    default:
      return undefined;
  }
}

function matches(selector: Selector, info: SnapshotInfo): boolean {
  const value = fieldValue(info, selector.fieldpath);
  switch (selector.operator) {
    case 'present':
      return value !== undefined;
    case '==':
      return value === selector.value;
    case '!=':
      return value !== selector.value;
    case '~=':
      return value !== undefined && (selector.pattern as RegExp).test(value);
  }
}

function parseFilter(input: string): Selector[] {
  const scanner = new FilterScanner(input);
  const selectors = [scanner.selector()];
  while (!scanner.atEnd()) {
    scanner.expect(',');
    selectors.push(scanner.selector());
  }
  return selectors;
}

const FIELD_CHAR = /[A-Za-z0-9_]/;

class FilterScanner {
  private pos = 0;

  constructor(private readonly input: string) {}

  atEnd(): boolean {
    this.skipSpace();
    return this.pos >= this.input.length;
  }

  expect(char: string): void {
    this.skipSpace();
    if (this.input[this.pos] !== char) this.fail(`expected "${char}"`);
    this.pos += 1;
  }

  selector(): Selector {
    const fieldpath = [this.field()];
    while (this.peek() === '.') {
      this.pos += 1;
      fieldpath.push(this.field());
    }
    const next = this.peek();
    if (next === undefined || next === ',') return { fieldpath, operator: 'present', value: '' };
    const operator = this.operator();
    const value = this.value(operator === '~=');
    if (operator !== '~=') return { fieldpath, operator, value };
    try {
      return { fieldpath, operator, value, pattern: new RegExp(value) };
    } catch (err) {
      return this.fail(`bad regular expression ${JSON.stringify(value)}: ${(err as Error).message}`);
    }
  }

  private field(): string {
    const char = this.peek();
    if (char === '"') return this.quoted('"');
    const start = this.pos;
    while (this.pos < this.input.length && FIELD_CHAR.test(this.input[this.pos] as string)) this.pos += 1;
    if (this.pos === start) this.fail('expected a field or a quoted string');
    return this.input.slice(start, this.pos);
  }

  private operator(): Operator {
    const op = this.input.slice(this.pos, this.pos + 2);
    if (op !== '==' && op !== '!=' && op !== '~=') return this.fail('expected an operator ("==", "!=" or "~=")');
    this.pos += 2;
    return op;
  }

  private value(allowRegexQuotes: boolean): string {
    const char = this.peek();
    if (char === '"') return this.quoted('"');
    if (allowRegexQuotes && (char === '/' || char === '|')) return this.quoted(char);
    const start = this.pos;
    while (this.pos < this.input.length && !/[\s,]/.test(this.input[this.pos] as string)) this.pos += 1;
    if (this.pos === start) this.fail('expected a value');
    return this.input.slice(start, this.pos);
  }

  /** A quoted string; with '"' Go escapes apply (JSON's are the common subset), other quotes are raw. */
  private quoted(quote: string): string {
    const start = this.pos;
    this.pos += 1;
    while (this.pos < this.input.length && this.input[this.pos] !== quote) {
      if (this.input[this.pos] === '\\') this.pos += 1;
      this.pos += 1;
    }
    if (this.pos >= this.input.length) this.fail('unterminated quoted string');
    this.pos += 1;
    const raw = this.input.slice(start, this.pos);
    if (quote !== '"') return raw.slice(1, -1);
    try {
      return JSON.parse(raw) as string;
    } catch {
      return this.fail(`bad quoted string ${raw}`);
    }
  }

  private peek(): string | undefined {
    this.skipSpace();
    return this.input[this.pos];
  }

  private skipSpace(): void {
    while (this.pos < this.input.length && /\s/.test(this.input[this.pos] as string)) this.pos += 1;
  }

  private fail(message: string): never {
    throw invalidArgument(`filter ${JSON.stringify(this.input)} at ${this.pos}: ${message}`);
  }
}
