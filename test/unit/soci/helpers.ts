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
