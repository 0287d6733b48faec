import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { DaemonUnavailableError, pullThroughDaemon } from '../../../src/grpc/pull-client.js';
import { decodeFrames, encodeFrame, type PullEvent, type PullRequest, type WirePullResult } from '../../../src/grpc/pull-protocol.js';
import { invalidPullRequest, pullService, type RunPull } from '../../../src/grpc/pull-service.js';
import type { Logger } from '../../../src/snapshot/snapshotter.js';

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined };
const request: PullRequest = { reference: '127.0.0.1:5000/app:v1', containerd_address: '/run/containerd/containerd.sock', namespace: 'default', snapshotter: 'lazypull' };
const layer = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${'1'.repeat(64)}`, size: 100 };
const result: WirePullResult = {
  name: request.reference,
  pinned: `${request.reference}@sha256:${'a'.repeat(64)}`,
  target: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'a'.repeat(64)}`, size: 10 },
  manifest: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'a'.repeat(64)}`, size: 10 },
  layers: [layer],
  imageBytes: 110,
  chainId: `sha256:${'c'.repeat(64)}`,
  layerResults: [{ descriptor: layer, chainId: `sha256:${'c'.repeat(64)}`, outcome: { kind: 'lazy' } }],
  downloadedBytes: 10,
  image: 'created',
};

let servers: grpc.Server[] = [];
let dirs: string[] = [];

afterEach(async () => {
  for (const server of servers) server.forceShutdown();
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  servers = [];
  dirs = [];
});

/** A grpc-js server on a temporary unix socket, with the services given. */
async function serve(add: (server: grpc.Server) => void): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'lp-pull-'));
  dirs.push(dir);
  const socket = join(dir, 'd.sock');
  const server = new grpc.Server();
  add(server);
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  servers.push(server);
  return socket;
}

async function servePull(run: RunPull): Promise<string> {
  const { service, handlers } = pullService(run, quiet);
  return serve((server) => server.addService(service, handlers));
}

describe('lazypull.v1.Pull', () => {
  it('streams the pull progress to the client, then the result', async () => {
    let asked: PullRequest | undefined;
    const socket = await servePull(async (req, emit) => {
      asked = req;
      emit({ resolved: result });
      emit({ layer_started: { index: 0 } });
      emit({ layer_done: { index: 0, outcome: { kind: 'lazy' } } });
      emit({ done: result });
    });
    const events: PullEvent[] = [];
    await expect(pullThroughDaemon(socket, request, (e) => events.push(e))).resolves.toEqual(result);
    expect(asked).toEqual(request);
    expect(events).toEqual([{ resolved: result }, { layer_started: { index: 0 } }, { layer_done: { index: 0, outcome: { kind: 'lazy' } } }]);
  });

  it("rejects with the daemon's reason when the pull fails, and refuses malformed requests", async () => {
    const socket = await servePull(async () => {
      throw new Error('containerd has no snapshotter named "nope"');
    });
    await expect(pullThroughDaemon(socket, request, () => undefined)).rejects.toThrow(/^containerd has no snapshotter named "nope"$/);
    await expect(pullThroughDaemon(socket, { ...request, reference: '' }, () => undefined)).rejects.toThrow(/invalid pull request: reference must be a non-empty string/);
    expect(invalidPullRequest({ ...request, plain_http: 'yes' })).toBe('plain_http must be a boolean');
    expect(invalidPullRequest(null)).toBe('the request is not an object');
    expect(invalidPullRequest(request)).toBeUndefined();
  });

  it('cancels the pull on the daemon when the client aborts', async () => {
    let daemonSignal: AbortSignal | undefined;
    const socket = await servePull(
      (_req, emit, signal) =>
        new Promise<void>((resolve) => {
          daemonSignal = signal;
          emit({ layer_started: { index: 0 } });
          signal.addEventListener('abort', () => resolve());
        }),
    );
    const abort = new AbortController();
    const pulling = pullThroughDaemon(socket, request, () => abort.abort(new Error('interrupted')), abort.signal);
    await expect(pulling).rejects.toThrow(/interrupted/);
    await expect.poll(() => daemonSignal?.aborted).toBe(true);
  });

  it('says no daemon is there when nothing listens, or when the daemon does not serve pulls', async () => {
    await expect(pullThroughDaemon('/nonexistent/lazypull.sock', request, () => undefined)).rejects.toBeInstanceOf(DaemonUnavailableError);
    const older = await serve(() => undefined);
    await expect(pullThroughDaemon(older, request, () => undefined)).rejects.toBeInstanceOf(DaemonUnavailableError);
  });

  it('frames messages as gRPC does, split anywhere', () => {
    const frames = Buffer.concat([encodeFrame({ a: 1 }), encodeFrame({ b: 'two' })]);
    const first = decodeFrames(frames.subarray(0, 14));
    expect(first.messages).toHaveLength(1);
    const rest = decodeFrames(Buffer.concat([first.rest, frames.subarray(14)]));
    expect([...first.messages, ...rest.messages].map((m) => JSON.parse(m.toString()))).toEqual([{ a: 1 }, { b: 'two' }]);
    expect(rest.rest.length).toBe(0);
  });
});
