import { randomBytes } from 'node:crypto';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerInspect, type InspectReport } from '../../../src/cli/commands/inspect.js';
import { estargzFooter, zstdChunkedFooter } from '../../../src/estargz/footer.js';
import { startRegistry, type PushedImage, type TestRegistry } from '../../helpers/registry.js';

async function runInspect(args: string[]): Promise<string> {
  const program = new Command('lazypull').exitOverride().configureOutput({ writeErr: () => undefined });
  registerInspect(program);
  const chunks: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    chunks.push(String(chunk));
    return true;
  });
  try {
    await program.parseAsync(['node', 'lazypull', 'inspect', ...args]);
  } finally {
    spy.mockRestore();
  }
  return chunks.join('');
}

describe('lazypull inspect', () => {
  let registry: TestRegistry;
  let image: PushedImage;
  const tocDigest = `sha256:${'c'.repeat(64)}`;

  beforeAll(async () => {
    registry = await startRegistry();
    image = await registry.pushImage('team/app', 'v1', {
      layers: [
        { data: Buffer.concat([randomBytes(9000), estargzFooter(4000)]), annotations: { 'containerd.io/snapshot/stargz/toc.digest': tocDigest } },
        { data: Buffer.concat([randomBytes(9000), zstdChunkedFooter({ offset: 100, compressedSize: 200, uncompressedSize: 500 })]), mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd' },
        { data: randomBytes(5000) },
        { data: Buffer.alloc(0) },
      ],
    });
  });
  afterAll(async () => {
    await registry?.stop();
  });

  it('tells per layer whether it is lazy and why, from the remote footer', async () => {
    const report = JSON.parse(await runInspect(['--json', '--hosts-dir', '/nonexistent', `${registry.host}/team/app:v1`])) as InspectReport;
    expect(report.image.manifestDescriptor.digest).toBe(image.descriptor.digest);
    expect(report.layers.map((l) => [l.format, l.lazy, l.tocOffset])).toEqual([
      ['estargz', true, 4000],
      ['zstd:chunked', true, 100],
      ['plain', false, undefined],
      ['empty', true, undefined],
    ]);
    expect(report.layers[0]!.tocDigest).toBe(tocDigest);
    expect(report.layers[1]!.reason).toMatch(/no TOC digest annotation/);
  });

  it('prints a readable report', async () => {
    const text = await runInspect(['--platform', 'linux/amd64', `${registry.host}/team/app:v1`]);
    expect(text).toContain(`manifest:  ${image.descriptor.digest}`);
    expect(text).toContain('layers:    4 (3 lazy)');
    expect(text).toMatch(/format: estargz {2}lazy: yes/);
    expect(text).toMatch(/format: plain {2}lazy: no {2}\(no eStargz\/zstd:chunked footer: pulled in full\)/);
    expect(text).toContain(`containerd.io/snapshot/stargz/toc.digest=${tocDigest}`);
  });

  it('rejects a malformed platform', async () => {
    await expect(runInspect(['--platform', 'linux', `${registry.host}/team/app:v1`])).rejects.toThrow(/invalid platform "linux"/);
  });
});
