// Who may talk to `serve --http`: a bearer token (constant-time compare, never logged), and the Host
// and Origin checks that stop DNS rebinding and cross-site requests from a browser.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { isLoopbackHost } from '../net/loopback.js';

/** Compares a presented bearer token with the configured one without leaking where they differ. */
export class BearerToken {
  private readonly digest: Buffer;

  constructor(token: string) {
    this.digest = sha256(token);
  }

  /** 'ok', 'missing' (no Bearer credentials at all) or 'invalid'. */
  check(req: IncomingMessage): 'ok' | 'missing' | 'invalid' {
    const header = req.headers.authorization;
    if (!header) return 'missing';
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (!m) return 'invalid';
    // Equal-length digests: timingSafeEqual never sees the token's length or content.
    return timingSafeEqual(sha256(m[1]), this.digest) ? 'ok' : 'invalid';
  }
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** Host names (as the Host header carries them, without port) to accept for a bind address. */
export function allowedHostnames(bindHost: string, extra: string[]): string[] | undefined {
  const names = new Set(extra.map((h) => h.toLowerCase()));
  if (isLoopbackHost(bindHost)) {
    for (const h of ['localhost', '127.0.0.1', '[::1]']) names.add(h);
    const h = bindHost.toLowerCase();
    names.add(isIP(h) === 6 ? `[${h}]` : h);
    return [...names];
  }
  // Beyond loopback the token is mandatory; a Host check applies only when names are configured.
  return names.size ? [...names] : undefined;
}
