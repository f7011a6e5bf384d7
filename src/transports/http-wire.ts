// The HTTP wire of `serve --http`: reading a bounded JSON body, looking into JSON-RPC messages (ids,
// tools/call names) before the SDK does, and the JSON-RPC error answers the transport gives itself
// (400, 404, 413, 429, 503) with the headers each needs.
import type { IncomingMessage, ServerResponse } from 'node:http';

export type JsonBody = unknown;

/** JSON-RPC error code the SDK uses for "Session not found". */
const SESSION_NOT_FOUND = -32001;

export const RETRY_AFTER_SESSIONS_S = 30;
export const RETRY_AFTER_RUNS_S = 5;

export const NO_BODY = Symbol('no body');

/** Reads and parses a JSON body up to `max` bytes; on failure answers (413/400) and returns NO_BODY. */
export async function readJsonBody(req: IncomingMessage, res: ServerResponse, max: number): Promise<JsonBody | typeof NO_BODY> {
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

export function messagesOf(body: JsonBody): Record<string, unknown>[] {
  const list = Array.isArray(body) ? body : [body];
  return list.filter((m): m is Record<string, unknown> => typeof m === 'object' && m !== null);
}

/** Ids of the JSON-RPC requests in a body (what a hang-up must cancel); initialize is never cancelled. */
export function requestIds(body: JsonBody): (string | number)[] {
  return messagesOf(body)
    .filter((m) => typeof m.method === 'string' && m.method !== 'initialize' && (typeof m.id === 'string' || typeof m.id === 'number'))
    .map((m) => m.id as string | number);
}

export function callsStartingRuns(body: JsonBody, startsRun: (name: unknown) => boolean): boolean {
  return messagesOf(body).some((m) => m.method === 'tools/call' && startsRun((m.params as { name?: unknown } | undefined)?.name));
}

export function echoId(body: JsonBody): string | number | null {
  if (Array.isArray(body) || typeof body !== 'object' || body === null) return null;
  const id = (body as { id?: unknown }).id;
  return typeof id === 'string' || typeof id === 'number' ? id : null;
}

export function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export function webHeaders(req: IncomingMessage): Headers {
  const h = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined || k.startsWith(':')) continue;
    if (Array.isArray(v)) for (const item of v) h.append(k, item);
    else h.set(k, v);
  }
  return h;
}

export function jsonError(
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

export function shuttingDown(res: ServerResponse, body?: JsonBody): void {
  jsonError(res, 503, `Service Unavailable: the server is shutting down; retry after ${RETRY_AFTER_SHUTDOWN_S} s (against its replacement)`, {
    id: body === undefined ? null : echoId(body),
    headers: { connection: 'close', 'retry-after': String(RETRY_AFTER_SHUTDOWN_S) },
  });
}

export function sessionNotFound(res: ServerResponse, body?: JsonBody): void {
  jsonError(res, 404, 'Session not found (it ended or expired; initialize a new one)', { code: SESSION_NOT_FOUND, id: body === undefined ? null : echoId(body) });
}

export function tooMany(res: ServerResponse, what: 'sessions' | 'runs', retryAfterS: number, body?: JsonBody): void {
  const message =
    what === 'sessions'
      ? `Too many sessions: the server already has its maximum of open sessions (delegate.http.maxSessions); retry after ${retryAfterS} s`
      : `Too many runs: this session already has its maximum of runs going (delegate.http.maxRunsPerSession); retry after ${retryAfterS} s or cancel one`;
  jsonError(res, 429, message, { id: body === undefined ? null : echoId(body), headers: { 'retry-after': String(retryAfterS) } });
}
