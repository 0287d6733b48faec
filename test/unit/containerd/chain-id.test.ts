import { describe, expect, it } from 'vitest';
import { chainIds } from '../../../src/containerd/chain-id.js';

// diffIDs are sha256 of "a", "b", "c"; the chainIDs were computed with `printf '%s %s' PARENT DIFF | sha256sum`.
const A = 'sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb';
const B = 'sha256:3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d';
const C = 'sha256:2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6';
const AB = 'sha256:51c0c8ace48498d6f5fee6b0592cc06f2da0f3cbe09c5a34a97dce85c3889676';
const ABC = 'sha256:2fce7f8ce91bcf0a1428b36e1024639fdbd9469eea762dba98aa749631885106';

describe('chainIds', () => {
  it('is the diffID for the bottom layer and sha256("parent diffID") above it', () => {
    expect(chainIds([A, B, C])).toEqual([A, AB, ABC]);
  });

  it('depends on the order of the layers', () => {
    expect(chainIds([B, A])[1]).not.toBe(AB);
  });

  it('shares the chain of a common base', () => {
    expect(chainIds([A, B]).slice(0, 2)).toEqual(chainIds([A, B, C]).slice(0, 2));
  });

  it('is empty for an image without layers', () => {
    expect(chainIds([])).toEqual([]);
  });

  it('refuses a diffID that is not a sha256 digest', () => {
    expect(() => chainIds([A, 'sha256:xyz'])).toThrow(/not a sha256 digest/);
  });
});
