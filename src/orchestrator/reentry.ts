// Re-entry: this server as an MCP client of a child delegate-mcp process (same entry point, started with
// process.execPath, never npx), kept warm and reused by every delegation, restarted when it dies. The
// call chain rides in each request's `_meta`; progress comes back as notifications and cancellation goes
// down as notifications/cancelled, both handled by the SDK client.
import { CLI_ENTRY } from '../paths.js';
import type { Client } from '@modelcontextprotocol/client';
import type { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { loadClientSdk } from '../tools/mcp-client-sdk.js';
import type { CallToolResult } from '@modelcontextprotocol/server';
import type { ResolvedConfig } from '../config/config.js';
import { log } from '../log.js';
import { VERSION } from '../version.js';
import { CHAIN_KEY_ENV, CHAIN_MAC_META_KEY, CHAIN_META_KEY, ChainKey, type CallChain } from './chain.js';
import type { TraceMeta } from '../telemetry/types.js';

/** Set in the child's environment: its budget books stay in memory (the parent commits their usage). */
export const CHILD_ENV = 'DELEGATE_MCP_CHILD';

export class ChildHub {
  private client?: Client;
  private connecting?: Promise<Client>;
  private transport?: StdioClientTransport;
  private closed = false;
  /** Signs the chains sent to the child, which takes their ids only with this signature. */
  private readonly key = ChainKey.random();

  constructor(private readonly cfg: ResolvedConfig) {}

  /** The child's pid while it runs (tests and diagnostics look for it in the process tree). */
  get pid(): number | null {
    return this.transport?.pid ?? null;
  }

  private connect(): Promise<Client> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= (async () => {
      const { Client, StdioClientTransport } = await loadClientSdk();
      // The child resolves the same config, agents and workspace as this process, whatever its cwd.
      const args = [
        CLI_ENTRY, 'serve', '--workspace', this.cfg.workspace,
        ...(this.cfg.agentsDirExplicit ? ['--agents', this.cfg.agentsDir] : []),
      ];
      if (this.cfg.configFile) args.push('--config', this.cfg.configFile);
      const transport = new StdioClientTransport({
        command: process.execPath,
        args,
        env: { ...(process.env as Record<string, string>), [CHILD_ENV]: '1', [CHAIN_KEY_ENV]: this.key.secret },
        cwd: this.cfg.workspace,
        stderr: 'inherit',
      });
      const client = new Client({ name: 'delegate-mcp-parent', version: VERSION });
      transport.onclose = () => {
        // A dead child is started again on the next delegation.
        if (this.client === client) this.client = undefined;
        if (!this.closed) log.warn('re-entry child exited; it will be restarted on the next delegation');
      };
      try {
        await client.connect(transport);
      } finally {
        this.connecting = undefined;
      }
      this.transport = transport;
      this.client = client;
      log.debug(`re-entry child started (pid ${transport.pid})`);
      return client;
    })();
    return this.connecting;
  }

  async call(
    agent: string,
    args: Record<string, unknown>,
    chain: CallChain,
    opts: { signal: AbortSignal; onProgress?: (message: string) => void; timeoutMs: number; meta?: TraceMeta },
  ): Promise<CallToolResult> {
    const client = await this.connect();
    return (await client.callTool(
      // The trace context (traceparent/tracestate, SEP-414) rides next to the chain: one trace across the hop.
      { name: agent, arguments: args, _meta: { ...opts.meta, [CHAIN_META_KEY]: chain, [CHAIN_MAC_META_KEY]: this.key.mac(chain) } },
      {
        signal: opts.signal,
        // Progress from the child keeps the hop alive and is forwarded to our own caller.
        onprogress: (p) => opts.onProgress?.(p.message ?? `${p.progress}`),
        resetTimeoutOnProgress: true,
        timeout: opts.timeoutMs,
        maxTotalTimeout: opts.timeoutMs,
      },
    )) as CallToolResult;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.client?.close().catch(() => {}); // closing the child: a failed close still ends it (the child dies with its stdin)
    this.client = undefined;
  }
}
