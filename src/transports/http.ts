// `serve --http`: MCP over HTTP, both protocol eras and the legacy HTTP+SSE transport, on one port.
//
//   POST/GET/DELETE /mcp   Streamable HTTP. A request carrying the 2026-07-28 `_meta` envelope goes to
//                          the SDK's per-request handler (createMcpHandler, legacy: 'reject'); 2025-era
//                          traffic (initialize, then Mcp-Session-Id) is served SESSIONFUL by one
//                          NodeStreamableHTTPServerTransport + McpServer per session, so push
//                          elicitation (approvals) and progress streams work. Routing uses the SDK's
//                          own isLegacyRequest, so the two legs never disagree.
//   GET /sse, POST /messages   the deprecated HTTP+SSE transport (@modelcontextprotocol/server-legacy).
//   GET /healthz           {"ok":true}; no token, no details.
//
// In front of all of it: Host/Origin checks (403), the bearer token (401), body size (413), unknown
// session (404) and session/run limits (429). Every session gets its own McpServer and its own run
// owner id, so one client can never see, cancel or read another's runs, progress or results.
import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createMcpHandler, isInitializeRequest, isLegacyRequest, type McpServer } from '@modelcontextprotocol/server';
import { NodeStreamableHTTPServerTransport, hostHeaderValidation, originValidation, toNodeHandler } from '@modelcontextprotocol/node';
import { SSEServerTransport } from '@modelcontextprotocol/server-legacy/sse';
import { createUiHandler } from '../ui/handler.js';
import { log } from '../log.js';
import { SESSIONLESS_OWNER_PREFIX } from '../orchestrator/runs.js';
import type { Orchestrator } from '../orchestrator/orchestrator.js';
import { BearerToken, allowedHostnames } from './http-auth.js';
import type { HttpConfig } from '../config/http-config.js';
import { RunSlots, SlottedLauncher } from './http-limits.js';
import { SessionEventStore, streamOfEventId } from './event-store.js';
import { buildServer } from '../mcp/server.js';

export interface HttpServeOptions {
  host: string;
  port: number;
  /** When set, every request but /healthz must carry `Authorization: Bearer <token>`. */
  token?: string;
  limits: Pick<HttpConfig, 'maxBodyBytes' | 'maxSessions' | 'maxRunsPerSession' | 'sessionIdleS' | 'allowedHosts' | 'allowedOrigins'> & { resumeGraceS?: number };
}

export interface HttpServerHandle {
  /** http://host:port (no path). */
  url: string;
  port: number;
  /** Stops taking new work (new requests get 503; the listener stays open) and waits up to graceMs for running runs to end. */
  drain(graceMs: number): Promise<void>;
  /** Ends every session and connection. */
  close(): Promise<void>;
  stats(): { sessions: number; sse: number; openRequests: number; runs: number };
}

interface Session {
  kind: 'streamable' | 'sse';
  id: string;
  /** Run owner id: what scopes runs, run_status/result/cancel and artifacts to this session. */
  owner: string;
  server: McpServer;
  transport: NodeStreamableHTTPServerTransport | SSEServerTransport;
  /** HTTP exchanges (POSTs, the GET stream) of this session still open. */
  open: number;
  lastActive: number;
  closed: boolean;
  keepAlive?: NodeJS.Timeout;
  /** Response streams that dropped before their response, by stream id: cancelled unless resumed in time. */
  dropped?: Map<string, { ids: (string | number)[]; timer: NodeJS.Timeout }>;
}

const RETRY_AFTER_SESSIONS_S = 30;
const RETRY_AFTER_RUNS_S = 5;
/** A session idle at least this long may be closed to make room for a new one at maxSessions. */
const EVICT_MIN_IDLE_MS = 2_000;
const SSE_KEEPALIVE_MS = 15_000;
/** What a client is told (SSE `retry`) to wait before reconnecting a dropped stream. */
const RESUME_RETRY_MS = 1_000;
/** JSON-RPC error code the SDK uses for "Session not found". */
const SESSION_NOT_FOUND = -32001;

type JsonBody = unknown;

export async function startHttpServer(orchestrator: Orchestrator, opts: HttpServeOptions): Promise<HttpServerHandle> {
  const { limits } = opts;
  const token = opts.token ? new BearerToken(opts.token) : undefined;
  const hostNames = allowedHostnames(opts.host, limits.allowedHosts);
  const validateHost = hostNames ? hostHeaderValidation(hostNames) : undefined;
  const validateOrigin = originValidation(['localhost', '127.0.0.1', '[::1]', ...limits.allowedOrigins]);
  // The runs page (/ui): same Host/Origin checks as /mcp; its data API checks the same token itself.
  const ui = createUiHandler({
    auditDir: orchestrator.cfg.auditDir,
    token,
    live: () => orchestrator.runs.list().filter((r) => r.status === 'running').map((r) => ({ run_id: r.runId, turn: r.turn, progress: r.lastProgress })),
  });
  const slots = new RunSlots(limits.maxRunsPerSession);
  const sessions = new Map<string, Session>();
  let openRequests = 0;
  let closing = false;

  const sdkError = (leg: string) => (err: Error) => log.debug(`http ${leg}: ${err.message}`);
  const scopedServer = (owner: string) => buildServer({ orchestrator, launcher: new SlottedLauncher(slots, orchestrator, owner) }, owner);

  // 2026-07-28: one instance per request (the era has no sessions); each request is its own owner,
  // and a background run is reached later through its run id (see SESSIONLESS_OWNER_PREFIX).
  const modern = createMcpHandler(() => scopedServer(`${SESSIONLESS_OWNER_PREFIX}${randomUUID()}`), {
    legacy: 'reject',
    maxRequestBodySize: limits.maxBodyBytes,
    onerror: sdkError('2026-07-28'),
  });
  const modernNode = toNodeHandler(modern, { maxRequestBodySize: limits.maxBodyBytes, onerror: sdkError('2026-07-28') });

  const startsRun = (name: unknown) =>
    typeof name === 'string' && (name === 'delegate' || name === 'delegate_parallel' || orchestrator.agents.get(name) !== undefined);

  function endSession(s: Session, why: string): void {
    if (s.closed) return;
    s.closed = true;
    sessions.delete(s.id);
    if (s.keepAlive) clearInterval(s.keepAlive);
    for (const d of s.dropped?.values() ?? []) clearTimeout(d.timer);
    // Nobody can reach this session's runs any more: background runs go with it.
    const running = orchestrator.runs.list(s.owner).filter((r) => r.status === 'running');
    for (const r of running) r.cancel('cancelled');
    log.debug(`http ${s.kind} session ${s.id.slice(0, 8)} ended (${why})${running.length ? `; cancelled ${running.length} run(s)` : ''}`);
    void s.server.close().catch(() => {}); // the session is gone: a failed close of its server instance leaves nothing to do
  }

  const resumeGraceMs = (limits.resumeGraceS ?? 0) * 1000;
  const cancelFor = (s: Session, ids: (string | number)[], reason: string) => {
    if (s.closed) return;
    for (const id of ids) s.transport.onmessage?.({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id, reason } });
  };

  /**
   * One HTTP exchange of a session: counted while open. A request whose response stream drops is
   * cancelled, at once when it cannot be resumed, else after resumeGraceS unless the client comes back
   * with Last-Event-ID (the 2025-11-25 spec: a disconnect SHOULD NOT be taken as cancellation).
   */
  async function exchange(s: Session, req: IncomingMessage, res: ServerResponse, body?: JsonBody): Promise<void> {
    s.open++;
    s.lastActive = Date.now();
    const lastEventId = req.method === 'GET' ? header(req, 'last-event-id') : undefined;
    const resumed = lastEventId !== undefined ? streamOfEventId(lastEventId) : undefined;
    const back = resumed !== undefined ? s.dropped?.get(resumed) : undefined;
    if (back) {
      clearTimeout(back.timer);
      s.dropped!.delete(resumed!);
    }
    // The ids this exchange answers: its own requests, or those of the stream it resumes.
    const ids = s.kind === 'streamable' ? (back ? back.ids : requestIds(body)) : [];
    // The stream's id, from the first SSE event id written (SessionEventStore ids are <stream>_<n>).
    let streamId = resumed;
    if (s.dropped && ids.length && streamId === undefined) {
      const write = res.write.bind(res) as (...a: unknown[]) => boolean;
      (res as unknown as { write: (...a: unknown[]) => boolean }).write = (...a: unknown[]) => {
        const chunk = a[0];
        if (streamId === undefined && (typeof chunk === 'string' || chunk instanceof Uint8Array)) {
          const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('utf8');
          const m = /^id: (\S+)$/m.exec(text);
          if (m) streamId = streamOfEventId(m[1]);
        }
        return write(...a);
      };
    }
    res.on('close', () => {
      s.open--;
      s.lastActive = Date.now();
      // The 2025 era cancels with notifications/cancelled; a client that vanished sends none. Its
      // response stream closing before the response was complete is the only sign.
      if (res.writableFinished || !ids.length || s.closed) return;
      if (!s.dropped || streamId === undefined) return cancelFor(s, ids, 'client disconnected');
      const dropped = s.dropped;
      const sid = streamId;
      const timer = setTimeout(() => {
        dropped.delete(sid);
        cancelFor(s, ids, `client disconnected and did not resume within ${resumeGraceMs / 1000} s`);
      }, resumeGraceMs);
      timer.unref();
      dropped.set(sid, { ids, timer });
    });
    if (s.transport instanceof SSEServerTransport) await s.transport.handlePostMessage(req, res, body);
    else await s.transport.handleRequest(req, res, body);
  }

  const idle = (s: Session, now: number) => s.kind === 'streamable' && s.open === 0 && slots.count(s.owner) === 0 && now - s.lastActive >= EVICT_MIN_IDLE_MS;

  /**
   * At the session limit, the session idle longest (no open stream or request, no running run) makes
   * room: many clients never send DELETE, and a client that still holds its GET stream is never idle.
   */
  function roomForSession(): boolean {
    if (sessions.size < limits.maxSessions) return true;
    const now = Date.now();
    let victim: Session | undefined;
    for (const s of sessions.values()) if (idle(s, now) && (!victim || s.lastActive < victim.lastActive)) victim = s;
    if (!victim) return false;
    void victim.transport.close().catch(() => {}); // eviction: the transport is dropped either way
    endSession(victim, `evicted after ${Math.round((now - victim.lastActive) / 1000)} s idle to make room (delegate.http.maxSessions)`);
    return true;
  }

  async function openStreamableSession(req: IncomingMessage, res: ServerResponse, body: JsonBody): Promise<void> {
    if (!roomForSession()) return tooMany(res, 'sessions', RETRY_AFTER_SESSIONS_S, body);
    const id = randomUUID();
    const owner = `http_${randomUUID()}`;
    const resumable = resumeGraceMs > 0;
    const transport = new NodeStreamableHTTPServerTransport({
      sessionIdGenerator: () => id,
      maxRequestBodySize: limits.maxBodyBytes,
      ...(resumable && { eventStore: new SessionEventStore(), retryInterval: RESUME_RETRY_MS }),
    });
    const s: Session = {
      kind: 'streamable',
      id,
      owner,
      server: scopedServer(owner),
      transport,
      open: 0,
      lastActive: Date.now(),
      closed: false,
      ...(resumable && { dropped: new Map() }),
    };
    sessions.set(id, s);
    transport.onclose = () => endSession(s, 'closed');
    transport.onerror = sdkError('session');
    await s.server.connect(transport);
    await exchange(s, req, res, body);
    // An initialize the transport refused (bad Accept header, …) leaves no session behind.
    if (transport.sessionId === undefined) endSession(s, 'initialize refused');
  }

  async function openSseSession(_req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!roomForSession()) return tooMany(res, 'sessions', RETRY_AFTER_SESSIONS_S);
    const owner = `sse_${randomUUID()}`;
    const transport = new SSEServerTransport('/messages', res);
    const s: Session = { kind: 'sse', id: transport.sessionId, owner, server: scopedServer(owner), transport, open: 1, lastActive: Date.now(), closed: false };
    sessions.set(s.id, s);
    // The stream is the session: when it closes, the server's in-flight calls abort (their runs cancel).
    transport.onclose = () => endSession(s, 'stream closed');
    transport.onerror = sdkError('sse');
    res.on('close', () => {
      s.open--;
      endSession(s, 'stream closed');
    });
    await s.server.connect(transport as unknown as Parameters<McpServer['connect']>[0]);
    s.keepAlive = setInterval(() => {
      if (!res.writableEnded) res.write(': keepalive\n\n');
    }, SSE_KEEPALIVE_MS);
  }

  async function handleMcp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const sid = header(req, 'mcp-session-id');
    if (req.method === 'POST') {
      const body = await readJsonBody(req, res, limits.maxBodyBytes);
      if (body === NO_BODY) return;
      const probe = new Request(`http://localhost${req.url ?? '/mcp'}`, { method: 'POST', headers: webHeaders(req) });
      if (!(await isLegacyRequest(probe, body))) {
        await modernNode(req, res, body);
        return;
      }
      if (closing && messagesOf(body).some((m) => m.method === 'tools/call' || m.method === 'initialize')) return shuttingDown(res, body);
      if (sid) {
        const s = sessions.get(sid);
        if (!s || s.kind !== 'streamable') return sessionNotFound(res, body);
        if (callsStartingRuns(body, startsRun) && slots.count(s.owner) >= limits.maxRunsPerSession) {
          return tooMany(res, 'runs', RETRY_AFTER_RUNS_S, body);
        }
        await exchange(s, req, res, body);
        return;
      }
      if (isInitializeRequest(body)) return openStreamableSession(req, res, body);
      return jsonError(res, 400, 'Bad Request: Mcp-Session-Id header is required (send initialize first, or use protocol 2026-07-28)', { id: echoId(body) });
    }
    if (req.method === 'GET' || req.method === 'DELETE') {
      if (!sid) return jsonError(res, 400, 'Bad Request: Mcp-Session-Id header is required');
      const s = sessions.get(sid);
      if (!s || s.kind !== 'streamable') return sessionNotFound(res);
      await exchange(s, req, res);
      return;
    }
    jsonError(res, 405, 'Method not allowed.', { headers: { allow: 'GET, POST, DELETE' } });
  }

  async function handleSseMessage(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const sid = url.searchParams.get('sessionId');
    if (!sid) return jsonError(res, 400, 'Bad Request: sessionId query parameter is required');
    const s = sessions.get(sid);
    if (!s || s.kind !== 'sse') return sessionNotFound(res);
    const body = await readJsonBody(req, res, limits.maxBodyBytes);
    if (body === NO_BODY) return;
    if (callsStartingRuns(body, startsRun) && slots.count(s.owner) >= limits.maxRunsPerSession) {
      return tooMany(res, 'runs', RETRY_AFTER_RUNS_S, body);
    }
    await exchange(s, req, res, body);
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    openRequests++;
    res.on('close', () => openRequests--);
    // Draining: the listener stays open so new work gets a 503 (not ECONNREFUSED) until the grace
    // ends; a session's own traffic that starts nothing (cancellations, answers to its approvals) passes.
    if (closing && !(req.method === 'POST' && sessions.has(header(req, 'mcp-session-id') ?? ''))) return shuttingDown(res);
    // DNS rebinding and cross-site requests first: these answer 403 themselves.
    if (validateHost && !validateHost(req, res)) return;
    if (!validateOrigin(req, res)) return;
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, '') : url.pathname;
    if (path === '/healthz') {
      if (req.method !== 'GET' && req.method !== 'HEAD') return jsonError(res, 405, 'Method not allowed.', { headers: { allow: 'GET, HEAD' } });
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : '{"ok":true}');
      return;
    }
    if (ui.handle(req, res, path, url)) return;
    if (token) {
      const verdict = token.check(req);
      if (verdict !== 'ok') {
        log.debug(`http 401 (${verdict} token) ${req.method} ${path} from ${req.socket.remoteAddress}`);
        return jsonError(res, 401, verdict === 'missing' ? 'Unauthorized: bearer token required' : 'Unauthorized: invalid bearer token', {
          headers: { 'www-authenticate': verdict === 'missing' ? 'Bearer realm="delegate-mcp"' : 'Bearer realm="delegate-mcp", error="invalid_token"' },
        });
      }
    }
    if (path === '/mcp') return handleMcp(req, res);
    if (path === '/sse') {
      if (req.method !== 'GET') return jsonError(res, 405, 'Method not allowed.', { headers: { allow: 'GET' } });
      return openSseSession(req, res);
    }
    if (path === '/messages') {
      if (req.method !== 'POST') return jsonError(res, 405, 'Method not allowed.', { headers: { allow: 'POST' } });
      return handleSseMessage(req, res, url);
    }
    jsonError(res, 404, `Not found: ${path} (MCP is served at /mcp; legacy SSE at /sse)`);
  }

  const server = http.createServer((req, res) => {
    route(req, res).catch((err: Error) => {
      log.error(`http ${req.method} ${req.url}: ${err.stack ?? err.message}`);
      if (!res.headersSent) jsonError(res, 500, 'Internal server error', { code: -32603 });
      else res.end();
    });
  });
  // Streams are long-lived by design; only the request head and body have deadlines.
  server.requestTimeout = 120_000;
  server.headersTimeout = 30_000;
  const sockets = new Set<Socket>();
  server.on('connection', (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log.error(`http server: ${err.message}`));
  const addr = server.address() as AddressInfo;
  const hostForUrl = addr.family === 'IPv6' || addr.address.includes(':') ? `[${addr.address}]` : addr.address;

  // Sessions nobody uses any more (no open exchange, no running run) are closed after sessionIdleS.
  const idleMs = limits.sessionIdleS * 1000;
  const sweeper = setInterval(() => {
    const now = Date.now();
    for (const s of sessions.values()) {
      if (idle(s, now) && now - s.lastActive > idleMs) {
        void s.transport.close().catch(() => {}); // idle expiry: the transport is dropped either way
        endSession(s, `idle for ${limits.sessionIdleS} s`);
      }
    }
  }, Math.min(30_000, Math.max(1000, idleMs / 4)));
  sweeper.unref();

  return {
    url: `http://${hostForUrl}:${addr.port}`,
    port: addr.port,
    stats: () => ({
      sessions: [...sessions.values()].filter((s) => s.kind === 'streamable').length,
      sse: [...sessions.values()].filter((s) => s.kind === 'sse').length,
      openRequests,
      runs: slots.totals().runs,
    }),
    async drain(graceMs: number) {
      closing = true;
      // The /ui change streams end now; the listener stays until close() (new requests get 503).
      ui.close();
      const deadline = Date.now() + graceMs;
      for (;;) {
        const running = orchestrator.runs.list().filter((r) => r.status === 'running');
        const left = deadline - Date.now();
        if (!running.length || left <= 0) return;
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([Promise.all(running.map((r) => r.done)), new Promise((r) => (timer = setTimeout(r, left)))]);
        clearTimeout(timer);
      }
    },
    async close() {
      closing = true;
      ui.close();
      clearInterval(sweeper);
      server.close();
      await Promise.all(
        [...sessions.values()].map(async (s) => {
          await s.transport.close().catch(() => {}); // shutting down: the transport is dropped either way
          endSession(s, 'server stopping');
        }),
      );
      await modern.close().catch(() => {}); // shutting down: nothing is left to release
      server.closeAllConnections();
      for (const sock of sockets) sock.destroy();
    },
  };
}

// ---------------------------------------------------------------------------------------------------

const NO_BODY = Symbol('no body');

/** Reads and parses a JSON body up to `max` bytes; on failure answers (413/400) and returns NO_BODY. */
async function readJsonBody(req: IncomingMessage, res: ServerResponse, max: number): Promise<JsonBody | typeof NO_BODY> {
  const declared = Number(req.headers['content-length']);
  const chunks: Buffer[] = [];
  let size = 0;
  // Past the limit the rest is read and dropped (up to a cap) before answering: a server that answers
  // and closes while the client is still sending makes the client see a reset instead of the 413.
  const drainCap = Math.max(4 * max, 16 * 1024 * 1024);
  if (!(Number.isFinite(declared) && declared > drainCap)) {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > drainCap) break;
      if (size <= max) chunks.push(chunk);
    }
  }
  if (size > max || (Number.isFinite(declared) && declared > max)) {
    jsonError(res, 413, `Payload Too Large: request body must not exceed ${max} bytes (delegate.http.maxBodyBytes)`, { headers: { connection: 'close' } });
    return NO_BODY;
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text) as JsonBody;
  } catch {
    jsonError(res, 400, 'Parse error: the request body is not valid JSON', { code: -32700 });
    return NO_BODY;
  }
}

function messagesOf(body: JsonBody): Record<string, unknown>[] {
  const list = Array.isArray(body) ? body : [body];
  return list.filter((m): m is Record<string, unknown> => typeof m === 'object' && m !== null);
}

/** Ids of the JSON-RPC requests in a body (what a hang-up must cancel); initialize is never cancelled. */
function requestIds(body: JsonBody): (string | number)[] {
  return messagesOf(body)
    .filter((m) => typeof m.method === 'string' && m.method !== 'initialize' && (typeof m.id === 'string' || typeof m.id === 'number'))
    .map((m) => m.id as string | number);
}

function callsStartingRuns(body: JsonBody, startsRun: (name: unknown) => boolean): boolean {
  return messagesOf(body).some((m) => m.method === 'tools/call' && startsRun((m.params as { name?: unknown } | undefined)?.name));
}

function echoId(body: JsonBody): string | number | null {
  if (Array.isArray(body) || typeof body !== 'object' || body === null) return null;
  const id = (body as { id?: unknown }).id;
  return typeof id === 'string' || typeof id === 'number' ? id : null;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function webHeaders(req: IncomingMessage): Headers {
  const h = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined || k.startsWith(':')) continue;
    if (Array.isArray(v)) for (const item of v) h.append(k, item);
    else h.set(k, v);
  }
  return h;
}

function jsonError(
  res: ServerResponse,
  status: number,
  message: string,
  opts: { code?: number; id?: string | number | null; headers?: Record<string, string> } = {},
): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json', ...opts.headers });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: opts.code ?? -32000, message }, id: opts.id ?? null }));
}

const RETRY_AFTER_SHUTDOWN_S = 5;

function shuttingDown(res: ServerResponse, body?: JsonBody): void {
  jsonError(res, 503, `Service Unavailable: the server is shutting down; retry after ${RETRY_AFTER_SHUTDOWN_S} s (against its replacement)`, {
    id: body === undefined ? null : echoId(body),
    headers: { connection: 'close', 'retry-after': String(RETRY_AFTER_SHUTDOWN_S) },
  });
}

function sessionNotFound(res: ServerResponse, body?: JsonBody): void {
  jsonError(res, 404, 'Session not found (it ended or expired; initialize a new one)', { code: SESSION_NOT_FOUND, id: body === undefined ? null : echoId(body) });
}

function tooMany(res: ServerResponse, what: 'sessions' | 'runs', retryAfterS: number, body?: JsonBody): void {
  const message =
    what === 'sessions'
      ? `Too many sessions: the server already has its maximum of open sessions (delegate.http.maxSessions); retry after ${retryAfterS} s`
      : `Too many runs: this session already has its maximum of runs going (delegate.http.maxRunsPerSession); retry after ${retryAfterS} s or cancel one`;
  jsonError(res, 429, message, { id: body === undefined ? null : echoId(body), headers: { 'retry-after': String(retryAfterS) } });
}
