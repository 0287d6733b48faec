/**
 * Image conversion benchmark: `lazypull convert` (registry -> registry) vs `ctr-remote images convert
 * --oci --estargz` on the same ~400 MiB two-layer image, in one run. See README.md next to this file.
 *
 *   npx vite-node benchmarks/convert-image/run.ts [-- --size-mib 400 --level 9 --runs 1 --no-build]
 */
import { lstat, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { run, startContainerd, type Containerd } from '../../test/helpers/containerd.js';
import { importImage, writeOciLayout } from '../../test/helpers/oci-image.js';
import { startRegistry, type TestRegistry } from '../../test/helpers/registry.js';

const REPO = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const LAZYPULL = join(REPO, 'bin', 'lazypull.js');
const MiB = 1 << 20;

const { values: args } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '400' },
    level: { type: 'string', default: '9' },
    runs: { type: 'string', default: '1' },
    source: { type: 'string', default: '/usr' },
    'no-build': { type: 'boolean', default: false },
  },
  allowPositionals: true,
});
const level = Number(args.level);
const runs = Math.max(1, Number(args.runs));

/** Regular files, dirs and symlinks of `root` in sorted order until their sizes reach `target` bytes. */
async function selectFiles(root: string, target: number): Promise<{ list: string[]; bytes: number }> {
  const list: string[] = [root];
  let bytes = 0;
  async function walk(dir: string): Promise<boolean> {
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name);
      const st = await lstat(path);
      if (st.isDirectory()) {
        list.push(path);
        if (await walk(path)) return true;
      } else if (st.isFile() || st.isSymbolicLink()) {
        list.push(path);
        bytes += st.isFile() ? st.size : 0;
        if (bytes >= target) return true;
      }
    }
    return false;
  }
  await walk(root);
  return { list, bytes };
}

/** A gzip layer (pigz -6, like most published images) of the listed paths. */
async function makeLayer(work: string, name: string, paths: string[]): Promise<string> {
  const listPath = join(work, `${name}.list`);
  await writeFile(listPath, paths.map((p) => p.replace(/^\//, '')).join('\0') + '\0');
  const out = join(work, `${name}.tar.gz`);
  await run('bash', ['-c', `set -o pipefail; tar --format=gnu --numeric-owner --owner=0 --group=0 --no-recursion -C / -cf - --null -T ${listPath} | pigz -n -6 > ${out}`]);
  return out;
}

async function timed(binary: string, argv: string[]): Promise<number> {
  const t0 = process.hrtime.bigint();
  await run(binary, argv);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [line(rows[0]!), `|${widths.map((w, i) => `${'-'.repeat(w + 1)}${i === 0 ? '-' : ':'}`).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'lazypull-bench-convert-image-'));
  let registry: TestRegistry | undefined;
  let cd: Containerd | undefined;
  try {
    if (!args['no-build']) await run('npm', ['run', '--silent', 'build']);
    console.error(`making a ~${args['size-mib']} MiB two-layer image from ${args.source}...`);
    const { list, bytes } = await selectFiles(resolve(args.source), Number(args['size-mib']) * MiB);
    const half = Math.floor(list.length / 2);
    const layerPaths = [await makeLayer(work, 'base', list.slice(0, half)), await makeLayer(work, 'top', list.slice(half))];

    // The source image goes into a registry with ctr-remote's own tooling, not lazypull's (not timed).
    registry = await startRegistry();
    cd = await startContainerd();
    const host = registry.host;
    const SRC = `${host}/bench/src:v1`;
    const layout = join(work, 'layout');
    const diffIDs = await Promise.all(layerPaths.map(async (p) => `sha256:${(await run('bash', ['-c', `pigz -dc ${p} | sha256sum`])).stdout.split(' ')[0]}`));
    await writeOciLayout(layout, layerPaths.map((path, i) => ({ path, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffID: diffIDs[i]! })), { name: SRC });
    await importImage(cd, layout);
    await cd.ctr(['images', 'push', '--plain-http', SRC]);
    const layerBytes = (await Promise.all(layerPaths.map((p) => stat(p)))).reduce((n, s) => n + s.size, 0);
    console.error(`  ${list.length} entries, ${(bytes / MiB).toFixed(0)} MiB of files, layers ${(layerBytes / MiB).toFixed(0)} MiB gzip`);

    const results = new Map<string, number[]>();
    const add = (tool: string, seconds: number): void => void results.set(tool, [...(results.get(tool) ?? []), seconds]);
    for (let i = 0; i < runs; i++) {
      console.error(`run ${i + 1}/${runs}: ctr-remote (content already in containerd: convert only, then push)...`);
      const dst = `${host}/bench/ctr-remote:run${i}`;
      const convertSec = await timed('ctr-remote', [...cd.globalArgs(), 'images', 'convert', '--oci', '--estargz', '--estargz-compression-level', String(level), SRC, dst]);
      const pushSec = await timed('ctr', [...cd.globalArgs(), 'images', 'push', '--plain-http', dst]);
      add('ctr-remote images convert (local content)', convertSec);
      add('ctr-remote images convert + ctr images push', convertSec + pushSec);
      await cd.ctr(['images', 'rm', '--sync', dst]).catch(() => undefined);

      console.error(`run ${i + 1}/${runs}: lazypull convert registry -> registry...`);
      add(`lazypull convert, level ${level} (pull + convert + push)`, await timed('node', [LAZYPULL, 'convert', '--compression-level', String(level), SRC, `${host}/bench/lazypull-l${level}:run${i}`]));
      add('lazypull convert, default level 6 (pull + convert + push)', await timed('node', [LAZYPULL, 'convert', SRC, `${host}/bench/lazypull-l6:run${i}`]));
    }

    const tarMB = bytes / 1e6;
    const reference = median(results.get('ctr-remote images convert (local content)')!);
    const rows = [['tool', 'wall s', 'file MB/s', 'throughput vs ctr-remote convert']];
    for (const [tool, seconds] of results) {
      const wall = median(seconds);
      rows.push([tool, wall.toFixed(2), (tarMB / wall).toFixed(1), `${(reference / wall).toFixed(2)}x`]);
    }
    const cores = (await readFile('/proc/cpuinfo', 'utf8')).match(/^processor/gm)?.length ?? '?';
    console.log(`\nConverting a two-layer image (${(bytes / MiB).toFixed(0)} MiB of files from ${args.source}, ${(layerBytes / MiB).toFixed(0)} MiB gzip) to eStargz, gzip level ${level} unless noted, ${runs} run(s), ${cores} cores.`);
    console.log('ctr-remote converts content already in containerd; lazypull reads from and writes to the registry (127.0.0.1).\n');
    console.log(table(rows));
  } finally {
    await cd?.stop();
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
