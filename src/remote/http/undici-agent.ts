/**
 * undici's Agent and its `request` API without undici's index. The index also loads fetch, WebSocket,
 * EventSource, the caches and their polyfills: 120-150 ms of `lazypull rpull`'s start on the 2-core
 * test machine, where these two files cost about 60. undici has no `exports` map, so the files are
 * importable, and package-lock pins the version; test/unit/remote/undici-agent.test.ts checks that they
 * are what the index exports, so an upgrade that moves them fails there, not in production.
 */
import { createRequire } from 'node:module';
import type { Agent as UndiciAgent, Dispatcher } from 'undici';

const require = createRequire(import.meta.url);

export const Agent = require('undici/lib/dispatcher/agent.js') as typeof UndiciAgent;
export type Agent = UndiciAgent;

type RequestApi = (this: Dispatcher, options: Dispatcher.RequestOptions) => Promise<Dispatcher.ResponseData>;
/** What undici's index installs as `Dispatcher.prototype.request`. */
export const requestApi = require('undici/lib/api/api-request.js') as RequestApi;

/** `dispatcher.request(options)`, without relying on the index having extended the prototype. */
export function request(dispatcher: Dispatcher, options: Dispatcher.RequestOptions): Promise<Dispatcher.ResponseData> {
  return requestApi.call(dispatcher, options);
}

/** undici's error codes for a connection, header or body timeout (`errors.*TimeoutError`). */
export const TIMEOUT_ERROR_CODES: ReadonlySet<string> = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
