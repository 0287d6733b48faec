import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DeadlineExceededError, InvalidResponseError, RangeNotSupportedError, RegistryClient, parseReference, type ImageReference } from '../../../src/remote/index.js';
import type { Digest } from '../../../src/util/digest.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { startFaultProxy, type Fault, type FaultProxy } from './proxies.js';

describe('reads through a fault-injecting proxy', () => {
  const blob = randomBytes(2 * 1024 * 1024);
  const tiny = randomBytes(1000);
  let registry: TestRegistry;
  let proxy: FaultProxy;
  let client: RegistryClient;
  let ref: ImageReference;
  let digest: Digest;
  let tinyDigest: Digest;

  beforeAll(async () => {
    registry = await startRegistry();
    const image = await registry.pushImage('team/app', 'v1', { layers: [blob, tiny] });
    digest = image.layers[0]!.digest;
    tinyDigest = image.layers[1]!.digest;
    proxy = await startFaultProxy(registry.url);
    ref = parseReference(`${proxy.host}/team/app`);
  });
  afterAll(async () => {
    await proxy?.close();
    await registry?.stop();
  });

  function newClient(readDeadlineMs = 5000): RegistryClient {
    return new RegistryClient({ hostsDir: null, dockerConfig: false, requestTimeoutMs: 300, retry: { maxAttempts: 4, baseDelayMs: 20, maxDelayMs: 100 }, blobRead: { readDeadlineMs } });
  }
  afterEach(async () => {
    proxy.queue.length = 0;
    proxy.always.clear();
    await client?.close();
  });

  const recovered: Fault[] = ['reset-mid-body', 'status-500', 'stall', 'truncated-body'];
  it.each(recovered)('recovers from %s with the right bytes', async (fault) => {
    client = newClient();
    const source = await client.openBlob(ref, { digest, size: blob.length });
    proxy.queue.push(fault);
    const before = proxy.blobRequests;
    const data = await source.readAt(300_000, 200_000);
    expect(data.equals(blob.subarray(300_000, 500_000))).toBe(true);
    expect(proxy.blobRequests - before).toBe(2);
  });

  it('waits as long as Retry-After demands on 503', async () => {
    client = newClient();
    const source = await client.openBlob(ref, { digest, size: blob.length });
    proxy.queue.push('status-503-retry-after');
    const started = Date.now();
    expect((await source.readAt(5, 10)).equals(blob.subarray(5, 15))).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  });

  it('rejects a wrong Content-Range with a clear error instead of returning shifted bytes', async () => {
    client = newClient();
    const source = await client.openBlob(ref, { digest, size: blob.length });
    proxy.queue.push('wrong-content-range');
    await expect(source.readAt(1000, 100)).rejects.toThrow(InvalidResponseError);
    await expect(source.readAt(1000, 100).then((d) => d.equals(blob.subarray(1000, 1100)))).resolves.toBe(true);
  });

  it('gives up at the read deadline when the registry stalls for good', async () => {
    client = newClient(1500);
    const source = await client.openBlob(ref, { digest, size: blob.length });
    proxy.always.add('stall');
    const started = Date.now();
    await expect(source.readAt(0, 10)).rejects.toThrow(DeadlineExceededError);
    expect(Date.now() - started).toBeLessThan(2500);
  });

  it('says a registry that ignores Range cannot serve a large blob lazily, and slices a small one', async () => {
    client = newClient();
    proxy.always.add('ignore-range');
    const large = await client.openBlob(ref, { digest, size: blob.length });
    await expect(large.readAt(10, 10)).rejects.toThrow(RangeNotSupportedError);
    const small = await client.openBlob(ref, { digest: tinyDigest, size: tiny.length });
    expect((await small.readAt(100, 50)).equals(tiny.subarray(100, 150))).toBe(true);
  });

  it.each<Fault>(['multi-range-400', 'malformed-multipart', 'ignore-range'])('falls back to single ranges after %s, and remembers it', async (fault) => {
    client = newClient();
    const source = await client.openBlob(ref, { digest, size: blob.length });
    const ranges = [0, 500_000, 1_000_000, 1_500_000].map((start) => ({ start, length: 1000 }));
    if (fault === 'ignore-range') proxy.queue.push(fault);
    else proxy.always.add(fault);
    const first = await source.readRanges(ranges);
    first.forEach((data, i) => expect(data.equals(blob.subarray(ranges[i]!.start, ranges[i]!.start + 1000))).toBe(true));
    expect(client.multiRangeFallbackReason(proxy.host)).toBeDefined();
    const multiBefore = proxy.multiRangeRequests;
    const second = await source.readRanges(ranges.map((r) => ({ ...r, start: r.start + 7 })));
    second.forEach((data, i) => expect(data.equals(blob.subarray(ranges[i]!.start + 7, ranges[i]!.start + 1007))).toBe(true));
    expect(proxy.multiRangeRequests).toBe(multiBefore);
  });

  it('cancels a read when its signal fires', async () => {
    client = newClient();
    const source = await client.openBlob(ref, { digest, size: blob.length });
    proxy.always.add('stall');
    const controller = new AbortController();
    const read = source.readAt(0, 10, controller.signal);
    setTimeout(() => controller.abort(new Error('caller gave up')), 50);
    await expect(read).rejects.toThrow('caller gave up');
  });
});
