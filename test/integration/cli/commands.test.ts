/**
 * The built `lazypull` command loads only the module of the command it runs: help must still list
 * every command, each command must still find its own options, and an unknown name must still fail.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildIfStale, REPO } from '../snapshot/lazypull-daemon.js';

const execFileAsync = promisify(execFile);
const COMMANDS = ['toc', 'toc-digest', 'cat', 'convert-layer', 'inspect', 'serve', 'convert', 'optimize', 'soci', 'rpull', 'status'];

function lazypull(...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  return execFileAsync(process.execPath, [`${REPO}/bin/lazypull.js`, ...args], { timeout: 30_000 }).then(
    ({ stdout, stderr }) => ({ stdout, stderr, code: 0 }),
    (err: { stdout: string; stderr: string; code: number }) => ({ stdout: err.stdout, stderr: err.stderr, code: err.code }),
  );
}

beforeAll(async () => {
  await buildIfStale();
}, 180_000);

describe('lazypull commands', () => {
  it('--help lists every command', async () => {
    const { stdout, code } = await lazypull('--help');
    expect(code).toBe(0);
    const commandsSection = stdout.slice(stdout.indexOf('Commands:'));
    const listed = [...commandsSection.matchAll(/^ {2}([a-z-]+)\b/gm)].map((m) => m[1]);
    expect(listed).toEqual([...COMMANDS, 'help']);
  });

  it.each(COMMANDS)('%s --help shows its own usage', async (command) => {
    const { stdout, code } = await lazypull(command, '--help');
    expect(code).toBe(0);
    expect(stdout).toMatch(new RegExp(`^Usage: lazypull ${command} `, 'm'));
  });

  it('an unknown command fails with exit 1, naming it and listing the commands', async () => {
    const { stderr, code } = await lazypull('bogus');
    expect(code).toBe(1);
    expect(stderr).toMatch(/unknown command 'bogus'/);
    expect(stderr).toMatch(/^ {2}rpull /m);
  });

  it('stops quietly with exit 0 when its reader goes away (lazypull toc blob | head)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lp-epipe-'));
    try {
      await Promise.all(Array.from({ length: 2000 }, (_, i) => writeFile(join(dir, `file-${i}`), '')));
      await execFileAsync('tar', ['-cf', join(dir, 'layer.tar'), '-C', dir, '--exclude', 'layer.tar', '.']);
      await execFileAsync(process.execPath, [`${REPO}/bin/lazypull.js`, 'convert-layer', join(dir, 'layer.tar'), join(dir, 'layer.esgz')], { timeout: 30_000 });
      // The TOC of 2000 entries is far more than a pipe holds: the command is still writing when the reader leaves.
      const child = spawn(process.execPath, [`${REPO}/bin/lazypull.js`, 'toc', join(dir, 'layer.esgz')], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      child.stdout.once('data', () => child.stdout.destroy());
      const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
      expect(stderr).toBe('');
      expect(code).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
