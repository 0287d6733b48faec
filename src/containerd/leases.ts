/** containerd.services.leases.v1: a lease keeps what a pull creates from garbage collection until it is done. */
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { ContainerdError, ContainerdUnreachableError, type ContainerdConnection } from './connection.js';

/** containerd's GC deletes an expired lease: a pull that crashed does not pin its content forever. */
const EXPIRE_LABEL = 'containerd.io/gc.expire';

export class LeasesClient {
  constructor(private readonly connection: ContainerdConnection) {}

  /** Creates a lease that expires after `expiresInMs` (as ctr's leases.WithExpiration does) and returns its id. */
  async create(prefix: string, expiresInMs: number): Promise<string> {
    const id = `${prefix}-${Date.now()}-${randomBytes(4).toString('hex')}`;
    const labels = { [EXPIRE_LABEL]: new Date(Date.now() + expiresInMs).toISOString() };
    try {
      const response = await this.connection.unary<{ lease?: { id: string } }>('leases', 'Create', { id, labels }, 'create lease');
      return response.lease?.id ?? id;
    } catch (err) {
      // The first call of a pull: a socket that does not know the service is not containerd's.
      if (err instanceof ContainerdError && err.code === grpc.status.UNIMPLEMENTED) {
        throw new ContainerdUnreachableError(`${this.connection.address} does not serve containerd's API (${err.details}); pass containerd's socket with --address, not a snapshotter's`);
      }
      throw err;
    }
  }

  async delete(id: string): Promise<void> {
    await this.connection.unary('leases', 'Delete', { id, sync: false }, `delete lease ${id}`);
  }
}
