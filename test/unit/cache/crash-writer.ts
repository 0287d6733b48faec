/**
 * Child process of the crash test: opens the cache at argv[2] and puts chunks argv[3], argv[3]+1, ...
 * forever, printing each finished index, until the parent SIGKILLs it. The small disk bound keeps
 * eviction running as well, so kills also land in the middle of evictions.
 */
import { createChunkCache } from '../../../src/cache/tiered-chunk-cache.js';
import { crashTestChunk } from './cache-fixtures.js';

const [dir, firstIndexText] = process.argv.slice(2);
if (dir === undefined || firstIndexText === undefined) throw new Error('usage: crash-writer DIR FIRST_INDEX');
const cache = await createChunkCache({ dir, maxDiskBytes: 4 * 1024 * 1024, maxMemoryBytes: 1024 * 1024 });
process.stdout.write('ready\n');
for (let index = Number(firstIndexText); ; index++) {
  const chunk = crashTestChunk(index);
  await cache.put(chunk.key, chunk.data);
  process.stdout.write(`${index}\n`);
}
