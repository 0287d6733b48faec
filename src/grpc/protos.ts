import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const SNAPSHOTS_PROTO = 'github.com/containerd/containerd/api/services/snapshots/v1/snapshots.proto';

/**
 * The vendored .proto tree. The build (tsc) copies no .proto files, so code running from dist/ reads
 * them from the source tree next to it: dist/src/grpc -> src/grpc/proto.
 */
export function protoRoot(): string {
  return sourceFile('proto/', SNAPSHOTS_PROTO);
}

/** A file of src/grpc, from src/ or from dist/ (tsc copies neither .proto nor this JSON). */
function sourceFile(name: string, probe = ''): string {
  const candidates = [new URL(`./${name}`, import.meta.url), new URL(`../../../src/grpc/${name}`, import.meta.url)].map((url) => fileURLToPath(url));
  const found = candidates.find((path) => existsSync(`${path}${probe}`));
  if (!found) throw new Error(`${name}${probe} not found in ${candidates.join(' or ')}`);
  return found;
}

/** Field names as in the .proto (created_at, update_mask), int64 as numbers, enums as their names. */
export const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

let services: grpc.GrpcObject | undefined;

/**
 * Every service lazypull calls or serves, from src/grpc/descriptors.json: the .proto tree parsed ahead
 * (scripts/grpc-descriptors.mjs), so no process parses .proto text at start (about 60 ms of
 * `lazypull rpull`'s). Loaded once per process.
 */
export function grpcServices(): grpc.GrpcObject {
  services ??= grpc.loadPackageDefinition(protoLoader.fromJSON(JSON.parse(readFileSync(sourceFile('descriptors.json'), 'utf8')) as Parameters<typeof protoLoader.fromJSON>[0], LOADER_OPTIONS));
  return services;
}

export interface LoadedService {
  service: grpc.ServiceDefinition;
  Client: grpc.ServiceClientConstructor;
}

/** A service by its full name, e.g. `containerd.services.snapshots.v1.Snapshots`. */
export function loadService(fullName: string): LoadedService {
  const node = fullName.split('.').reduce<unknown>((parent, part) => (parent as Record<string, unknown> | undefined)?.[part], grpcServices());
  if (typeof node !== 'function') throw new Error(`src/grpc/descriptors.json defines no service ${fullName}`);
  const Client = node as grpc.ServiceClientConstructor;
  return { service: Client.service, Client };
}

/** containerd.services.snapshots.v1.Snapshots: the service definition and a client constructor. */
export function loadSnapshotsService(): LoadedService {
  return loadService('containerd.services.snapshots.v1.Snapshots');
}

/** lazypull.v1.Status, served on the daemon's socket for `lazypull status`. */
export function loadStatusService(): LoadedService {
  return loadService('lazypull.v1.Status');
}

/**
 * Encodes and decodes an empty message of every method of every service once. protobufjs generates a
 * type's encoder and decoder on its first use; a daemon does this at start so that its first pull
 * and Prepares do not pay for it (about 30 ms of a cold pull's main thread). Returns the methods done.
 */
export function warmMessageCodecs(): number {
  let methods = 0;
  const visit = (node: unknown): void => {
    if (typeof node === 'function' && 'service' in node) {
      for (const method of Object.values((node as grpc.ServiceClientConstructor).service)) {
        method.requestDeserialize(method.requestSerialize({}));
        method.responseDeserialize(method.responseSerialize({}));
        methods++;
      }
      return;
    }
    if (typeof node === 'object' && node !== null && !('format' in node)) for (const child of Object.values(node)) visit(child);
  };
  visit(grpcServices());
  return methods;
}
