import type { DaemonStatus } from '../daemon/status.js';
import type { Logger } from '../snapshot/snapshotter.js';
import { loadStatusService } from './protos.js';
import type { ExtraService } from './server.js';
import { unary } from './snapshots-service.js';

/** lazypull.v1.Status on the daemon socket: the message fields are DaemonStatus's, one to one. */
export function statusService(collect: () => DaemonStatus, log: Logger): ExtraService {
  return {
    service: loadStatusService().service,
    handlers: { Get: unary<object, DaemonStatus>('Status.Get', log, async () => collect()) },
  };
}
