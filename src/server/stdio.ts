// stdio transport: the SDK's serveStdio answers both protocol eras (2025-11-25 with initialize, and
// 2026-07-28) from one factory. The process ends when the client closes stdin or sends a signal.
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import { log } from '../log.js';
import type { Orchestrator } from '../orchestrator/orchestrator.js';
import { createServerFactory } from './server.js';

export interface StdioServeOptions {
  /**
   * Another transport (HTTP) serves from the same process and owns shutdown: stdin EOF then closes
   * only this connection, and signals are left to the caller.
   */
  shared?: boolean;
}

export async function serveStdioServer(orchestrator: Orchestrator, opts: StdioServeOptions = {}): Promise<{ close(): Promise<void> }> {
  if (opts.shared) {
    const shared = serveStdio(createServerFactory({ orchestrator }), {
      onerror: (err) => log.error(`stdio transport: ${err.message}`),
    });
    process.stdin.on('end', () => {
      log.info('stdio client disconnected; still serving HTTP');
      void shared.close().catch(() => {});
    });
    return shared;
  }
  let closing = false;
  const shutdown = async (why: string) => {
    if (closing) return;
    closing = true;
    log.info(`shutting down (${why})`);
    await handle.close().catch(() => {});
    await orchestrator.close(why).catch(() => {});
    process.exit(0);
  };
  const handle = serveStdio(createServerFactory({ orchestrator }), {
    onerror: (err) => log.error(`stdio transport: ${err.message}`),
  });
  // The transport ends on stdin EOF; without this a warm pool would keep the process alive.
  process.stdin.on('end', () => void shutdown('stdin closed'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  return handle;
}
