// The `serve --http [--stdio]` process: resolves where to listen and with which token, refuses an
// unauthenticated bind beyond loopback, starts HTTP (and stdio alongside when asked), and owns the
// graceful shutdown on SIGTERM/SIGINT: stop accepting, let running runs finish within the grace
// period, cancel the rest (their run_end reaches the audit log), flush the audit log, exit 0.
import { type ResolvedConfig } from '../config/config.js';
import { ConfigError } from '../config/config-error.js';
import { log } from '../log.js';
import type { Orchestrator } from '../orchestrator/orchestrator.js';
import { isLoopbackHost } from '../net/loopback.js';
import { startHttpServer, type HttpServeOptions } from './http.js';
import { serveStdioServer } from './stdio.js';

export interface HttpCliOptions {
  host?: string;
  port?: string | number;
  token?: string;
}

/** Flags over env over config; throws ConfigError (exit 2, reason on stderr) for an unsafe or bad setup. */
export function resolveHttpOptions(cfg: ResolvedConfig, cli: HttpCliOptions, env = process.env): HttpServeOptions & { graceS: number } {
  const h = cfg.delegate.http;
  const host = cli.host ?? h.host;
  const portRaw = cli.port ?? h.port;
  const port = typeof portRaw === 'number' ? portRaw : /^\d+$/.test(portRaw) ? Number(portRaw) : NaN;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`--port: not a TCP port: ${portRaw}`);
  const token = cli.token || env.DELEGATE_MCP_TOKEN || h.token || undefined;
  if (!token && !isLoopbackHost(host)) {
    throw new ConfigError(
      `refusing to listen on ${host} without a bearer token: anyone who can reach that address could run agents. ` +
        'Set DELEGATE_MCP_TOKEN (or --token, or delegate.http.token in mcp.json), or bind to 127.0.0.1.',
    );
  }
  return {
    host,
    port,
    token,
    graceS: h.shutdownGraceS,
    limits: {
      maxBodyBytes: h.maxBodyBytes,
      maxSessions: h.maxSessions,
      maxRunsPerSession: h.maxRunsPerSession,
      sessionIdleS: h.sessionIdleS,
      resumeGraceS: h.resumeGraceS,
      allowedHosts: h.allowedHosts,
      allowedOrigins: h.allowedOrigins,
    },
  };
}

export async function serveHttp(orchestrator: Orchestrator, opts: HttpServeOptions & { graceS: number; stdio?: boolean }): Promise<void> {
  const http = await startHttpServer(orchestrator, opts);
  const stdio = opts.stdio ? await serveStdioServer(orchestrator, { shared: true }) : undefined;
  // Tests and process managers read this line; it never carries the token.
  process.stderr.write(
    `delegate-mcp: listening on ${http.url} (MCP at /mcp, legacy SSE at /sse, health at /healthz${opts.token ? '; bearer token required' : ''})\n`,
  );
  if (!opts.token) log.info('no bearer token set: any local process can call the agents (set DELEGATE_MCP_TOKEN to require one)');

  let stopping = false;
  const shutdown = async (why: string) => {
    if (stopping) {
      log.warn(`${why} again: exiting without waiting`);
      process.exit(1);
    }
    stopping = true;
    const graceMs = opts.graceS * 1000;
    // A stuck close must not keep the process forever.
    setTimeout(() => {
      log.error('shutdown did not finish in time; exiting');
      process.exit(1);
    }, graceMs + orchestrator.cfg.delegate.runs.cancelGraceMs + 10_000).unref();
    const running = orchestrator.runs.list().filter((r) => r.status === 'running').length;
    log.info(`shutting down (${why}): not accepting new requests; ${running} run(s) running, waiting up to ${opts.graceS} s`);
    stdio?.refuseNewCalls(`server is shutting down (${why}): it takes no new calls; retry with a new server`);
    await http.drain(graceMs).catch(() => {}); // drain() never fails for a reason to act on: the runs still going are cancelled below either way
    // Cancels what still runs (each gets its run_end), then closes pool, books and the audit log.
    await orchestrator.close(why).catch((err: Error) => log.error(`closing: ${err.message}`));
    await stdio?.whenAnswered(3_000);
    await stdio?.close().catch(() => {}); // exiting: a stdio close that fails leaves nothing to clean up
    // Let the last results (finished or cancelled) reach their clients before the sockets go.
    await new Promise((r) => setTimeout(r, 100));
    await http.close().catch(() => {}); // exiting: the sockets go with the process anyway
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}
