import { parseReference, type ImageReference } from '../../src/remote/index.js';

/** Where an image is read from or written to: a registry reference or an OCI image layout directory. */
export type ImageLocation = { kind: 'registry'; reference: ImageReference } | { kind: 'oci-layout'; dir: string; tag?: string };

const OCI_PREFIX = 'oci:';

/**
 * `oci:DIR[:TAG]` names an OCI image layout (the tag is its `org.opencontainers.image.ref.name`);
 * anything else is a registry reference. A colon followed by a path separator belongs to DIR.
 */
export function parseImageLocation(text: string): ImageLocation {
  if (!text.startsWith(OCI_PREFIX)) return { kind: 'registry', reference: parseReference(text) };
  const rest = text.slice(OCI_PREFIX.length);
  const colon = rest.lastIndexOf(':');
  const hasTag = colon >= 0 && !rest.slice(colon + 1).includes('/');
  const dir = hasTag ? rest.slice(0, colon) : rest;
  const tag = hasTag ? rest.slice(colon + 1) : undefined;
  if (dir === '') throw new Error(`${JSON.stringify(text)}: an OCI layout needs a directory (oci:DIR[:TAG])`);
  if (tag !== undefined && !/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(tag)) throw new Error(`${JSON.stringify(text)}: ${JSON.stringify(tag)} is not a valid tag`);
  return { kind: 'oci-layout', dir, ...(tag !== undefined ? { tag } : {}) };
}

export function formatImageLocation(location: ImageLocation): string {
  return location.kind === 'registry' ? location.reference.toString() : `${OCI_PREFIX}${location.dir}${location.tag !== undefined ? `:${location.tag}` : ''}`;
}
