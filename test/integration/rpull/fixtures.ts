/**
 * What the rpull suite needs around the daemons: a runnable two-layer image pushed to the registry, and
 * a TCP relay on 127.0.0.1 that counts the bytes the registry sends, so "far fewer bytes than the image"
 * is measured, not assumed.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { goArch } from '../../helpers/oci-image.js';
import type { Descriptor, TestRegistry } from '../../helpers/registry.js';

interface Layer {
  gz: Buffer;
  diffId: string;
}

function tarLayer(stage: string): Layer {
  const tar = execFileSync('tar', ['-C', stage, '--owner=0', '--group=0', '-cf', '-', '.'], { maxBuffer: 256 << 20 });
  return { gz: gzipSync(tar), diffId: `sha256:${createHash('sha256').update(tar).digest('hex')}` };
}

/** /bin/echo and the libraries it loads, so `echo` runs in the container. */
function echoLayer(dir: string): Layer {
  const stage = join(dir, 'echo-root');
  const libraries = [...execFileSync('ldd', ['/bin/echo'], { encoding: 'utf8' }).matchAll(/(\/\S+) \(0x/g)].map((m) => m[1] as string);
  for (const file of ['/bin/echo', ...libraries]) {
    const target = join(stage, file);
    mkdirSync(dirname(target), { recursive: true });
    copyFileSync(realpathSync(file), target);
  }
  return tarLayer(stage);
}

/** A greeting and `bulkBytes` of incompressible data no container of the suite reads. */
function dataLayer(dir: string, bulkBytes: number): Layer {
  const stage = join(dir, 'data-root');
  mkdirSync(join(stage, 'etc'), { recursive: true });
  mkdirSync(join(stage, 'data'), { recursive: true });
  writeFileSync(join(stage, 'etc', 'greeting'), 'from-layer-2\n');
  writeFileSync(join(stage, 'data', 'bulk.bin'), randomBytes(bulkBytes));
  return tarLayer(stage);
}

export interface PushedImage {
  reference: string;
  manifest: Descriptor;
  layers: Descriptor[];
  diffIds: string[];
  /** Manifest, config and layers. */
  bytes: number;
}

/** Pushes a plain gzip image (echo layer + data layer) as `repository:tag`; `host` is what the reference names (e.g. a relay). */
export async function pushEchoImage(registry: TestRegistry, host: string, dir: string, repository: string, tag: string, bulkBytes: number): Promise<PushedImage> {
  const built = [echoLayer(dir), dataLayer(dir, bulkBytes)];
  const layers: Descriptor[] = [];
  for (const layer of built) layers.push({ ...(await registry.pushBlob(repository, layer.gz)), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
  const diffIds = built.map((l) => l.diffId);
  const config = Buffer.from(JSON.stringify({ architecture: goArch(), os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds }, config: { Env: ['PATH=/bin'] } }));
  const configDescriptor = { ...(await registry.pushBlob(repository, config)), mediaType: 'application/vnd.oci.image.config.v1+json' };
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: configDescriptor, layers }));
  const manifest = await registry.pushManifest(repository, tag, body, 'application/vnd.oci.image.manifest.v1+json');
  const bytes = body.length + config.length + layers.reduce((sum, l) => sum + l.size, 0);
  return { reference: `${host}/${repository}:${tag}`, manifest, layers, diffIds, bytes };
}

export interface CountingRelay {
  /** `127.0.0.1:PORT`. */
  host: string;
  /** Bytes sent by the registry to clients through the relay so far (HTTP headers included). */
  bytesDown: number;
  close(): Promise<void>;
}

/** A TCP relay to 127.0.0.1:`upstreamPort` counting the bytes coming back. */
export async function startCountingRelay(upstreamPort: number): Promise<CountingRelay> {
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
  };
  const relay = { bytesDown: 0 };
  const server = createServer((client) => {
    const upstream = connect(upstreamPort, '127.0.0.1');
    track(client);
    track(upstream);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    upstream.on('data', (data: Buffer) => {
      relay.bytesDown += data.length;
    });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(relay, {
    host: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  });
}
