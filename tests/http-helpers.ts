// Helpers for the HTTP transport tests: spawn `delegate-mcp serve --http --port 0` (the real built
// server), read the bound address from stderr, and connect the real SDK clients in each flavour.
import { spawn, type ChildProcess } from 'node:child_process';
import { Client, SSEClientTransport, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { CLI } from './helpers.js';

export interface HttpServer {
  url: string;
  child: ChildProcess;
  stderr: () => string;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
  stop: () => Promise<void>;
}

export async function startHttpServer(opts: { args?: string[]; env: Record<string, string>; cwd?: string; stdin?: 'pipe' | 'ignore' }): Promise<HttpServer> {
  const child = spawn(process.execPath, [CLI, 'serve', '--http', '--port', '0', ...(opts.args ?? [])], {
    env: opts.env,
    cwd: opts.cwd,
    stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, sig) => resolve(code ?? sig ?? -1)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in 15 s:\n${stderr}`)), 15_000);
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}) before listening:\n${stderr}`));
    });
  });
  return {
    url,
    child,
    stderr: () => stderr,
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

export type Flavour = 'legacy' | 'modern' | 'sse';

/** A connected SDK client: 2025-era Streamable HTTP (default Client), 2026-07-28 pinned, or legacy SSE. */
export async function connectClient(
  url: string,
  flavour: Flavour,
  token?: string,
  elicit?: (params: { message: string; requestedSchema?: unknown }) => Promise<{ action: 'accept' | 'decline' | 'cancel'; content?: Record<string, string | number | boolean | string[]> }>,
): Promise<Client> {
  const requestInit = token ? { headers: { Authorization: `Bearer ${token}` } } : undefined;
  const client = new Client(
    { name: `test-${flavour}`, version: '1.0.0' },
    {
      ...(flavour === 'modern' && { versionNegotiation: { mode: { pin: '2026-07-28' } } }),
      ...(elicit && { capabilities: { elicitation: { form: {} } } }),
    },
  );
  if (elicit) client.setRequestHandler('elicitation/create', async (req: any) => elicit(req.params));
  const transport =
    flavour === 'sse'
      ? new SSEClientTransport(new URL(`${url}/sse`), { requestInit })
      : new StreamableHTTPClientTransport(new URL(`${url}/mcp`), { requestInit });
  await client.connect(transport);
  return client;
}

/** A raw JSON-RPC POST to /mcp (what a client that is not the SDK would send). */
export function rawPost(url: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
  return fetch(`${url}/mcp`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal,
  });
}

export const INIT = {
  jsonrpc: '2.0',
  id: 0,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
} as const;
