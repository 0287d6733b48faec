/** What a user proved their identity with. Never logged, never put into an error message. */
export type Credentials = { kind: 'basic'; username: string; password: string } | { kind: 'identity-token'; token: string };

/** Finds credentials for a registry host (host[:port] as it appears in URLs). */
export interface CredentialStore {
  get(host: string): Promise<Credentials | undefined>;
}

/** Credentials fixed in lazypull's own config, keyed by host[:port]. */
export class StaticCredentialStore implements CredentialStore {
  constructor(private readonly byHost: Record<string, { username?: string; password?: string; identityToken?: string }>) {}

  async get(host: string): Promise<Credentials | undefined> {
    const entry = this.byHost[host];
    if (entry?.identityToken) return { kind: 'identity-token', token: entry.identityToken };
    if (entry?.username !== undefined && entry.password !== undefined) return { kind: 'basic', username: entry.username, password: entry.password };
    return undefined;
  }
}

/** The first store that knows the host wins; lazypull's config comes before docker's config.json. */
export function chainCredentialStores(...stores: CredentialStore[]): CredentialStore {
  return {
    async get(host) {
      for (const store of stores) {
        const found = await store.get(host);
        if (found) return found;
      }
      return undefined;
    },
  };
}
