import { redactUrl } from './redact.js';

/** Base class of every failure of registry access, so callers can tell them from programming errors. */
export class RegistryError extends Error {
  override name = 'RegistryError';
}

/** A reference string that is not a valid image reference; the message quotes the input. */
export class ReferenceParseError extends RegistryError {
  override name = 'ReferenceParseError';
  constructor(
    readonly input: string,
    reason: string,
  ) {
    super(`invalid image reference ${JSON.stringify(input)}: ${reason}`);
  }
}

/** The registry answered with a status the caller cannot use (after retries where they apply). */
export class HttpStatusError extends RegistryError {
  override name = 'HttpStatusError';
  constructor(
    readonly method: string,
    url: URL,
    readonly status: number,
    detail?: string,
  ) {
    super(`${method} ${redactUrl(url)}: HTTP ${status}${detail ? ` (${detail})` : ''}`);
  }
}

/** Network failure, reset or truncated body: worth another attempt. */
export class TransportError extends RegistryError {
  override name = 'TransportError';
  constructor(method: string, url: URL, reason: string, options?: { cause?: unknown }) {
    super(`${method} ${redactUrl(url)}: ${reason}`, options);
  }
}

/** The server's certificate was not accepted: retrying cannot help, the CA or skip_verify setting must change. */
export class TlsError extends RegistryError {
  override name = 'TlsError';
  constructor(method: string, url: URL, reason: string, options?: { cause?: unknown }) {
    super(`${method} ${redactUrl(url)}: TLS: ${reason} (configure the registry's CA with hosts.toml "ca" or lazypull's host settings)`, options);
  }
}

/** No response headers or body data within the per-request timeout. */
export class RequestTimeoutError extends TransportError {
  override name = 'RequestTimeoutError';
}

/** The whole operation (all attempts included) ran past its deadline. */
export class DeadlineExceededError extends RegistryError {
  override name = 'DeadlineExceededError';
}

/** A response that does not match the request (wrong Content-Range, length, malformed multipart). */
export class InvalidResponseError extends RegistryError {
  override name = 'InvalidResponseError';
}

/** A response body larger than the caller allowed; reading it would waste memory or bandwidth. */
export class ResponseTooLargeError extends RegistryError {
  override name = 'ResponseTooLargeError';
  constructor(
    method: string,
    url: URL,
    readonly status: number,
    readonly limit: number,
  ) {
    super(`${method} ${redactUrl(url)}: response body (HTTP ${status}) exceeds the limit of ${limit} bytes`);
  }
}

export class DigestMismatchError extends RegistryError {
  override name = 'DigestMismatchError';
}

/** Credentials missing or refused. Never carries the credential itself. */
export class AuthError extends RegistryError {
  override name = 'AuthError';
}

export class ManifestError extends RegistryError {
  override name = 'ManifestError';
}

/** The registry answered 404 for a manifest: the repository has no such tag or digest. */
export class ManifestNotFoundError extends ManifestError {
  override name = 'ManifestNotFoundError';
}

/** The caller's signal fired: the operation was cancelled, not failed. */
export function isAbortError(err: unknown): boolean {
  return err instanceof Error && (err.name === 'AbortError' || (err as { code?: string }).code === 'ABORT_ERR');
}
