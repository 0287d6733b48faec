/**
 * The gRPC face of the snapshotter core: containerd.services.snapshots.v1.Snapshots handlers that
 * translate messages and turn core errors into the status codes containerd's proxy maps back to
 * errdefs (NotFound, AlreadyExists, FailedPrecondition, InvalidArgument, ...).
 */
import * as grpc from '@grpc/grpc-js';
import { isSnapshotError, type SnapshotErrorCode } from '../snapshot/errors.js';
import type { Logger, Snapshotter } from '../snapshot/snapshotter.js';
import type { Mount, SnapshotInfo, SnapshotKind } from '../snapshot/types.js';
import type { CommitRequest, InfoResponse, KeyRequest, ListRequest, ListResponse, MountsResponse, PrepareRequest, ProtoInfo, ProtoKind, ProtoMount, ProtoTimestamp, UpdateRequest, UsageResponse } from './messages.js';

/** containerd's proxy server sends List results in batches of this many (snapshots/proxy). */
const LIST_BATCH = 100;

const STATUS_OF: Record<SnapshotErrorCode, grpc.status> = {
  NotFound: grpc.status.NOT_FOUND,
  AlreadyExists: grpc.status.ALREADY_EXISTS,
  FailedPrecondition: grpc.status.FAILED_PRECONDITION,
  InvalidArgument: grpc.status.INVALID_ARGUMENT,
  Unavailable: grpc.status.UNAVAILABLE,
  Internal: grpc.status.INTERNAL,
};

const KIND_TO_PROTO: Record<SnapshotKind, ProtoKind> = { active: 'ACTIVE', view: 'VIEW', committed: 'COMMITTED' };

export function toServiceError(err: unknown): grpc.ServiceError {
  const message = err instanceof Error ? err.message : String(err);
  const code = isSnapshotError(err) ? STATUS_OF[err.code] : grpc.status.UNKNOWN;
  return Object.assign(new Error(message), { code, details: message, metadata: new grpc.Metadata() });
}

function timestamp(date: Date): ProtoTimestamp {
  const ms = date.getTime();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

export function protoInfo(info: SnapshotInfo): ProtoInfo {
  return {
    name: info.name,
    parent: info.parent,
    kind: KIND_TO_PROTO[info.kind],
    created_at: timestamp(info.created),
    updated_at: timestamp(info.updated),
    labels: info.labels,
  };
}

export function protoMounts(mounts: Mount[]): MountsResponse {
  return { mounts: mounts.map((m): ProtoMount => ({ type: m.type, source: m.source, target: m.target ?? '', options: m.options })) };
}

type Unary<Req, Res> = grpc.handleUnaryCall<Req, Res>;

/** Wraps an async handler: its result or its error becomes the gRPC answer; errors are logged at debug. */
export function unary<Req, Res>(name: string, log: Logger, handler: (request: Req) => Promise<Res>): Unary<Req, Res> {
  return (call, callback) => {
    handler(call.request).then(
      (response) => callback(null, response),
      (err: unknown) => {
        log.debug(`${name} failed`, { error: err instanceof Error ? err.message : String(err) });
        callback(toServiceError(err));
      },
    );
  };
}

const EMPTY = {};

export function snapshotsHandlers(core: Snapshotter, log: Logger): grpc.UntypedServiceImplementation {
  return {
    Prepare: unary<PrepareRequest, MountsResponse>('Prepare', log, async (r) => protoMounts(await core.prepare(r.key, r.parent, r.labels))),
    View: unary<PrepareRequest, MountsResponse>('View', log, async (r) => protoMounts(await core.view(r.key, r.parent, r.labels))),
    Mounts: unary<KeyRequest, MountsResponse>('Mounts', log, async (r) => protoMounts(await core.mounts(r.key))),
    Commit: unary<CommitRequest, object>('Commit', log, async (r) => {
      await core.commit(r.name, r.key, r.labels);
      return EMPTY;
    }),
    Remove: unary<KeyRequest, object>('Remove', log, async (r) => {
      await core.remove(r.key);
      return EMPTY;
    }),
    Stat: unary<KeyRequest, InfoResponse>('Stat', log, async (r) => ({ info: protoInfo(await core.stat(r.key)) })),
    Update: unary<UpdateRequest, InfoResponse>('Update', log, async (r) => {
      const info = r.info ?? { name: '', labels: {} };
      const updated = await core.update({ name: info.name, labels: info.labels ?? {} }, r.update_mask?.paths ?? []);
      return { info: protoInfo(updated) };
    }),
    List: (call: grpc.ServerWritableStream<ListRequest, ListResponse>) => {
      core.list(call.request.filters).then(
        (infos) => {
          for (let i = 0; i < infos.length; i += LIST_BATCH) call.write({ info: infos.slice(i, i + LIST_BATCH).map(protoInfo) });
          call.end();
        },
        // grpc-js sends a server stream's status from an 'error' event (destroy() would only drop it).
        (err: unknown) => call.emit('error', toServiceError(err)),
      );
    },
    Usage: unary<KeyRequest, UsageResponse>('Usage', log, async (r) => core.usage(r.key)),
    Cleanup: unary<{ snapshotter: string }, object>('Cleanup', log, async () => {
      await core.cleanup();
      return EMPTY;
    }),
  };
}

