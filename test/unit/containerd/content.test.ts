/**
 * ContentClient.write against a fake containerd content service on a unix socket: the Write stream's
 * protocol (STAT, WRITE pieces at running offsets, COMMIT with expected digest, size and labels), the
 * namespace and lease metadata, and AlreadyExists (blob kept, labels updated, nothing downloaded).
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerdConnection } from '../../../src/containerd/connection.js';
import { ContentClient } from '../../../src/containerd/content.js';
import { LOADER_OPTIONS, protoRoot } from '../../../src/grpc/protos.js';
import type { Digest } from '../../../src/util/digest.js';

interface WriteRequest {
  action: string;
  ref: string;
  total: number;
  expected: string;
  offset: number;
  data: Buffer;
  labels: Record<string, string>;
}

const digestOf = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}` as Digest;

const stored = new Map<string, Buffer>();
const requests: WriteRequest[] = [];
const updates: { digest: string; labels: Record<string, string>; paths: string[] }[] = [];
const metadata: Record<string, unknown>[] = [];
let server: grpc.Server;
let dir: string;
let connection: ContainerdConnection;

function contentService(): grpc.ServiceDefinition {
  const definition = protoLoader.loadSync('github.com/containerd/containerd/api/services/content/v1/content.proto', { ...LOADER_OPTIONS, includeDirs: [protoRoot()] });
  const api = grpc.loadPackageDefinition(definition) as unknown as { containerd: { services: { content: { v1: { Content: grpc.ServiceClientConstructor } } } } };
  return api.containerd.services.content.v1.Content.service;
}

/** containerd's contentserver.Write, reduced to what the client relies on. */
function write(call: grpc.ServerDuplexStream<WriteRequest, object>): void {
  metadata.push(call.metadata.getMap());
  let data = Buffer.alloc(0);
  call.on('data', (req: WriteRequest) => {
    requests.push(req);
    if (req.expected && stored.has(req.expected)) {
      call.emit('error', { code: grpc.status.ALREADY_EXISTS, details: `blob with expected digest ${req.expected} exists` });
      return;
    }
    if (req.action === 'WRITE' || req.action === 'COMMIT') {
      if (req.offset !== data.length) return void call.emit('error', { code: grpc.status.OUT_OF_RANGE, details: 'bad offset' });
      data = Buffer.concat([data, req.data]);
    }
    if (req.action === 'COMMIT') {
      if (digestOf(data) !== req.expected || data.length !== req.total) return void call.emit('error', { code: grpc.status.FAILED_PRECONDITION, details: 'unexpected commit digest' });
      stored.set(req.expected, data);
    }
    call.write({ action: req.action, offset: data.length, digest: digestOf(data) });
    if (req.action === 'COMMIT') call.end();
  });
  call.on('end', () => call.end());
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lazypull-content-'));
  server = new grpc.Server();
  server.addService(contentService(), {
    Write: write,
    Update: (call: grpc.ServerUnaryCall<{ info: { digest: string; labels: Record<string, string> }; update_mask: { paths: string[] } }, object>, callback: grpc.sendUnaryData<object>) => {
      updates.push({ digest: call.request.info.digest, labels: call.request.info.labels, paths: call.request.update_mask.paths });
      callback(null, { info: call.request.info });
    },
  });
  const address = join(dir, 'containerd.sock');
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${address}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  connection = await ContainerdConnection.open({ address, namespace: 'ns-test' });
  connection.lease = 'lease-1';
});

afterAll(async () => {
  connection?.close();
  await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  await rm(dir, { recursive: true, force: true });
});

describe('ContentClient.write', () => {
  it('streams a blob in 1 MiB pieces at running offsets and commits it with its digest, size and labels', async () => {
    const blob = Buffer.alloc((5 << 20) / 2, 7);
    const descriptor = { digest: digestOf(blob), size: blob.length };
    const progress: number[] = [];
    requests.length = 0;
    async function* chunks() {
      yield blob.subarray(0, 1000);
      yield blob.subarray(1000);
    }
    const wrote = await new ContentClient(connection).write('layer-x', descriptor, chunks(), { a: 'b' }, (n) => progress.push(n));
    expect(wrote).toBe(true);
    expect(stored.get(descriptor.digest)?.equals(blob)).toBe(true);
    expect(requests.map((r) => [r.action, r.offset, r.data.length])).toEqual([
      ['STAT', 0, 0],
      ['WRITE', 0, 1000],
      ['WRITE', 1000, 1 << 20],
      ['WRITE', 1000 + (1 << 20), 1 << 20],
      ['WRITE', 1000 + (2 << 20), blob.length - 1000 - (2 << 20)],
      ['COMMIT', blob.length, 0],
    ]);
    expect(requests[0]).toMatchObject({ ref: 'layer-x', total: blob.length, expected: descriptor.digest });
    expect(requests.at(-1)).toMatchObject({ total: blob.length, expected: descriptor.digest, labels: { a: 'b' } });
    expect(progress.at(-1)).toBe(blob.length);
    expect(metadata.at(-1)).toMatchObject({ 'containerd-namespace': 'ns-test', 'containerd-lease': 'lease-1' });
  });

  it('leaves a blob containerd has alone: no bytes read from the source, labels set on the existing blob', async () => {
    const blob = Buffer.from('already there');
    stored.set(digestOf(blob), blob);
    let pulled = false;
    async function* source() {
      pulled = true;
      yield blob;
    }
    const wrote = await new ContentClient(connection).write('config-y', { digest: digestOf(blob), size: blob.length }, source(), { 'containerd.io/gc.ref.content.config': 'sha256:x' });
    expect(wrote).toBe(false);
    expect(pulled).toBe(false);
    expect(updates.at(-1)).toEqual({ digest: digestOf(blob), labels: { 'containerd.io/gc.ref.content.config': 'sha256:x' }, paths: ['labels.containerd.io/gc.ref.content.config'] });
  });
});
