// The runs page: GET /ui (the page, its script and style — no token needed to load them) and its
// read-only data API under /ui/api/ (bearer token required, like /mcp): the run list, one run's tree,
// timeline and denials, and an SSE stream that says "something changed" whenever the audit log grows.
// Everything comes from the audit log, so `serve --http` and `delegate-mcp ui` (another process reading
// the same state dir) show the same thing. Every response carries a strict CSP; the page renders all
// data with textContent (the log holds model-chosen strings).
import { readFileSync, readdirSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { PACKAGE_ROOT } from '../paths.js';
import { DAY_MS } from '../time/utc-day.js';
import { readAuditDir, type ReadResult } from '../audit/reader.js';
import { runTree } from '../audit/run-tree.js';
import { listRuns, runTimeline, RUN_STATUSES } from '../audit/runs-view.js';

export const UI_DIR = path.join(PACKAGE_ROOT, 'ui');

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
};

const STATIC: Record<string, { file: string; type: string }> = {
  '/ui': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/ui/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/ui/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};

/** How often the live stream looks at the audit files, and how often it sends a keep-alive. */
const POLL_MS = 300;
const KEEPALIVE_MS = 15_000;
/** Runs shown when no day is picked: the last week. */
const DEFAULT_RANGE_MS = 7 * DAY_MS;

export interface UiOptions {
  auditDir: string | undefined;
  /**
   * The bearer token check (transports/http-auth.ts BearerToken; the page is served by `serve --http`
   * and by `delegate-mcp ui`). Undefined only for a loopback-bound `serve --http` without a token (the
   * same rule as /mcp).
   */
  token: { check(req: IncomingMessage): 'ok' | 'missing' | 'invalid' } | undefined;
  /** Runs going in this process (serve --http): their latest progress line, between audit events. */
  live?: () => LiveRun[];
}

export interface LiveRun {
  run_id: string;
  turn: number;
  progress: string;
}

export interface UiHandler {
  /** Handles /ui and /ui/*; false when the path is not the page's. */
  handle(req: IncomingMessage, res: ServerResponse, pathname: string, url: URL): boolean;
  close(): void;
}

export function createUiHandler(opts: UiOptions): UiHandler {
  const streams = new Set<() => void>();
  /** Parsed logs per time range, valid while the files' signature is unchanged (list and detail alternate). */
  const cache = new Map<string, { signature: string; result: ReadResult }>();

  /** Audit files' names, sizes and mtimes: changes when any process appends a line. */
  const signature = (): string => files() + (opts.live ? JSON.stringify(opts.live()) : '');
  const files = (): string => {
    if (!opts.auditDir) return '';
    try {
      return readdirSync(opts.auditDir)
        .filter((f) => f.endsWith('.jsonl'))
        .sort()
        .map((f) => {
          const st = statSync(path.join(opts.auditDir!, f));
          return `${f}:${st.size}:${st.mtimeMs}`;
        })
        .join('|');
    } catch {
      return ''; // no audit dir yet: nothing to show, nothing changed
    }
  };

  const read = (since: Date | undefined, until: Date | undefined): ReadResult => {
    const key = `${since?.toISOString()}#${until?.toISOString()}`;
    const sig = files();
    const hit = cache.get(key);
    if (hit?.signature === sig) return hit.result;
    const result = opts.auditDir ? readAuditDir(opts.auditDir, { since, until }) : { events: [], files: [], torn: 0, invalid: 0 };
    if (cache.size >= 8) cache.clear();
    cache.set(key, { signature: sig, result });
    return result;
  };

  const send = (res: ServerResponse, status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': type, ...SECURITY_HEADERS, ...extra });
    res.end(body);
  };
  const json = (res: ServerResponse, status: number, value: unknown) => send(res, status, 'application/json; charset=utf-8', JSON.stringify(value));

  function runs(res: ServerResponse, url: URL): void {
    const day = url.searchParams.get('day') || undefined;
    const agent = url.searchParams.get('agent') || undefined;
    const status = url.searchParams.get('status') || undefined;
    if (day !== undefined && !/^\d{4}-\d{2}-\d{2}$/.test(day)) return json(res, 400, { error: `day: expected YYYY-MM-DD, got "${day}"` });
    if (status !== undefined && !(RUN_STATUSES as readonly string[]).includes(status)) return json(res, 400, { error: `status: expected one of ${RUN_STATUSES.join(', ')}` });
    const since = day ? new Date(`${day}T00:00:00Z`) : new Date(Date.now() - DEFAULT_RANGE_MS);
    if (Number.isNaN(since.getTime())) return json(res, 400, { error: `day: not a date: "${day}"` });
    const until = day ? new Date(since.getTime() + DAY_MS) : undefined;
    const { events } = read(since, until);
    const all = listRuns(events, { since, until });
    const list = all.filter((r) => (agent === undefined || r.agent === agent) && (status === undefined || r.status === status)).slice(0, 500);
    const live = Object.fromEntries((opts.live?.() ?? []).map((r) => [r.run_id, { turn: r.turn, progress: r.progress }]));
    json(res, 200, { runs: list, agents: [...new Set(all.map((r) => r.agent).filter((a): a is string => a !== null))].sort(), live });
  }

  function run(res: ServerResponse, url: URL): void {
    const id = url.searchParams.get('id') ?? '';
    if (!/^[A-Za-z0-9_-]{1,100}$/.test(id)) return json(res, 400, { error: 'id: expected a run id such as run_…' });
    // Recent days first (what the page lists); the whole log only for an older run.
    const weekAgo = new Date(Math.floor((Date.now() - DEFAULT_RANGE_MS) / DAY_MS) * DAY_MS);
    let { events } = read(weekAgo, undefined);
    let tree = runTree(events, id);
    if (!tree) {
      events = read(undefined, undefined).events;
      tree = runTree(events, id);
    }
    if (!tree) return json(res, 404, { error: `no run ${id} in the audit log` });
    const timeline = runTimeline(events, tree);
    const ids = new Set<string>(timeline.map((e) => e.run_id));
    const previews: Record<string, { input?: string; output?: string }> = {};
    for (const e of events) {
      if (e.run_id === null || !ids.has(e.run_id)) continue;
      if (e.event === 'run_start' && e.input_preview !== undefined) (previews[e.run_id] ??= {}).input = e.input_preview;
      if (e.event === 'run_end' && e.output_preview !== undefined) (previews[e.run_id] ??= {}).output = e.output_preview;
    }
    const denials = timeline.filter((e) => (e.kind === 'tool_call' && (e.decision === 'deny' || e.decision === 'ask_denied')) || e.kind === 'budget_refused');
    json(res, 200, { tree, timeline, denials, previews });
  }

  function stream(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive', 'x-accel-buffering': 'no', ...SECURITY_HEADERS });
    res.write('retry: 2000\n\n');
    let last = signature();
    res.write(`event: hello\ndata: {}\n\n`);
    const poll = setInterval(() => {
      const now = signature();
      if (now === last) return;
      last = now;
      res.write(`event: change\ndata: ${JSON.stringify({ at: new Date().toISOString() })}\n\n`);
    }, POLL_MS);
    const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), KEEPALIVE_MS);
    const stop = () => {
      clearInterval(poll);
      clearInterval(keepAlive);
      streams.delete(stop);
      res.end();
    };
    streams.add(stop);
    req.on('close', stop);
  }

  return {
    handle(req, res, pathname, url) {
      if (pathname !== '/ui' && !pathname.startsWith('/ui/')) return false;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        send(res, 405, 'application/json', JSON.stringify({ error: 'the runs page is read-only' }), { allow: 'GET, HEAD' });
        return true;
      }
      const asset = STATIC[pathname];
      if (asset) {
        send(res, 200, asset.type, readFileSync(path.join(UI_DIR, asset.file)));
        return true;
      }
      if (!pathname.startsWith('/ui/api/')) {
        json(res, 404, { error: `not found: ${pathname}` });
        return true;
      }
      if (opts.token) {
        const verdict = opts.token.check(req);
        if (verdict !== 'ok') {
          send(res, 401, 'application/json', JSON.stringify({ error: verdict === 'missing' ? 'bearer token required' : 'invalid bearer token' }), {
            'www-authenticate': 'Bearer realm="delegate-mcp"',
          });
          return true;
        }
      }
      if (pathname === '/ui/api/runs') runs(res, url);
      else if (pathname === '/ui/api/run') run(res, url);
      else if (pathname === '/ui/api/stream') stream(req, res);
      else json(res, 404, { error: `not found: ${pathname}` });
      return true;
    },
    close() {
      for (const stop of [...streams]) stop();
    },
  };
}
