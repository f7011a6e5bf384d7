// stdio transport: the SDK's serveStdio answers both protocol eras (2025-11-25 with initialize, and
// 2026-07-28) from one factory. The process ends when the client closes stdin or sends a signal.
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import { log } from '../log.js';
import type { Orchestrator } from '../orchestrator/orchestrator.js';
import { createServerFactory } from './server.js';

export async function serveStdioServer(orchestrator: Orchestrator): Promise<void> {
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
}
