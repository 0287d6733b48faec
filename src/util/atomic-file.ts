import { open, rename, rm } from 'node:fs/promises';

/**
 * Writes `parts` to `path` so that readers see the old file or the whole new one, never a part: a temp
 * file next to it, synced, then renamed over it. The temp file is removed when anything fails.
 */
export async function writeFileAtomically(path: string, parts: readonly Uint8Array[], mode = 0o600): Promise<void> {
  const temp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    const handle = await open(temp, 'w', mode);
    try {
      await handle.writev([...parts]);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}
