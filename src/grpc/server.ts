import { chmod, lstat, mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger, Snapshotter } from '../snapshot/snapshotter.js';
import { loadSnapshotsService } from './protos.js';
import { snapshotsHandlers } from './snapshots-service.js';

/** Another service on the same socket (lazypull.v1.Status). */
export interface ExtraService {
  service: grpc.ServiceDefinition;
  handlers: grpc.UntypedServiceImplementation;
}

export interface SnapshotsServer {
  address: string;
  /** Stops accepting calls, waits briefly for running ones, removes the socket. */
  close(): Promise<void>;
}

/**
 * Serves the snapshotter on a unix socket readable only by its owner (0600) in a directory only its
 * owner can enter (0700, when lazypull creates it): whoever reaches the socket can mount any layer.
 * A stale socket from a crashed run is replaced; anything else at that path is an error.
 */
export async function serveSnapshots(core: Snapshotter, address: string, log: Logger, extraServices: readonly ExtraService[] = []): Promise<SnapshotsServer> {
  await prepareSocketPath(address, log);
  const { service } = loadSnapshotsService();
  const server = new grpc.Server();
  server.addService(service, snapshotsHandlers(core, log));
  for (const extra of extraServices) server.addService(extra.service, extra.handlers);
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix:${address}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
  });
  await chmod(address, 0o600);
  let closed = false;
  return {
    address,
    async close() {
      if (closed) return;
      closed = true;
      await shutdown(server);
      await rm(address, { force: true });
    },
  };
}

async function prepareSocketPath(address: string, log: Logger): Promise<void> {
  const dir = dirname(address);
  const existing = await lstat(dir).catch(() => undefined);
  if (!existing) await mkdir(dir, { recursive: true, mode: 0o700 });
  else if ((existing.mode & 0o077) !== 0) log.warn('socket directory is accessible to others; lazypull only restricts directories it creates', { dir });
  const stale = await lstat(address).catch(() => undefined);
  if (stale?.isSocket()) await rm(address);
  else if (stale) throw new Error(`${address} exists and is not a socket`);
}

/** Graceful shutdown with a bound: a client stuck in a call must not keep the daemon from exiting. */
async function shutdown(server: grpc.Server): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, 5_000);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
