/**
 * SOCI rows of the conformance suite: the fixture layer as an unmodified gzip blob (one member, as gzip
 * makes it), as several concatenated pigz members, and as an uncompressed tar, each with a zTOC built by
 * lazypull at tiny 64 KiB spans so that many spans start mid-byte and cross member ends.
 */
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'vitest';
import { FileSource } from '../../../src/io/random-access.js';
import { buildZtoc } from '../../../src/soci/build.js';
import { openSociLayer, type SociLayerIndex } from '../../../src/soci/layer-index.js';
import { run } from '../../helpers/fixture-tree.js';

export type SociVariant = 'gzip' | 'pigz-members' | 'uncompressed';

export const SOCI_SPAN_SIZE = 64 * 1024;

export interface SociLayer {
  readonly blobPath: string;
  readonly index: SociLayerIndex;
  readonly source: FileSource;
}

/** Uncompressed offsets where a new gzip member starts, per built index (for the member-crossing check). */
const memberStarts = new WeakMap<SociLayerIndex, number[]>();

async function magic(path: string): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(4), 0, 4, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

async function plainTar(input: string): Promise<Buffer> {
  const head = await magic(input);
  if (head[0] === 0x1f && head[1] === 0x8b) return (await run('gzip', ['-dc', input])).stdout;
  if (head.readUInt32LE(0) === 0xfd2fb528) return (await run('zstd', ['-dcq', input])).stdout;
  return readFile(input);
}

/** Three pigz members cut at odd offsets, concatenated: what `pigz` on split input or `cat a.gz b.gz` makes. */
async function pigzMembers(tar: Buffer): Promise<{ blob: Buffer; starts: number[] }> {
  const starts = [0, Math.floor(tar.length * 0.37) | 1, Math.floor(tar.length * 0.71) | 1];
  const members: Buffer[] = [];
  for (let i = 0; i < starts.length; i++) {
    members.push((await run('pigz', ['-c', '-6', '-b', '128'], tar.subarray(starts[i], starts[i + 1] ?? tar.length))).stdout);
  }
  return { blob: Buffer.concat(members), starts: starts.slice(1) };
}

export async function buildSociLayer(input: string, workDir: string, variant: SociVariant): Promise<SociLayer> {
  const blobPath = join(workDir, 'blob');
  const head = await magic(input);
  let starts: number[] = [];
  if (variant === 'gzip' && head[0] === 0x1f && head[1] === 0x8b) {
    await writeFile(blobPath, await readFile(input)); // an unmodified gzip layer, as GNU tar | gzip made it
  } else if (variant === 'gzip') {
    await writeFile(blobPath, (await run('gzip', ['-6', '-n', '-c'], await plainTar(input))).stdout);
  } else if (variant === 'pigz-members') {
    const made = await pigzMembers(await plainTar(input));
    starts = made.starts;
    await writeFile(blobPath, made.blob);
  } else {
    await writeFile(blobPath, await plainTar(input));
  }
  const source = await FileSource.open(blobPath);
  try {
    const built = await buildZtoc(source, { spanSize: SOCI_SPAN_SIZE, minLayerSize: 0 });
    const index = openSociLayer(built!.bytes, { expectedZtocDigest: built!.digest, layerSize: source.size });
    memberStarts.set(index, starts);
    return { blobPath, index, source };
  } catch (err) {
    await source.close();
    throw err;
  }
}

/** What makes each variant worth running: mid-byte spans, spans across member ends, fixed tar spans. */
export function checkSociLayer(variant: SociVariant, index: SociLayerIndex): void {
  const { ztoc, gzip, spans } = index.parsed;
  expect(spans.length).toBeGreaterThan(50);
  if (variant === 'uncompressed') {
    expect(ztoc.algorithm).toBe('uncompressed');
    expect(spans.slice(0, -1).every((s) => s.uncompressedEnd - s.uncompressedStart === SOCI_SPAN_SIZE)).toBe(true);
    return;
  }
  expect(ztoc.algorithm).toBe('gzip');
  const checkpoints = gzip!.checkpoints;
  if (variant === 'gzip') expect(checkpoints.filter((c) => c.bits !== 0).length).toBeGreaterThan(2);
  else {
    const crossing = memberStarts.get(index)!.filter((start) => spans.some((s) => s.uncompressedStart < start && s.uncompressedEnd > start));
    expect(crossing.length).toBeGreaterThan(0);
  }
  // Some file piece really comes from a span that starts mid-byte (or crosses a member end): the reads cover it.
  const files = [...index.entries.values()].filter((e) => e.type === 'reg' && e.size > 0);
  expect(files.some((f) => f.chunks.length > 1)).toBe(true);
}
