// The sessions of `serve --http`: 2025-era Streamable HTTP sessions (one NodeStreamableHTTPServerTransport
// + McpServer each) and legacy SSE connections. Each has its own McpServer and its own run owner id, so
// one client can never see, cancel or read another's runs. This table opens them (making room at
// maxSessions by closing the one idle longest), counts their open HTTP exchanges, cancels a call whose
// response stream dropped (unless resumed in time), expires idle ones, and ends them — with their runs.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { McpServer } from '@modelcontextprotocol/server';
import { NodeStreamableHTTPServerTransport } from '@modelcontextprotocol/node';
import { SSEServerTransport } from '@modelcontextprotocol/server-legacy/sse';
import { log } from '../log.js';
import type { RunRegistry } from '../orchestrator/runs.js';
import { SessionEventStore, streamOfEventId } from './event-store.js';
import type { RunSlots } from './http-limits.js';
import { header, requestIds, RETRY_AFTER_SESSIONS_S, tooMany, type JsonBody } from './http-wire.js';

export interface Session {
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

export interface SessionTableOptions {
  maxSessions: number;
  maxBodyBytes: number;
  sessionIdleS: number;
  /** How long a dropped response stream may be resumed (Last-Event-ID) before its calls are cancelled; 0: at once. */
  resumeGraceS: number;
  /** The session's MCP server (its tool surface), for its run owner id. */
  serverFor: (owner: string) => McpServer;
  runs: Pick<RunRegistry, 'list'>;
  slots: Pick<RunSlots, 'count'>;
  onSdkError: (leg: string) => (err: Error) => void;
}

/** A session idle at least this long may be closed to make room for a new one at maxSessions. */
const EVICT_MIN_IDLE_MS = 2_000;
const SSE_KEEPALIVE_MS = 15_000;
/** What a client is told (SSE `retry`) to wait before reconnecting a dropped stream. */
const RESUME_RETRY_MS = 1_000;

export class SessionTable {
  private readonly sessions = new Map<string, Session>();
  private readonly resumeGraceMs: number;
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly opts: SessionTableOptions) {
    this.resumeGraceMs = opts.resumeGraceS * 1000;
    // Sessions nobody uses any more (no open exchange, no running run) are closed after sessionIdleS.
    const idleMs = opts.sessionIdleS * 1000;
    this.sweeper = setInterval(() => {
      const now = Date.now();
      for (const s of this.sessions.values()) {
        if (this.idle(s, now) && now - s.lastActive > idleMs) {
          void s.transport.close().catch(() => {}); // idle expiry: the transport is dropped either way
          this.end(s, `idle for ${opts.sessionIdleS} s`);
        }
      }
    }, Math.min(30_000, Math.max(1000, idleMs / 4)));
    this.sweeper.unref();
  }

  get(id: string, kind: Session['kind']): Session | undefined {
    const s = this.sessions.get(id);
    return s && s.kind === kind ? s : undefined;
  }

  has(id: string): boolean {
    return this.sessions.has(id);
  }

  count(kind: Session['kind']): number {
    return [...this.sessions.values()].filter((s) => s.kind === kind).length;
  }

  /** Ends the session: nobody can reach its runs any more, so its background runs go with it. */
  end(s: Session, why: string): void {
    if (s.closed) return;
    s.closed = true;
    this.sessions.delete(s.id);
    if (s.keepAlive) clearInterval(s.keepAlive);
    for (const d of s.dropped?.values() ?? []) clearTimeout(d.timer);
    const running = this.opts.runs.list(s.owner).filter((r) => r.status === 'running');
    for (const r of running) r.cancel('cancelled');
    log.debug(`http ${s.kind} session ${s.id.slice(0, 8)} ended (${why})${running.length ? `; cancelled ${running.length} run(s)` : ''}`);
    void s.server.close().catch(() => {}); // the session is gone: a failed close of its server instance leaves nothing to do
  }

  /** initialize without a session id: a new Streamable HTTP session answers it (429 at maxSessions). */
  async openStreamable(req: IncomingMessage, res: ServerResponse, body: JsonBody): Promise<void> {
    if (!this.roomForSession()) return tooMany(res, 'sessions', RETRY_AFTER_SESSIONS_S, body);
    const id = randomUUID();
    const owner = `http_${randomUUID()}`;
    const resumable = this.resumeGraceMs > 0;
    const transport = new NodeStreamableHTTPServerTransport({
      sessionIdGenerator: () => id,
      maxRequestBodySize: this.opts.maxBodyBytes,
      ...(resumable && { eventStore: new SessionEventStore(), retryInterval: RESUME_RETRY_MS }),
    });
    const s: Session = {
      kind: 'streamable',
      id,
      owner,
      server: this.opts.serverFor(owner),
      transport,
      open: 0,
      lastActive: Date.now(),
      closed: false,
      ...(resumable && { dropped: new Map() }),
    };
    this.sessions.set(id, s);
    transport.onclose = () => this.end(s, 'closed');
    transport.onerror = this.opts.onSdkError('session');
    await s.server.connect(transport);
    await this.exchange(s, req, res, body);
    // An initialize the transport refused (bad Accept header, …) leaves no session behind.
    if (transport.sessionId === undefined) this.end(s, 'initialize refused');
  }

  /** GET /sse: the legacy transport; the stream is the session. */
  async openSse(res: ServerResponse): Promise<void> {
    if (!this.roomForSession()) return tooMany(res, 'sessions', RETRY_AFTER_SESSIONS_S);
    const owner = `sse_${randomUUID()}`;
    const transport = new SSEServerTransport('/messages', res);
    const s: Session = { kind: 'sse', id: transport.sessionId, owner, server: this.opts.serverFor(owner), transport, open: 1, lastActive: Date.now(), closed: false };
    this.sessions.set(s.id, s);
    // When the stream closes, the server's in-flight calls abort (their runs cancel).
    transport.onclose = () => this.end(s, 'stream closed');
    transport.onerror = this.opts.onSdkError('sse');
    res.on('close', () => {
      s.open--;
      this.end(s, 'stream closed');
    });
    await s.server.connect(transport as unknown as Parameters<McpServer['connect']>[0]);
    s.keepAlive = setInterval(() => {
      if (!res.writableEnded) res.write(': keepalive\n\n');
    }, SSE_KEEPALIVE_MS);
  }

  /**
   * One HTTP exchange of a session: counted while open. A request whose response stream drops is
   * cancelled, at once when it cannot be resumed, else after resumeGraceS unless the client comes back
   * with Last-Event-ID (the 2025-11-25 spec: a disconnect SHOULD NOT be taken as cancellation).
   */
  async exchange(s: Session, req: IncomingMessage, res: ServerResponse, body?: JsonBody): Promise<void> {
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
      if (!s.dropped || streamId === undefined) return this.cancel(s, ids, 'client disconnected');
      const dropped = s.dropped;
      const sid = streamId;
      const timer = setTimeout(() => {
        dropped.delete(sid);
        this.cancel(s, ids, `client disconnected and did not resume within ${this.resumeGraceMs / 1000} s`);
      }, this.resumeGraceMs);
      timer.unref();
      dropped.set(sid, { ids, timer });
    });
    if (s.transport instanceof SSEServerTransport) await s.transport.handlePostMessage(req, res, body);
    else await s.transport.handleRequest(req, res, body);
  }

  /** Ends every session (server stopping). */
  async closeAll(why: string): Promise<void> {
    clearInterval(this.sweeper);
    await Promise.all(
      [...this.sessions.values()].map(async (s) => {
        await s.transport.close().catch(() => {}); // shutting down: the transport is dropped either way
        this.end(s, why);
      }),
    );
  }

  private cancel(s: Session, ids: (string | number)[], reason: string): void {
    if (s.closed) return;
    for (const id of ids) s.transport.onmessage?.({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id, reason } });
  }

  private idle(s: Session, now: number): boolean {
    return s.kind === 'streamable' && s.open === 0 && this.opts.slots.count(s.owner) === 0 && now - s.lastActive >= EVICT_MIN_IDLE_MS;
  }

  /**
   * At the session limit, the session idle longest (no open stream or request, no running run) makes
   * room: many clients never send DELETE, and a client that still holds its GET stream is never idle.
   */
  private roomForSession(): boolean {
    if (this.sessions.size < this.opts.maxSessions) return true;
    const now = Date.now();
    let victim: Session | undefined;
    for (const s of this.sessions.values()) if (this.idle(s, now) && (!victim || s.lastActive < victim.lastActive)) victim = s;
    if (!victim) return false;
    void victim.transport.close().catch(() => {}); // eviction: the transport is dropped either way
    this.end(victim, `evicted after ${Math.round((now - victim.lastActive) / 1000)} s idle to make room (delegate.http.maxSessions)`);
    return true;
  }
}
