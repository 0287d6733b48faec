import { AuthError, HttpStatusError } from '../errors.js';
import { redactUrl } from '../redact.js';
import { withHeaders, type HttpRequest, type Middleware, type Send } from '../http/types.js';
import { parseChallenges, type Challenge } from './challenge.js';
import type { CredentialStore, Credentials } from './credentials.js';

interface CachedToken {
  value: string;
  /** Epoch ms after which the token is not used any more. */
  expiresAt: number;
}

/** Tokens without `expires_in` live 60 s (distribution's token spec). */
const DEFAULT_TOKEN_LIFETIME_S = 60;
/** Renew a little before the server's expiry so requests in flight do not carry a dead token. */
const EXPIRY_MARGIN_MS = 5_000;
const MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024;

/**
 * Authentication state of one registry endpoint (one origin): the challenge it answered with, and
 * bearer tokens per scope with their expiry. Credentials come from the store on demand and are only
 * ever written into Authorization headers.
 */
export class Authenticator {
  private challenge?: Challenge;
  private readonly tokens = new Map<string, CachedToken>();
  private readonly pending = new Map<string, Promise<string>>();

  constructor(
    /** Origin (scheme://host:port) whose requests this authenticates. */
    readonly origin: string,
    /** host[:port] used to look credentials up. */
    private readonly host: string,
    private readonly credentials: CredentialStore,
    /** Sends token requests (no auth middleware below it). */
    private readonly tokenSend: Send,
    private readonly now: () => number = Date.now,
  ) {}

  /** The Authorization value for a request, from what earlier challenges taught us; undefined before any challenge. */
  async authorization(request: HttpRequest): Promise<string | undefined> {
    const challenge = this.challenge;
    if (!challenge) return undefined;
    if (challenge.scheme === 'basic') {
      const creds = await this.credentials.get(this.host);
      return creds?.kind === 'basic' ? basicHeader(creds) : undefined;
    }
    if (challenge.scheme === 'bearer') {
      const scope = request.scope ?? challenge.params.scope ?? '';
      const cached = this.tokens.get(scope);
      if (cached && cached.expiresAt > this.now()) return `Bearer ${cached.value}`;
      return `Bearer ${await this.fetchTokenOnce(scope, challenge, request.signal)}`;
    }
    return undefined;
  }

  /**
   * Learns from a 401: remembers the challenge and drops the token that was refused. Returns whether
   * a retry with fresh authorization can succeed.
   */
  async learn(request: HttpRequest, refused: string | undefined, wwwAuthenticate: string | string[] | undefined): Promise<boolean> {
    const challenges = parseChallenges(wwwAuthenticate);
    const usable = challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
    if (!usable) return false;
    this.challenge = usable;
    if (usable.scheme === 'basic') {
      const creds = await this.credentials.get(this.host);
      // The same Basic credentials again would only be refused again.
      return creds?.kind === 'basic' && basicHeader(creds) !== refused;
    }
    const scope = request.scope ?? usable.params.scope ?? '';
    const cached = this.tokens.get(scope);
    if (cached && refused === `Bearer ${cached.value}`) this.tokens.delete(scope);
    return true;
  }

  private fetchTokenOnce(scope: string, challenge: Challenge, signal?: AbortSignal): Promise<string> {
    let inFlight = this.pending.get(scope);
    if (!inFlight) {
      inFlight = this.fetchToken(scope, challenge, signal).finally(() => this.pending.delete(scope));
      this.pending.set(scope, inFlight);
    }
    return inFlight;
  }

  private async fetchToken(scope: string, challenge: Challenge, signal?: AbortSignal): Promise<string> {
    const realmValue = challenge.params.realm;
    if (!realmValue) throw new AuthError(`registry ${this.host} sent a Bearer challenge without realm`);
    let realm: URL;
    try {
      realm = new URL(realmValue);
    } catch {
      throw new AuthError(`registry ${this.host} sent an invalid token realm`);
    }
    if (realm.protocol !== 'https:' && realm.protocol !== 'http:') throw new AuthError(`registry ${this.host} sent a token realm that is not http(s)`);
    const creds = await this.credentials.get(this.host);
    const service = challenge.params.service;
    const request: HttpRequest = { method: 'GET', url: new URL(realm), headers: {}, maxBodyBytes: MAX_TOKEN_RESPONSE_BYTES, labels: { kind: 'token' }, ...(signal ? { signal } : {}) };
    if (creds?.kind === 'identity-token') {
      // OAuth2 refresh-token grant, as docker does for identity tokens.
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.token, client_id: 'lazypull' });
      if (service) form.set('service', service);
      if (scope) form.set('scope', scope);
      request.method = 'POST';
      request.body = form.toString();
      request.headers['content-type'] = 'application/x-www-form-urlencoded';
    } else {
      if (service) request.url.searchParams.set('service', service);
      // A push that mounts from another repository needs two scopes: each is its own parameter.
      for (const one of scope.split(' ').filter(Boolean)) request.url.searchParams.append('scope', one);
      if (creds?.kind === 'basic') request.headers.authorization = basicHeader(creds);
    }
    const response = await this.tokenSend(request);
    if (response.status === 401 || response.status === 403) {
      throw new AuthError(`token server ${redactUrl(realm)} refused ${creds ? 'the credentials' : 'anonymous access'} for ${this.host} (HTTP ${response.status})`);
    }
    if (response.status !== 200) throw new HttpStatusError(request.method, realm, response.status, 'token request');
    let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
    try {
      parsed = JSON.parse(response.body.toString('utf8')) as typeof parsed;
    } catch {
      throw new AuthError(`token server ${redactUrl(realm)} answered with invalid JSON`);
    }
    const token = typeof parsed.token === 'string' && parsed.token ? parsed.token : parsed.access_token;
    if (typeof token !== 'string' || !token) throw new AuthError(`token server ${redactUrl(realm)} answered without a token`);
    const lifetimeS = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : DEFAULT_TOKEN_LIFETIME_S;
    const issuedAt = typeof parsed.issued_at === 'string' ? Date.parse(parsed.issued_at) : NaN;
    const start = Number.isNaN(issuedAt) ? this.now() : Math.min(issuedAt, this.now());
    const margin = Math.min(EXPIRY_MARGIN_MS, (lifetimeS * 1000) / 10);
    this.tokens.set(scope, { value: token, expiresAt: start + lifetimeS * 1000 - margin });
    return token;
  }
}

function basicHeader(creds: Extract<Credentials, { kind: 'basic' }>): string {
  return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
}

/**
 * Adds Authorization to requests for the authenticator's origin; on a 401 from that origin it learns
 * the challenge (or drops the refused token) and tries once more. A second 401 is returned for the
 * caller to report.
 */
export function authMiddleware(auth: Authenticator): Middleware {
  return (next) => async (request) => {
    if (request.url.origin !== auth.origin) return next(request);
    const first = await auth.authorization(request);
    const response = await next(withHeaders(request, { authorization: first }));
    if (response.status !== 401 || response.url.origin !== auth.origin) return response;
    if (!(await auth.learn(request, first, response.headers['www-authenticate']))) return response;
    const second = await auth.authorization(request);
    if (second === undefined || second === first) return response;
    return next(withHeaders(request, { authorization: second }));
  };
}
