import { describe, expect, it } from 'vitest';
import { ReferenceParseError, isLocalHost, parseReference } from '../../../src/remote/index.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('parseReference', () => {
  it.each([
    ['alpine', 'docker.io', 'library/alpine', 'latest', undefined],
    ['alpine:3.19', 'docker.io', 'library/alpine', '3.19', undefined],
    ['user/app', 'docker.io', 'user/app', 'latest', undefined],
    ['docker.io/alpine', 'docker.io', 'library/alpine', 'latest', undefined],
    ['index.docker.io/library/alpine:1', 'docker.io', 'library/alpine', '1', undefined],
    ['localhost/app', 'localhost', 'app', 'latest', undefined],
    ['127.0.0.1:5000/team/app:v1', '127.0.0.1:5000', 'team/app', 'v1', undefined],
    ['ghcr.io/org/sub/app', 'ghcr.io', 'org/sub/app', 'latest', undefined],
    [`ghcr.io/org/app@${DIGEST}`, 'ghcr.io', 'org/app', undefined, DIGEST],
    [`ghcr.io/org/app:v2@${DIGEST}`, 'ghcr.io', 'org/app', 'v2', DIGEST],
    ['[::1]:5000/app', '[::1]:5000', 'app', 'latest', undefined],
  ])('%s', (input, registry, repository, tag, digest) => {
    const ref = parseReference(input);
    expect([ref.registry, ref.repository, ref.tag, ref.digest]).toEqual([registry, repository, tag, digest]);
    expect(ref.object).toBe(digest ?? tag);
  });

  it('round-trips the normalized form', () => {
    expect(parseReference('alpine').toString()).toBe('docker.io/library/alpine:latest');
    expect(parseReference(`127.0.0.1:5000/a@${DIGEST}`).toString()).toBe(`127.0.0.1:5000/a@${DIGEST}`);
  });

  it.each([
    ['', /empty/],
    ['Alpine', /"Alpine".*lowercase/],
    ['alpine:bad tag', /invalid tag "bad tag"/],
    ['alpine@sha256:xyz', /"sha256:xyz" is not a sha256 digest/],
    ['ghcr.io/a//b', /invalid repository path component ""/],
    ['bad_host:5000:/x', /invalid/],
  ])('rejects %j quoting the input', (input, reason) => {
    expect(() => parseReference(input)).toThrow(ReferenceParseError);
    expect(() => parseReference(input)).toThrow(reason);
    expect(() => parseReference(input)).toThrow(JSON.stringify(input));
  });

  it('knows local hosts', () => {
    expect(['localhost', 'localhost:5000', '127.0.0.1:1', '[::1]:5000'].every(isLocalHost)).toBe(true);
    expect(['ghcr.io', '10.0.0.1:5000', 'localhost.example.com'].some(isLocalHost)).toBe(false);
  });
});
