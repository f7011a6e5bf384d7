// Long because: a job's whole life on a worker (its verification, the run, its report, the books after it, a lost lock, the graceful stop) shares the node's maps of running runs, and reads best in one place.
// A queue worker: takes run jobs and runs them with its own orchestrator (piscina pool, permissions,
// sandbox, tool execution, audit log) — the authority for the runs it executes. Its books are in memory:
// the front that enqueued a run holds its budget and sent its slice as the run's caps. Cancels arrive
// over Redis pub/sub (BullMQ's own cancel reaches only the worker holding a job); delegations of its
// runs become jobs too (reentry-hub.ts). A worker that dies stops renewing its jobs' locks: another
// worker's stalled-job check fails them (maxStalledCount 0: never handed to a second worker unasked).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Queue, UnrecoverableError, WaitingError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { AgentStore } from '../agents/store.js';
import type { ResolvedConfig } from '../config/config.js';
import { log, throttledWarn } from '../log.js';
import { Orchestrator } from '../orchestrator/orchestrator.js';
import type { RunRecord } from '../orchestrator/runs.js';
import { emptyUsage, totalTokens } from '../contract/usage-sum.js';
import { connectBooks, connectRedis, RUN_QUEUE, warnIfVolatile, type QueueSettings } from './connection.js';
import { errorMessage } from '../describe-cause.js';
import type { Usage } from '../contract/usage.js';
import type { RedisLedger } from '../budget/redis-ledger.js';
import { JobWatch, STALLED_REASON } from './job-watch.js';
import { errorResult, keys, WORKER_BEAT_MS, type CancelMessage, type RunChannelMessage, type RunJob, type RunJobFailure, type RunJobProgress, type RunJobReturn, type WorkerBeat } from './jobs.js';
import { unknownAgentMessage } from '../orchestrator/run-request.js';
import { openCancel, openJob } from './signing.js';
import { QueueReentryHub } from './reentry-hub.js';
import { WorkerApprovals } from './approvals.js';

/** How long after its report a run's books are looked at here: its shared slice still open (its front gone), or its report never taken. */
const SETTLE_CHECK_MS = 2_000;
/** Looks at most this many times for a report BullMQ may still be retrying before charging the run's spend here. */
const UNREPORTED_CHECKS = 5;
/** How long a cancel for a run not (yet) running here is remembered: far longer than a job takes to start. */
const HEARD_CANCEL_KEPT_MS = 60_000;
/** Job takers: one per this many jobs at once, at most MAX_TAKERS (each holds a blocking connection). */
const JOBS_PER_TAKER = 16;
const MAX_TAKERS = 4;

/** A run going on here: its record once started, its job, and whether the queue gave it up (lock lost). */
interface Running {
  rec?: RunRecord;
  job: Job;
  lockLost?: true;
}

export interface WorkerNodeOptions {
  concurrency: number;
  /** Serve GET /healthz on this port (0: any free one); undefined: no HTTP listener. */
  healthPort?: number;
  healthHost?: string;
  /** Seconds a SIGTERM waits for running runs before cancelling them. */
  graceS: number;
  /** Runs beside a front, in its process (`serve --queue --work`): the front says what concerns them both at start. */
  local?: true;
}

export class QueueWorkerNode {
  private readonly controllers = new Map<string, AbortController>();
  /**
   * Cancels heard for runs not running here (yet): a worker that took a job hears its cancel possibly
   * before the run starts (the lock is taken in Redis, the message comes on another connection).
   */
  private readonly heardCancels = new Map<string, { reason: CancelMessage['reason']; at: number }>();
  /** The runs going on here, for a shutdown that decides which may go back to the queue. */
  private readonly running = new Map<string, Running>();
  /** Runs stopped by a shutdown: handed back to the queue, or cancelled ("worker shutting down"). */
  private readonly stopping = new Map<string, 'hand back' | 'cancel'>();
  /** Approval questions of runs whose front can ask, and their answers (approvals.ts). */
  private readonly approvals: WorkerApprovals;
  private counts = { done: 0, failed: 0 };
  /** Runs reported here whose books this worker looks at once more (settleAfterReport). */
  private readonly pendingSettles = new Map<string, { timer: NodeJS.Timeout; settle: () => Promise<void>; reported: boolean }>();
  private readonly startedAt = new Date().toISOString();
  private beat?: NodeJS.Timeout;
  private health?: http.Server;
  private closing = false;
  healthUrl?: string;

  private constructor(
    readonly orchestrator: Orchestrator,
    private readonly settings: QueueSettings,
    private readonly conn: Redis,
    private readonly sub: Redis,
    private readonly workers: Worker[],
    private readonly hubQueue: Queue,
    private readonly hub: QueueReentryHub,
    private readonly opts: WorkerNodeOptions,
    /** The shared books (Redis), where a run's slice reserved by its front is committed when it ends here. */
    private readonly shared: RedisLedger,
  ) {
    this.approvals = new WorkerApprovals(conn, settings, orchestrator.cfg.delegate.tools.askTimeoutS * 1000);
  }

  static async start(cfg: ResolvedConfig, agents: AgentStore, settings: QueueSettings, opts: WorkerNodeOptions): Promise<QueueWorkerNode> {
    // A job taken beyond what the pool runs or holds would fail "server busy" here, where it should wait
    // in the queue for this worker or another: take no more than the pool takes.
    const { maxThreads, concurrentTasksPerWorker, maxQueue } = cfg.delegate.pool;
    const capacity = maxThreads * concurrentTasksPerWorker + maxQueue;
    if (opts.concurrency > capacity) {
      log.warn(`queue worker: --concurrency ${opts.concurrency} is more than this worker's pool takes (delegate.pool: ${maxThreads} threads × ${concurrentTasksPerWorker} runs + ${maxQueue} queued = ${capacity}); taking ${capacity} at a time (raise delegate.pool.maxThreads, concurrentTasksPerWorker or maxQueue to take more)`);
      opts = { ...opts, concurrency: capacity };
    }
    const link = settings.link;
    const conn = link.watch(await connectRedis(settings.url, `worker ${settings.nodeId}`));
    if (!opts.local) await warnIfVolatile(conn, settings.url);
    const orchestrator = await Orchestrator.create(cfg, agents, { node: settings.nodeId, booksElsewhere: true });
    const { openRedisLedger } = await import('../budget/redis-ledger.js');
    const shared = await openRedisLedger({ redis: link.watch(await connectBooks(settings.url)), prefix: settings.prefix, server: cfg.delegate.budget, prices: cfg.delegate.prices, warn: (m) => log.warn(m) });
    orchestrator.auditStart();
    const prefix = settings.prefix;
    const hubQueue = new Queue(RUN_QUEUE, { connection: conn, prefix });
    hubQueue.on('error', link.error);
    const sub = link.watch(conn.duplicate());
    let node!: QueueWorkerNode;
    // BullMQ takes a worker's jobs one round trip after another: a burst (a delegate_parallel batch) starts
    // sooner through several takers, their concurrency adding up to this node's.
    const takers = Math.min(opts.concurrency, Math.max(1, Math.ceil(opts.concurrency / JOBS_PER_TAKER)), MAX_TAKERS);
    const workers = Array.from({ length: takers }, (_, i) =>
      new Worker(RUN_QUEUE, (job, token, signal) => node.process(job, token, signal), {
        connection: link.watch(conn.duplicate()),
        prefix,
        concurrency: Math.floor(opts.concurrency / takers) + (i < opts.concurrency % takers ? 1 : 0),
        name: settings.nodeId,
        autorun: false,
        // A lost worker is found within lockDuration + 2 × stalledInterval (its lock lapses, then two checks).
        lockDuration: settings.lockMs,
        stalledInterval: Math.max(1000, Math.floor(settings.lockMs / 2)),
        maxStalledCount: 0,
      }),
    );
    // Delegations report on this worker's runs channel (opened on the first one): no worker reads every
    // job's events (measured when it did: a socket write and a wake-up per job on a loaded 2-core VM).
    const hub = new QueueReentryHub(
      hubQueue,
      async () => {
        const watch = new JobWatch(undefined, hubQueue, settings, conn);
        await watch.listen(sub, keys.runsChannel(prefix, settings.nodeId));
        return watch;
      },
      conn,
      settings,
      cfg.delegate.runs.keepS,
    );
    node = new QueueWorkerNode(orchestrator, settings, conn, sub, workers, hubQueue, hub, opts, shared);
    orchestrator.delegations.hub = hub;
    for (const w of workers) w.on('error', link.error);
    for (const w of workers) {
      // The report reached the queue: its front has the result and settles the run's slice.
      w.on('completed', (job) => node.reportLanded(job.id));
      // A front that listens hears of its runs' failures here, not from the event stream.
      w.on('failed', (job, err) => node.failedHere(job, err));
      w.on('stalled', (jobId) => void node.stalledHere(jobId));
      // Redis says the lock is another's or gone: the queue has given the run up (its front told the
      // caller "worker lost" and released its slice). Going on would spend and act for nobody.
      w.on('lockRenewalFailed', (ids) => node.lockLost(ids));
    }
    await sub.subscribe(keys.cancelChannel(prefix), node.approvals.channel);
    const ignored = throttledWarn();
    sub.on('message', (channel: string, raw: string) => {
      if (channel === node.approvals.channel) return node.approvals.heard(raw);
      if (channel !== keys.cancelChannel(prefix)) return; // this worker's runs channel: its hub's watch hears it
      // Only a cancel signed with the queue's key stops a run; anything else on the channel is ignored.
      const m = openCancel(settings, raw);
      if (m.ok) node.abortRun(m.cancel);
      else ignored(`queue worker: ignored a cancel message on ${keys.cancelChannel(prefix)}: ${m.reason}`);
    });
    for (const w of workers) void w.run();
    await Promise.all(workers.map((w) => w.waitUntilReady()));
    if (opts.healthPort !== undefined) await node.serveHealth(opts.healthPort, opts.healthHost ?? '127.0.0.1');
    await node.sendBeat();
    node.beat = setInterval(() => void node.sendBeat(), WORKER_BEAT_MS);
    node.beat.unref();
    orchestrator.warm();
    log.info(`queue worker ${settings.nodeId}: taking runs from ${settings.prefix}:${RUN_QUEUE} (concurrency ${opts.concurrency})`);
    return node;
  }

  /** One job: the run on this node's orchestrator, progress out, cancel in, the result back. */
  private async process(job: Job, token?: string, bullSignal?: AbortSignal): Promise<RunJobReturn> {
    // Nothing of a job is used before its signature holds: anyone who can write to Redis can add one.
    const opened = openJob(this.settings, job.id, job.data);
    if (!opened.ok) throw this.refuse(job, opened.reason);
    const data = opened.job;
    const node = this.settings.nodeId;
    if (!this.orchestrator.agents.get(data.agent)) return this.noSuchAgent(data, node);
    const seal = this.settings.key.seal.bind(this.settings.key);
    const abort = new AbortController();
    this.controllers.set(data.runId, abort);
    const running: Running = { job };
    this.running.set(data.runId, running);
    const onBullAbort = () => abort.abort();
    bullSignal?.addEventListener('abort', onBullAbort, { once: true });
    // A batch task's parent scope is in its front's books (its slice comes as its caps): here the batch is its lineage only.
    const batch = !data.chain && data.parentRunId ? data.parentRunId : undefined;
    try {
      const follow = data.progress || data.background === true;
      // Progress can come while start() is still on the stack: read the record through this.
      let rec: RunRecord | undefined;
      rec = this.orchestrator.start({
        runId: data.runId,
        agent: data.agent,
        input: data.input,
        owner: data.owner,
        timeoutS: data.timeoutS,
        budget: data.budget,
        ...(batch && { parentRunId: batch, parentBooksElsewhere: true, rootRunId: data.rootRunId, depth: data.depth }),
        caller: data.caller ?? data.owner,
        ...(data.chain && { chain: data.chain, ...(data.chainClaimed && { chainClaimed: true }) }),
        // Started by a front's client that can be asked: `ask` rules go to it (a delegation's job never is, as in-process).
        ...(data.ask && { ask: this.approvals.askFor(data.runId, data.from) }),
        signal: abort.signal,
        onProgress: follow
          ? (line) => {
              const progress = seal('progress', this.settings.prefix, data.runId, { line, turn: rec?.turn ?? 0, usage: { ...(rec?.usage ?? emptyUsage()) }, node } satisfies RunJobProgress);
              this.tell(data, { progress });
              void job.updateProgress(progress).catch(() => {}); // progress is best effort; kept on the job for run_status from any front
            }
          : undefined,
      });
      running.rec = rec;
      // A cancel heard before the run started here (no round trip to ask Redis for it).
      const heard = this.heardCancels.get(data.runId);
      if (heard) {
        this.heardCancels.delete(data.runId);
        abort.abort(heard.reason);
      }
      let result = await rec.done;
      const stopped = this.stopping.get(data.runId);
      if (stopped === 'hand back' && result.status !== 'ok') {
        // Back to the queue for another worker (this one takes no more jobs); BullMQ leaves it as it is.
        rec.audit?.emit({ event: 'error', message: `worker shutting down: run handed back to the queue for another worker (${this.handBackWhy(rec, job)})` });
        // This attempt is never reported: what it spent (an opted-in agent's, past its first request) counts now.
        // Awaited: the worker closes its books right after its last hand-back.
        await this.chargeUnreported(data, result.model, rec.treeUsage ?? result.usage, result.cost_usd, rec.audit);
        await job.moveToWait(token);
        throw new WaitingError();
      }
      if (stopped === 'cancel' && result.status === 'cancelled') {
        rec.audit?.emit({ event: 'error', message: `worker shutting down: cancelled after the grace of ${this.opts.graceS} s (it had made model requests and its agent did not opt in to retries)` });
        result = { ...result, error: `worker shutting down: the run was still going after the worker's grace of ${this.opts.graceS} s and cannot be safely re-run elsewhere (it had made model requests or tool calls; an agent opts in with retry: {attempts, only: idempotent})` };
      }
      if (result.status === 'ok') this.counts.done++;
      else this.counts.failed++;
      const treeUsage = rec.treeUsage ?? result.usage ?? emptyUsage();
      this.settleAfterReport(data, result.model, treeUsage, result.cost_usd, rec.audit);
      const end = seal('return', this.settings.prefix, data.runId, { result, treeUsage, node } satisfies RunJobReturn);
      // A run stopped because the queue gave it up (its lock lost): its front ends it with that reason, not with this.
      return running.lockLost ? end : this.answer(data, end);
    } finally {
      bullSignal?.removeEventListener('abort', onBullAbort);
      this.controllers.delete(data.runId);
      this.running.delete(data.runId);
      this.stopping.delete(data.runId);
    }
  }

  /** A job for an agent this worker does not have (its agents differ from the front's): failed, with what to fix. */
  private noSuchAgent(data: RunJob, node: string): RunJobReturn {
    const error = `worker ${node} cannot run it: ${unknownAgentMessage(data.agent, this.orchestrator.agents.list().map((a) => a.name))}; start every worker with the agents the fronts offer (--agents DIR / --workspace DIR)`;
    log.warn(`queue worker: run ${data.runId}: ${error}`);
    this.counts.failed++;
    const result = errorResult(data.runId, data.agent, '', Date.now(), error, 'failed');
    return this.answer(data, this.settings.key.seal('return', this.settings.prefix, data.runId, { result, treeUsage: emptyUsage(), node } satisfies RunJobReturn));
  }

  /**
   * Tells the node that started a run (if it listens) on its runs channel. Best effort: a message nobody
   * hears is lost (pub/sub), and that node reads what it missed from the job (job-watch.ts).
   */
  private tell(data: Pick<RunJob, 'runId' | 'from' | 'listens'>, part: Omit<RunChannelMessage, 'runId'>): void {
    if (!data.listens) return;
    const message: RunChannelMessage = { runId: data.runId, ...part };
    void this.conn.publish(keys.runsChannel(this.settings.prefix, data.from), JSON.stringify(message)).catch(() => {}); // lost: its node's checks find the job's end
  }

  /** A run's signed answer, told to its front before BullMQ records it (the front answers its caller a round trip sooner). */
  private answer(data: RunJob, end: RunJobReturn & { sig: unknown }): RunJobReturn {
    this.tell(data, { end });
    return end;
  }

  /** A job that failed here (its front hears why). */
  failedHere(job: Job | undefined, err: Error): void {
    if (!job?.finishedOn) return; // BullMQ tries it again (or could not record the failure): not its end
    this.tellFailure(job, { reason: job.failedReason || err.message });
  }

  /** A job whose worker was lost, found by this worker's stalled-job check: its front hears it. */
  async stalledHere(jobId: string): Promise<void> {
    const job = await this.hubQueue.getJob(jobId).catch(() => undefined); // Redis away: its front's checks find the job's deferred failure
    if (job) this.tellFailure(job, { reason: STALLED_REASON, stalled: true });
  }

  /** A job's failure, signed, to the node that started it; a job that fails verification names no node to tell. */
  private tellFailure(job: Job, failure: RunJobFailure): void {
    const opened = openJob(this.settings, job.id, job.data, 0);
    if (opened.ok) this.tell(opened.job, { failure: this.settings.key.seal('failure', this.settings.prefix, opened.job.runId, failure) });
  }

  /**
   * The books after a run's report. Its front settles its shared slice when the report reaches it (off
   * the call's path); a delegation's parent counts it in its tree. SETTLE_CHECK_MS later this worker looks:
   * a slice still open means its front is gone (or far behind), so this worker, which knows what the run
   * spent, commits it and closes the run (nothing stays reserved; the books settle a slice once, whoever
   * comes first). A slice its front released means no report counted (it gave the run up: lost, or past
   * its deadline there); nor does a report that never reached the queue (a delegation given up by its
   * parent): what the run spent is charged here.
   */
  private settleAfterReport(data: RunJob, model: string, treeUsage: Usage, usd: number | null, audit: RunRecord['audit']): void {
    const { runId } = data;
    const slice = data.sharedBooks;
    if (!slice && totalTokens(treeUsage) === 0 && !usd) return; // nothing spent, nothing held
    const settle = async () => {
      const reported = this.pendingSettles.get(runId)?.reported ?? false;
      this.pendingSettles.delete(runId);
      try {
        const books = slice ? await this.shared.settlement(slice.reservationId) : 'unknown';
        if (slice && books === 'held') {
          await this.shared.commitAndClose(runId, slice.reservationId, slice.model, treeUsage, usd);
          log.warn(`queue worker: run ${runId}: ${reported ? `its front did not settle its budget slice within ${SETTLE_CHECK_MS / 1000} s (gone?)` : 'its report never reached the queue (given up as lost?)'}; settled here`);
          return;
        }
        if (books === 'committed') return; // its front counted what the report said
        if (books === 'released') return await this.chargeUnreported(data, model || slice?.model || '', treeUsage, usd, audit);
        if (reported) return; // its front settled the slice (long ago: its end is forgotten), or its parent counted it
        // No 'completed' here yet: BullMQ may still be retrying the report (Redis was away a moment).
        // Charged only once the queue says the job ended without it (failed by another worker's
        // stalled check, or gone): a report that lands brings the spend to its front or parent.
        const state = await this.hubQueue.getJobState(runId);
        if (state === 'completed') return;
        if ((state === 'active' || state === 'waiting') && checks < UNREPORTED_CHECKS) return rearm();
        await this.chargeUnreported(data, model || slice?.model || '', treeUsage, usd, audit);
      } catch (err) {
        if (/already settled/.test(errorMessage(err))) return; // its front got there meanwhile
        log.warn(`queue worker: could not settle run ${runId} in the shared budget books: ${errorMessage(err)} (its records expire after runTtlS)`);
      }
    };
    let checks = 0;
    const rearm = () => {
      checks++;
      const timer = setTimeout(() => void settle(), SETTLE_CHECK_MS);
      timer.unref();
      this.pendingSettles.set(runId, { timer, settle, reported: false });
    };
    rearm();
  }

  /** What a run spent that no report brings to anyone's books: charged to the shared books here, once. */
  private async chargeUnreported(data: RunJob, model: string, usage: Usage, usd: number | null, audit: RunRecord['audit']): Promise<void> {
    if (totalTokens(usage) === 0 && !usd) return;
    try {
      const c = await this.shared.charge({ runId: data.runId, agent: data.agent, model, usage, usd });
      audit?.emit({ event: 'budget_commit', scope: 'run', tokens: c.tokens, usd: c.usd, message: 'charged to the shared books without a slice: no report brought this run\'s spend to its front or parent (given up as lost or past its deadline there, handed back, or its job gone from Redis)' });
      log.warn(`queue worker: run ${data.runId} went on here unreported (given up as lost or past its deadline by its front, handed back, or its job gone from Redis); what it spent (${c.tokens} tokens${c.usd !== null ? `, $${c.usd.toFixed(4)}` : ''}) is charged to the shared budget books`);
    } catch (err) {
      log.warn(`queue worker: could not charge run ${data.runId}'s spend to the shared budget books: ${errorMessage(err)}`);
    }
  }

  /** BullMQ took the run's report (the job completed): its front settles the slice. */
  reportLanded(jobId: string | undefined): void {
    const p = jobId ? this.pendingSettles.get(jobId) : undefined;
    if (p) p.reported = true;
  }

  /** Runs whose lock Redis no longer lets this worker renew: stopped, with the reason in their audit. */
  lockLost(jobIds: string[]): void {
    for (const id of jobIds) {
      const c = this.controllers.get(id);
      if (!c || c.signal.aborted) continue;
      const running = this.running.get(id);
      if (running) running.lockLost = true;
      const rec = running?.rec;
      const message = `the queue gave this run up as lost (this worker could not keep its lock: paused or cut off from Redis for longer than delegate.queue.lostAfterS) and told its caller so; stopped here (what it spent is still counted)`;
      rec?.audit?.emit({ event: 'error', message });
      log.warn(`queue worker: run ${id}: ${message}`);
      c.abort('cancelled');
    }
  }

  /** A job that fails verification: never run, failed for good with the reason, audited and logged here. */
  private refuse(job: Job, reason: string): UnrecoverableError {
    this.counts.failed++;
    const runId = typeof job.id === 'string' && /^run_[0-9a-f-]{36}$/.test(job.id) ? job.id : null;
    const message = `queue job ${runId ?? JSON.stringify(String(job.id).slice(0, 80))} refused by ${this.settings.nodeId}, not run: ${reason}`;
    this.orchestrator.audit?.emit({ event: 'error', run_id: runId, message });
    log.warn(message);
    return new UnrecoverableError(message);
  }

  /**
   * Whether a run may run again on another worker: it made no model request yet (its first turn's
   * budget gate never opened, so no request and no tool call), or its agent opted in to retries.
   */
  private handBackWhy(rec: RunRecord | undefined, job: Job): string | undefined {
    if (!rec || rec.turn === 0) return 'it had made no model request yet';
    if ((job.opts.attempts ?? 1) > 1) return 'its agent opted in to retries';
    return undefined;
  }

  abortRun(m: CancelMessage): void {
    const c = this.controllers.get(m.runId);
    if (c) return c.abort(m.reason);
    const now = Date.now();
    for (const [id, h] of this.heardCancels) {
      if (now - h.at < HEARD_CANCEL_KEPT_MS) break;
      this.heardCancels.delete(id);
    }
    this.heardCancels.delete(m.runId); // kept in the order heard
    this.heardCancels.set(m.runId, { reason: m.reason, at: now });
  }

  private beatRecord(): WorkerBeat {
    return {
      node: this.settings.nodeId,
      concurrency: this.opts.concurrency,
      active: this.controllers.size,
      done: this.counts.done,
      failed: this.counts.failed,
      startedAt: this.startedAt,
      beatAt: new Date().toISOString(),
      ...(this.healthUrl && { health: this.healthUrl }),
      ...(this.closing && { closing: true }),
    };
  }

  private async sendBeat(): Promise<void> {
    await this.conn.hset(keys.workers(this.settings.prefix), this.settings.nodeId, JSON.stringify(this.beatRecord())).catch(() => {}); // Redis away: the next beat says it again
  }

  private async serveHealth(port: number, host: string): Promise<void> {
    this.health = http.createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/healthz') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /healthz\n');
        return;
      }
      const redis = this.conn.status;
      const ok = redis === 'ready' && !this.closing;
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ ok, redis, ...this.beatRecord() }) + '\n');
    });
    await new Promise<void>((resolve, reject) => {
      this.health!.once('error', reject);
      this.health!.listen(port, host, () => resolve());
    });
    const a = this.health.address() as AddressInfo;
    this.healthUrl = `http://${host}:${a.port}/healthz`;
    log.info(`queue worker ${this.settings.nodeId}: health on ${this.healthUrl}`);
  }

  /**
   * Graceful stop (SIGTERM): take no new jobs, give running runs `graceS` to finish; then hand back to
   * the queue those that can be safely re-run elsewhere and cancel the others with the reason (each
   * still ends with a run_end here), then leave the worker list.
   */
  async close(reason = 'shutdown'): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await this.sendBeat();
    const closing = Promise.all(this.workers.map((w) => w.close()));
    const grace = setTimeout(() => {
      for (const [runId, c] of this.controllers) {
        const r = this.running.get(runId);
        this.stopping.set(runId, r && this.handBackWhy(r.rec, r.job) ? 'hand back' : 'cancel');
        c.abort('cancelled');
      }
    }, this.opts.graceS * 1000);
    await closing;
    clearTimeout(grace);
    this.approvals.close();
    // Stopping: the slices still waiting for their fronts are checked now, while the books are open.
    await Promise.all([...this.pendingSettles.values()].map((p) => (clearTimeout(p.timer), p.settle())));
    if (this.beat) clearInterval(this.beat);
    await this.conn.hdel(keys.workers(this.settings.prefix), this.settings.nodeId).catch(() => {}); // gone anyway: queue status ages out silent workers
    this.health?.close();
    await this.orchestrator.close(reason);
    await this.hub.closeWatch();
    await this.hubQueue.close().catch(() => {}); // closing: its delegations ended with the orchestrator
    await this.shared.close();
    this.shared.redis.disconnect();
    this.sub.disconnect();
    this.conn.disconnect();
  }
}
