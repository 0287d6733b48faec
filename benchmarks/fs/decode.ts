/**
 * Where to decode chunks: inline on the main thread (which also answers every FUSE request) or on a
 * worker pool. For each chunk size, decodes a batch of gzip chunks 4 at a time and reports throughput
 * and the longest main-thread stall (what a concurrent `stat` or page-cache miss would wait).
 * Run: npx vite-node benchmarks/fs/decode.ts
 */
import { gzipSync } from 'node:zlib';
import { inlineDecoder, type ChunkDecoder } from '../../src/fs/chunk-decoder.js';
import { WorkerDecoder } from '../../src/fs/worker-decoder.js';
import { ChunkedLayerIndex } from '../../src/layer/chunked-index.js';
import type { ChunkRef, LayerEntry } from '../../src/layer/layer-index.js';
import { sha256 } from '../../src/util/digest.js';

function textLike(size: number, seed: number): Buffer {
  const words = ['layer', 'chunk', 'verify', 'fuse', 'registry', 'lazy', 'pull', 'snapshot', String(seed)];
  const parts: string[] = [];
  let length = 0;
  for (let i = 0; length < size; i++) {
    const w = words[(i * 7 + seed) % words.length]! + (i % 13 === 0 ? '\n' : ' ');
    parts.push(w);
    length += w.length;
  }
  return Buffer.from(parts.join('')).subarray(0, size);
}

const index = new ChunkedLayerIndex({ format: 'estargz', tocDigest: sha256(Buffer.alloc(0)), root: {} as LayerEntry, entries: new Map(), noPrefetch: true, verified: true });

async function run(decoder: ChunkDecoder, size: number, count: number): Promise<{ mbps: number; maxStallMs: number }> {
  const chunks = Array.from({ length: count }, (_, i) => {
    const data = textLike(size, i);
    const compressed = gzipSync(data, { level: 6 });
    const ref: ChunkRef = { fileOffset: 0, size, compressedOffset: 0, compressedEnd: compressed.length, innerOffset: 0, encoding: 'gzip', maxInflated: size, digest: sha256(data) };
    return { ref, compressed };
  });
  // A 1 ms ticker stands in for other FUSE requests: its longest gap is the longest main-thread stall.
  let last = performance.now();
  let maxGap = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
  }, 1);
  const started = performance.now();
  const decodeOne = async (c: (typeof chunks)[number]) => {
    await new Promise((resolve) => setImmediate(resolve)); // each chunk is its own FUSE request: the loop turns between them
    return decoder.decode(index, c.ref, c.compressed);
  };
  for (let i = 0; i < count; i += 4) await Promise.all(chunks.slice(i, i + 4).map(decodeOne));
  const seconds = (performance.now() - started) / 1000;
  clearInterval(ticker);
  return { mbps: (size * count) / 1e6 / seconds, maxStallMs: maxGap };
}

const worker = new WorkerDecoder({ minWorkerBytes: 0, threads: 2 });
const hybrid = new WorkerDecoder();
await run(worker, 64 * 1024, 16); // warm the pool
console.log('| chunk | inline MB/s | inline max stall | worker MB/s | worker max stall | default (>=512 KiB on workers) MB/s | stall |');
console.log('|---|---|---|---|---|---|---|');
for (const [size, count] of [[16 * 1024, 400], [64 * 1024, 200], [256 * 1024, 80], [1024 * 1024, 40], [4 * 1024 * 1024, 16]] as const) {
  const inline = await run(inlineDecoder, size, count);
  const off = await run(worker, size, count);
  const mixed = await run(hybrid, size, count);
  console.log(`| ${size / 1024} KiB | ${inline.mbps.toFixed(0)} | ${inline.maxStallMs.toFixed(1)} ms | ${off.mbps.toFixed(0)} | ${off.maxStallMs.toFixed(1)} ms | ${mixed.mbps.toFixed(0)} | ${mixed.maxStallMs.toFixed(1)} ms |`);
}
await worker.close();
await hybrid.close();
