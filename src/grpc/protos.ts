import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const SNAPSHOTS_PROTO = 'github.com/containerd/containerd/api/services/snapshots/v1/snapshots.proto';

/**
 * The vendored .proto tree. The build (tsc) copies no .proto files, so code running from dist/ reads
 * them from the source tree next to it: dist/src/grpc -> src/grpc/proto.
 */
export function protoRoot(): string {
  const candidates = [new URL('./proto/', import.meta.url), new URL('../../../src/grpc/proto/', import.meta.url)].map((url) => fileURLToPath(url));
  const found = candidates.find((dir) => existsSync(`${dir}/${SNAPSHOTS_PROTO}`));
  if (!found) throw new Error(`containerd snapshots.proto not found in ${candidates.join(' or ')}`);
  return found;
}

/** Field names as in the .proto (created_at, update_mask), int64 as numbers, enums as their names. */
export const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

/** containerd.services.snapshots.v1.Snapshots: the service definition and a client constructor. */
export function loadSnapshotsService(): { service: grpc.ServiceDefinition; Client: grpc.ServiceClientConstructor } {
  const definition = protoLoader.loadSync(SNAPSHOTS_PROTO, { ...LOADER_OPTIONS, includeDirs: [protoRoot()] });
  const api = grpc.loadPackageDefinition(definition) as unknown as {
    containerd: { services: { snapshots: { v1: { Snapshots: grpc.ServiceClientConstructor } } } };
  };
  const Client = api.containerd.services.snapshots.v1.Snapshots;
  return { service: Client.service, Client };
}
