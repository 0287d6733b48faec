import type * as grpc from '@grpc/grpc-js';
import type { Logger } from '../snapshot/snapshotter.js';
import { PULL_METHOD_PATH, type PullEvent, type PullRequest } from './pull-protocol.js';
import type { ExtraService } from './server.js';

/**
 * Runs one pull, reporting through `emit`; resolves when it is done. Rejects with a message for the user
 * when the pull fails. `signal` aborts when the client goes away.
 */
export type RunPull = (request: PullRequest, emit: (event: PullEvent) => void, signal: AbortSignal) => Promise<void>;

const toJson = (value: unknown): Buffer => Buffer.from(JSON.stringify(value), 'utf8');

/** A request that is not JSON becomes an empty object, which the checks below refuse with a reason. */
function fromJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch {
    return {};
  }
}

/** Why the request cannot be run, or undefined when every field has its type. */
export function invalidPullRequest(request: unknown): string | undefined {
  if (typeof request !== 'object' || request === null) return 'the request is not an object';
  const r = request as Record<string, unknown>;
  for (const field of ['reference', 'containerd_address', 'namespace', 'snapshotter'] as const) {
    if (typeof r[field] !== 'string' || r[field] === '') return `${field} must be a non-empty string`;
  }
  if (r.platform !== undefined && typeof r.platform !== 'string') return 'platform must be a string';
  if (r.plain_http !== undefined && typeof r.plain_http !== 'boolean') return 'plain_http must be a boolean';
  return undefined;
}

/** lazypull.v1.Pull/Pull (server streaming, JSON messages: see pull-protocol.ts). */
export function pullService(run: RunPull, log: Logger): ExtraService {
  const service: grpc.ServiceDefinition = {
    Pull: {
      path: PULL_METHOD_PATH,
      requestStream: false,
      responseStream: true,
      requestSerialize: toJson,
      requestDeserialize: fromJson,
      responseSerialize: toJson,
      responseDeserialize: fromJson,
      originalName: 'pull',
    },
  };
  const Pull = (call: grpc.ServerWritableStream<unknown, PullEvent>): void => {
    const abort = new AbortController();
    call.on('cancelled', () => abort.abort(new Error('the client went away')));
    const emit = (event: PullEvent) => {
      if (!call.cancelled) call.write(event);
    };
    const invalid = invalidPullRequest(call.request);
    const running = invalid ? Promise.reject(new Error(`invalid pull request: ${invalid}`)) : run(call.request as PullRequest, emit, abort.signal);
    running
      .catch((err: unknown) => {
        const message = err instanceof Error ? err.message : String(err);
        log.info('pull failed', { reference: (call.request as Partial<PullRequest>).reference, error: message });
        emit({ failed: { message } });
      })
      .finally(() => {
        if (!call.cancelled) call.end();
      });
  };
  return { service, handlers: { Pull } };
}
