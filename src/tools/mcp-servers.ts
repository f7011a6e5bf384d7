// Downstream MCP servers (mcp.json `mcpServers`): their tools are offered to agents as
// `mcp__<server>__<tool>`. One connection per server, shared by every run, opened on first use (a
// server no agent touches is never started). Its tools are listed once per connection.
//
// Failure model: a server that crashes, closes the connection, or does not answer a call within the
// per-call timeout yields a tool error naming the server; a hung server is stopped, and any broken
// connection is dropped, so the NEXT use starts it again. One broken server never affects the others.
//
// Environment: a stdio server gets the client SDK's small default environment (PATH, HOME, USER, …)
// plus exactly the `env` of its mcp.json entry, never this server's own environment: our provider API
// keys reach a child only when the entry names them.
import path from 'node:path';
import type { CallToolResult, Client, StreamableHTTPClientTransport, Tool } from '@modelcontextprotocol/client';
import type { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { isSdkError, loadClientSdk } from './mcp-client-sdk.js';
import type { ResolvedConfig } from '../config/config.js';
import { log } from '../log.js';
import { errorMessage, describeCause } from '../describe-cause.js';
import type { ToolSpec } from '../contract/tool.js';
import { VERSION } from '../version.js';
import { formatSize, utf8SafeEnd } from './file-io.js';
import { limitedFetch } from './mcp-http-limit.js';
import type { ToolOutcome } from '../contract/tool.js';
import { MCP_TOOL_PREFIX, isMcpToolName } from '../contract/tool-names.js';

export type McpServerEntry = ResolvedConfig['mcpServers'][string];

export interface McpServersOptions {
  /** Deadline of one tools/call; also bounds connecting and tools/list. */
  callTimeoutMs: number;
  /** Output beyond this is cut with a note. */
  maxOutputBytes: number;
  /** Largest message read from a server, stdio or HTTP (the SDK's stdio default, 10 MiB, closed the connection on a larger one; its HTTP client has no limit). */
  maxMessageBytes?: number;
  /** Relative `cwd` entries are resolved against this (the config file's directory). */
  baseDir: string;
}

/** Provider tool-name rules (OpenAI: ^[a-zA-Z0-9_-]{1,64}$; Anthropic allows 128): the strictest wins. */
const TOOL_NAME_RE = /^[A-Za-z0-9_-]+$/;
const MAX_TOOL_NAME = 64;
/** `__` separates server and tool, so a server name may not contain it (nor start/end with `_`). */
const SERVER_NAME_RE = /^[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*$/;
const STDERR_TAIL = 2000;
const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

export const mcpToolName = (server: string, tool: string): string => `${MCP_TOOL_PREFIX}${server}__${tool}`;

interface Connection {
  client: Client;
  /** Tools as listed when the connection opened, by their MCP name. */
  tools: Map<string, Tool>;
  specs: ToolSpec[];
  closed: boolean;
  stderr: () => string;
  /** Set when the server sent a message over maxMessageBytes (the connection is then closed). */
  overLimit?: boolean;
  /** The size of that message, when it was declared (an HTTP answer's content-length); otherwise reading stopped at the limit. */
  overLimitSize?: number;
}

export class McpServers {
  private readonly conns = new Map<string, Promise<Connection>>();
  private closing = false;

  constructor(
    private readonly entries: Record<string, McpServerEntry>,
    private readonly opts: McpServersOptions,
  ) {
    for (const name of Object.keys(entries)) {
      if (!SERVER_NAME_RE.test(name)) {
        log.warn(`mcp.json mcpServers."${name}": server names may use A-Z a-z 0-9 - and single "_" only (tools are named mcp__<server>__<tool>); its tools will not be offered`);
      }
    }
  }

  /** Configured servers whose names can form tool names. */
  names(): string[] {
    return Object.keys(this.entries).filter((n) => SERVER_NAME_RE.test(n));
  }

  has(server: string): boolean {
    return Object.hasOwn(this.entries, server) && SERVER_NAME_RE.test(server);
  }

  /** Splits `mcp__<server>__<tool>` for a configured server; null when it names none. */
  parse(name: string): { server: string; tool: string } | null {
    if (!isMcpToolName(name)) return null;
    const rest = name.slice(MCP_TOOL_PREFIX.length);
    const sep = rest.indexOf('__');
    if (sep <= 0) return null;
    const server = rest.slice(0, sep);
    const tool = rest.slice(sep + 2);
    return this.has(server) && tool !== '' ? { server, tool } : null;
  }

  /** The server's tools as ToolSpecs named mcp__<server>__<tool>. Starts the server on first use. */
  async tools(server: string, signal?: AbortSignal): Promise<ToolSpec[]> {
    return (await this.connection(server, signal)).specs;
  }

  /** Calls one tool. Never throws: every failure is a tool error that names the server. */
  /** `meta` goes in the request's `_meta` (the caller's trace context: traceparent/tracestate). */
  async call(server: string, tool: string, args: Record<string, unknown>, signal?: AbortSignal, meta?: Record<string, unknown>): Promise<ToolOutcome> {
    const full = mcpToolName(server, tool);
    let conn: Connection;
    try {
      conn = await this.connection(server, signal);
    } catch (err) {
      if (signal?.aborted) return { isError: true, content: `${full}: aborted` };
      return { isError: true, content: `${full}: ${errorMessage(err)}` };
    }
    if (!conn.tools.has(tool)) {
      return { isError: true, content: `${full}: MCP server "${server}" has no tool "${tool}" (it has: ${[...conn.tools.keys()].join(', ') || 'none'})` };
    }
    const timeoutS = this.opts.callTimeoutMs / 1000;
    try {
      const res = (await conn.client.callTool(
        { name: tool, arguments: args, ...(meta && { _meta: meta }) },
        { timeout: this.opts.callTimeoutMs, ...(signal && { signal }) },
      )) as CallToolResult;
      return { isError: res.isError === true, content: this.cap(renderResult(res)) };
    } catch (err) {
      if (signal?.aborted) return { isError: true, content: `${full}: aborted` };
      if (isSdkError(err, 'RequestTimeout')) {
        // A server that does not answer is treated as hung: stop it so the next call starts a fresh one.
        this.drop(server, conn);
        return {
          isError: true,
          content: `${full}: MCP server "${server}" did not answer within ${timeoutS} s; it was stopped and will be restarted on the next call`,
        };
      }
      if (conn.closed || (isSdkError(err, 'ConnectionClosed'))) {
        this.drop(server, conn);
        if (conn.overLimit) {
          return {
            isError: true,
            content: `${full}: MCP server "${server}" answered with a message ${conn.overLimitSize !== undefined ? `of ${conn.overLimitSize} bytes, ` : ''}over the limit of ${this.maxMessageBytes} bytes (delegate.tools.mcpMaxMessageBytes); the answer was dropped and the server will be restarted on the next call`,
          };
        }
        const tail = conn.stderr().trim();
        return {
          isError: true,
          content:
            `${full}: MCP server "${server}" exited or closed the connection during the call; it will be restarted on the next call` +
            (tail ? ` (its stderr ended with: ${tail.slice(-500)})` : ''),
        };
      }
      if (isNetworkFailure(err)) {
        // An HTTP server that cannot be reached: reconnect on the next call.
        this.drop(server, conn);
        const entry = this.entries[server];
        const url = entry && 'url' in entry ? ` at ${entry.url}` : '';
        return { isError: true, content: `${full}: cannot reach MCP server "${server}"${url}: ${describeCause(err)}; it will be reconnected on the next call` };
      }
      // A protocol-level error answer (invalid params, unknown tool, …): the server is fine.
      return { isError: true, content: `${full}: MCP server "${server}" returned an error: ${errorMessage(err)}` };
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    const all = [...this.conns.values()];
    this.conns.clear();
    await Promise.all(
      all.map(async (p) => {
        const c = await p.catch(() => undefined); // a connection that failed has nothing to close
        await c?.client.close().catch(() => {}); // closing every server: one that fails to close is gone anyway
      }),
    );
  }

  private get maxMessageBytes(): number {
    return this.opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  }

  private cap(text: string): string {
    const max = this.opts.maxOutputBytes;
    const buf = Buffer.from(text, 'utf8');
    if (buf.length <= max) return text;
    const head = buf.subarray(0, utf8SafeEnd(buf, max)).toString('utf8');
    return `${head}\n[output truncated: the tool returned ${buf.length} bytes; only the first ${formatSize(max)} are shown]`;
  }

  /** Forget a broken connection (only if it is still the current one) and make sure it is closed. */
  private drop(server: string, conn: Connection): void {
    conn.closed = true;
    const current = this.conns.get(server);
    if (current) void current.then((c) => c === conn && this.conns.get(server) === current && this.conns.delete(server), () => {});
    void conn.client.close().catch(() => {}); // the connection is replaced; a failed close leaves nothing to do
  }

  private async connection(server: string, signal?: AbortSignal): Promise<Connection> {
    if (this.closing) throw new Error(`MCP server "${server}" is not available: the server is shutting down`);
    if (!this.has(server)) throw new Error(`no MCP server "${server}" in mcp.json (configured: ${this.names().join(', ') || 'none'})`);
    let p = this.conns.get(server);
    if (p) {
      const c = await p.catch(() => undefined); // a failed connection is replaced below, like a closed one
      if (c && !c.closed) return c;
      if (this.conns.get(server) === p) this.conns.delete(server);
    }
    p = this.conns.get(server);
    if (!p) {
      p = this.connect(server);
      this.conns.set(server, p);
      // A failed start is not cached: the next use tries again.
      p.catch(() => {
        if (this.conns.get(server) === p) this.conns.delete(server);
      });
    }
    // Shared by every run: one run's cancellation stops its own wait, not the start.
    return signal ? abortable(p, signal) : p;
  }

  private async connect(server: string): Promise<Connection> {
    const entry = this.entries[server];
    const { Client, StdioClientTransport, StreamableHTTPClientTransport } = await loadClientSdk();
    const client = new Client({ name: 'delegate-mcp', version: VERSION });
    let stderr = '';
    let transport: StdioClientTransport | StreamableHTTPClientTransport;
    if ('command' in entry) {
      transport = new StdioClientTransport({
        command: entry.command,
        args: entry.args,
        // The SDK merges its safe default environment with this; nothing else of ours is inherited.
        ...(entry.env && { env: entry.env }),
        ...(entry.cwd && { cwd: path.resolve(this.opts.baseDir, entry.cwd) }),
        stderr: 'pipe',
        maxBufferSize: this.maxMessageBytes,
      });
      transport.stderr?.on('data', (d: Buffer) => {
        const s = d.toString();
        stderr = (stderr + s).slice(-STDERR_TAIL);
        log.debug(`mcp server ${server}: ${s.trimEnd()}`);
      });
    } else {
      // The HTTP client transport reads any answer whole: its fetch stops reading at the limit.
      const fetch = limitedFetch({
        maxBytes: this.maxMessageBytes,
        onOverLimit: (size, exact) => {
          conn.overLimit = true;
          if (exact) conn.overLimitSize = size;
          // Like the stdio transport on an oversized message: the connection ends (pending calls fail at once).
          void client.close().catch(() => {}); // the next call reconnects; a failed close leaves nothing to do
        },
      });
      transport = new StreamableHTTPClientTransport(new URL(entry.url), { fetch, ...(entry.headers && { requestInit: { headers: entry.headers } }) });
    }
    const conn: Connection = { client, tools: new Map(), specs: [], closed: false, stderr: () => stderr };
    client.onclose = () => {
      conn.closed = true;
    };
    client.onerror = (err) => {
      // The SDK's read buffer reports an oversized message this way, then closes the connection.
      if (/ReadBuffer exceeded maximum size/.test(err.message)) conn.overLimit = true;
      log.debug(`mcp server ${server}: ${err.message}`);
    };
    const what = 'command' in entry ? `${entry.command} ${entry.args.join(' ')}`.trim() : entry.url;
    const timeout = this.opts.callTimeoutMs;
    try {
      await client.connect(transport, { timeout });
      const { tools } = await client.listTools(undefined, { timeout });
      for (const t of tools) {
        const name = mcpToolName(server, t.name);
        if (!TOOL_NAME_RE.test(t.name) || name.length > MAX_TOOL_NAME) {
          log.warn(`mcp server ${server}: tool "${t.name}" is not offered: "${name}" is not a valid model tool name ([A-Za-z0-9_-], at most ${MAX_TOOL_NAME} characters)`);
          continue;
        }
        conn.tools.set(t.name, t);
        conn.specs.push({
          name,
          description: t.description ?? t.title ?? `Tool ${t.name} of MCP server ${server}.`,
          inputSchema: modelSchema(t.inputSchema),
        });
      }
      log.info(`mcp server ${server}: connected (${what}); ${conn.specs.length} tool(s)`);
      return conn;
    } catch (err) {
      conn.closed = true;
      await client.close().catch(() => {}); // it never connected: nothing to release
      const e = err as Error;
      // fetch's own message is "fetch failed"; the cause under it names the real one (ECONNREFUSED, …).
      const why = isSdkError(e, 'RequestTimeout') ? `no answer within ${timeout / 1000} s` : describeCause(e);
      const tail = stderr.trim();
      const verb = 'command' in entry ? 'could not be started' : 'could not be reached';
      throw new Error(`MCP server "${server}" ${verb} (${what}): ${why}${tail ? `; its stderr ended with: ${tail.slice(-500)}` : ''}`);
    }
  }
}

/** Resolves like `p`, or rejects when `signal` aborts first (without cancelling `p`). */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new Error('aborted'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** The tool's input schema as providers take it: `$schema` dropped (not every provider accepts it). */
function modelSchema(schema: Tool['inputSchema'] | undefined): ToolSpec['inputSchema'] {
  const { $schema: _drop, ...rest } = (schema ?? { type: 'object' }) as Record<string, unknown>;
  return { type: 'object', ...rest } as ToolSpec['inputSchema'];
}

/** A CallToolResult as text for the model: text blocks as they are, other blocks described. */
function renderResult(res: CallToolResult): string {
  const parts: string[] = [];
  for (const block of res.content ?? []) {
    const b = block as { type: string; [k: string]: unknown };
    if (b.type === 'text') parts.push(String(b.text ?? ''));
    else if (b.type === 'image' || b.type === 'audio') {
      parts.push(`[${b.type} ${String(b.mimeType ?? '')}, ${Math.floor((String(b.data ?? '').length * 3) / 4)} bytes; not shown]`);
    } else if (b.type === 'resource_link') parts.push(`[resource link: ${String(b.uri)}${b.name ? ` (${String(b.name)})` : ''}]`);
    else if (b.type === 'resource') {
      const r = (b.resource ?? {}) as { uri?: string; text?: string; mimeType?: string };
      parts.push(typeof r.text === 'string' ? r.text : `[resource ${r.uri ?? ''} (${r.mimeType ?? 'binary'}); not shown]`);
    } else parts.push(`[${b.type} content; not shown]`);
  }
  if (parts.length === 0 && res.structuredContent !== undefined) parts.push(JSON.stringify(res.structuredContent));
  return parts.length ? parts.join('\n') : '(no output)';
}

/** fetch's own failure (connection refused, reset, DNS): a TypeError whose cause names the system error. */
function isNetworkFailure(err: unknown): boolean {
  return err instanceof TypeError && /fetch failed/.test(err.message);
}
