/**
 * HelloBench-style images built from this machine's Debian files (no base image, no network): each
 * image is a list of layers, each layer a list of sources copied into a staging dir, then tarred
 * (sorted, root-owned, mtime kept), gzipped with `pigz -6` and written as an OCI image layout.
 *
 * Layouts are cached under HELLO_CACHE (default /var/tmp/lazypull-hello-cache), keyed by a hash of
 * the recipe and the size and mtime of every source path, so a re-run does not rebuild them.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir, readFile, readlink, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { run } from '../../test/helpers/containerd.js';
import { fileDigest, MediaType, writeOciLayout, type LayerInput } from '../../test/helpers/oci-image.js';

/** Bump when the build itself changes (the recipe hash covers what is copied). */
const BUILD_VERSION = 2;

/** What goes into a layer. Paths are absolute paths of this machine. */
export type Source =
  /** A file (symlinks followed, stored as a regular file at its own path) and the libraries `ldd` lists for it. */
  | { binary: string }
  /** A directory tree copied as it is (symlinks inside it kept). */
  | { tree: string; exclude?: string[] }
  /** A symlink to create. */
  | { symlink: string; target: string }
  /** A file with the given content. */
  | { file: string; content: string; mode?: number }
  /** An empty directory. */
  | { dir: string; mode?: number };

export interface ImageRecipe {
  name: string;
  /** The image's Cmd (also what `lazypull optimize` runs). */
  cmd: string[];
  /** A line of the workload's stdout that means it worked. */
  expect: string;
  /** Bottom first. */
  layers: { name: string; sources: Source[] }[];
}

export interface BuiltImage {
  recipe: ImageRecipe;
  /** OCI image layout holding the gzip image, tag `gzip`. */
  layoutDir: string;
  tag: string;
  /** Compressed and uncompressed sizes of the layers. */
  compressedBytes: number;
  uncompressedBytes: number;
  layers: { name: string; size: number; uncompressed: number }[];
}

/** Debian 12 is merged-/usr: /bin, /lib, /lib64 and /sbin are symlinks into /usr. */
const USRMERGE: Source[] = [
  { symlink: '/bin', target: 'usr/bin' },
  { symlink: '/lib', target: 'usr/lib' },
  { symlink: '/lib64', target: 'usr/lib64' },
  { symlink: '/sbin', target: 'usr/sbin' },
  { dir: '/tmp', mode: 0o1777 },
  { dir: '/etc' },
  { file: '/etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\n' },
  { file: '/etc/group', content: 'root:x:0:\n' },
  { dir: '/root', mode: 0o700 },
];

const HELLO_C = '#include <stdio.h>\n\nint main(void) {\n  printf("hello from gcc\\n");\n  return 0;\n}\n';

/** The images the benchmark knows, by name. `node` and `gcc` need the binaries installed. */
export function recipes(nodeBinary: string): Record<string, ImageRecipe> {
  return {
    python: {
      name: 'python',
      cmd: ['python3', '-c', 'print("hello")'],
      expect: 'hello',
      // About the 65 MiB (compressed) of the python image the bench-env spec measured: like a real one, it
      // carries a distribution (perl, locales data, timezones) and site-packages that "hello" never reads.
      layers: [
        {
          name: 'distro',
          sources: [...USRMERGE, ...['/usr/share/perl', '/usr/lib/x86_64-linux-gnu/perl', '/usr/lib/x86_64-linux-gnu/perl-base', '/usr/share/i18n', '/usr/lib/x86_64-linux-gnu/gconv', '/usr/share/zoneinfo', '/usr/share/mime'].filter((dir) => existsSync(dir)).map((tree) => ({ tree }))],
        },
        { name: 'python', sources: [{ binary: '/usr/bin/python3.11' }, { symlink: '/usr/bin/python3', target: 'python3.11' }] },
        { name: 'stdlib', sources: [{ tree: '/usr/lib/python3.11' }, ...(existsSync('/usr/lib/python3/dist-packages') ? [{ tree: '/usr/lib/python3/dist-packages' }] : [])] },
      ],
    },
    node: {
      name: 'node',
      cmd: ['node', '-e', 'console.log("hello")'],
      expect: 'hello',
      layers: [
        { name: 'base', sources: [...USRMERGE, { binary: '/usr/lib/x86_64-linux-gnu/libstdc++.so.6' }, { binary: '/usr/lib/x86_64-linux-gnu/libgcc_s.so.1' }] },
        { name: 'node', sources: [{ binary: nodeBinary }, ...(nodeBinary === '/usr/bin/node' ? [] : [{ symlink: '/usr/bin/node', target: nodeBinary }])] },
        { name: 'npm', sources: existsSync('/usr/lib/node_modules') ? [{ tree: '/usr/lib/node_modules' }] : [] },
      ],
    },
    gcc: {
      name: 'gcc',
      cmd: ['/bin/sh', '-c', 'gcc -o /tmp/hello /src/hello.c && /tmp/hello'],
      expect: 'hello from gcc',
      layers: [
        {
          name: 'base+binutils',
          sources: [...USRMERGE, { binary: '/usr/bin/dash' }, { symlink: '/usr/bin/sh', target: 'dash' }, { binary: '/usr/bin/as' }, { binary: '/usr/bin/ld' }, { binary: '/usr/bin/ld.bfd' }],
        },
        {
          name: 'gcc',
          sources: [
            { binary: '/usr/bin/gcc' },
            { symlink: '/usr/bin/cc', target: 'gcc' },
            { tree: '/usr/lib/gcc/x86_64-linux-gnu/12' },
            { binary: '/usr/lib/gcc/x86_64-linux-gnu/12/cc1' },
            { binary: '/usr/lib/gcc/x86_64-linux-gnu/12/collect2' },
            { binary: '/usr/lib/gcc/x86_64-linux-gnu/12/lto1' },
            ...['crt1.o', 'crti.o', 'crtn.o', 'Scrt1.o', 'libc.so', 'libc_nonshared.a', 'libm.so', 'libc.a'].map((f) => ({ binary: `/usr/lib/x86_64-linux-gnu/${f}` })),
            { binary: '/usr/lib/x86_64-linux-gnu/libc.so.6' },
            { binary: '/usr/lib/x86_64-linux-gnu/libgcc_s.so.1' },
            { tree: '/usr/include', exclude: ['usr/include/node', 'usr/include/python3.11', 'usr/include/c++', 'usr/include/llvm-14', 'usr/include/llvm-c-14', 'usr/include/unicode'] },
          ],
        },
        { name: 'app', sources: [{ file: '/src/hello.c', content: HELLO_C }] },
      ],
    },
  };
}

/** /lib/x -> /usr/lib/x (and /bin, /sbin, /lib64): where the file really is on a merged-/usr system. */
function canonical(path: string): string {
  return path.replace(/^\/(bin|sbin|lib|lib64)\//, '/usr/$1/');
}

async function lddLibraries(binary: string): Promise<string[]> {
  try {
    const { stdout } = await run('ldd', [binary]);
    const libs: string[] = [];
    for (const line of stdout.split('\n')) {
      const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)/.exec(line);
      if (m?.[1]) libs.push(m[1]);
    }
    return libs;
  } catch {
    return []; // not a dynamic executable (a data file, a static binary)
  }
}

function expandPaths(sources: Source[]): string[] {
  const paths: string[] = [];
  for (const s of sources) {
    if ('binary' in s) paths.push(s.binary);
    else if ('tree' in s) paths.push(s.tree);
  }
  return paths;
}

/** Recipe + stat of every source: changes when a package upgrade changes the files. */
async function recipeKey(recipe: ImageRecipe): Promise<string> {
  const hash = createHash('sha256').update(JSON.stringify({ BUILD_VERSION, recipe }));
  for (const layer of recipe.layers) {
    for (const path of expandPaths(layer.sources)) {
      const st = await lstat(path).catch(() => undefined);
      hash.update(`${path}:${st?.size ?? -1}:${st?.mtimeMs ?? -1}\n`);
    }
  }
  return hash.digest('hex').slice(0, 16);
}

async function copyFileTo(stage: string, path: string, seen: Set<string>): Promise<void> {
  const dest = join(stage, canonical(path));
  if (seen.has(canonical(path)) || existsSync(dest)) return;
  seen.add(canonical(path));
  await mkdir(dirname(dest), { recursive: true });
  await run('cp', ['-L', '--preserve=mode', path, dest]);
}

/** `seen`: files the layers below already have (a library is stored once, in the lowest layer that needs it). */
async function stageLayer(stage: string, sources: Source[], seen: Set<string>): Promise<void> {
  await mkdir(stage, { recursive: true });
  for (const s of sources) {
    if ('binary' in s) {
      if (!existsSync(s.binary)) throw new Error(`${s.binary} is not installed on this machine`);
      await copyFileTo(stage, s.binary, seen);
      for (const lib of await lddLibraries(s.binary)) await copyFileTo(stage, lib, seen);
    } else if ('tree' in s) {
      const real = await realpath(s.tree);
      const rel = canonical(real).slice(1);
      const excludes = (s.exclude ?? []).map((e) => `--exclude=${e}`);
      await run('bash', ['-c', `set -o pipefail; tar -C / ${excludes.join(' ')} -cf - ${rel} | tar -C ${stage} -xf -`]);
    } else if ('symlink' in s) {
      const dest = join(stage, s.symlink);
      await mkdir(dirname(dest), { recursive: true });
      const existing = await readlink(dest).catch(() => undefined);
      if (existing === undefined) await symlink(s.target, dest);
    } else if ('file' in s) {
      const dest = join(stage, s.file);
      await mkdir(dirname(dest), { recursive: true });
      await writeFile(dest, s.content);
      await chmod(dest, s.mode ?? 0o644);
    } else {
      await mkdir(join(stage, s.dir), { recursive: true });
      await chmod(join(stage, s.dir), s.mode ?? 0o755);
    }
  }
}

/** Builds (or finds in the cache) the gzip OCI layout of `recipe`. */
export async function buildImage(recipe: ImageRecipe, cacheRoot: string, log: (line: string) => void): Promise<BuiltImage> {
  const key = await recipeKey(recipe);
  const dir = join(cacheRoot, `${recipe.name}-${key}`);
  const layoutDir = join(dir, 'oci');
  const infoPath = join(dir, 'image.json');
  if (existsSync(infoPath)) {
    const info = JSON.parse(await readFile(infoPath, 'utf8')) as Omit<BuiltImage, 'recipe'>;
    return { ...info, recipe };
  }
  log(`building image ${recipe.name} in ${dir}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const layers: LayerInput[] = [];
  const sizes: BuiltImage['layers'] = [];
  const seen = new Set<string>();
  for (const [i, layer] of recipe.layers.entries()) {
    const stage = join(dir, `stage-${i}`);
    await stageLayer(stage, layer.sources, seen);
    const tarPath = join(dir, `layer-${i}.tar`);
    const gzPath = `${tarPath}.gz`;
    await run('tar', ['--sort=name', '--format=gnu', '--owner=0', '--group=0', '--numeric-owner', '-C', stage, '-cf', tarPath, '.']);
    await run('bash', ['-c', `pigz -n -6 -c ${tarPath} > ${gzPath}`]);
    const diff = await fileDigest(tarPath);
    const blob = await fileDigest(gzPath);
    layers.push({ path: gzPath, mediaType: MediaType.layerGzip, diffID: diff.digest, digest: blob.digest, size: blob.size });
    sizes.push({ name: layer.name, size: blob.size, uncompressed: diff.size });
    await rm(tarPath);
    await rm(stage, { recursive: true, force: true });
  }
  const tag = 'gzip';
  await writeOciLayout(layoutDir, layers, {
    name: `hello/${recipe.name}:${tag}`,
    runConfig: { Env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'HOME=/root'], Cmd: recipe.cmd, WorkingDir: '/' },
  });
  for (const l of layers) await rm(l.path); // the layout holds a hardlink
  const info: Omit<BuiltImage, 'recipe'> = {
    layoutDir,
    tag,
    compressedBytes: sizes.reduce((a, l) => a + l.size, 0),
    uncompressedBytes: sizes.reduce((a, l) => a + l.uncompressed, 0),
    layers: sizes,
  };
  await writeFile(infoPath, JSON.stringify(info, null, 2));
  return { ...info, recipe };
}

/**
 * Runs the image's workload in a chroot of its unpacked layers: a check that the recipe copied
 * everything the workload needs, before any registry or containerd is involved.
 */
export async function smokeTest(image: BuiltImage, work: string): Promise<void> {
  const root = join(work, `smoke-${image.recipe.name}`);
  await mkdir(root, { recursive: true });
  try {
    const index = JSON.parse(await readFile(join(image.layoutDir, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    const manifestDigest = index.manifests[0]!.digest.replace('sha256:', '');
    const manifest = JSON.parse(await readFile(join(image.layoutDir, 'blobs', 'sha256', manifestDigest), 'utf8')) as { layers: { digest: string }[] };
    for (const layer of manifest.layers) {
      await run('tar', ['-C', root, '-xzf', join(image.layoutDir, 'blobs', 'sha256', layer.digest.replace('sha256:', ''))]);
    }
    const { stdout } = await run('/usr/sbin/chroot', [root, ...image.recipe.cmd], { env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/root' }, timeoutMs: 60_000 });
    if (!stdout.includes(image.recipe.expect)) throw new Error(`image ${image.recipe.name}: the workload printed ${JSON.stringify(stdout)}, expected ${image.recipe.expect}`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
