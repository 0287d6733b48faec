/**
 * Secrets reach this module in URLs (userinfo, pre-signed storage query strings) and headers
 * (Authorization, tokens). Everything that ends up in a log line or an error message goes through here
 * first, so that a leaked message never carries a credential.
 */

const SENSITIVE_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-registry-auth']);

/** The URL without userinfo and with every query value replaced: storage signatures live in the query. */
export function redactUrl(url: URL | string): string {
  let parsed: URL;
  try {
    parsed = new URL(String(url));
  } catch {
    return '<invalid url>';
  }
  parsed.username = '';
  parsed.password = '';
  const names = [...new Set([...parsed.searchParams.keys()])];
  parsed.search = '';
  const query = names.map((name) => `${encodeURIComponent(name)}=REDACTED`).join('&');
  return query ? `${parsed.toString()}?${query}` : parsed.toString();
}

export function redactHeaders(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    out[name] = SENSITIVE_HEADERS.has(name.toLowerCase()) ? 'REDACTED' : value;
  }
  return out;
}
