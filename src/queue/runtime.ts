// What the queue mode's commands do (`serve --queue [--work]`, `worker`, `queue status`); commands.ts
// declares them and imports this only when one runs, so the embedded default never loads BullMQ.
import { Queue, QueueEvents } from 'bullmq';
import type { AgentStore } from '../agents/store.js';
import type { ResolvedConfig } from '../config/config.js';
import { log } from '../log.js';
import type { Orchestrator } from '../orchestrator/orchestrator.js';
import { connectBooks, connectRedis, persistenceWarning, queuePrefix, queueSettings, redisPersistence, RUN_QUEUE, warnIfVolatile, type QueueSettings } from './connection.js';
import { safeRedisUrl } from '../net/redis-url.js';
import { QueueFront } from './front.js';
import { JobWatch, optInRetries } from './job-watch.js';
import { FrontApprovals } from './approvals.js';
import type { RedisLedger } from '../budget/redis-ledger.js';
import { keys, workerAlive, type WorkerBeat } from './jobs.js';
import { QueueWorkerNode } from './worker-node.js';

/** Default jobs at once per worker: what its pool runs at once. */
function defaultConcurrency(cfg: ResolvedConfig): number {
  return Math.min(256, cfg.delegate.pool.maxThreads * cfg.delegate.pool.concurrentTasksPerWorker);
}

/**
 * Step one of `serve --queue`: Redis must answer before anything else starts. The front's budget books
 * are the ones every front shares (src/budget/redis-ledger.ts, same prefix): its orchestrator runs over
 * them (`ledger`), so a run's slice is reserved once, where N fronts × M runs never commit past a cap.
 */
export async function prepareFront(cfg: ResolvedConfig, url: string): Promise<{ settings: QueueSettings; ledger: RedisLedger; attach: (o: Orchestrator, agents: AgentStore, work?: { concurrency?: number }) => Promise<void> }> {
  const settings = queueSettings(cfg, url, 'front');
  const conn = settings.link.watch(await connectRedis(url, `front ${settings.nodeId}`));
  await warnIfVolatile(conn, url);
  const { openRedisLedger } = await import('../budget/redis-ledger.js');
  // Its own connection: the ledger sends a tick's calls (a run's open and reservation, a batch's runs,
  // a burst of results' commits) as a few budgetSteps scripts (redis-steps.ts).
  const books = settings.link.watch(await connectBooks(url));
  const shared = await openRedisLedger({ redis: books, prefix: settings.prefix, server: cfg.delegate.budget, prices: cfg.delegate.prices, warn: (m) => log.warn(m) });
  return {
    settings,
    ledger: shared,
    attach: async (orchestrator, agents, work) => {
      const queue = new Queue(RUN_QUEUE, { connection: conn, prefix: settings.prefix });
      queue.on('error', settings.link.error);
      // The event stream is read only to follow another front's runs (run_status / run_result): this
      // front's own runs report on its runs channel.
      const openEvents = async () => {
        const events = new QueueEvents(RUN_QUEUE, { connection: settings.link.watch(conn.duplicate()), prefix: settings.prefix });
        events.on('error', settings.link.error);
        await events.waitUntilReady();
        return events;
      };
      // An agent that opted in (retry: {attempts, only: idempotent}) goes back to the queue when its worker is lost.
      const { retry, willRetry } = optInRetries(queue, conn, (jobId, agent) => log.warn(`queue: run ${jobId} (${agent}) lost its worker; retrying (the agent opted in)`));
      const watch = new JobWatch(openEvents, queue, settings, conn, retry, willRetry);
      const runsSub = settings.link.watch(conn.duplicate());
      await watch.listen(runsSub, keys.runsChannel(settings.prefix, settings.nodeId));
      const front = new QueueFront(orchestrator, queue, watch, conn, settings, shared);
      // Listening before the first run is enqueued: its worker's approval questions come to this front.
      front.approvals = await FrontApprovals.open(conn, settings, orchestrator.cfg.delegate.tools.askTimeoutS * 1000);
      let local: QueueWorkerNode | undefined;
      if (work) {
        local = await QueueWorkerNode.start(orchestrator.cfg, agents, { ...settings, nodeId: settings.nodeId.replace(/^front-/, 'worker-') }, {
          concurrency: work.concurrency ?? defaultConcurrency(orchestrator.cfg),
          graceS: orchestrator.cfg.delegate.stdio.shutdownGraceS,
          local: true,
        });
      }
      orchestrator.remote = {
        start: (req) => front.start(req),
        find: (id, owner) => front.find(id, owner),
        close: async () => {
          await local?.close();
          await front.approvals?.close();
          await front.close();
          runsSub.disconnect();
          // The orchestrator's books: its caller closes them (Orchestrator.create, `ledger`).
          await shared.close();
          books.disconnect();
        },
      };
      log.info(`queue front ${settings.nodeId}: runs go to ${safeRedisUrl(url)} (${settings.prefix}:${RUN_QUEUE})${local ? ', with a local worker' : ''}`);
    },
  };
}

export interface WorkerCliOpts {
  queue?: string;
  concurrency?: number;
  healthPort?: number;
  healthHost?: string;
  grace?: number;
}

/** `delegate-mcp worker`: runs jobs until SIGTERM/SIGINT, then stops gracefully. */
export async function runWorker(cfg: ResolvedConfig, agents: AgentStore, url: string, opts: WorkerCliOpts): Promise<void> {
  const graceS = opts.grace ?? cfg.delegate.stdio.shutdownGraceS;
  const node = await QueueWorkerNode.start(cfg, agents, queueSettings(cfg, url, 'worker'), {
    concurrency: opts.concurrency ?? defaultConcurrency(cfg),
    healthPort: opts.healthPort,
    healthHost: opts.healthHost,
    graceS,
  });
  let stopping = false;
  const stop = (why: string) => {
    if (stopping) process.exit(1); // a second signal: leave now
    stopping = true;
    log.info(`queue worker: ${why}: taking no new runs; running runs get ${graceS} s`);
    void node.close(why).then(
      () => process.exit(0),
      (err: Error) => {
        log.error(`queue worker: closing: ${err.message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** `delegate-mcp queue status`. */
export async function queueStatus(cfg: ResolvedConfig, url: string, json: boolean): Promise<string> {
  const settings = { prefix: queuePrefix(cfg) }; // reads counts and beats only: no key needed
  const conn = await connectRedis(url, 'queue status');
  const queue = new Queue(RUN_QUEUE, { connection: conn, prefix: settings.prefix });
  queue.on('error', () => {}); // a one-shot reader: a lost link fails the read below, which says why
  try {
    const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed');
    const now = Date.now();
    const beats = Object.values(await conn.hgetall(keys.workers(settings.prefix))).map((raw) => JSON.parse(raw) as WorkerBeat);
    const workers = beats.map((w) => ({ ...w, alive: workerAlive(w, now) }));
    const persistence = await redisPersistence(conn);
    const volatile = persistenceWarning(url, persistence);
    const out = { queue: `${safeRedisUrl(url)} ${settings.prefix}:${RUN_QUEUE}`, counts, workers, persistence: persistence ?? null };
    if (json) return JSON.stringify(out, null, 2);
    return [
      `queue ${out.queue}`,
      `waiting ${counts.waiting ?? 0} · active ${counts.active ?? 0} · delayed ${counts.delayed ?? 0} · failed ${counts.failed ?? 0} · done ${counts.completed ?? 0} (kept ${cfg.delegate.runs.keepS} s)`,
      workers.length ? 'workers:' : 'workers: none',
      ...workers.map(
        (w) =>
          `  ${w.node}  ${w.alive ? (w.closing ? 'closing' : 'alive') : `silent since ${w.beatAt}`}  active ${w.active}/${w.concurrency}  ok ${w.done}  failed ${w.failed}${w.health ? `  ${w.health}` : ''}`,
      ),
      ...(volatile ? [`warning: ${volatile}`] : []),
    ].join('\n');
  } finally {
    await queue.close();
    conn.disconnect();
  }
}

/** `delegate-mcp budget --queue URL`: the shared books (every front's runs) for a UTC day. */
export async function sharedBudgetStatus(cfg: ResolvedConfig, url: string, day: string | undefined): Promise<Awaited<ReturnType<import('../budget/redis-ledger.js').RedisLedger['status']>>> {
  const settings = { prefix: queuePrefix(cfg) };
  const { openRedisLedger } = await import('../budget/redis-ledger.js');
  const shared = await openRedisLedger({ url, prefix: settings.prefix, server: cfg.delegate.budget, prices: cfg.delegate.prices });
  try {
    return await shared.status({ day });
  } finally {
    await shared.close();
  }
}
