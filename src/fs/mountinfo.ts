import { readFile } from 'node:fs/promises';

export interface MountRecord {
  mountpoint: string;
  fsType: string;
}

/** This process's view of the mount table (/proc/self/mountinfo). */
export async function readMounts(): Promise<MountRecord[]> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  const mounts: MountRecord[] = [];
  for (const line of mountinfo.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    mounts.push({ mountpoint: unescapeMountinfo(left.split(' ')[4] ?? ''), fsType: right.split(' ')[0] ?? '' });
  }
  return mounts;
}

/** True when something is mounted at exactly `path` (an absolute, resolved path). */
export async function isMountpoint(path: string): Promise<boolean> {
  return (await readMounts()).some((mount) => mount.mountpoint === path);
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}
