import { createHash, type Hash } from 'node:crypto';

export type Digest = `sha256:${string}`;

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

export function sha256(data: Uint8Array): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export function isDigest(value: unknown): value is Digest {
  return typeof value === 'string' && DIGEST_RE.test(value);
}

/** Incremental sha256 that yields the `sha256:` form. */
export class Digester {
  private readonly hash: Hash = createHash('sha256');
  update(data: Uint8Array): this {
    this.hash.update(data);
    return this;
  }
  digest(): Digest {
    return `sha256:${this.hash.digest('hex')}`;
  }
}
