/**
 * The client of lazypull.v1.Pull over Node's own HTTP/2 (see pull-protocol.ts for why not grpc-js):
 * one streaming call on the daemon's unix socket.
 */
import { connect as http2Connect, constants, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { decodeFrames, encodeFrame, GRPC_JSON_CONTENT_TYPE, PULL_METHOD_PATH, type PullEvent, type PullRequest, type WirePullResult } from './pull-protocol.js';

/** Nothing answers on the socket: the caller may pull by itself instead. */
export class DaemonUnavailableError extends Error {
  override name = 'DaemonUnavailableError';
}

/** How long the socket may take to accept the connection. */
const CONNECT_TIMEOUT_MS = 2_000;
const GRPC_UNIMPLEMENTED = 12;
const GRPC_CANCELLED = 1;

/**
 * Asks the daemon on `socket` to pull; `onEvent` sees each progress message. Resolves with the result,
 * rejects with the daemon's reason, or with DaemonUnavailableError when no daemon (or one without
 * this service) answers, before anything was pulled.
 */
export async function pullThroughDaemon(socket: string, request: PullRequest, onEvent: (event: PullEvent) => void, signal?: AbortSignal): Promise<WirePullResult> {
  const session = await openSession(socket);
  try {
    return await call(session, request, onEvent, signal);
  } finally {
    session.close();
  }
}

function openSession(socket: string): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2Connect('http://lazypull', { createConnection: () => netConnect(socket) });
    const timer = setTimeout(() => fail(new Error(`no answer within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
    function fail(err: Error): void {
      clearTimeout(timer);
      session.destroy();
      reject(new DaemonUnavailableError(`no lazypull daemon at ${socket}: ${err.message}`));
    }
    session.once('error', fail);
    session.once('connect', () => {
      clearTimeout(timer);
      session.off('error', fail);
      // Later session errors surface through the stream of the call.
      session.on('error', () => undefined);
      resolve(session);
    });
  });
}

function call(session: ClientHttp2Session, request: PullRequest, onEvent: (event: PullEvent) => void, signal?: AbortSignal): Promise<WirePullResult> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      [constants.HTTP2_HEADER_METHOD]: 'POST',
      [constants.HTTP2_HEADER_PATH]: PULL_METHOD_PATH,
      [constants.HTTP2_HEADER_CONTENT_TYPE]: GRPC_JSON_CONTENT_TYPE,
      te: 'trailers',
    });
    let result: WirePullResult | undefined;
    let failure: Error | undefined;
    let buffered: Buffer = Buffer.alloc(0);
    const onAbort = () => stream.close(constants.NGHTTP2_CANCEL);
    signal?.addEventListener('abort', onAbort, { once: true });

    const settle = (headers: IncomingHttpHeaders) => {
      signal?.removeEventListener('abort', onAbort);
      const status = Number(headers['grpc-status'] ?? 0);
      if (status === GRPC_UNIMPLEMENTED) return reject(new DaemonUnavailableError('the lazypull daemon does not serve pulls (an older version)'));
      if (signal?.aborted) return reject(abortReason(signal));
      if (status !== 0) return reject(new Error(`the lazypull daemon answered ${status === GRPC_CANCELLED ? 'cancelled' : `gRPC status ${status}`}: ${decodeURIComponent(String(headers['grpc-message'] ?? ''))}`));
      if (failure) return reject(failure);
      if (!result) return reject(new Error('the lazypull daemon ended the pull without a result'));
      resolve(result);
    };

    stream.on('response', (headers) => {
      // A trailers-only answer (an error before any message) carries its status in the headers.
      if (headers['grpc-status'] !== undefined) settle(headers);
    });
    stream.on('trailers', settle);
    stream.on('data', (chunk: Buffer) => {
      try {
        const { messages, rest } = decodeFrames(Buffer.concat([buffered, chunk]));
        buffered = rest;
        for (const message of messages) {
          const event = JSON.parse(message.toString('utf8')) as PullEvent;
          if ('done' in event) result = event.done;
          else if ('failed' in event) failure = new Error(event.failed.message);
          else onEvent(event);
        }
      } catch (err) {
        failure = err as Error;
        stream.close(constants.NGHTTP2_CANCEL);
      }
    });
    stream.on('error', (err) => {
      signal?.removeEventListener('abort', onAbort);
      reject(signal?.aborted ? abortReason(signal) : new Error(`the lazypull daemon's pull call failed: ${err.message}`));
    });
    stream.on('close', () => {
      signal?.removeEventListener('abort', onAbort);
      if (signal?.aborted) reject(abortReason(signal));
      // Closed without trailers (the daemon died mid-pull): say so rather than wait forever.
      else if (!result && !failure) reject(new Error('the lazypull daemon closed the pull call without an answer'));
    });
    stream.end(encodeFrame(request));
  });
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('interrupted');
}
