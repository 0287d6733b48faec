/**
 * namesExistingTarget: which AlreadyExists answers to a remote-labelled Prepare say the layer's snapshot
 * is in containerd (no Stat needed), in the words of containerd's metadata/snapshot.go.
 */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { ContainerdError } from '../../../src/containerd/connection.js';
import { namesExistingTarget } from '../../../src/containerd/pull.js';

const CHAIN_ID = `sha256:${'a'.repeat(64)}`;
const alreadyExists = (details: string) => new ContainerdError(`prepare: ${details}`, grpc.status.ALREADY_EXISTS, details);

describe('namesExistingTarget', () => {
  it('accepts the answer for a target the snapshotter committed during the Prepare', () => {
    expect(namesExistingTarget(alreadyExists(`target snapshot "${CHAIN_ID}" from snapshotter: already exists`), CHAIN_ID)).toBe(true);
  });

  it('accepts the answer for a target containerd already had', () => {
    expect(namesExistingTarget(alreadyExists(`target snapshot "${CHAIN_ID}": already exists`), CHAIN_ID)).toBe(true);
  });

  it('refuses a taken key, even though the key holds the chainID', () => {
    expect(namesExistingTarget(alreadyExists(`snapshot "extract-123-abcd ${CHAIN_ID}": already exists`), CHAIN_ID)).toBe(false);
  });

  it('refuses another layer’s target and answers that are not containerd errors', () => {
    expect(namesExistingTarget(alreadyExists(`target snapshot "sha256:${'b'.repeat(64)}" from snapshotter: already exists`), CHAIN_ID)).toBe(false);
    expect(namesExistingTarget(new Error(`target snapshot "${CHAIN_ID}": already exists`), CHAIN_ID)).toBe(false);
  });
});
