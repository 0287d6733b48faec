import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Usage } from './types.js';

/**
 * Bytes allocated and inodes used under `root`, each inode counted once (hardlinks), like containerd's
 * fs.DiskUsage: size is st_blocks * 512, so sparse files count what they occupy.
 */
export async function diskUsage(root: string): Promise<Usage> {
  const seen = new Set<string>();
  let size = 0;
  const pending = [root];
  while (pending.length > 0) {
    const path = pending.pop() as string;
    const stat = await lstat(path, { bigint: true });
    const inode = `${stat.dev}:${stat.ino}`;
    if (!seen.has(inode)) {
      seen.add(inode);
      size += Number(stat.blocks) * 512;
    }
    if (stat.isDirectory()) for (const name of await readdir(path)) pending.push(join(path, name));
  }
  return { size, inodes: seen.size };
}
