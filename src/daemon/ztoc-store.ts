/**
 * zTOCs of the SOCI layers this daemon mounted, on disk by layer digest, so that restoring a SOCI layer
 * after a restart needs neither the SOCI index nor the registry. Each file carries the zTOC's digest
 * (checked when it was fetched): a file whose bytes no longer hash to it is damaged and is dropped.
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomically } from '../util/atomic-file.js';
import { isDigest, sha256, type Digest } from '../util/digest.js';

export interface StoredZtoc {
  digest: Digest;
  bytes: Buffer;
}

const FILE_MAGIC = Buffer.from('LPZTOC1\0', 'latin1');
/** Magic, then the zTOC digest as text (`sha256:` + 64 hex), then the zTOC. */
const HEADER_BYTES = FILE_MAGIC.length + 71;

export class ZtocStore {
  constructor(private readonly dir: string) {}

  private pathOf(layerDigest: Digest): string {
    return join(this.dir, layerDigest.replace(/^sha256:/, ''));
  }

  /** The stored zTOC of a layer, or undefined when there is none or it is damaged (then it is removed). */
  async get(layerDigest: Digest): Promise<StoredZtoc | undefined> {
    let file: Buffer;
    try {
      file = await readFile(this.pathOf(layerDigest));
    } catch {
      return undefined;
    }
    const stored = decode(file);
    if (!stored) await this.delete(layerDigest);
    return stored;
  }

  async put(layerDigest: Digest, ztoc: StoredZtoc): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomically(this.pathOf(layerDigest), [FILE_MAGIC, Buffer.from(ztoc.digest, 'latin1'), ztoc.bytes]);
  }

  async delete(layerDigest: Digest): Promise<void> {
    await rm(this.pathOf(layerDigest), { force: true });
  }
}

function decode(file: Buffer): StoredZtoc | undefined {
  if (file.length < HEADER_BYTES || !file.subarray(0, FILE_MAGIC.length).equals(FILE_MAGIC)) return undefined;
  const digest = file.toString('latin1', FILE_MAGIC.length, HEADER_BYTES);
  const bytes = file.subarray(HEADER_BYTES);
  if (!isDigest(digest) || sha256(bytes) !== digest) return undefined;
  return { digest, bytes };
}
