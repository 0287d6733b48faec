/**
 * A minimal CRI image-service client (runtime.v1.ImageService: PullImage, ImageStatus, ListImages)
 * for tests that play the kubelet against containerd's CRI plugin. The plugin serves CRI on
 * containerd's own gRPC socket, in the `k8s.io` namespace, so `criImageClient(containerd.address)` is
 * all it takes. Test-only: the reduced .proto lives next to this file (test/helpers/cri/api.proto).
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { LOADER_OPTIONS } from '../../../src/grpc/protos.js';

const PROTO = fileURLToPath(new URL('./api.proto', import.meta.url));

export interface CriImageSpec {
  image: string;
  annotations?: Record<string, string>;
}

export interface CriAuthConfig {
  username?: string;
  password?: string;
  auth?: string;
  server_address?: string;
  identity_token?: string;
  registry_token?: string;
}

export interface CriImage {
  id: string;
  repo_tags: string[];
  repo_digests: string[];
  size: number;
  username: string;
  spec: CriImageSpec | null;
}

export interface CriImageClient {
  /** PullImage: resolves with `image_ref` (containerd answers the image ID, the config digest). */
  pullImage(image: string, options?: { auth?: CriAuthConfig; timeoutMs?: number }): Promise<string>;
  /** ImageStatus: the image, or null when the runtime does not have it. */
  imageStatus(image: string): Promise<CriImage | null>;
  /** ListImages, optionally filtered by an image reference. */
  listImages(filter?: string): Promise<CriImage[]>;
  close(): void;
}

type Callback = (err: grpc.ServiceError | null, response: unknown) => void;
type UnaryMethod = (request: object, options: grpc.CallOptions, callback: Callback) => void;

let loaded: grpc.ServiceClientConstructor | undefined;

function imageServiceClient(): grpc.ServiceClientConstructor {
  if (!loaded) {
    const definition = protoLoader.loadSync(PROTO, LOADER_OPTIONS);
    const pkg = grpc.loadPackageDefinition(definition) as unknown as { runtime: { v1: { ImageService: grpc.ServiceClientConstructor } } };
    loaded = pkg.runtime.v1.ImageService;
  }
  return loaded;
}

/** A client for the CRI image service at the unix socket `socket` (containerd's gRPC address). */
export function criImageClient(socket: string): CriImageClient {
  const Client = imageServiceClient();
  const client = new Client(`unix:${socket}`, grpc.credentials.createInsecure());
  const call = <T>(method: string, request: object, timeoutMs = 60_000): Promise<T> =>
    new Promise((resolve, reject) => {
      const fn = (client as unknown as Record<string, UnaryMethod>)[method] as UnaryMethod;
      fn.call(client, request, { deadline: Date.now() + timeoutMs }, (err, response) => (err ? reject(err) : resolve(response as T)));
    });
  return {
    async pullImage(image, options = {}) {
      const request = { image: { image }, ...(options.auth ? { auth: options.auth } : {}) };
      return (await call<{ image_ref: string }>('PullImage', request, options.timeoutMs ?? 120_000)).image_ref;
    },
    async imageStatus(image) {
      return (await call<{ image: CriImage | null }>('ImageStatus', { image: { image } })).image;
    },
    async listImages(filter) {
      return (await call<{ images: CriImage[] }>('ListImages', filter === undefined ? {} : { filter: { image: { image: filter } } })).images;
    },
    close: () => client.close(),
  };
}
