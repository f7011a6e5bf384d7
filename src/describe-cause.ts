// The text of a caught error, for a one-line message: `errorMessage` for anything thrown, `describeCause`
// for network failures (provider adapters, the downstream MCP client). A module of its own with no imports:
// the main thread, workers and the CLI all need it, and must not load the provider SDKs to get it.

/** The message of whatever was thrown (an Error's message, anything else as a string). */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** "fetch failed" alone is useless; walk the cause chain for e.g. "connect ECONNREFUSED 127.0.0.1:9". */
export function describeCause(err: unknown): string {
  const parts: string[] = [];
  for (let e: any = err, depth = 0; e && depth < 5; e = e.cause, depth++) {
    const msg = typeof e.message === 'string' ? e.message : String(e);
    if (msg && !parts.includes(msg) && !/^(Connection error\.|fetch failed)$/.test(msg)) parts.push(msg);
  }
  return parts.length ? parts.join(': ') : String(err);
}
