import { Command } from 'commander';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerSoci, type ZtocInfo } from '../../../src/cli/commands/soci.js';
import { gzipped, sampleTar, sampleZtoc } from './helpers.js';

async function runSoci(...args: string[]): Promise<string> {
  const program = new Command('lazypull').exitOverride();
  registerSoci(program);
  const out: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out.push(String(chunk));
    return true;
  });
  try {
    await program.parseAsync(['node', 'lazypull', 'soci', ...args]);
  } finally {
    spy.mockRestore();
  }
  return out.join('');
}

describe('lazypull soci ztoc info', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lazypull-soci-cli-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prints version, sizes, spans and files of a zTOC file as JSON', async () => {
    const sample = sampleTar();
    const gz = gzipped(sample.tar);
    const built = await sampleZtoc(gz);
    const path = join(dir, 'ztoc');
    await writeFile(path, built.bytes);
    const info = JSON.parse(await runSoci('ztoc', 'info', path)) as ZtocInfo;
    expect(info).toMatchObject({ digest: built.digest, version: '0.9', build_tool: 'lazypull', compression: 'gzip', size: gz.length, uncompressed_size: sample.tar.length, span_size: 16384 });
    expect(info.num_spans).toBe(built.ztoc.maxSpanId + 1);
    expect(info.num_files).toBe(built.ztoc.files.length);
    const big = info.files.find((f) => f.filename === 'big.bin')!;
    expect(big.size).toBe(300_000);
    expect(big.end_span).toBeGreaterThan(big.start_span);
    expect(info.num_multi_span_files).toBeGreaterThanOrEqual(1);
  });

  it('says what is wrong with a bad file, and that a DIGEST needs --image', async () => {
    const path = join(dir, 'garbage');
    await writeFile(path, Buffer.from('not a flatbuffer at all'));
    await expect(runSoci('ztoc', 'info', path)).rejects.toThrow(/invalid zTOC/);
    await expect(runSoci('ztoc', 'info', `sha256:${'a'.repeat(64)}`)).rejects.toThrow(/a zTOC digest needs --image REF/);
    await expect(runSoci('ztoc', 'info', path, '--image', '127.0.0.1:1/x:y')).rejects.toThrow(/must be a zTOC digest/);
  });
});
