// The one IP classifier: is an address public unicast, or one a model-initiated request must not reach
// unless a rule names it exactly? Used by the permission rules (literal hosts in URLs), fetch_url's
// literal hosts and every address it resolves and connects to. ipaddr.js parses and knows the special
// ranges; the policy below decides, and fails closed: anything not a well-formed IP is non-public.
//
// Addresses that embed an IPv4 address are judged by what they reach:
//   IPv4-mapped ::ffff:a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002:AABB:CCDD::/48  → the embedded IPv4 decides
//   NAT64 local-use 64:ff9b:1::/48 (site-defined embedding), Teredo 2001::/32 (obfuscated endpoint),
//   IPv4-compatible ::a.b.c.d and the rest of ::/8, IPv4-translated ::ffff:0:a.b.c.d → refused
// Public IPv6 is global unicast (2000::/3) outside every special range; public IPv4 is unicast outside
// every special range (RFC 1918, loopback, link-local, CGNAT, documentation, benchmarking, reserved…).
import ipaddr from 'ipaddr.js';

export interface AddressClass {
  public: boolean;
  /** The range that decided, e.g. "private", "loopback", "teredo", "ipv4Mapped → private". */
  range: string;
}

/** Anycast services in the global routing table count as public. */
const PUBLIC_V4 = new Set(['unicast', 'as112', 'amt']);
const PUBLIC_V6 = new Set(['unicast', 'as112v6', 'amt']);

function classifyV4(a: ipaddr.IPv4): AddressClass {
  const range = a.range();
  return { public: PUBLIC_V4.has(range), range };
}

function embedded(parts: number[], hi: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([parts[hi] >> 8, parts[hi] & 0xff, parts[hi + 1] >> 8, parts[hi + 1] & 0xff]);
}

function classifyV6(a: ipaddr.IPv6): AddressClass {
  const p = a.parts;
  const range = a.range();
  const via = (name: string, v4: ipaddr.IPv4): AddressClass => {
    const c = classifyV4(v4);
    return { public: c.public, range: `${name} → ${c.range}` };
  };
  if (range === 'ipv4Mapped') return via(range, embedded(p, 6));
  if (range === 'rfc6052') {
    // Only the well-known /96 has a fixed embedding; the local-use /48 is the site's own.
    return p[2] === 0 && p[3] === 0 && p[4] === 0 && p[5] === 0 ? via('nat64', embedded(p, 6)) : { public: false, range: 'nat64 local-use' };
  }
  if (range === '6to4') return via(range, embedded(p, 1));
  if ((p[0] & 0xff00) === 0) return { public: false, range: range === 'unicast' ? 'reserved ::/8' : range };
  if ((p[0] & 0xe000) !== 0x2000) return { public: false, range: range === 'unicast' ? 'not global unicast' : range };
  return { public: PUBLIC_V6.has(range), range };
}

/** Classifies an IP literal (`[v6]` and `%zone` accepted). Not an IP address: non-public. */
export function classifyAddress(ip: string): AddressClass {
  const s = ip.trim().replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '');
  if (ipaddr.IPv4.isValidFourPartDecimal(s)) return classifyV4(ipaddr.IPv4.parse(s));
  if (s.includes(':')) {
    const v6 = hexTail(s);
    if (v6 !== null && ipaddr.IPv6.isValid(v6)) return classifyV6(ipaddr.IPv6.parse(v6));
  }
  return { public: false, range: 'not an IP address' };
}

/**
 * A dotted IPv4 tail as two hex groups. ipaddr.js reads "::1.2.3.4" (IPv4-compatible) as
 * "::ffff:1.2.3.4" (IPv4-mapped); written in hex, each form keeps its own meaning.
 */
function hexTail(s: string): string | null {
  const i = s.lastIndexOf(':');
  const tail = s.slice(i + 1);
  if (!tail.includes('.')) return s;
  if (!ipaddr.IPv4.isValidFourPartDecimal(tail)) return null;
  const [a, b, c, d] = ipaddr.IPv4.parse(tail).octets;
  return `${s.slice(0, i + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
}

/** True for every address that is not public unicast (see classifyAddress). */
export function isPrivateAddress(ip: string): boolean {
  return !classifyAddress(ip).public;
}
