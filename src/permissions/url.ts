// WebFetch(domain:…) rules and URL parsing for fetch_url (addresses are classified in address.ts).
//
// Rule syntax:
//   WebFetch(domain:api.github.com)   exactly that host (any port, http or https)
//   WebFetch(domain:*.example.com)    any subdomain of example.com at any depth, NOT example.com itself
//   WebFetch(domain:*) / WebFetch     any public host
// Hosts are compared after the same normalisation URL parsing applies (lowercase, IDN → punycode, IPv4
// spellings such as 0x7f.1 → 127.0.0.1), with trailing dots stripped.
//
// "Sensitive" hosts — IP literals that are not public unicast (see address.ts) and `localhost` /
// `*.localhost` — are allowed only by a rule naming that exact host; wildcards and bare WebFetch never
// reach them. Hostnames that *resolve* to such addresses (DNS rebinding) cannot be seen here: the fetch
// tool must call `checkResolvedAddress` on every address it connects to, and `checkUrl` again on every
// redirect.
import net from 'node:net';
import { domainToASCII } from 'node:url';
import { classifyAddress } from '../net/address.js';

export type HostPattern = { type: 'any' } | { type: 'exact'; host: string } | { type: 'suffix'; base: string };

const stripHost = (h: string): string => h.replace(/^\[(.*)\]$/, '$1').toLowerCase().replace(/\.+$/, '');

/** Normalise a host as written in a rule; null when it is not a plain host name or IP. */
function normaliseRuleHost(raw: string): string | null {
  if (raw === '' || /[/?#@\\\s%]/.test(raw)) return null;
  const bare = raw.replace(/^\[(.*)\]$/, '$1');
  if (net.isIPv6(bare)) return stripHost(new URL(`http://[${bare}]/`).hostname);
  if (raw.includes(':')) return null; // a port, or a malformed IPv6
  if (domainToASCII(raw) === '') return null;
  try {
    const u = new URL(`http://${raw}/`);
    const h = stripHost(u.hostname);
    return h === '' ? null : h;
  } catch {
    return null;
  }
}

export function parseHostPattern(spec: string): { ok: true; pattern: HostPattern } | { ok: false; error: string } {
  if (!spec.startsWith('domain:')) {
    return { ok: false, error: 'expected "domain:<host>", e.g. WebFetch(domain:api.github.com)' };
  }
  const raw = spec.slice('domain:'.length).trim();
  if (raw === '*') return { ok: true, pattern: { type: 'any' } };
  const wildcard = raw.startsWith('*.');
  const rest = wildcard ? raw.slice(2) : raw;
  if (rest.includes('*')) {
    return { ok: false, error: `"*" is only supported as a leading "*." (subdomains) or alone, not in "${raw}"` };
  }
  const host = normaliseRuleHost(rest);
  if (host === null) {
    return {
      ok: false,
      error: `"${raw}" is not a host name (no scheme, path, port or credentials), e.g. domain:api.github.com`,
    };
  }
  if (wildcard && net.isIP(host)) return { ok: false, error: `"*." cannot prefix an IP address ("${raw}")` };
  return { ok: true, pattern: wildcard ? { type: 'suffix', base: host } : { type: 'exact', host } };
}

export function hostMatches(p: HostPattern, host: string): boolean {
  if (p.type === 'any') return true;
  if (p.type === 'exact') return host === p.host;
  return host.endsWith(`.${p.base}`);
}

export type FetchTarget =
  | { ok: true; host: string; sensitive: string | null }
  | { ok: false; reason: string };

/** Parse a URL the fetch tool was asked for. `sensitive` says why only an exact-host rule may allow it. */
export function parseFetchUrl(url: unknown): FetchTarget {
  if (typeof url !== 'string' || url.trim() === '') return { ok: false, reason: 'url must be a non-empty string' };
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { ok: false, reason: `${JSON.stringify(url.slice(0, 200))} is not a valid absolute URL` };
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    return { ok: false, reason: `scheme "${u.protocol.replace(/:$/, '')}" is not allowed (http and https only)` };
  }
  const host = stripHost(u.hostname);
  if (host === '') return { ok: false, reason: 'URL has no host' };
  // Credentials in a URL are refused outright: they leak secrets into logs, and `user@host` is the classic
  // way to make a URL *look* like it targets an allowed host. The reason names the real host.
  if (u.username !== '' || u.password !== '') {
    return {
      ok: false,
      reason: `URL contains credentials before "@" (the host is actually ${host}); URLs with credentials are refused`,
    };
  }
  return { ok: true, host, sensitive: sensitiveHost(host) };
}

function sensitiveHost(host: string): string | null {
  if (net.isIP(host)) {
    const c = classifyAddress(host);
    return c.public ? null : `${host} is a private, loopback, link-local or reserved address (${c.range})`;
  }
  if (host === 'localhost' || host.endsWith('.localhost')) return `${host} is a loopback name`;
  return null;
}
