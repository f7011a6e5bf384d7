// stdio transport: the SDK's serveStdio answers both protocol eras (2025-11-25 with initialize, and
// 2026-07-28) from one factory, over our own line transport (stdio-transport.ts: bad input gets an
// error response instead of ending the connection). The process ends when the client closes stdin,
// or drains on a signal: new calls are refused, running runs get delegate.stdio.shutdownGraceS to
// finish, the rest are cancelled (each caller gets its cancelled result, each run its run_end), exit 0.
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import { log } from '../log.js';
import type { Orchestrator } from '../orchestrator/orchestrator.js';
import { createServerFactory } from '../mcp/server.js';
import { LineTransport } from './stdio-transport.js';

export interface StdioServeOptions {
  /**
   * Another transport (HTTP) serves from the same process and owns shutdown: stdin EOF then closes
   * only this connection, and signals are left to the caller.
   */
  shared?: boolean;
}

export interface StdioHandle {
  /** New tools/call requests are answered at once with this reason (the server is draining). */
  refuseNewCalls(reason: string): void;
  /** Waits (up to timeoutMs) until every request read so far has been answered. */
  whenAnswered(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/** After the runs have ended, how long their results may take to be written before the connection closes. */
const ANSWER_FLUSH_MS = 3_000;

export async function serveStdioServer(orchestrator: Orchestrator, opts: StdioServeOptions = {}): Promise<StdioHandle> {
  const cfg = orchestrator.cfg.delegate.stdio;
  const wire = new LineTransport(cfg.maxMessageBytes);
  const served = serveStdio(createServerFactory({ orchestrator }), {
    transport: wire,
    onerror: (err) => log.warn(`stdio: ${err.message}`),
  });
  const handle: StdioHandle = {
    refuseNewCalls: (reason) => wire.refuseNewCalls(reason),
    whenAnswered: (ms) => wire.whenAnswered(ms),
    close: () => served.close(),
  };
  if (opts.shared) {
    process.stdin.on('end', () => {
      log.info('stdio client disconnected; still serving HTTP');
      void served.close().catch(() => {}); // the stdio client is gone; HTTP keeps serving
    });
    return handle;
  }
  let closing = false;
  const shutdown = async (why: string, graceS: number) => {
    if (closing) {
      if (why !== 'stdin closed') {
        log.warn(`${why} again: exiting without waiting`);
        process.exit(1);
      }
      return;
    }
    closing = true;
    // A stuck close must not keep the process forever.
    setTimeout(() => {
      log.error('shutdown did not finish in time; exiting');
      process.exit(1);
    }, graceS * 1000 + 2 * orchestrator.cfg.delegate.runs.cancelGraceMs + ANSWER_FLUSH_MS + 10_000).unref();
    const running = orchestrator.runs.list().filter((r) => r.status === 'running').length;
    log.info(`shutting down (${why}): not accepting new calls; ${running} run(s) running${graceS ? `, waiting up to ${graceS} s` : ''}`);
    wire.refuseNewCalls(`server is shutting down (${why}): it takes no new calls; retry with a new server`);
    await orchestrator.waitForRuns(graceS * 1000);
    // Cancels what still runs (each gets its run_end), then closes pool, books and the audit log.
    await orchestrator.close(why).catch((err: Error) => log.error(`closing: ${err.message}`));
    // Every caller gets its result (finished or cancelled) before the connection goes.
    if (!(await wire.whenAnswered(ANSWER_FLUSH_MS))) log.warn(`${wire.pendingRequests} request(s) still unanswered at exit`);
    await served.close().catch(() => {}); // exiting: every caller was answered above
    process.exit(0);
  };
  // The client went away: nobody is left to take a result, so nothing waits.
  process.stdin.on('end', () => void shutdown('stdin closed', 0));
  process.on('SIGTERM', () => void shutdown('SIGTERM', cfg.shutdownGraceS));
  process.on('SIGINT', () => void shutdown('SIGINT', cfg.shutdownGraceS));
  return handle;
}
