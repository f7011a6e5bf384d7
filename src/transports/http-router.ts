// Where each request of `serve --http` goes (the layout is in http.ts). In order: draining (503),
// Host/Origin (403), /healthz, /ui, the bearer token (401), then /mcp (the 2026-07-28 per-request
// handler, or a 2025-era session: 404 unknown, 429 at its run limit) and the legacy /sse + /messages.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isInitializeRequest, isLegacyRequest } from '@modelcontextprotocol/server';
import { log } from '../log.js';
import type { BearerToken } from './http-auth.js';
import type { RunSlots } from './http-limits.js';
import type { SessionTable } from './http-sessions.js';
import { callsStartingRuns, echoId, header, jsonError, messagesOf, NO_BODY, readJsonBody, RETRY_AFTER_RUNS_S, sessionNotFound, shuttingDown, tooMany, webHeaders, type JsonBody } from './http-wire.js';

type NodeHandler = (req: IncomingMessage, res: ServerResponse, body?: unknown) => Promise<void>;
/** The SDK's Host / Origin checks: answer 403 themselves and return false. */
type Validation = (req: IncomingMessage, res: ServerResponse) => boolean;

export interface HttpRouterOptions {
  maxBodyBytes: number;
  maxRunsPerSession: number;
  token: BearerToken | undefined;
  validateHost: Validation | undefined;
  validateOrigin: Validation;
  sessions: SessionTable;
  slots: Pick<RunSlots, 'count'>;
  /** The 2026-07-28 leg (the SDK's per-request handler). */
  modern: NodeHandler;
  /** The /ui page and its API; true when it answered. */
  ui: { handle(req: IncomingMessage, res: ServerResponse, path: string, url: URL): boolean };
  /** Whether a tools/call of this name starts a run (counted against the session's run limit). */
  startsRun: (name: unknown) => boolean;
}

export class HttpRouter {
  /** Draining: new work is refused with 503 (see route). */
  closing = false;
  openRequests = 0;

  constructor(private readonly opts: HttpRouterOptions) {}

  async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { opts } = this;
    this.openRequests++;
    res.on('close', () => this.openRequests--);
    // Draining: the listener stays open so new work gets a 503 (not ECONNREFUSED) until the grace
    // ends; a session's own traffic that starts nothing (cancellations, answers to its approvals) passes.
    if (this.closing && !(req.method === 'POST' && opts.sessions.has(header(req, 'mcp-session-id') ?? ''))) return shuttingDown(res);
    // DNS rebinding and cross-site requests first: these answer 403 themselves.
    if (opts.validateHost && !opts.validateHost(req, res)) return;
    if (!opts.validateOrigin(req, res)) return;
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, '') : url.pathname;
    if (path === '/healthz') return healthz(req, res);
    if (opts.ui.handle(req, res, path, url)) return;
    if (opts.token && !authorized(opts.token, req, res, path)) return;
    if (path === '/mcp') return this.mcp(req, res);
    if (path === '/sse') {
      if (req.method !== 'GET') return jsonError(res, 405, 'Method not allowed.', { headers: { allow: 'GET' } });
      return opts.sessions.openSse(res);
    }
    if (path === '/messages') {
      if (req.method !== 'POST') return jsonError(res, 405, 'Method not allowed.', { headers: { allow: 'POST' } });
      return this.sseMessage(req, res, url);
    }
    jsonError(res, 404, `Not found: ${path} (MCP is served at /mcp; legacy SSE at /sse)`);
  }

  /** /mcp: the 2026-07-28 leg, or a 2025-era session (opened by initialize, then named by Mcp-Session-Id). */
  private async mcp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { opts } = this;
    const sid = header(req, 'mcp-session-id');
    if (req.method === 'POST') {
      const body = await readJsonBody(req, res, opts.maxBodyBytes);
      if (body === NO_BODY) return;
      // Routing uses the SDK's own isLegacyRequest, so the two legs never disagree.
      const probe = new Request(`http://localhost${req.url ?? '/mcp'}`, { method: 'POST', headers: webHeaders(req) });
      if (!(await isLegacyRequest(probe, body))) {
        await opts.modern(req, res, body);
        return;
      }
      if (this.closing && messagesOf(body).some((m) => m.method === 'tools/call' || m.method === 'initialize')) return shuttingDown(res, body);
      if (sid) {
        const s = opts.sessions.get(sid, 'streamable');
        if (!s) return sessionNotFound(res, body);
        if (this.atRunLimit(s.owner, body)) return tooMany(res, 'runs', RETRY_AFTER_RUNS_S, body);
        await opts.sessions.exchange(s, req, res, body);
        return;
      }
      if (isInitializeRequest(body)) return opts.sessions.openStreamable(req, res, body);
      return jsonError(res, 400, 'Bad Request: Mcp-Session-Id header is required (send initialize first, or use protocol 2026-07-28)', { id: echoId(body) });
    }
    if (req.method === 'GET' || req.method === 'DELETE') {
      if (!sid) return jsonError(res, 400, 'Bad Request: Mcp-Session-Id header is required');
      const s = opts.sessions.get(sid, 'streamable');
      if (!s) return sessionNotFound(res);
      await opts.sessions.exchange(s, req, res);
      return;
    }
    jsonError(res, 405, 'Method not allowed.', { headers: { allow: 'GET, POST, DELETE' } });
  }

  /** POST /messages?sessionId=…: a message of a legacy SSE session. */
  private async sseMessage(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const { opts } = this;
    const sid = url.searchParams.get('sessionId');
    if (!sid) return jsonError(res, 400, 'Bad Request: sessionId query parameter is required');
    const s = opts.sessions.get(sid, 'sse');
    if (!s) return sessionNotFound(res);
    const body = await readJsonBody(req, res, opts.maxBodyBytes);
    if (body === NO_BODY) return;
    if (this.atRunLimit(s.owner, body)) return tooMany(res, 'runs', RETRY_AFTER_RUNS_S, body);
    await opts.sessions.exchange(s, req, res, body);
  }

  /** A further run-starting call of a session at its limit gets 429 (calls already in flight wait for a slot). */
  private atRunLimit(owner: string, body: JsonBody): boolean {
    return callsStartingRuns(body, this.opts.startsRun) && this.opts.slots.count(owner) >= this.opts.maxRunsPerSession;
  }
}

function healthz(req: IncomingMessage, res: ServerResponse): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') return jsonError(res, 405, 'Method not allowed.', { headers: { allow: 'GET, HEAD' } });
  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(req.method === 'HEAD' ? undefined : '{"ok":true}');
}

/** Checks the bearer token; answers 401 (with the WWW-Authenticate the case needs) and returns false when it fails. */
function authorized(token: BearerToken, req: IncomingMessage, res: ServerResponse, path: string): boolean {
  const verdict = token.check(req);
  if (verdict === 'ok') return true;
  log.debug(`http 401 (${verdict} token) ${req.method} ${path} from ${req.socket.remoteAddress}`);
  jsonError(res, 401, verdict === 'missing' ? 'Unauthorized: bearer token required' : 'Unauthorized: invalid bearer token', {
    headers: { 'www-authenticate': verdict === 'missing' ? 'Bearer realm="delegate-mcp"' : 'Bearer realm="delegate-mcp", error="invalid_token"' },
  });
  return false;
}
