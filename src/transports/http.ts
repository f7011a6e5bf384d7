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
//
// The pieces: http-router.ts (where a request goes), http-sessions.ts (2025-era and SSE sessions),
// http-wire.ts (bodies and error answers), http-auth.ts, http-limits.ts (run slots), event-store.ts.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createMcpHandler } from '@modelcontextprotocol/server';
import { hostHeaderValidation, originValidation, toNodeHandler } from '@modelcontextprotocol/node';
import type { HttpConfig } from '../config/http-config.js';
import { log } from '../log.js';
import { errorMessage } from '../describe-cause.js';
import { buildServer } from '../mcp/server.js';
import type { Orchestrator } from '../orchestrator/orchestrator.js';
import { SESSIONLESS_OWNER_PREFIX } from '../orchestrator/runs.js';
import { createUiHandler } from '../ui/handler.js';
import { BearerToken, allowedHostnames } from './http-auth.js';
import { RunSlots, SlottedLauncher } from './http-limits.js';
import { HttpRouter } from './http-router.js';
import { SessionTable } from './http-sessions.js';
import { jsonError } from './http-wire.js';

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

export async function startHttpServer(orchestrator: Orchestrator, opts: HttpServeOptions): Promise<HttpServerHandle> {
  const { limits } = opts;
  const token = opts.token ? new BearerToken(opts.token) : undefined;
  const hostNames = allowedHostnames(opts.host, limits.allowedHosts);
  // The runs page (/ui): same Host/Origin checks as /mcp; its data API checks the same token itself.
  const ui = createUiHandler({
    auditDir: orchestrator.cfg.auditDir,
    token,
    live: () => orchestrator.runs.list().filter((r) => r.status === 'running').map((r) => ({ run_id: r.runId, turn: r.turn, progress: r.lastProgress })),
  });
  const slots = new RunSlots(limits.maxRunsPerSession);
  const sdkError = (leg: string) => (err: Error) => log.debug(`http ${leg}: ${err.message}`);
  // Every session's tool surface starts its runs through the session's run slots.
  const serverFor = (owner: string) => buildServer({ orchestrator, launcher: new SlottedLauncher(slots, orchestrator, owner) }, owner);
  const sessions = new SessionTable({
    maxSessions: limits.maxSessions,
    maxBodyBytes: limits.maxBodyBytes,
    sessionIdleS: limits.sessionIdleS,
    resumeGraceS: limits.resumeGraceS ?? 0,
    serverFor,
    runs: orchestrator.runs,
    slots,
    onSdkError: sdkError,
  });
  // 2026-07-28: one instance per request (the era has no sessions); each request is its own owner,
  // and a background run is reached later through its run id (see SESSIONLESS_OWNER_PREFIX).
  const modern = createMcpHandler(() => serverFor(`${SESSIONLESS_OWNER_PREFIX}${randomUUID()}`), {
    legacy: 'reject',
    maxRequestBodySize: limits.maxBodyBytes,
    onerror: sdkError('2026-07-28'),
  });
  const router = new HttpRouter({
    maxBodyBytes: limits.maxBodyBytes,
    maxRunsPerSession: limits.maxRunsPerSession,
    token,
    validateHost: hostNames ? hostHeaderValidation(hostNames) : undefined,
    validateOrigin: originValidation(['localhost', '127.0.0.1', '[::1]', ...limits.allowedOrigins]),
    sessions,
    slots,
    modern: toNodeHandler(modern, { maxRequestBodySize: limits.maxBodyBytes, onerror: sdkError('2026-07-28') }),
    ui,
    startsRun: (name) => typeof name === 'string' && (name === 'delegate' || name === 'delegate_parallel' || orchestrator.agents.get(name) !== undefined),
  });

  const server = http.createServer((req, res) => {
    router.route(req, res).catch((err: Error) => {
      // One line like every other server error; the stack only at debug level (DELEGATE_MCP_LOG_LEVEL=debug).
      log.error(`http ${req.method} ${req.url}: ${errorMessage(err)}`);
      if (err instanceof Error && err.stack) log.debug(err.stack);
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

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port, opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await sessions.closeAll('the listener could not start'); // stops the idle sweeper (there are no sessions yet)
    throw err;
  }
  server.on('error', (err) => log.error(`http server: ${err.message}`));
  const addr = server.address() as AddressInfo;
  const hostForUrl = addr.family === 'IPv6' || addr.address.includes(':') ? `[${addr.address}]` : addr.address;

  return {
    url: `http://${hostForUrl}:${addr.port}`,
    port: addr.port,
    stats: () => ({ sessions: sessions.count('streamable'), sse: sessions.count('sse'), openRequests: router.openRequests, runs: slots.totals().runs }),
    async drain(graceMs: number) {
      router.closing = true;
      // The /ui change streams end now; the listener stays until close() (new requests get 503).
      ui.close();
      await orchestrator.waitForRuns(graceMs);
    },
    async close() {
      router.closing = true;
      ui.close();
      server.close();
      await sessions.closeAll('server stopping');
      await modern.close().catch(() => {}); // shutting down: nothing is left to release
      server.closeAllConnections();
      for (const sock of sockets) sock.destroy();
    },
  };
}
