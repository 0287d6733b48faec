/**
 * Range-read benchmark: random reads of 4 KiB to 1 MiB from a 100 MiB blob on the local registry,
 * sequential and concurrent, coalescing on and off. Prints requests/s and MB/s.
 * Run: npx vite-node benchmarks/range-read/main.ts
 */
import { randomBytes } from 'node:crypto';
import { CountingObserver, RegistryClient, parseReference } from '../../src/remote/index.js';
import { startRegistry } from '../../test/helpers/registry.js';

const BLOB_SIZE = 100 * 1024 * 1024;
const SIZES = [4096, 64 * 1024, 1024 * 1024];
const CONCURRENCY = 16;

function seededOffsets(count: number, size: number, seed: number): number[] {
  let x = seed;
  return Array.from({ length: count }, () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return Math.floor((x / 2 ** 31) * (BLOB_SIZE - size));
  });
}

const registry = await startRegistry();
try {
  const blob = randomBytes(BLOB_SIZE);
  const pushed = await registry.pushBlob('bench/blob', blob);
  const rows: string[] = ['| read size | mode | coalescing | reads | HTTP requests | reads/s | requests/s | MB/s |', '|---|---|---|---|---|---|---|---|'];
  for (const size of SIZES) {
    const count = size >= 1024 * 1024 ? 100 : 400;
    for (const concurrent of [false, true]) {
      for (const coalesce of [true, false]) {
        const observer = new CountingObserver();
        const client = new RegistryClient({ hostsDir: null, dockerConfig: false, observer, maxConnectionsPerHost: CONCURRENCY, blobRead: { coalesce } });
        const source = await client.openBlob(parseReference(`${registry.host}/bench/blob`), { digest: pushed.digest, size: BLOB_SIZE });
        const offsets = seededOffsets(count, size, size + (concurrent ? 1 : 0));
        const started = performance.now();
        if (concurrent) {
          let next = 0;
          await Promise.all(
            Array.from({ length: CONCURRENCY }, async () => {
              while (next < offsets.length) {
                const offset = offsets[next++]!;
                const data = await source.readAt(offset, size);
                if (!data.equals(blob.subarray(offset, offset + size))) throw new Error('wrong bytes');
              }
            }),
          );
        } else {
          for (const offset of offsets) {
            const data = await source.readAt(offset, size);
            if (!data.equals(blob.subarray(offset, offset + size))) throw new Error('wrong bytes');
          }
        }
        const seconds = (performance.now() - started) / 1000;
        const requests = observer.exchanges.filter((e) => e.kind === 'blob').length;
        rows.push(`| ${size / 1024} KiB | ${concurrent ? `concurrent x${CONCURRENCY}` : 'sequential'} | ${coalesce ? 'on' : 'off'} | ${count} | ${requests} | ${(count / seconds).toFixed(0)} | ${(requests / seconds).toFixed(0)} | ${((count * size) / seconds / 1e6).toFixed(1)} |`);
        await client.close();
      }
    }
  }
  console.log(rows.join('\n'));
} finally {
  await registry.stop();
}
