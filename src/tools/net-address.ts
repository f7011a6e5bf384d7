// Classifies IP addresses for fetch_url's SSRF / DNS-rebinding defence: is this an address a
// model-initiated request must not reach (unless the host is explicitly allowed)?
// Fails closed: anything that is not a well-formed IPv4/IPv6 address counts as private.

/** Parses a dotted-quad IPv4 address (exactly four decimal parts, 0–255). */
export function parseIPv4(ip: string): [number, number, number, number] | null {
  const parts = ip.split('.');
  if (parts.length !== 4) return null;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out.push(n);
  }
  return out as [number, number, number, number];
}

/** Parses an IPv6 address (with `::`, an embedded dotted quad, an optional `%zone`) into 8 groups. */
export function parseIPv6(input: string): number[] | null {
  let ip = input;
  if (ip.startsWith('[') && ip.endsWith(']')) ip = ip.slice(1, -1);
  const zone = ip.indexOf('%');
  if (zone !== -1) ip = ip.slice(0, zone);
  if (ip === '' || !/^[0-9a-fA-F:.]+$/.test(ip)) return null;

  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two groups.
  let tail: number[] = [];
  const lastColon = ip.lastIndexOf(':');
  if (ip.includes('.')) {
    const v4 = parseIPv4(ip.slice(lastColon + 1));
    if (!v4) return null;
    tail = [(v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]];
    ip = ip.slice(0, lastColon + 1);
    if (ip.endsWith('::')) {
      // keep as is: "::" followed by the v4 groups
    } else if (ip.endsWith(':')) {
      ip = ip.slice(0, -1);
    }
  }

  const halves = ip.split('::');
  if (halves.length > 2) return null;
  const parseGroups = (s: string): number[] | null => {
    if (s === '') return [];
    const groups = s.split(':');
    const out: number[] = [];
    for (const g of groups) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const left = parseGroups(halves[0]);
  if (!left) return null;
  if (halves.length === 1) {
    const all = [...left, ...tail];
    return all.length === 8 ? all : null;
  }
  const right = parseGroups(halves[1]);
  if (!right) return null;
  const known = left.length + right.length + tail.length;
  if (known > 7) return null; // "::" stands for at least one zero group
  return [...left, ...new Array<number>(8 - known).fill(0), ...right, ...tail];
}

function isPrivateV4([a, b, c]: [number, number, number, number]): boolean {
  return (
    a === 0 || // 0.0.0.0/8 "this network" (0.0.0.0 reaches localhost on Linux)
    a === 10 || // 10.0.0.0/8
    a === 127 || // loopback
    (a === 100 && b >= 64 && b <= 127) || // 100.64.0.0/10 carrier-grade NAT
    (a === 169 && b === 254) || // link-local (cloud metadata 169.254.169.254)
    (a === 172 && b >= 16 && b <= 31) || // 172.16.0.0/12
    (a === 192 && b === 168) || // 192.168.0.0/16
    (a === 192 && b === 0 && c === 0) || // 192.0.0.0/24 IETF protocol assignments
    (a === 198 && (b === 18 || b === 19)) || // 198.18.0.0/15 benchmarking
    a >= 224 // multicast 224/4, reserved 240/4, broadcast
  );
}

function v4FromGroups(hi: number, lo: number): [number, number, number, number] {
  return [hi >> 8, hi & 0xff, lo >> 8, lo & 0xff];
}

/**
 * True when `ip` is loopback, private, link-local, unique-local, unspecified, carrier-grade NAT,
 * multicast/reserved, or an IPv6 form embedding such an IPv4 address (IPv4-mapped ::ffff:a.b.c.d,
 * IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16). Malformed input counts as private.
 */
export function isPrivateAddress(ip: string): boolean {
  const v4 = parseIPv4(ip);
  if (v4) return isPrivateV4(v4);
  const g = parseIPv6(ip);
  if (!g) return true;
  const zeroPrefix = (n: number): boolean => g.slice(0, n).every((x) => x === 0);
  if (zeroPrefix(8)) return true; // ::
  if (zeroPrefix(7) && g[7] === 1) return true; // ::1
  if (zeroPrefix(5) && g[5] === 0xffff) return isPrivateV4(v4FromGroups(g[6], g[7])); // ::ffff:a.b.c.d
  if (zeroPrefix(6)) return isPrivateV4(v4FromGroups(g[6], g[7])); // ::a.b.c.d (deprecated)
  if (zeroPrefix(4) && g[4] === 0xffff && g[5] === 0) return isPrivateV4(v4FromGroups(g[6], g[7])); // ::ffff:0:a.b.c.d
  if (g[0] === 0x64 && g[1] === 0xff9b && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0) {
    return isPrivateV4(v4FromGroups(g[6], g[7])); // NAT64 64:ff9b::/96
  }
  if (g[0] === 0x2002) return isPrivateV4(v4FromGroups(g[1], g[2])); // 6to4
  if ((g[0] & 0xffc0) === 0xfe80) return true; // fe80::/10 link-local
  if ((g[0] & 0xffc0) === 0xfec0) return true; // fec0::/10 site-local (deprecated)
  if ((g[0] & 0xfe00) === 0xfc00) return true; // fc00::/7 unique-local
  if ((g[0] & 0xff00) === 0xff00) return true; // ff00::/8 multicast
  if (g[0] === 0x2001 && g[1] === 0xdb8) return true; // documentation
  return false;
}
