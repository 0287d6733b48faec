/**
 * The OCI runtime config (runc's config.json) for the profiled workload: process from the image
 * config's Entrypoint, Cmd, Env, WorkingDir and User with the command line's overrides (Docker's rules:
 * `--entrypoint` also drops the image's Cmd), and runc's default container otherwise (its namespaces,
 * network included, and mounts), with Docker's default capabilities.
 */

/** The `config` object of an image config (only what running needs). */
export interface ImageRunConfig {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[] | null;
  WorkingDir?: string;
  User?: string;
}

export interface WorkloadOverrides {
  entrypoint?: string[];
  args?: string[];
  /** `K=V`, replacing the image's K. */
  env?: string[];
  cwd?: string;
  /** `user[:group]`, names or numbers. */
  user?: string;
}

export interface ProcessUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
}

export interface WorkloadProcess {
  args: string[];
  env: string[];
  cwd: string;
  user: ProcessUser;
}

/** /etc/passwd and /etc/group of the image, when it has them (needed only for user names). */
export interface UserDatabase {
  passwd?: string;
  group?: string;
}

export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

/** Reads `config.config` of an image config JSON, checking the types of what it uses. */
export function imageRunConfig(imageConfig: Record<string, unknown>): ImageRunConfig {
  const raw = imageConfig.config;
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new Error('the image config\'s "config" is not an object');
  const c = raw as Record<string, unknown>;
  const strings = (name: string): string[] | undefined => {
    const value = c[name];
    if (value === undefined || value === null) return undefined;
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new Error(`the image config's ${name} is not a list of strings`);
    return value;
  };
  const string = (name: string): string | undefined => {
    const value = c[name];
    if (value === undefined || value === null || value === '') return undefined;
    if (typeof value !== 'string') throw new Error(`the image config's ${name} is not a string`);
    return value;
  };
  const out: ImageRunConfig = {};
  const entrypoint = strings('Entrypoint');
  const cmd = strings('Cmd');
  const env = strings('Env');
  const workingDir = string('WorkingDir');
  const user = string('User');
  if (entrypoint) out.Entrypoint = entrypoint;
  if (cmd) out.Cmd = cmd;
  if (env) out.Env = env;
  if (workingDir !== undefined) out.WorkingDir = workingDir;
  if (user !== undefined) out.User = user;
  return out;
}

/** `--entrypoint` / `--args`: a JSON array of strings (a JSON string is one argument). */
export function parseArgvJson(text: string, option: string): string[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`${option} ${JSON.stringify(text)} is not JSON (write a JSON array, e.g. '["/bin/cat","/etc/hostname"]')`);
  }
  if (typeof value === 'string') return [value];
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new Error(`${option} must be a JSON array of strings`);
  return value;
}

export function workloadProcess(image: ImageRunConfig, overrides: WorkloadOverrides, users: UserDatabase = {}): WorkloadProcess {
  const entrypoint = overrides.entrypoint ?? image.Entrypoint ?? [];
  const cmd = overrides.args ?? (overrides.entrypoint ? [] : (image.Cmd ?? []));
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) throw new Error('nothing to run: the image has no Entrypoint or Cmd (give --entrypoint or --args)');
  const cwd = overrides.cwd ?? image.WorkingDir ?? '/';
  if (!cwd.startsWith('/')) throw new Error(`working directory ${JSON.stringify(cwd)} is not an absolute path`);
  return { args, env: mergeEnv(image.Env ?? [], overrides.env ?? []), cwd, user: resolveUser(overrides.user ?? image.User ?? '', users) };
}

/** The image's variables with the overrides replacing same-named ones; PATH added when neither sets it. */
export function mergeEnv(image: string[], overrides: string[]): string[] {
  const env = new Map<string, string>();
  const add = (entry: string, fromFlag: boolean): void => {
    const eq = entry.indexOf('=');
    if (eq <= 0) {
      if (fromFlag) throw new Error(`--env ${JSON.stringify(entry)} is not K=V`);
      return;
    }
    env.set(entry.slice(0, eq), entry);
  };
  for (const entry of image) add(entry, false);
  for (const entry of overrides) add(entry, true);
  if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH);
  return [...env.values()];
}

/** `user[:group]` as Docker resolves it: numbers as they are, names through the image's /etc/passwd and /etc/group. */
export function resolveUser(spec: string, users: UserDatabase): ProcessUser {
  if (spec === '') return { uid: 0, gid: 0 };
  const [userPart, groupPart] = spec.split(':', 2) as [string, string | undefined];
  const passwd = parseColonFile(users.passwd);
  const groups = parseColonFile(users.group);
  let uid: number;
  let gid: number;
  let name: string | undefined;
  if (/^\d+$/.test(userPart)) {
    uid = Number(userPart);
    const entry = passwd.find((f) => f[2] === userPart);
    gid = entry ? Number(entry[3]) : 0;
    name = entry?.[0];
  } else {
    const entry = passwd.find((f) => f[0] === userPart);
    if (!entry) throw new Error(`user ${JSON.stringify(userPart)} is not in the image's /etc/passwd`);
    uid = Number(entry[2]);
    gid = Number(entry[3]);
    name = userPart;
  }
  if (groupPart !== undefined && groupPart !== '') {
    if (/^\d+$/.test(groupPart)) gid = Number(groupPart);
    else {
      const entry = groups.find((f) => f[0] === groupPart);
      if (!entry) throw new Error(`group ${JSON.stringify(groupPart)} is not in the image's /etc/group`);
      gid = Number(entry[2]);
    }
  }
  if (!Number.isSafeInteger(uid) || !Number.isSafeInteger(gid)) throw new Error(`user ${JSON.stringify(spec)} does not resolve to numeric ids`);
  const additional = name === undefined ? [] : groups.filter((f) => (f[3] ?? '').split(',').includes(name)).map((f) => Number(f[2])).filter((g) => Number.isSafeInteger(g) && g !== gid);
  return { uid, gid, ...(additional.length > 0 ? { additionalGids: [...new Set(additional)] } : {}) };
}

function parseColonFile(text: string | undefined): string[][] {
  if (!text) return [];
  return text.split('\n').filter((line) => line !== '' && !line.startsWith('#')).map((line) => line.split(':'));
}

/** config.json for runc: `rootfs` is the absolute path of the container's root (the overlay). */
export function runtimeSpec(process: WorkloadProcess, options: { rootfs: string; readonly?: boolean; hostname?: string }): Record<string, unknown> {
  const caps = DEFAULT_CAPABILITIES;
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: process.user,
      args: process.args,
      env: process.env,
      cwd: process.cwd,
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      noNewPrivileges: true,
    },
    root: { path: options.rootfs, readonly: options.readonly ?? false },
    hostname: options.hostname ?? 'lazypull-optimize',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    ],
    linux: {
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths: ['/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi'],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}
