import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { InvalidResponseError, RangeNotSupportedError, ResponseTooLargeError, RegistryBlobSource, type BlobLocation } from '../../../src/remote/index.js';
import type { HttpRequest, HttpResponse } from '../../../src/remote/http/types.js';
import { sha256 } from '../../../src/util/digest.js';

const blob = randomBytes(100_000);
const digest = sha256(blob);

type Tamper = (res: HttpResponse, req: HttpRequest) => HttpResponse;

/** An in-process registry for one blob: single ranges, multipart/byteranges, optional delay and tampering. */
function fakeLocation(host: string, options: { status?: number; headStatus?: number; delayMs?: number; tamper?: Tamper } = {}): BlobLocation & { requests: HttpRequest[] } {
  const requests: HttpRequest[] = [];
  const url = new URL(`http://${host}/v2/app/blobs/${digest}`);
  const send = async (req: HttpRequest): Promise<HttpResponse> => {
    requests.push(req);
    if (options.delayMs) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, options.delayMs);
        req.signal?.addEventListener('abort', () => {
          clearTimeout(timer);
          reject(req.signal?.reason);
        });
      });
    }
    if (req.method === 'HEAD') {
      const status = options.headStatus ?? 200;
      return { status, headers: status === 200 ? { 'content-length': String(blob.length) } : {}, body: Buffer.alloc(0), url: req.url };
    }
    if (options.status) return { status: options.status, headers: {}, body: Buffer.alloc(0), url: req.url };
    // A suffix range (`bytes=-N`) is the last N bytes, or the whole blob when it is shorter.
    const suffix = /^bytes=-(\d+)$/.exec(req.headers.range ?? '');
    const ranges = suffix
      ? [[Math.max(0, blob.length - Number(suffix[1])), blob.length - 1] as [number, number]]
      : (req.headers.range ?? '').replace('bytes=', '').split(',').map((r) => r.split('-').map(Number) as [number, number]);
    let res: HttpResponse;
    if (ranges.length === 1) {
      const [a, b] = ranges[0]!;
      res = { status: 206, headers: { 'content-range': `bytes ${a}-${b}/${blob.length}` }, body: blob.subarray(a, b + 1), url: req.url };
    } else {
      const parts = ranges.flatMap(([a, b]) => [Buffer.from(`\r\n--XX\r\nContent-Range: bytes ${a}-${b}/${blob.length}\r\n\r\n`), blob.subarray(a, b + 1)]);
      res = { status: 206, headers: { 'content-type': 'multipart/byteranges; boundary=XX' }, body: Buffer.concat([...parts, Buffer.from('\r\n--XX--\r\n')]), url: req.url };
    }
    const answer = options.tamper ? options.tamper(res, req) : res;
    // As the real transport does: a body over the request's limit is an error, not data.
    if (answer.body.length > req.maxBodyBytes) throw new ResponseTooLargeError(req.method, req.url, answer.status, req.maxBodyBytes);
    return answer;
  };
  return { send, url, scope: 'repository:app:pull', requests };
}

const open = (locations: BlobLocation[], read = {}) => RegistryBlobSource.open({ digest, size: blob.length, locations, read: { maxGap: 1000, ...read } });

describe('RegistryBlobSource', () => {
  it('serves reads of one event-loop turn with one multi-range request', async () => {
    const location = fakeLocation('r.example');
    const source = await open([location]);
    const offsets = [0, 10_000, 10_500, 50_000, 90_000];
    const results = await Promise.all(offsets.map((o) => source.readAt(o, 600)));
    results.forEach((data, i) => expect(data.equals(blob.subarray(offsets[i]!, offsets[i]! + 600))).toBe(true));
    expect(location.requests).toHaveLength(1);
    // 10_000 and 10_500 are within maxGap: merged before the multi-range request.
    expect(location.requests[0]!.headers.range).toBe('bytes=0-599,10000-11099,50000-50599,90000-90599');
  });

  it('keeps the shared request alive while one waiter remains, cancels it when none does', async () => {
    const location = fakeLocation('r.example', { delayMs: 50 });
    const source = await open([location]);
    const quitter = new AbortController();
    const stayer = source.readAt(0, 10);
    const leaving = source.readAt(20, 10, quitter.signal);
    setTimeout(() => quitter.abort(new Error('gone')), 5);
    await expect(leaving).rejects.toThrow('gone');
    expect((await stayer).equals(blob.subarray(0, 10))).toBe(true);

    const all = new AbortController();
    const reads = [source.readAt(0, 10, all.signal), source.readAt(30, 10, all.signal)];
    setTimeout(() => all.abort(new Error('everyone left')), 5);
    await Promise.allSettled(reads);
    expect(location.requests.at(-1)!.signal?.aborted).toBe(true);
  });

  it('fails only the reads whose request failed', async () => {
    const failFar: Tamper = (res, req) => (req.headers.range?.startsWith('bytes=90000') ? { ...res, headers: {} } : res);
    const source = await open([fakeLocation('r.example', { tamper: failFar })], { maxRangesPerRequest: 1 });
    const [near, far] = await Promise.allSettled([source.readAt(0, 10), source.readAt(90_000, 10)]);
    expect(near.status === 'fulfilled' && near.value.equals(blob.subarray(0, 10))).toBe(true);
    expect(far.status === 'rejected' && far.reason).toBeInstanceOf(InvalidResponseError);
  });

  it('moves to the next location when one fails, and stays there', async () => {
    const broken = fakeLocation('mirror.example', { status: 404 });
    const good = fakeLocation('r.example');
    const source = await open([broken, good]);
    expect((await source.readAt(5, 5)).equals(blob.subarray(5, 10))).toBe(true);
    expect((await source.readAt(15, 5)).equals(blob.subarray(15, 20))).toBe(true);
    expect(broken.requests).toHaveLength(1);
    expect(source.host).toBe('r.example');
  });

  it.each<[string, Tamper]>([
    ['a wrong total size', (res) => ({ ...res, headers: { 'content-range': String(res.headers['content-range']).replace(/\/\d+$/, '/5') } })],
    ['a short body', (res) => ({ ...res, body: res.body.subarray(1) })],
    ['no Content-Range', (res) => ({ ...res, headers: {} })],
    ['a 200 with the wrong length', (res) => ({ ...res, status: 200, body: blob.subarray(0, 99_999) })],
  ])('turns a response with %s into an error, never data', async (_name, tamper) => {
    const source = await open([fakeLocation('r.example', { tamper })], { wholeBlobLimit: 1 << 20 });
    await expect(source.readAt(100, 50)).rejects.toThrow(InvalidResponseError);
  });

  it('accepts one 206 part that covers every requested range', async () => {
    const merging: Tamper = (_res, req) => {
      const bounds = (req.headers.range ?? '').replace('bytes=', '').split(/[,-]/).map(Number);
      const [a, b] = [Math.min(...bounds), Math.max(...bounds)];
      return { status: 206, headers: { 'content-range': `bytes ${a}-${b}/${blob.length}` }, body: blob.subarray(a, b + 1), url: req.url };
    };
    const source = await open([fakeLocation('r.example', { tamper: merging })]);
    const [x, y] = await source.readRanges([
      { start: 100, length: 10 },
      { start: 5000, length: 10 },
    ]);
    expect(x!.equals(blob.subarray(100, 110)) && y!.equals(blob.subarray(5000, 5010))).toBe(true);
  });

  it.each([200, 405, 403])('probes the size by HEAD, or by GET bytes=0-1 when HEAD answers %i', async (headStatus) => {
    const location = fakeLocation('r.example', { headStatus });
    const source = await RegistryBlobSource.open({ digest, locations: [location] });
    expect(source.size).toBe(blob.length);
    expect(location.requests.map((r) => `${r.method} ${r.headers.range ?? ''}`)).toEqual(headStatus === 200 ? ['HEAD '] : ['HEAD ', 'GET bytes=0-1']);
  });

  describe('openAtTail', () => {
    const openAtTail = (locations: BlobLocation[], tailBytes: number) => RegistryBlobSource.openAtTail({ digest, locations }, tailBytes);

    it('reads the last bytes and learns the size in one suffix-range request, without a probe', async () => {
      const location = fakeLocation('r.example');
      const { source, tail } = await openAtTail([location], 1000);
      expect(source.size).toBe(blob.length);
      expect(tail.equals(blob.subarray(blob.length - 1000))).toBe(true);
      expect(location.requests.map((r) => `${r.method} ${r.headers.range ?? ''}`)).toEqual(['GET bytes=-1000']);
      expect((await source.readAt(10, 5)).equals(blob.subarray(10, 15))).toBe(true);
    });

    it('gives the whole blob when it is shorter than the tail asked for', async () => {
      const { source, tail } = await openAtTail([fakeLocation('r.example')], 200_000);
      expect(source.size).toBe(blob.length);
      expect(tail.equals(blob)).toBe(true);
    });

    it('reads the tail as a plain range when the size is known', async () => {
      const location = fakeLocation('r.example');
      const { tail } = await RegistryBlobSource.openAtTail({ digest, size: blob.length, locations: [location] }, 1000);
      expect(tail.equals(blob.subarray(blob.length - 1000))).toBe(true);
      expect(location.requests.map((r) => r.headers.range)).toEqual([`bytes=${blob.length - 1000}-${blob.length - 1}`]);
    });

    it('moves to the next location when one fails', async () => {
      const broken = fakeLocation('mirror.example', { status: 404 });
      const good = fakeLocation('r.example');
      const { source, tail } = await openAtTail([broken, good], 100);
      expect(tail.equals(blob.subarray(blob.length - 100))).toBe(true);
      expect(source.host).toBe('r.example');
    });

    it.each<[string, Tamper]>([
      ['a range that is not the end', (res) => ({ ...res, headers: { 'content-range': `bytes 0-99/${blob.length}` }, body: blob.subarray(0, 100) })],
      ['no total size', (res) => ({ ...res, headers: { 'content-range': `bytes ${blob.length - 100}-${blob.length - 1}/*` } })],
      ['a short body', (res) => ({ ...res, body: res.body.subarray(1) })],
    ])('turns an answer with %s into an error, never data', async (_name, tamper) => {
      await expect(openAtTail([fakeLocation('r.example', { tamper })], 100)).rejects.toThrow(InvalidResponseError);
    });

    it('refuses a registry that ignores Range for a blob too big to take whole', async () => {
      const whole: Tamper = (_res, req) => ({ status: 200, headers: {}, body: blob, url: req.url });
      await expect(RegistryBlobSource.openAtTail({ digest, locations: [fakeLocation('r.example', { tamper: whole })], read: { wholeBlobLimit: 1000 } }, 100)).rejects.toThrow(RangeNotSupportedError);
      const { source, tail } = await openAtTail([fakeLocation('r.example', { tamper: whole })], 100);
      expect(source.size).toBe(blob.length);
      expect(tail.equals(blob.subarray(blob.length - 100))).toBe(true);
    });
  });

  it('streams the whole blob and checks the digest', async () => {
    const source = await open([fakeLocation('r.example')]);
    const chunks: Buffer[] = [];
    for await (const chunk of source.stream(30_000)) chunks.push(chunk);
    expect(Buffer.concat(chunks).equals(blob)).toBe(true);
    const liar = await RegistryBlobSource.open({ digest: sha256(Buffer.from('other')), size: blob.length, locations: [fakeLocation('r.example')] });
    await expect(async () => {
      for await (const _chunk of liar.stream(50_000)) void _chunk;
    }).rejects.toThrow(/has digest/);
  });
});
