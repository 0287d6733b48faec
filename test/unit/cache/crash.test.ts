/**
 * kill -9 at random moments: a child process puts chunks in a loop (fsync on, eviction running) and is
 * SIGKILLed; each reopen must find only complete entries holding exactly the bytes that were put, and no
 * temp files.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChunkCache } from '../../../src/cache/tiered-chunk-cache.js';
import { crashTestChunk } from './cache-fixtures.js';
import { listFiles, useTempDirs } from './temp-dirs.js';

const { makeTempDir } = useTempDirs();
const KILLS = 8;
/** Each run starts at a fresh index range, so a stale chunk from an earlier run cannot pass for a new one. */
const INDEXES_PER_RUN = 100_000;

/** The child is TypeScript: bundle it once into plain ESM that node runs without a loader. */
let buildDir: string;
let childScript: string;
beforeAll(async () => {
  buildDir = await mkdtemp(join(tmpdir(), 'lazypull-crash-writer-'));
  childScript = join(buildDir, 'crash-writer.mjs');
  await build({
    entryPoints: [fileURLToPath(new URL('./crash-writer.ts', import.meta.url))],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: childScript,
    logLevel: 'error',
  });
});

afterAll(async () => {
  if (buildDir !== undefined) await rm(buildDir, { recursive: true, force: true });
});

interface KilledRun {
  lastReportedIndex: number;
}

/** Starts the writer, lets it run for a random 20-300 ms after it opened the cache, then SIGKILLs it. */
async function runAndKill(dir: string, firstIndex: number): Promise<KilledRun> {
  const child = spawn(process.execPath, [childScript, dir, String(firstIndex)], { stdio: ['ignore', 'pipe', 'pipe'] });
  // 'close' rather than 'exit': it waits until stdout is drained, so every index the child printed is seen.
  const closed = once(child, 'close');
  let output = '';
  let stderr = '';
  child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (data: Buffer) => {
        output += data.toString();
        if (output.startsWith('ready\n')) resolve();
      });
      child.once('exit', () => reject(new Error(`writer exited before it was killed: ${stderr}`)));
    });
    await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 280));
  } finally {
    child.kill('SIGKILL');
  }
  const [, signal] = await closed;
  expect(signal).toBe('SIGKILL');
  const reported = output.split('\n').filter((line) => /^\d+$/.test(line)).map(Number);
  return { lastReportedIndex: reported.at(-1) ?? firstIndex - 1 };
}

describe('chunk cache under kill -9', () => {
  it(`never serves or keeps a damaged entry across ${KILLS} kills of a writer`, { timeout: 30_000 }, async () => {
    const dir = await makeTempDir();
    const checkedUpTo: number[] = [];
    let entriesVerified = 0;
    for (let run = 0; run < KILLS; run++) {
      const { lastReportedIndex } = await runAndKill(dir, run * INDEXES_PER_RUN);
      // The put in progress at the kill may have been renamed into place before its index was printed.
      checkedUpTo.push(lastReportedIndex + 10);

      const cache = await createChunkCache({ dir, maxDiskBytes: 4 * 1024 * 1024, maxMemoryBytes: 1 });
      try {
        await cache.evictionSettled();
        expect((await listFiles(dir)).filter((file) => file.includes('.tmp-'))).toEqual([]);
        let found = 0;
        for (const [earlierRun, upTo] of checkedUpTo.entries()) {
          for (let index = earlierRun * INDEXES_PER_RUN; index <= upTo; index++) {
            const chunk = crashTestChunk(index);
            const data = await cache.get(chunk.key);
            if (data === undefined) continue;
            expect(data.equals(chunk.data), `chunk ${index}`).toBe(true);
            found++;
          }
        }
        // Every indexed entry was one that was put, read back whole: none was damaged, none unaccounted for.
        const stats = cache.stats();
        expect(stats.corruptEntries).toBe(0);
        expect(found).toBe(stats.diskEntries);
        expect(stats.diskBytes).toBeLessThanOrEqual(4 * 1024 * 1024);
        entriesVerified += found;
      } finally {
        await cache.close();
      }
    }
    expect(entriesVerified).toBeGreaterThan(0);
  });
});
