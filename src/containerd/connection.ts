/**
 * A client connection to containerd's gRPC socket: one channel shared by every service client, the
 * namespace and lease every call carries as gRPC metadata, and containerd's status codes turned into
 * errors that name the call that failed.
 */
import { existsSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { DEFAULT_CONTAINERD_ADDRESS } from '../config/paths.js';
import { loadService } from '../grpc/protos.js';

/** containerd reads the namespace of a call from this metadata key (namespaces.GRPCHeader). */
export const NAMESPACE_HEADER = 'containerd-namespace';
/** Resources a call creates are added to this lease (leases.GRPCHeader). */
export const LEASE_HEADER = 'containerd-lease';
export { DEFAULT_CONTAINERD_ADDRESS } from '../config/paths.js';

export const SERVICES = {
  content: 'containerd.services.content.v1.Content',
  diff: 'containerd.services.diff.v1.Diff',
  images: 'containerd.services.images.v1.Images',
  leases: 'containerd.services.leases.v1.Leases',
  snapshots: 'containerd.services.snapshots.v1.Snapshots',
} as const;
export type ServiceName = keyof typeof SERVICES;

/** A failed containerd call: `code` is the gRPC status containerd answered with. */
export class ContainerdError extends Error {
  override name = 'ContainerdError';
  constructor(
    message: string,
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(message);
  }
}

/** containerd is not listening where we looked, or does not answer. */
export class ContainerdUnreachableError extends Error {
  override name = 'ContainerdUnreachableError';
}

export const isNotFound = (err: unknown): boolean => err instanceof ContainerdError && err.code === grpc.status.NOT_FOUND;
export const isAlreadyExists = (err: unknown): boolean => err instanceof ContainerdError && err.code === grpc.status.ALREADY_EXISTS;

/** A gRPC failure as a ContainerdError naming `what` was being done; anything else is returned as is. */
export function containerdError(err: unknown, what: string): Error {
  const status = err as Partial<grpc.ServiceError>;
  if (typeof status.code !== 'number') return err instanceof Error ? err : new Error(String(err));
  const details = status.details || status.message || grpc.status[status.code];
  return new ContainerdError(`${what}: ${details}`, status.code, details ?? '');
}

type UnaryMethod = (request: unknown, metadata: grpc.Metadata, options: grpc.CallOptions, callback: (err: grpc.ServiceError | null, response: unknown) => void) => grpc.ClientUnaryCall;
type DuplexMethod = (metadata: grpc.Metadata, options: grpc.CallOptions) => grpc.ClientDuplexStream<unknown, unknown>;

let constructors: Map<ServiceName, grpc.ServiceClientConstructor> | undefined;

/** The client constructors of the five services. */
function loadConstructors(): Map<ServiceName, grpc.ServiceClientConstructor> {
  return new Map((Object.entries(SERVICES) as [ServiceName, string][]).map(([service, fullName]) => [service, loadService(fullName).Client]));
}

export interface ConnectionOptions {
  /** containerd's socket (default /run/containerd/containerd.sock). */
  address?: string;
  namespace: string;
  /** How long to wait for the socket to answer before giving up (default 5 s). */
  connectTimeoutMs?: number;
}

export class ContainerdConnection {
  /** Set while a lease is held: every call then carries it. */
  lease: string | undefined;
  private readonly channel: grpc.Channel;
  private readonly clients = new Map<ServiceName, grpc.Client>();

  private constructor(
    readonly address: string,
    readonly namespace: string,
  ) {
    this.channel = new grpc.Channel(`unix:${address}`, grpc.credentials.createInsecure(), {
      // containerd accepts messages up to 16 MiB; its answers (image lists, mounts) are small.
      'grpc.max_receive_message_length': 16 << 20,
    });
  }

  /** Connects, failing with ContainerdUnreachableError when nothing answers on the socket in time. */
  static async open(options: ConnectionOptions): Promise<ContainerdConnection> {
    const address = options.address ?? DEFAULT_CONTAINERD_ADDRESS;
    if (!existsSync(address)) throw new ContainerdUnreachableError(`cannot reach containerd: no socket at ${address} (is containerd running? pass its socket with --address)`);
    const connection = new ContainerdConnection(address, options.namespace);
    try {
      await connection.waitReady(options.connectTimeoutMs ?? 5_000);
    } catch (err) {
      connection.close();
      throw new ContainerdUnreachableError(`cannot reach containerd at ${address}: ${(err as Error).message}`);
    }
    return connection;
  }

  /** Metadata for one call: the namespace, and the lease while one is held. */
  metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    metadata.set(NAMESPACE_HEADER, this.namespace);
    if (this.lease !== undefined) metadata.set(LEASE_HEADER, this.lease);
    return metadata;
  }

  /** One unary call; a gRPC failure becomes a ContainerdError whose message starts with `what`. */
  unary<Response>(service: ServiceName, method: string, request: object, what: string, timeoutMs = 60_000): Promise<Response> {
    const call = this.method<UnaryMethod>(service, method);
    return new Promise((resolve, reject) => {
      call(request, this.metadata(), { deadline: Date.now() + timeoutMs }, (err, response) => (err ? reject(containerdError(err, what)) : resolve(response as Response)));
    });
  }

  /** A bidirectional stream (content Write). */
  duplex(service: ServiceName, method: string, timeoutMs: number): grpc.ClientDuplexStream<unknown, unknown> {
    return this.method<DuplexMethod>(service, method)(this.metadata(), { deadline: Date.now() + timeoutMs });
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
    this.channel.close();
  }

  private method<T>(service: ServiceName, method: string): T {
    const client = this.client(service) as unknown as Record<string, unknown>;
    const fn = client[method];
    if (typeof fn !== 'function') throw new Error(`${SERVICES[service]} has no method ${method}`);
    return (fn as (...args: unknown[]) => unknown).bind(client) as T;
  }

  private client(service: ServiceName): grpc.Client {
    let client = this.clients.get(service);
    if (!client) {
      constructors ??= loadConstructors();
      const Client = constructors.get(service) as grpc.ServiceClientConstructor;
      client = new Client(`unix:${this.address}`, grpc.credentials.createInsecure(), { channelOverride: this.channel });
      this.clients.set(service, client);
    }
    return client;
  }

  private waitReady(timeoutMs: number): Promise<void> {
    const client = this.client('leases');
    return new Promise((resolve, reject) => client.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve())));
  }
}
