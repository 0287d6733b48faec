import { describe, expect, it } from 'vitest';
import { recordAccesses } from '../../../src/fs/access-recorder.js';
import type { FuseOperations } from '../../../src/fs/fuse-binding.js';
import { readPathList } from '../../../src/cli/options.js';
import { parseDuration } from '../../../src/cli/commands/optimize.js';
import {
  AccessLog,
  addRange,
  attributeToLayers,
  DEFAULT_PATH,
  formatAccessList,
  globToRegExp,
  imageRunConfig,
  parseArgvJson,
  parseAccessList,
  parsePattern,
  patternMatches,
  resolveUser,
  runtimeSpec,
  workloadProcess,
  type ByteRanges,
} from '../../../tools/optimize/index.js';
import type { LayerIndex } from '../../../src/layer/layer-index.js';

describe('--prefetch-list patterns', () => {
  const matches = (pattern: string, path: string): boolean => parsePattern(pattern).matches(path);

  it('* and ? stay inside one segment', () => {
    expect(matches('/usr/lib/*.so', '/usr/lib/libz.so')).toBe(true);
    expect(matches('/usr/lib/*.so', '/usr/lib/x/libz.so')).toBe(false);
    expect(matches('bin/ech?', '/bin/echo')).toBe(true);
    expect(matches('bin/ech?', '/bin/ech/o')).toBe(false);
    expect(matches('bin/ech?', '/bin/ech')).toBe(false);
  });

  it('** spans segments: dir/** is the dir and all under it, **/x is x anywhere, a/**/b includes a/b', () => {
    expect(matches('/usr/**', '/usr')).toBe(true);
    expect(matches('/usr/**', '/usr/share/doc/x')).toBe(true);
    expect(matches('/usr/**', '/usrx')).toBe(false);
    expect(matches('**/libc.so.6', '/lib/x86_64-linux-gnu/libc.so.6')).toBe(true);
    expect(matches('**/libc.so.6', 'libc.so.6')).toBe(true);
    expect(matches('a/**/b', 'a/b')).toBe(true);
    expect(matches('a/**/b', 'a/x/y/b')).toBe(true);
    expect(matches('a/**/b', 'a/xb')).toBe(false);
    expect(matches('**', '/anything/at/all')).toBe(true);
    expect(matches('/lib/**.so', '/lib/a/b.so')).toBe(true);
  });

  it('literal paths compare without leading or trailing slashes; regexp characters are literal', () => {
    expect(parsePattern('/etc/passwd').literal).toBe(true);
    expect(matches('/etc/passwd', 'etc/passwd')).toBe(true);
    expect(matches('etc/', '/etc')).toBe(true);
    expect(globToRegExp('a.b+(c)*').test('a.b+(c)d')).toBe(true);
    expect(globToRegExp('a.b*').test('axb')).toBe(false);
  });

  it('matches against layer entries, skipping whiteouts and the root; unmatched patterns are reported', () => {
    const index = (names: string[]): LayerIndex => ({ entries: new Map(names.map((n) => [n, { name: n }])) }) as unknown as LayerIndex;
    const { added, unmatched } = patternMatches(['/etc/*', '/nope', '**'], [index(['', 'etc', 'etc/a', 'etc/.wh.b']), index(['', 'etc', 'etc/a'])]);
    expect(unmatched).toEqual(['/nope']);
    expect(added.map((a) => [a.path, [...a.layers]])).toEqual([
      ['/etc/a', [0, 1]],
      ['/etc', [0, 1]],
    ]);
    expect(attributeToLayers(added, 2)).toEqual([[], ['/etc/a', '/etc']]);
  });
});

describe('the recorded list', () => {
  it('formats absolute paths in order with a comment header, and convert --prioritized-files reads it back the same', () => {
    const { text, omitted } = formatAccessList(['/bin/cat', 'lib/libc.so.6', '/', '/a#b', '/trail ', '/new\nline', '/ok dir/x'], 'recorded\nby test');
    expect(omitted).toEqual(['/a#b', '/trail ', '/new\nline']);
    expect(text).toBe('# recorded\n# by test\n/bin/cat\n/lib/libc.so.6\n/ok dir/x\n');
    expect(readPathList(text)).toEqual(['/bin/cat', '/lib/libc.so.6', '/ok dir/x']);
    expect(parseAccessList('# c\n\n/x # trailing\n  /y  \n')).toEqual(['/x', '/y']);
  });

  it('an empty recording is an empty file', () => {
    expect(formatAccessList([]).text).toBe('');
  });
});

describe('access log and attribution', () => {
  it('keeps first-access order across layers and attributes each path to the topmost layer that saw it', () => {
    const log = new AccessLog(3);
    log.recorder(0).onAccess('lookup', '/');
    log.recorder(2).onAccess('lookup', '/');
    log.recorder(0).onAccess('lookup', '/bin');
    log.recorder(0).onAccess('open', '/bin/cat');
    log.recorder(1).onAccess('lookup', '/etc');
    log.recorder(2).onAccess('lookup', '/etc');
    log.recorder(0).onAccess('lookup', '/etc');
    log.recorder(1).onAccess('read', '/etc/a', 0, 10);
    log.recorder(0).onAccess('read', '/bin/cat', 4096, 100);
    log.freeze();
    log.recorder(2).onAccess('lookup', '/late');
    expect(log.accessed().map((a) => a.path)).toEqual(['/', '/bin', '/bin/cat', '/etc', '/etc/a']);
    expect(attributeToLayers(log.accessed(), 3)).toEqual([['/bin', '/bin/cat'], ['/etc/a'], ['/etc']]);
    expect([...log.readRanges(0)]).toEqual([['/bin/cat', [[4096, 4196]]]]);
    expect(() => log.recorder(3)).toThrow(RangeError);
  });

  it('a path already placed keeps its first position; a path no layer has is dropped', () => {
    expect(
      attributeToLayers(
        [
          { path: '/a', layers: new Set([0]) },
          { path: '/b', layers: new Set() },
          { path: '/a', layers: new Set([1]) },
        ],
        2,
      ),
    ).toEqual([['/a'], []]);
  });

  it('merges read ranges that overlap or touch', () => {
    const ranges: ByteRanges = [];
    addRange(ranges, 100, 200);
    addRange(ranges, 0, 10);
    addRange(ranges, 300, 400);
    expect(ranges).toEqual([[0, 10], [100, 200], [300, 400]]);
    addRange(ranges, 200, 300);
    expect(ranges).toEqual([[0, 10], [100, 400]]);
    addRange(ranges, 5, 150);
    expect(ranges).toEqual([[0, 400]]);
  });

  it('the FUSE hook reports only successful operations, reads with their served range, and survives a throwing recorder', () => {
    const seen: unknown[] = [];
    const ops = {
      getattr: (path: string, cb: (err: number, stat?: unknown) => void) => cb(path === '/missing' ? -2 : 0, {}),
      readlink: (_p: string, cb: (err: number, target?: string) => void) => cb(0, 'x'),
      open: (_p: string, _f: number, cb: (err: number, fd?: number) => void) => cb(0, 7),
      read: (_p: string, _fd: number, _b: Buffer, len: number, _pos: number, cb: (n: number) => void) => cb(len > 100 ? -5 : len),
    } as unknown as FuseOperations;
    const wrapped = recordAccesses(ops, { onAccess: (...args) => void seen.push(args) });
    const answers: number[] = [];
    wrapped.getattr('/missing', (err) => answers.push(err));
    wrapped.getattr('/bin', (err) => answers.push(err));
    wrapped.readlink('/l', (err) => answers.push(err));
    wrapped.open('/f', 0, (err) => answers.push(err));
    wrapped.read('/f', 7, Buffer.alloc(0), 50, 4096, (n) => answers.push(n));
    wrapped.read('/f', 7, Buffer.alloc(0), 500, 0, (n) => answers.push(n));
    expect(answers).toEqual([-2, 0, 0, 0, 50, -5]);
    expect(seen).toEqual([
      ['lookup', '/bin', undefined, undefined],
      ['readlink', '/l', undefined, undefined],
      ['open', '/f', undefined, undefined],
      ['read', '/f', 4096, 50],
    ]);
    const throwing = recordAccesses(ops, { onAccess: () => { throw new Error('bug'); } });
    let answered = -1;
    throwing.getattr('/bin', (err) => (answered = err));
    expect(answered).toBe(0);
  });
});

describe('OCI runtime config from the image config and flags', () => {
  const image = imageRunConfig({ config: { Entrypoint: ['/app'], Cmd: ['--serve'], Env: ['PATH=/bin', 'A=1'], WorkingDir: '/srv', User: 'app' } });
  const users = { passwd: 'root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n', group: 'root:x:0:\napp:x:1000:\nextra:x:44:app,other\n' };

  it("runs Entrypoint + Cmd with the image's env, dir and user", () => {
    expect(workloadProcess(image, {}, users)).toEqual({ args: ['/app', '--serve'], env: ['PATH=/bin', 'A=1'], cwd: '/srv', user: { uid: 1000, gid: 1000, additionalGids: [44] } });
  });

  it('--args replaces Cmd; --entrypoint replaces Entrypoint and drops Cmd (Docker rules); --env, --cwd and --user override', () => {
    expect(workloadProcess(image, { args: ['--once'] }, users).args).toEqual(['/app', '--once']);
    expect(workloadProcess(image, { entrypoint: ['/bin/cat', '/x'] }, users).args).toEqual(['/bin/cat', '/x']);
    expect(workloadProcess(image, { entrypoint: ['/bin/cat'], args: ['/y'] }, users).args).toEqual(['/bin/cat', '/y']);
    const p = workloadProcess(image, { env: ['A=2', 'B=x=y'], cwd: '/', user: '5:6' }, users);
    expect(p.env).toEqual(['PATH=/bin', 'A=2', 'B=x=y']);
    expect(p.cwd).toBe('/');
    expect(p.user).toEqual({ uid: 5, gid: 6 });
  });

  it('adds a default PATH, defaults to root in /, and refuses what cannot run', () => {
    const bare = imageRunConfig({});
    expect(() => workloadProcess(bare, {})).toThrow(/nothing to run/);
    expect(workloadProcess(bare, { args: ['/bin/true'] })).toEqual({ args: ['/bin/true'], env: [DEFAULT_PATH], cwd: '/', user: { uid: 0, gid: 0 } });
    expect(() => workloadProcess(bare, { args: ['x'], cwd: 'rel' })).toThrow(/absolute/);
    expect(() => workloadProcess(bare, { args: ['x'], env: ['NOEQUALS'] })).toThrow(/K=V/);
    expect(() => imageRunConfig({ config: { Cmd: 'not a list' } })).toThrow(/Cmd/);
    expect(imageRunConfig({ config: { Entrypoint: null, Cmd: null, WorkingDir: '' } })).toEqual({});
  });

  it('resolves users Docker style', () => {
    expect(resolveUser('', {})).toEqual({ uid: 0, gid: 0 });
    expect(resolveUser('1000', users)).toEqual({ uid: 1000, gid: 1000, additionalGids: [44] });
    expect(resolveUser('4242', users)).toEqual({ uid: 4242, gid: 0 });
    expect(resolveUser('app:extra', users)).toEqual({ uid: 1000, gid: 44 });
    expect(() => resolveUser('nobody', users)).toThrow(/not in the image's \/etc\/passwd/);
    expect(() => resolveUser('app:nogroup', users)).toThrow(/\/etc\/group/);
  });

  it('parses --entrypoint/--args JSON', () => {
    expect(parseArgvJson('["/bin/cat","/etc/x"]', '--args')).toEqual(['/bin/cat', '/etc/x']);
    expect(parseArgvJson('"/bin/sh"', '--entrypoint')).toEqual(['/bin/sh']);
    expect(() => parseArgvJson('/bin/cat', '--entrypoint')).toThrow(/not JSON/);
    expect(() => parseArgvJson('[1]', '--args')).toThrow(/array of strings/);
  });

  it("writes runc's config: the process, a writable root at the overlay, runc's default namespaces", () => {
    const spec = runtimeSpec(workloadProcess(image, {}, users), { rootfs: '/tmp/x/rootfs' }) as { process: unknown; root: unknown; linux: { namespaces: { type: string }[] }; mounts: { destination: string }[] };
    expect(spec.process).toMatchObject({ terminal: false, args: ['/app', '--serve'], cwd: '/srv', user: { uid: 1000, gid: 1000 } });
    expect(spec.root).toEqual({ path: '/tmp/x/rootfs', readonly: false });
    expect(spec.linux.namespaces.map((n) => n.type)).toEqual(['pid', 'network', 'ipc', 'uts', 'mount']);
    expect(spec.mounts.map((m) => m.destination)).toContain('/proc');
  });
});

describe('--period', () => {
  it('accepts units, a bare number is seconds', () => {
    expect(parseDuration('10s')).toBe(10_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('2m')).toBe(120_000);
    expect(parseDuration('1.5')).toBe(1500);
    expect(() => parseDuration('0')).toThrow();
    expect(() => parseDuration('ten')).toThrow();
  });
});
