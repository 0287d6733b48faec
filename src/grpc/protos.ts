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

export interface LoadedService {
  service: grpc.ServiceDefinition;
  Client: grpc.ServiceClientConstructor;
}

/** A service of a vendored .proto by its full name, e.g. `containerd.services.snapshots.v1.Snapshots`. */
export function loadService(protoFile: string, fullName: string): LoadedService {
  const definition = protoLoader.loadSync(protoFile, { ...LOADER_OPTIONS, includeDirs: [protoRoot()] });
  let node: unknown = grpc.loadPackageDefinition(definition);
  for (const part of fullName.split('.')) node = (node as Record<string, unknown> | undefined)?.[part];
  if (typeof node !== 'function') throw new Error(`${protoFile} defines no service ${fullName}`);
  const Client = node as grpc.ServiceClientConstructor;
  return { service: Client.service, Client };
}

/** containerd.services.snapshots.v1.Snapshots: the service definition and a client constructor. */
export function loadSnapshotsService(): LoadedService {
  return loadService(SNAPSHOTS_PROTO, 'containerd.services.snapshots.v1.Snapshots');
}

/** lazypull.v1.Status, served on the daemon's socket for `lazypull status`. */
export function loadStatusService(): LoadedService {
  return loadService('lazypull/v1/status.proto', 'lazypull.v1.Status');
}
