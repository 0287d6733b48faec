/**
 * The Kubernetes path, end to end: Debian's containerd 1.6 with its CRI plugin using lazypull as the
 * snapshotter (`snapshotter = "lazypull"`, `disable_snapshot_annotations = false`), and this test in
 * the kubelet's place, sending CRI PullImage over containerd's socket with a minimal CRI client. The
 * registry sits behind a byte-counting relay; lazypull runs without background fetch, so the relay's
 * count is what the pull cost. The CRI plugin runs without CNI or networking (image service only) and
 * everything it writes (root, state, CNI conf dir, registry hosts) is in the test's temp dirs; its
 * stream server listens on 127.0.0.1 with a random port.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startContainerd, type Containerd } from '../../helpers/containerd.js';
import { criImageClient, type CriImageClient } from '../../helpers/cri/client.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { coreutilsFiles } from '../../helpers/runnable-image.js';
import { addSociIndex } from '../../helpers/soci-image.js';
import { startTcpRelay, type TcpRelay } from '../fs/proxies.js';
import { buildIfStale, startLazypull, type LazypullDaemon } from '../snapshot/lazypull-daemon.js';
import { coreutilsLayer, daemonStatus, greetingLayer, layersOf, pushViaRelay } from './lazy-stack.js';


/** No background fetch: the relay's byte count is then only what the pull itself read. */
const DAEMON_CONFIG = ['[fetch]', 'background = false', '[registry]', 'hosts_dir = ""'].join('\n');
const CRI = 'io.containerd.grpc.v1.cri';
/** System paths the CRI plugin would use by default; the test must leave them as it found them. */
const SYSTEM_PATHS = ['/etc/cni/net.d', '/var/lib/containerd', '/var/run/netns', '/var/lib/lazypull'];

let registry: TestRegistry | undefined;
let relay: TcpRelay | undefined;
let lazypull: LazypullDaemon | undefined;
let containerd: Containerd | undefined;
let cri: CriImageClient | undefined;
let workDir: string | undefined;
const systemPathsBefore = new Map(SYSTEM_PATHS.map((p) => [p, existsSync(p)]));

const q = (s: string) => JSON.stringify(s); // a TOML basic string

/** containerd config: lazypull as proxy snapshotter and as the CRI plugin's snapshotter, all paths in `dir`. */
function criConfig(dir: string, socket: string, root: string): string {
  return [
    '[proxy_plugins]',
    '  [proxy_plugins.lazypull]',
    '    type = "snapshot"',
    `    address = ${q(socket)}`,
    '  [proxy_plugins.lazypull.exports]',
    `    root = ${q(`${root}/`)}`,
    '',
    `[plugins.${q(CRI)}]`,
    '  stream_server_address = "127.0.0.1"',
    '  stream_server_port = "0"',
    '  disable_tcp_service = true',
    '  enable_selinux = false',
    `  [plugins.${q(CRI)}.cni]`,
    `    bin_dir = ${q(join(dir, 'cni', 'bin'))}`,
    `    conf_dir = ${q(join(dir, 'cni', 'net.d'))}`,
    `  [plugins.${q(CRI)}.containerd]`,
    '    snapshotter = "lazypull"',
    '    disable_snapshot_annotations = false',
    `  [plugins.${q(CRI)}.registry]`,
    `    config_path = ${q(join(dir, 'certs.d'))}`,
  ].join('\n');
}

/** A certs.d/HOST/hosts.toml that sends pulls for the relay's host over plain HTTP. */
async function writeHostsToml(dir: string, host: string): Promise<void> {
  await mkdir(join(dir, 'certs.d', host), { recursive: true });
  const url = `http://${host}`;
  await writeFile(join(dir, 'certs.d', host, 'hosts.toml'), [`server = ${q(url)}`, '', `[host.${q(url)}]`, '  capabilities = ["pull", "resolve"]', ''].join('\n'));
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The CRI plugin serves once its background init is done; until then calls fail. */
async function waitForCri(client: CriImageClient, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await client.listImages();
      return;
    } catch (err) {
      const log = containerd?.logTail(400) ?? '';
      if (log.includes(`failed to load plugin ${CRI}`) || Date.now() > deadline) throw new Error(`CRI image service did not answer: ${String(err)}\n${containerd?.logTail(60) ?? ''}`);
      await sleep(100);
    }
  }
}

beforeAll(async () => {
  await buildIfStale();
  workDir = await mkdtemp('/tmp/lpcri-');
  await mkdir(join(workDir, 'cni', 'bin'), { recursive: true });
  registry = await startRegistry();
  relay = await startTcpRelay(Number(registry.host.split(':')[1]));
  await writeHostsToml(workDir, relay.host);
  lazypull = await startLazypull([], { config: DAEMON_CONFIG });
  containerd = await startContainerd({ enablePlugins: [CRI, 'io.containerd.runtime.v1.linux'], extraConfig: criConfig(workDir, lazypull.socket, lazypull.root) });
  cri = criImageClient(containerd.address);
  await waitForCri(cri);
}, 180_000);

afterAll(async () => {
  cri?.close();
  const results = await Promise.allSettled([containerd?.stop(), registry?.stop(), relay?.close()]);
  await lazypull?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}, 60_000);





describe('CRI PullImage through containerd 1.6 with lazypull as the CRI snapshotter', () => {
  it('mounts every layer of an eStargz image lazily, from the cri.* labels, fetching a fraction of the image', async () => {
    const client = cri as CriImageClient;
    const image = await pushViaRelay(registry as TestRegistry, relay as TcpRelay, 'e2e/cri-lazy', [coreutilsLayer('estargz'), greetingLayer('hello from CRI')]);
    const before = (relay as TcpRelay).bytesFromUpstream();

    const imageRef = await client.pullImage(image.viaRelay);
    const fetched = (relay as TcpRelay).bytesFromUpstream() - before;

    expect(imageRef).toMatch(/^sha256:[0-9a-f]{64}$/);
    const found = await client.imageStatus(image.viaRelay);
    expect(found?.id).toBe(imageRef);
    expect(found?.repo_tags).toContain(image.viaRelay);
    expect(found?.repo_digests).toContain(`${image.viaRelay.replace(/:v1$/, '')}@${image.manifestDigest}`);
    expect((await client.listImages()).map((i) => i.id)).toContain(imageRef);

    const layers = layersOf(await daemonStatus((lazypull as LazypullDaemon).socket), image);
    for (const layer of layers) {
      expect(layer.state, `${layer.digest}: ${layer.reason}`).toBe('lazy');
      expect(layer.image, 'the image reference came from the cri.image-ref label').toBe(image.viaRelay);
      expect(layer.format).toBe('estargz');
    }
    expect(fetched, `registry served ${fetched} bytes of a ${image.layerBytes}-byte image`).toBeLessThan(image.layerBytes * 0.1);
  });

  it('an unmodified gzip image with a v2 SOCI index: PullImage mounts its layers through their zTOCs, and the image runs', async () => {
    const client = cri as CriImageClient;
    const plain = await pushViaRelay(registry as TestRegistry, relay as TcpRelay, 'e2e/cri-soci', [coreutilsLayer('gzip'), greetingLayer('hello from SOCI through CRI', 'gzip')]);
    // 1 MiB spans: with the default 4 MiB, the first span (holding /bin/cat) would be mostly the
    // unread incompressible file, whatever the snapshotter does.
    const soci = await addSociIndex(registry as TestRegistry, plain, { bind: 'v2', spanSize: 1 << 20 });
    const ref = soci.ref.replace((registry as TestRegistry).host, (relay as TcpRelay).host);
    const before = (relay as TcpRelay).bytesFromUpstream();
    await client.pullImage(ref);
    for (const layer of layersOf(await daemonStatus((lazypull as LazypullDaemon).socket), plain)) {
      expect(layer.state, `${layer.digest}: ${layer.reason}`).toBe('lazy');
      expect(layer.format).toBe('soci');
    }
    // The CRI plugin keeps its images in the k8s.io namespace; run one there with the lazily mounted layers.
    const cd = containerd as Containerd;
    const { stdout } = await cd.ctr(['run', '--snapshotter', 'lazypull', '--rm', ref, 'cri-soci-1', 'cat', '/etc/greeting'], { namespace: 'k8s.io', timeoutMs: 120_000 });
    expect(stdout).toBe('hello from SOCI through CRI\n');
    const fetched = (relay as TcpRelay).bytesFromUpstream() - before;
    expect(fetched, `registry served ${fetched} bytes of a ${plain.layerBytes}-byte image`).toBeLessThan(plain.layerBytes * 0.3);
  });

  it('a plain gzip image pulled through CRI falls back and status says why', async () => {
    const client = cri as CriImageClient;
    const image = await pushViaRelay(registry as TestRegistry, relay as TcpRelay, 'e2e/cri-plain', [{ format: 'gzip', files: coreutilsFiles() }, greetingLayer('plain', 'gzip')]);
    const imageRef = await client.pullImage(image.viaRelay);
    expect((await client.imageStatus(image.viaRelay))?.id).toBe(imageRef);
    for (const layer of layersOf(await daemonStatus((lazypull as LazypullDaemon).socket), image)) {
      expect(layer.state).toBe('fallback');
      expect(layer.reason).toMatch(/^not-lazy-format: /);
      expect(layer.image).toBe(image.viaRelay);
    }
  });

  it('left no trace in the system paths the CRI plugin uses by default', () => {
    for (const [path, existed] of systemPathsBefore) expect(existsSync(path), path).toBe(existed);
  });
});
