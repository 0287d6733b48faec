/**
 * Pushes an OCI image layout's image, unchanged, to a plain-HTTP registry (monolithic blob uploads,
 * then the manifest under a tag). The benchmark's `overlayfs` rows and the SOCI index use it as is.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

interface Desc {
  mediaType: string;
  digest: string;
  size: number;
}

function blobPath(layoutDir: string, digest: string): string {
  return join(layoutDir, 'blobs', 'sha256', digest.replace(/^sha256:/, ''));
}

async function check(res: Response, what: string): Promise<void> {
  if (!res.ok) throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
  await res.arrayBuffer();
}

/** Pushes the layout's (first) image to http://HOST/REPO:TAG; returns the manifest digest. */
export async function pushLayout(layoutDir: string, host: string, repository: string, tag: string): Promise<string> {
  const index = JSON.parse(await readFile(join(layoutDir, 'index.json'), 'utf8')) as { manifests: Desc[] };
  const top = index.manifests[0];
  if (!top) throw new Error(`${layoutDir}: empty index.json`);
  const manifestBytes = await readFile(blobPath(layoutDir, top.digest));
  const manifest = JSON.parse(manifestBytes.toString('utf8')) as { config: Desc; layers: Desc[] };
  const base = `http://${host}/v2/${repository}`;
  for (const blob of [manifest.config, ...manifest.layers]) {
    const head = await fetch(`${base}/blobs/${blob.digest}`, { method: 'HEAD' });
    if (head.ok) continue;
    const start = await fetch(`${base}/blobs/uploads/`, { method: 'POST' });
    await check(start, `start upload of ${blob.digest}`);
    const location = new URL(start.headers.get('location') ?? '', `http://${host}`);
    location.searchParams.set('digest', blob.digest);
    const data = await readFile(blobPath(layoutDir, blob.digest));
    await check(await fetch(location, { method: 'PUT', body: data, headers: { 'content-type': 'application/octet-stream' } }), `upload ${blob.digest}`);
  }
  await check(await fetch(`${base}/manifests/${tag}`, { method: 'PUT', body: manifestBytes, headers: { 'content-type': top.mediaType } }), `put manifest ${repository}:${tag}`);
  return top.digest;
}

/** The compressed size of the image REPO:TAG (sum of its layers; an index is resolved to its first manifest). */
export async function imageBytes(host: string, repository: string, tag: string): Promise<number> {
  const accept = ['application/vnd.oci.image.index.v1+json', 'application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json', 'application/vnd.docker.distribution.manifest.list.v2+json'].join(', ');
  let res = await fetch(`http://${host}/v2/${repository}/manifests/${tag}`, { headers: { accept } });
  let doc = (await res.json()) as { manifests?: (Desc & { platform?: { architecture: string } })[]; layers?: Desc[] };
  if (doc.manifests) {
    const arch = process.arch === 'x64' ? 'amd64' : process.arch;
    const entry = doc.manifests.find((m) => m.platform?.architecture === arch && m.mediaType.includes('manifest')) ?? doc.manifests[0];
    if (!entry) return 0;
    res = await fetch(`http://${host}/v2/${repository}/manifests/${entry.digest}`, { headers: { accept } });
    doc = (await res.json()) as typeof doc;
  }
  return (doc.layers ?? []).reduce((a, l) => a + l.size, 0);
}
