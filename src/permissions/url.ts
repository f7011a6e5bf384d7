// WebFetch(domain:…) rules, URL parsing for fetch_url, and the private-address test.
//
// Rule syntax:
//   WebFetch(domain:api.github.com)   exactly that host (any port, http or https)
//   WebFetch(domain:*.example.com)    any subdomain of example.com at any depth, NOT example.com itself
//   WebFetch(domain:*) / WebFetch     any public host
// Hosts are compared after the same normalisation URL parsing applies (lowercase, IDN → punycode, IPv4
// spellings such as 0x7f.1 → 127.0.0.1), with trailing dots stripped.
//
// "Sensitive" hosts — IP literals that are not public unicast (see isPrivateAddress) and `localhost` /
// `*.localhost` — are allowed only by a rule naming that exact host; wildcards and bare WebFetch never
// reach them. Hostnames that *resolve* to such addresses (DNS rebinding) cannot be seen here: the fetch
// tool must call `checkResolvedAddress` on every address it connects to, and `checkUrl` again on every
// redirect.
import net from 'node:net';
import { domainToASCII } from 'node:url';

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
  if (net.isIP(host)) return isPrivateAddress(host) ? `${host} is a private, loopback, link-local or reserved address` : null;
  if (host === 'localhost' || host.endsWith('.localhost')) return `${host} is a loopback name`;
  return null;
}

// ---- Addresses ----

function parseIPv4(s: string): number[] | null {
  if (!net.isIPv4(s)) return null;
  return s.split('.').map(Number);
}

/** 8 hextets, or null. Handles `::` and an embedded IPv4 tail. */
function parseIPv6(s: string): number[] | null {
  if (!net.isIPv6(s)) return null;
  let str = s;
  let tail: number[] = [];
  const lastColon = s.lastIndexOf(':');
  const v4 = parseIPv4(s.slice(lastColon + 1));
  if (v4) {
    tail = [(v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]];
    str = s.slice(0, lastColon + 1); // "::ffff:" / "::" / "1:2:3:4:5:6:"
    if (!str.endsWith('::')) str = str.slice(0, -1); // drop the separator, keep a "::"
  }
  const [head, rest] = str.includes('::') ? str.split('::') : [str, null];
  const parse = (p: string): number[] => (p === '' ? [] : p.split(':').map((h) => parseInt(h, 16)));
  const h = parse(head);
  const r = rest === null ? [] : parse(rest);
  const fill = 8 - tail.length - h.length - r.length;
  if (fill < 0 || (rest === null && fill !== 0)) return null;
  return [...h, ...new Array<number>(fill).fill(0), ...r, ...tail];
}

function v4NotPublic([a, b, c]: number[]): boolean {
  return (
    a === 0 || // "this network", includes 0.0.0.0
    a === 10 ||
    (a === 100 && b >= 64 && b <= 127) || // carrier-grade NAT
    a === 127 ||
    (a === 169 && b === 254) || // link-local, cloud metadata
    (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 0 && (c === 0 || c === 2)) || // IETF protocol assignments, documentation
    (a === 192 && b === 168) ||
    (a === 198 && (b === 18 || b === 19)) || // benchmarking
    (a === 198 && b === 51 && c === 100) ||
    (a === 203 && b === 0 && c === 113) ||
    a >= 224 // multicast, reserved, broadcast
  );
}

/**
 * True for any address that is not public unicast: private (10/8, 172.16/12, 192.168/16, 100.64/10),
 * loopback (127/8, ::1), link-local (169.254/16, fe80::/10), unique-local (fc00::/7), unspecified
 * (0.0.0.0/8, ::), multicast/reserved/documentation ranges, all of ::/8 (so every IPv4-mapped
 * ::ffff:0:0/96 and IPv4-compatible ::/96 address, whatever IPv4 it embeds), Teredo, and NAT64/6to4
 * addresses embedding a non-public IPv4.
 * Accepts `[v6]` and zone ids (`fe80::1%eth0`). Anything that is not an IP literal returns true
 * (fail closed: callers pass resolved addresses, so a non-IP here is a bug).
 */
export function isPrivateAddress(ip: string): boolean {
  const s = ip.trim().replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '');
  const v4 = parseIPv4(s);
  if (v4) return v4NotPublic(v4);
  const h = parseIPv6(s);
  if (!h) return true;
  const embedded = (hi: number, lo: number): number[] => [hi >> 8, hi & 0xff, lo >> 8, lo & 0xff];
  if (h[0] === 0x64 && h[1] === 0xff9b) return h[2] !== 0 || v4NotPublic(embedded(h[6], h[7])); // NAT64 (local-use /48 too)
  // ::/8 is reserved: unspecified, loopback, IPv4-mapped/-compatible/-translated all live here.
  if ((h[0] & 0xff00) === 0) return true;
  if (h[0] === 0x2002) return v4NotPublic(embedded(h[1], h[2])); // 6to4
  if (h[0] === 0x2001 && h[1] === 0) return true; // Teredo: hides the real endpoint
  if (h[0] === 0x2001 && h[1] === 0xdb8) return true; // documentation
  if (h[0] === 0x100 && h[1] === 0 && h[2] === 0 && h[3] === 0) return true; // discard
  if ((h[0] & 0xfe00) === 0xfc00) return true; // unique-local fc00::/7
  if ((h[0] & 0xffc0) === 0xfe80 || (h[0] & 0xffc0) === 0xfec0) return true; // link-local, old site-local
  if ((h[0] & 0xff00) === 0xff00) return true; // multicast
  return false;
}
