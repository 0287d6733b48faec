export interface Challenge {
  /** Lower-case scheme: `basic`, `bearer`, ... */
  scheme: string;
  /** Lower-case parameter names. */
  params: Record<string, string>;
}

/**
 * Parses WWW-Authenticate values (RFC 7235): `Bearer realm="...",service="...",scope="a,b"`.
 * Several challenges may share one header or come in separate headers.
 */
export function parseChallenges(values: string | string[] | undefined): Challenge[] {
  const list = values === undefined ? [] : Array.isArray(values) ? values : [values];
  const challenges: Challenge[] = [];
  for (const value of list) {
    let i = 0;
    let current: Challenge | undefined;
    const skipSpaceAndCommas = (): void => {
      while (i < value.length && (value[i] === ' ' || value[i] === ',' || value[i] === '\t')) i++;
    };
    while (i < value.length) {
      skipSpaceAndCommas();
      const tokenMatch = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/.exec(value.slice(i));
      if (!tokenMatch) break;
      const token = tokenMatch[0];
      i += token.length;
      while (value[i] === ' ') i++;
      if (value[i] === '=' && current) {
        i++;
        while (value[i] === ' ') i++;
        let paramValue = '';
        if (value[i] === '"') {
          i++;
          while (i < value.length && value[i] !== '"') {
            if (value[i] === '\\') i++;
            paramValue += value[i] ?? '';
            i++;
          }
          i++;
        } else {
          const bare = /^[^,\s]*/.exec(value.slice(i))?.[0] ?? '';
          paramValue = bare;
          i += bare.length;
        }
        current.params[token.toLowerCase()] = paramValue;
      } else {
        current = { scheme: token.toLowerCase(), params: {} };
        challenges.push(current);
      }
    }
  }
  return challenges;
}
