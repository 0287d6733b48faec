/** ChainIDs of the OCI image spec (identity.ChainID in containerd): the names layers are committed under. */
import { createHash } from 'node:crypto';
import { isDigest, type Digest } from '../util/digest.js';

/**
 * The chainID of every prefix of `diffIds`: chain[0] = diffIds[0], chain[i] = sha256("chain[i-1] diffIds[i]").
 * Two images sharing their bottom layers share those snapshots.
 */
export function chainIds(diffIds: readonly string[]): Digest[] {
  const chain: Digest[] = [];
  for (const diffId of diffIds) {
    if (!isDigest(diffId)) throw new Error(`diff ID ${JSON.stringify(diffId.slice(0, 80))} is not a sha256 digest`);
    const parent = chain.at(-1);
    chain.push(parent === undefined ? diffId : `sha256:${createHash('sha256').update(`${parent} ${diffId}`).digest('hex')}`);
  }
  return chain;
}
