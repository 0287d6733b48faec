/**
 * Conversion benchmark: lazypull convert-layer vs ctr-remote images convert --estargz --oci on the same
 * ~500 MiB layer made from /usr, in one run. See README.md next to this file.
 *
 *   npx vite-node benchmarks/convert/run.ts [-- --size-mib 500 --runs 1 --level 9 --input tar|gzip --zstd --keep]
 */
import { createReadStream } from 'node:fs';
import { lstat, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { run, startContainerd, type Containerd } from '../../test/helpers/containerd.js';
import { getImage, importImage, MediaType, writeOciLayout } from '../../test/helpers/oci-image.js';

const REPO = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const LAZYPULL = join(REPO, 'bin', 'lazypull.js');
const MiB = 1 << 20;

const { values: args } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '500' },
    runs: { type: 'string', default: '1' },
    level: { type: 'string', default: '9' },
    input: { type: 'string', default: 'tar' }, // tar | gzip: the layer both tools convert
    zstd: { type: 'boolean', default: false }, // also compare zstd:chunked (--zstdchunked on both sides)
    'zstd-level': { type: 'string', default: '3' }, // ctr-remote 0.12 has no zstd level flag: it uses its default (level 3)
    source: { type: 'string', default: '/usr' },
    work: { type: 'string' },
    'no-build': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
  allowPositionals: true,
});

const targetBytes = Number(args['size-mib']) * MiB;
const runs = Math.max(1, Number(args.runs));
const level = Number(args.level);
if (args.input !== 'tar' && args.input !== 'gzip') throw new Error('--input must be tar or gzip');

interface Measurement {
  tool: string;
  wallSec: number;
  userSec: number;
  sysSec: number;
  maxRssKiB: number;
  outputBytes: number;
  /** containerd's CPU seconds during the conversion (ctr-remote talks to it for every byte). */
  containerdCpuSec?: number;
  containerdRssKiB?: number;
}

/** Files of `root` in byte-wise sorted order, until their sizes add up to `target` (dirs and symlinks too). */
async function selectFiles(root: string, target: number): Promise<{ list: string[]; bytes: number }> {
  const list: string[] = [];
  let bytes = 0;
  const byBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
  const rootDev = (await lstat(root)).dev;
  async function walk(dir: string): Promise<boolean> {
    const names = (await readdir(dir)).sort(byBytes);
    for (const name of names) {
      const p = join(dir, name);
      const st = await lstat(p);
      if (st.isDirectory()) {
        if (st.dev !== rootDev) continue; // -xdev
        list.push(p);
        if (await walk(p)) return true;
      } else if (st.isFile() || st.isSymbolicLink()) {
        list.push(p);
        if (st.isFile()) bytes += st.size;
        if (bytes >= target) return true;
      }
    }
    return false;
  }
  list.push(root);
  await walk(root);
  return { list, bytes };
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path, { highWaterMark: 4 * MiB })) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

/** Runs a command under /usr/bin/time -v; wall time from our clock, the rest from time's report. */
async function timed(binary: string, argv: string[], timeFile: string): Promise<{ stdout: string; m: Omit<Measurement, 'tool' | 'outputBytes'> }> {
  const t0 = process.hrtime.bigint();
  const { stdout } = await run('/usr/bin/time', ['-v', '-o', timeFile, binary, ...argv]);
  const wallSec = Number(process.hrtime.bigint() - t0) / 1e9;
  const report = await readFile(timeFile, 'utf8');
  const num = (re: RegExp) => Number(re.exec(report)?.[1] ?? NaN);
  return {
    stdout,
    m: {
      wallSec,
      userSec: num(/User time \(seconds\): ([\d.]+)/),
      sysSec: num(/System time \(seconds\): ([\d.]+)/),
      maxRssKiB: num(/Maximum resident set size \(kbytes\): (\d+)/),
    },
  };
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => `| ${r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [line(rows[0]!), `|${widths.map((w, i) => (i === 0 ? `${'-'.repeat(w + 1)}-` : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)]!;
};

async function main(): Promise<void> {
  const work = args.work ?? (await mkdtemp(join(tmpdir(), 'lazypull-bench-convert-')));
  let cd: Containerd | undefined;
  try {
    if (!args['no-build']) {
      console.error('building lazypull (npm run build)...');
      await run('npm', ['run', '--silent', 'build'], { env: { npm_config_loglevel: 'error' } });
    }

    // 1. The input layer: a deterministic tar of the first ~N MiB of /usr (sorted, numeric owner).
    const tarPath = join(work, 'usr.tar');
    console.error(`making a ~${args['size-mib']} MiB tar from ${args.source}...`);
    const { list, bytes } = await selectFiles(resolve(args.source), targetBytes);
    const listPath = join(work, 'files.list');
    await writeFile(listPath, list.map((p) => p.replace(/^\//, '')).join('\0') + '\0');
    await run('tar', ['--format=gnu', '--numeric-owner', '--owner=0', '--group=0', '--no-recursion', '-C', '/', '-cf', tarPath, '--null', '-T', listPath]);
    const tarSize = (await stat(tarPath)).size;
    const diffID = await sha256File(tarPath);
    let layerPath = tarPath;
    let layerMediaType: string = MediaType.layerTar;
    if (args.input === 'gzip') {
      layerPath = join(work, 'usr.tar.gz');
      await run('bash', ['-c', `set -o pipefail; pigz -n -6 -c ${tarPath} > ${layerPath}`]);
      layerMediaType = MediaType.layerGzip;
    }
    const layerSize = (await stat(layerPath)).size;
    console.error(`  ${list.length} entries, ${(bytes / MiB).toFixed(1)} MiB of file data, tar ${(tarSize / MiB).toFixed(1)} MiB, layer ${(layerSize / MiB).toFixed(1)} MiB (${args.input})`);

    // 2. A containerd with the image imported (not timed).
    cd = await startContainerd();
    const SRC = 'example.com/lazypull/bench-src:v1';
    await writeOciLayout(join(work, 'layout'), [{ path: layerPath, mediaType: layerMediaType, diffID }], { name: SRC });
    console.error('importing the source image into containerd...');
    await importImage(cd, join(work, 'layout'));
    await rm(join(work, 'layout'), { recursive: true, force: true });

    // 3. Convert, alternating the tools, `runs` times each.
    // lazypull runs at the reference's level and, for eStargz, also with its own default (gzip 6), so the
    // table shows both the like-for-like and the out-of-the-box comparison.
    const formats: { name: string; ctrFlags: string[]; lpVariants: { label: string; flags: string[] }[] }[] = [
      {
        name: 'estargz',
        ctrFlags: ['--estargz', '--estargz-compression-level', String(level)],
        lpVariants: [
          { label: `estargz level ${level}`, flags: ['--compression-level', String(level)] },
          { label: 'estargz default (level 6)', flags: [] },
        ],
      },
    ];
    if (args.zstd) formats.push({ name: 'zstd:chunked', ctrFlags: ['--zstdchunked'], lpVariants: [{ label: 'zstd:chunked', flags: ['--zstdchunked', '--compression-level', String(args['zstd-level'])] }] });
    const results = new Map<string, Measurement[]>();
    const add = (m: Measurement) => results.set(m.tool, [...(results.get(m.tool) ?? []), m]);
    for (let i = 0; i < runs; i++) {
      for (const fmt of formats) {
        const dst = `example.com/lazypull/bench-${fmt.name.replace(':', '-')}:run${i}`;
        console.error(`run ${i + 1}/${runs} ${fmt.name}: ctr-remote images convert...`);
        const cpu0 = cd.cpuSeconds();
        const ctrArgs = [...cd.globalArgs(), 'images', 'convert', '--oci', ...fmt.ctrFlags, SRC, dst];
        const c = await timed('ctr-remote', ctrArgs, join(work, 'time.txt'));
        const containerdCpuSec = cd.cpuSeconds() - cpu0;
        const layer = (await getImage(cd, dst)).manifest.layers[0]!;
        add({ tool: `ctr-remote ${fmt.name}`, ...c.m, outputBytes: layer.size, containerdCpuSec, containerdRssKiB: Math.round(cd.rssBytes() / 1024) });
        // Free the converted blob so the store does not grow run after run.
        await cd.ctr(['images', 'rm', '--sync', dst]).catch(() => undefined);

        for (const variant of fmt.lpVariants) {
          console.error(`run ${i + 1}/${runs} ${variant.label}: lazypull convert-layer...`);
          const out = join(work, `out-${fmt.name.replace(':', '-')}.blob`);
          const l = await timed('node', [LAZYPULL, 'convert-layer', ...variant.flags, layerPath, out], join(work, 'time.txt'));
          const res = JSON.parse(l.stdout) as { size: number; tocDigest: string };
          add({ tool: `lazypull ${variant.label}`, ...l.m, outputBytes: res.size });
          // Sanity: the output is a layer lazypull can open (its TOC digest matches what it reported).
          const printed = (await run('node', [LAZYPULL, 'toc-digest', out])).stdout.trim();
          if (printed !== res.tocDigest) throw new Error(`lazypull toc-digest printed ${printed}, convert-layer reported ${res.tocDigest}`);
          await rm(out, { force: true });
        }
      }
    }

    // 4. The table.
    const rows = [['tool', 'input MB/s', 'wall s', 'CPU s (user+sys)', 'peak RSS MiB', 'output MiB', 'containerd CPU s', 'throughput vs ctr-remote']];
    const summary: string[] = [];
    for (const fmt of formats) {
      const ref = results.get(`ctr-remote ${fmt.name}`)!;
      const ours = fmt.lpVariants.map((v) => results.get(`lazypull ${v.label}`)!);
      const refMBs = tarSize / 1e6 / median(ref.map((m) => m.wallSec));
      for (const ms of [ref, ...ours]) {
        const wall = median(ms.map((m) => m.wallSec));
        const mbs = tarSize / 1e6 / wall;
        const m0 = ms[0]!;
        rows.push([
          m0.tool,
          mbs.toFixed(1),
          wall.toFixed(2),
          median(ms.map((m) => m.userSec + m.sysSec)).toFixed(1),
          (Math.max(...ms.map((m) => m.maxRssKiB)) / 1024).toFixed(0),
          (median(ms.map((m) => m.outputBytes)) / MiB).toFixed(1),
          m0.containerdCpuSec === undefined ? '-' : median(ms.map((m) => m.containerdCpuSec!)).toFixed(1),
          `${(mbs / refMBs).toFixed(2)}x`,
        ]);
      }
      for (const [i, variant] of fmt.lpVariants.entries()) {
        summary.push(`${variant.label}: lazypull ${((tarSize / 1e6 / median(ours[i]!.map((m) => m.wallSec))) / refMBs).toFixed(2)}x ctr-remote's throughput`);
      }
    }
    console.log(
      `\nConverting a ${(tarSize / MiB).toFixed(0)} MiB tar of ${args.source} (${list.length} entries; layer given as ${args.input}), gzip level ${level}, ` +
        `${runs} run(s) each (median wall; peak RSS = max), on ${(await readFile('/proc/cpuinfo', 'utf8')).match(/^processor/gm)?.length ?? '?'} cores.`,
    );
    console.log('input MB/s = uncompressed tar bytes / 1e6 / wall seconds; ctr-remote CPU and RSS are its own process, containerd CPU is the daemon during the same conversion.\n');
    console.log(table(rows));
    console.log(`\n${summary.join('\n')}`);
  } finally {
    await cd?.stop();
    if (!args.keep && !args.work) await rm(work, { recursive: true, force: true });
    else console.error(`kept ${work}`);
  }
}

await main();
