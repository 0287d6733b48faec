import { isDigest, type Digest } from '../util/digest.js';
import { ReferenceParseError } from './errors.js';

export const DOCKER_HUB = 'docker.io';

// Grammar of github.com/distribution/reference, which docker, containerd and the peers use.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DOMAIN = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$/;

/** A normalized image reference: `registry/repository[:tag][@digest]`, with docker.io defaults applied. */
export class ImageReference {
  constructor(
    /** host[:port], e.g. `docker.io`, `127.0.0.1:5000`. */
    readonly registry: string,
    /** e.g. `library/alpine`. */
    readonly repository: string,
    readonly tag?: string,
    readonly digest?: Digest,
  ) {}

  /** What to ask the registry for: the digest when pinned, the tag otherwise. */
  get object(): string {
    return this.digest ?? this.tag ?? 'latest';
  }

  /** Same repository, pinned to a digest. */
  withDigest(digest: Digest): ImageReference {
    return new ImageReference(this.registry, this.repository, this.tag, digest);
  }

  toString(): string {
    return `${this.registry}/${this.repository}${this.tag ? `:${this.tag}` : ''}${this.digest ? `@${this.digest}` : ''}`;
  }
}

/**
 * Parses `[registry/]path[:tag][@digest]` the way docker does: the first component is a registry when it
 * contains '.' or ':' or is `localhost`; otherwise the image is on docker.io, where one-component names
 * live under `library/`. Without tag and digest the tag is `latest`.
 */
export function parseReference(input: string): ImageReference {
  if (input.length === 0) throw new ReferenceParseError(input, 'empty');
  if (input.length > 4096) throw new ReferenceParseError(input.slice(0, 64) + '...', 'longer than 4096 characters');
  let rest = input;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const candidate = rest.slice(at + 1);
    if (!isDigest(candidate)) throw new ReferenceParseError(input, `${JSON.stringify(candidate)} is not a sha256 digest (sha256:<64 hex>)`);
    digest = candidate;
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new ReferenceParseError(input, `invalid tag ${JSON.stringify(tag)}`);
  }
  const components = rest.split('/');
  let registry = DOCKER_HUB;
  const first = components[0] ?? '';
  if (components.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('['))) {
    if (!DOMAIN.test(first)) throw new ReferenceParseError(input, `invalid registry host ${JSON.stringify(first)}`);
    registry = first;
    components.shift();
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DOCKER_HUB;
  for (const component of components) {
    if (!PATH_COMPONENT.test(component)) {
      const hint = /[A-Z]/.test(component) ? ' (repository names must be lowercase)' : '';
      throw new ReferenceParseError(input, `invalid repository path component ${JSON.stringify(component)}${hint}`);
    }
  }
  if (registry === DOCKER_HUB && components.length === 1) components.unshift('library');
  const repository = components.join('/');
  if (repository.length > 255) throw new ReferenceParseError(input, 'repository name longer than 255 characters');
  return new ImageReference(registry, repository, tag ?? (digest ? undefined : 'latest'), digest);
}

export function isLocalHost(registry: string): boolean {
  const host = registry.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
