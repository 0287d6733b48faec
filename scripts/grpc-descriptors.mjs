#!/usr/bin/env node
// Writes src/grpc/descriptors.json: the vendored .proto files (containerd's services lazypull calls or
// serves, and lazypull's own status service) parsed once, as protobufjs JSON. Processes load that
// instead of parsing the .proto text on every start (about 60 ms of `lazypull rpull`'s start here).
// Run it after changing anything under src/grpc/proto; test/unit/grpc/descriptors.test.ts fails until
// the file matches the .proto tree.
//
// protobufjs is @grpc/proto-loader's own dependency (the parser it uses); nothing else imports it.
import { accessSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const protoDir = join(root, 'src/grpc/proto');
const API = 'github.com/containerd/containerd/api/services';
export const PROTO_FILES = [
  `${API}/content/v1/content.proto`,
  `${API}/diff/v1/diff.proto`,
  `${API}/images/v1/images.proto`,
  `${API}/leases/v1/leases.proto`,
  `${API}/snapshots/v1/snapshots.proto`,
  'lazypull/v1/status.proto',
];

/** The JSON text for the files as proto-loader would load them (keepCase, imports from the tree). */
export function descriptorsJson() {
  const parsed = new protobuf.Root();
  parsed.resolvePath = (_origin, target) => {
    const candidate = join(protoDir, target);
    try {
      accessSync(candidate);
      return candidate;
    } catch {
      return target;
    }
  };
  parsed.loadSync(PROTO_FILES, { keepCase: true });
  parsed.resolveAll();
  return `${JSON.stringify(parsed.toJSON(), null, 1)}\n`;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  writeFileSync(join(root, 'src/grpc/descriptors.json'), descriptorsJson());
}
