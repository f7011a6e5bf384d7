// The queue mode's commands: `worker` and `queue status` (`serve --queue` is an option of serve). Only
// declared here; what they do (runtime.ts, BullMQ, ioredis) loads when one of them runs.
import type { Command } from 'commander';
import type { AgentStore } from '../agents/store.js';
import { loadConfig, type ConfigOverrides, type ResolvedConfig } from '../config/config.js';
import { ConfigError } from '../config/config-error.js';
import { queueUrl } from './connection.js';

/** `--concurrency N` / `--health-port P` / `--grace S`: whole numbers, said plainly when not. */
export function intOption(flag: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(`${flag}: expected a whole number from ${min} to ${max}, got "${v}"`);
    return n;
  };
}

const QUEUE_FLAG_HELP = 'redis://HOST:PORT/DB (default: DELEGATE_MCP_QUEUE_URL, else delegate.queue.url in mcp.json)';

function needUrl(cfg: ResolvedConfig, flag: string | undefined, what: string): string {
  const url = queueUrl(cfg, flag);
  if (!url) throw new ConfigError(`${what}: no queue given (--queue redis://HOST:PORT/DB, DELEGATE_MCP_QUEUE_URL or delegate.queue.url in mcp.json)`);
  return url;
}

interface QueueCliOpts extends ConfigOverrides {
  queue?: string;
  concurrency?: number;
  healthPort?: number;
  healthHost?: string;
  grace?: number;
  json?: boolean;
}

export function registerQueueCommands(
  program: Command,
  common: { addCommon: (cmd: Command) => Command; boot: (opts: ConfigOverrides) => { cfg: ResolvedConfig; agents: AgentStore } },
): void {
  common
    .addCommon(program.command('worker').description('run agent runs from the queue (BullMQ on Redis) that `serve --queue` fronts fill'))
    .option('--queue <url>', QUEUE_FLAG_HELP)
    .option('--concurrency <n>', 'runs at once on this worker (default: pool.maxThreads × pool.concurrentTasksPerWorker, at most 256)', intOption('--concurrency', 1, 1024))
    .option('--health-port <port>', 'serve GET /healthz on this port (0: a free one; the address is printed on stderr)', intOption('--health-port', 0, 65535))
    .option('--health-host <host>', 'address /healthz binds (default 127.0.0.1)')
    .option('--grace <seconds>', 'on SIGTERM, how long running runs may finish; then a run that can be safely re-run (no model request yet, or its agent opted in to retries) goes back to the queue and the others are cancelled (default: delegate.stdio.shutdownGraceS)', intOption('--grace', 0, 3600))
    .action(async (opts: QueueCliOpts) => {
      const { cfg, agents } = common.boot(opts);
      const url = needUrl(cfg, opts.queue, 'worker');
      const { runWorker } = await import('./runtime.js');
      await runWorker(cfg, agents, url, opts);
    });

  const queueCmd = program.command('queue').description('the run queue (queue mode)');
  common
    .addCommon(queueCmd.command('status').description('jobs waiting, active, failed and done, and each worker'))
    .option('--queue <url>', QUEUE_FLAG_HELP)
    .option('--json', 'print as JSON')
    .action(async (opts: QueueCliOpts) => {
      const cfg = loadConfig(opts);
      const url = needUrl(cfg, opts.queue, 'queue status');
      const { queueStatus } = await import('./runtime.js');
      process.stdout.write((await queueStatus(cfg, url, opts.json === true)) + '\n');
    });
}
