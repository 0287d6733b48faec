/**
 * The converted image against the reference: containerd 1.6 fetches it from the registry (so the
 * manifest, config and every blob's digest are checked by containerd), and `ctr-remote images
 * get-toc-digest` computes each layer's TOC digest itself, which must equal the layer's annotation.
 * `ctr-remote images rpull` is not used: it needs the stargz snapshotter's gRPC daemon
 * (containerd-stargz-grpc), which Debian's stargz-snapshotter package does not ship.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANNOTATION_TOC_DIGEST } from '../../../src/estargz/writer.js';
import { parseReference, RegistryClient } from '../../../src/remote/index.js';
import { convertImage, RegistryImageDestination, RegistryImageSource } from '../../../tools/convert/index.js';
import { startContainerd, type Containerd } from '../../helpers/containerd.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { makeTwoLayerImage, pushTestImage } from './fixtures.js';

let registry: TestRegistry;
let cd: Containerd;
let client: RegistryClient;
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'lazypull-convert-compat-'));
  registry = await startRegistry();
  cd = await startContainerd();
  client = new RegistryClient({ hostsDir: null, dockerConfig: false });
  await pushTestImage(registry, 'compat/src', 'v1', await makeTwoLayerImage(work, 7));
});

afterAll(async () => {
  await client?.close();
  await cd?.stop();
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe.each([
  { format: 'estargz' as const, getTocFlags: [] },
  { format: 'zstd:chunked' as const, getTocFlags: ['--zstdchunked'] },
])('$format image, checked by containerd and ctr-remote', ({ format, getTocFlags }) => {
  it('containerd fetches it, and ctr-remote get-toc-digest equals every layer toc.digest annotation', async () => {
    const dst = `${registry.host}/compat/${format.replace(':', '-')}:v1`;
    const result = await convertImage(new RegistryImageSource(client, parseReference(`${registry.host}/compat/src:v1`)), await RegistryImageDestination.open(client, parseReference(dst)), { format });
    await cd.ctr(['content', 'fetch', '--plain-http', '--platform', 'linux/amd64', dst]);
    const layers = result.manifests[0]!.layers.map((l) => l.descriptor);
    expect(layers).toHaveLength(2);
    for (const layer of layers) {
      const printed = (await cd.ctrRemote(['images', 'get-toc-digest', ...getTocFlags, layer.digest])).stdout.trim();
      expect(printed).toBe(layer.annotations?.[ANNOTATION_TOC_DIGEST]);
    }
  });
});
