import { InvalidResponseError } from '../errors.js';
import { redactUrl } from '../redact.js';
import { header, withHeaders, type Middleware } from './types.js';

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/**
 * Follows redirects (registries send blob GETs to object storage) and reports the final URL in
 * `response.url`, so the blob source can go there directly next time. Credentials for the registry
 * are dropped when the redirect leaves its origin: storage URLs carry their own signature.
 */
export function redirectMiddleware(maxRedirects = 5): Middleware {
  return (next) => async (request) => {
    let current = request;
    for (let hop = 0; ; hop++) {
      const response = await next(current);
      if (!REDIRECT_STATUSES.has(response.status)) return response;
      const location = header(response, 'location');
      if (!location) return response;
      if (hop >= maxRedirects) {
        throw new InvalidResponseError(`${request.method} ${redactUrl(request.url)}: more than ${maxRedirects} redirects`);
      }
      const target = new URL(location, current.url);
      const crossOrigin = target.origin !== current.url.origin;
      const method = response.status === 303 && current.method !== 'HEAD' ? 'GET' : current.method;
      current = { ...(crossOrigin ? withHeaders(current, { authorization: undefined }) : current), url: target, method };
      if (crossOrigin) delete current.scope;
    }
  };
}
