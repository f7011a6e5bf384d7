// Error text for network failures, shared by the provider adapters and the downstream MCP client. A module
// of its own: the main thread needs it too, and must not load the provider SDKs (shared.ts) to get it.

/** "fetch failed" alone is useless; walk the cause chain for e.g. "connect ECONNREFUSED 127.0.0.1:9". */
export function describeCause(err: unknown): string {
  const parts: string[] = [];
  for (let e: any = err, depth = 0; e && depth < 5; e = e.cause, depth++) {
    const msg = typeof e.message === 'string' ? e.message : String(e);
    if (msg && !parts.includes(msg) && !/^(Connection error\.|fetch failed)$/.test(msg)) parts.push(msg);
  }
  return parts.length ? parts.join(': ') : String(err);
}
