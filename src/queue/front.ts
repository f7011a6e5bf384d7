// Long because: a run's life on a front (its books, the job, deadline, cancel, its end, a lookup from another
// front) shares one closure's state and settle-once rules; split, they would be read across files.
// A queue front: the MCP server's orchestrator hands each run to the queue instead of its own pool.
// It checks what it can up front (the agent, the queue's capacity, Redis being there) and holds the run's
// budget: a slice reserved in its books — the ones every front shares, in Redis (server daily, agent
// daily, batch, the caller's caps) — travels with the job as the run's caps, and what the worker reports
// for the run's whole tree is committed to it, as a re-entry parent does for its child. Workers keep
// their books in memory, so nothing is counted twice.
// Long because: start() is one run's whole life on a front (its books, the job, its watch, deadline and cancel), which reads best whole.
import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { HEARTBEAT_MS, progressLine, type Orchestrator, type RemoteRuns, type RunRequest } from '../orchestrator/orchestrator.js';
import { mayAccess, type RunRecord } from '../orchestrator/runs.js';
import type { RunBudget } from '../orchestrator/budget-gate.js';
import type { AgentDefinition } from '../agents/definition.js';
import { emptyUsage } from '../contract/usage-sum.js';
import type { Usage } from '../contract/usage.js';
import type { RunResult } from '../contract/run.js';
import { log } from '../log.js';
import { errorMessage } from '../describe-cause.js';
import { errorResult, keys, isWorkerLost, workerAlive, workerLostMessage, WORKER_BEAT_MS, type RunJob, type WorkerBeat } from './jobs.js';
import { answerOutcome, openProgress, JobWatch, type JobOutcome } from './job-watch.js';
import { cancelMessage, openJob } from './signing.js';
import type { FrontApprovals } from './approvals.js';
import { RUN_QUEUE, type QueueSettings } from './connection.js';
import { safeRedisUrl } from '../net/redis-url.js';
import { withTimeout } from '../time/with-timeout.js';
import { recordedLineage } from '../orchestrator/chain.js';
import type { RedisLedger } from '../budget/redis-ledger.js';

/** How long a front waits for Redis to take a job before the call fails with the reason. */
const ENQUEUE_TIMEOUT_MS = 5_000;
/** Jobs of one tick sent to Redis together, at most this many: more go as soon as they are ready. */
const ADD_EARLY_AT = 16;

export class QueueFront implements RemoteRuns {
  /** Why Redis cannot be used right now (new calls fail fast with it); undefined when connected. */
  private down?: string;
  /** Jobs waiting for a worker: Redis's count, refreshed at most every 250 ms, plus what was added since. */
  private waiting = { count: 0, at: 0, addedSince: 0 };
  /** Where the workers' approval questions for this front's runs come (set before the first run). */
  approvals?: FrontApprovals;

  constructor(
    private readonly orchestrator: Orchestrator,
    private readonly queue: Queue,
    private readonly watch: JobWatch,
    private readonly conn: Redis,
    private readonly settings: QueueSettings,
    /** The books every front shares (the orchestrator's own): a run's slice is settled there, remembering how. */
    private readonly books: RedisLedger,
  ) {
    conn.on('close', () => (this.down ??= 'connection closed'));
    conn.on('error', (err: Error) => (this.down = err.message));
    conn.on('ready', () => (this.down = undefined));
  }

  start(req: RunRequest): RunRecord | undefined {
    const o = this.orchestrator;
    const agent = req.definition ? undefined : o.agents.get(req.agent);
    // Runs here: an unknown name (refused as ever), the built-in drafter, and an agent made with
    // create_agent and not saved (it exists only in this process).
    if (!agent || agent.source.format === 'dynamic') return undefined;
    const runId = req.runId ?? `run_${randomUUID()}`;
    const modelRef = agent.model ?? o.cfg.defaultModel ?? '';
    const usage = emptyUsage();
    let settle!: (r: RunResult) => void;
    const done = new Promise<RunResult>((resolve) => (settle = resolve));
    let cancelImpl: (reason: 'cancelled' | 'timeout') => void = () => {};
    const record: RunRecord = {
      runId,
      agent: req.agent,
      model: modelRef,
      owner: req.owner ?? 'local',
      status: 'running',
      startedAt: Date.now(),
      lastProgress: 'queued',
      turn: 0,
      usage,
      done,
      cancel: (reason = 'cancelled') => cancelImpl(reason),
      ...(req.background ? { keep: true } : {}),
    };
    let rb: RunBudget | undefined;
    let sliceId: string | undefined;
    const finish = (result: RunResult, treeUsage?: Usage) => {
      if (record.status !== 'running') return;
      if (rb) this.settleBooks(rb, sliceId, treeUsage, result.cost_usd);
      Object.assign(usage, result.usage);
      record.status = result.status;
      record.endedAt = Date.now();
      record.result = result;
      record.costUsd = result.cost_usd;
      record.treeUsage = treeUsage ?? result.usage;
      cancelImpl = () => {};
      settle(result);
      o.runs.ended(record);
    };
    const fail = (error: string) => finish(errorResult(runId, req.agent, modelRef, record.startedAt, error));
    o.runs.add(record);
    // A request that can ask: its worker's questions come back here, to its asker (approvals.ts).
    const asks = this.approvals?.hold(runId, req.agent, req.ask, done) ?? false;

    if (this.down) {
      fail(`queue unavailable: Redis at ${safeRedisUrl(this.settings.url)}: ${this.down}; retry when it is back`);
      return record;
    }
    const busy = this.busy();
    if (busy) {
      fail(busy);
      return record;
    }
    const chain = req.chain;
    const callCaps = lowerCaps(req.budget, chain?.budget);
    let caps = callCaps;
    const makeJob = (): RunJob => ({
      v: 1,
      runId,
      agent: req.agent,
      input: req.input,
      owner: record.owner,
      ...(req.timeoutS !== undefined && { timeoutS: req.timeoutS }),
      ...(caps && { budget: caps }),
      ...(req.background && { background: true }),
      ...(req.parentRunId && { parentRunId: req.parentRunId, rootRunId: req.rootRunId ?? req.parentRunId, depth: req.depth ?? 1 }),
      ...(req.caller && { caller: req.caller }),
      ...(chain && { chain }),
      ...(req.chainClaimed && { chainClaimed: true }),
      ...(sliceId && { sharedBooks: { reservationId: sliceId, model: modelRef } }),
      progress: Boolean(req.onProgress),
      from: this.settings.nodeId,
      ...(asks && { ask: true as const }),
      listens: true,
    });
    // A caller that follows progress gets a beat at least every HEARTBEAT_MS from here too: the worker's
    // lines (its own beats included) do not come while the job waits for one, or while Redis is slow.
    // Every run's status (run_status) says when it waits with no worker there to take it.
    const beat = setTimeout(() => {
      const idle = record.turn === 0 && record.lastProgress.startsWith('queued') ? this.noWorker() : undefined;
      if (idle || record.lastProgress.startsWith('queued: ')) record.lastProgress = idle ? `queued: ${idle}` : 'queued';
      req.onProgress?.(progressLine(agent.name, record.turn, agent.maxTurns, `${record.lastProgress.replace(/ \(waiting\)$/, '')} (waiting)`, usage.input_tokens + usage.output_tokens, 0, record.startedAt));
      beat.refresh();
    }, HEARTBEAT_MS);
    beat.unref();
    const watching = this.watch.wait(runId, (p) => {
      record.lastProgress = p.line.replace(/^\S+ · turn \d+\/\d+ · /, '');
      record.turn = p.turn;
      Object.assign(usage, p.usage);
      beat.refresh();
      req.onProgress?.(p.line);
    });
    void watching.done.then((out) => this.ended(out, record, req, finish));
    /** Set when the job goes to Redis: a cancel waits for it, so the job it removes or whose worker it tells exists. */
    let added: Promise<void> | undefined;
    const cancelledHere = (reason: 'cancelled' | 'timeout') => finish(errorResult(runId, req.agent, modelRef, record.startedAt, 'run cancelled before a worker took it', reason));
    cancelImpl = (reason) => (added ? void this.cancel(runId, reason, () => cancelledHere(reason), added) : cancelledHere(reason));
    // The worker enforces the run's deadline; this one ends it here if no worker did (none took the job,
    // or the one that did went silent), a grace period later.
    const timeoutS = Math.min(o.cfg.delegate.runs.timeoutS, agent.timeoutS ?? Infinity, req.timeoutS && req.timeoutS > 0 ? req.timeoutS : Infinity);
    const deadline = setTimeout(() => {
      void this.cancel(runId, 'timeout', () => {});
      finish(errorResult(runId, req.agent, modelRef, record.startedAt, `run deadline reached (${timeoutS} s) before a worker finished it`, 'timeout'));
    }, timeoutS * 1000 + 2 * o.cfg.delegate.runs.cancelGraceMs);
    deadline.unref();
    const onAbort = () => record.cancel('cancelled');
    if (req.signal?.aborted) onAbort();
    else req.signal?.addEventListener('abort', onAbort, { once: true });
    void done.then(() => {
      clearTimeout(deadline);
      clearTimeout(beat);
      watching.stop();
      req.signal?.removeEventListener('abort', onAbort);
    });

    this.waiting.count++;
    this.waiting.addedSince++;
    /** The job never went to Redis: it waits for no worker; `error`: why the run fails. */
    const notQueued = (error?: string) => {
      this.waiting.count--;
      watching.stop();
      if (error) fail(error);
    };
    const attempts = agent.retry?.attempts ?? 1;
    const keepS = o.cfg.delegate.runs.keepS;
    void (async () => {
      // The run's slice of every scope that covers it (server and agent daily, its batch, the caller's
      // caps), reserved in the books every front shares before the job exists; it travels as the run's
      // caps. Sent together (one connection keeps the order: the reservation finds the run open), one
      // round trip.
      const opened = Promise.resolve(o.budget.openRun({ runId, agent, modelRef, call: callCaps, parentRunId: req.parentRunId }));
      const reserved = Promise.resolve(o.budget.reserveSlice({ runId }, modelRef, agent.budget.runTokens));
      const [op, res] = await Promise.allSettled([opened, reserved]);
      const slice = res.status === 'fulfilled' && res.value.ok ? res.value : undefined;
      if (record.status !== 'running') {
        // Ended while the books answered (cancelled, past its deadline): let go of what they hold.
        if (op.status === 'fulfilled') this.settleBooks(op.value, slice?.reservationId, undefined, null);
        return notQueued();
      }
      if (op.status === 'rejected') return notQueued(`budget: ${errorMessage(op.reason)}`);
      rb = op.value;
      if (res.status === 'rejected') return notQueued(`budget: ${errorMessage(res.reason)}`);
      if (!res.value.ok) return notQueued(res.value.reason); // the books' reason says "budget refused: …"
      sliceId = res.value.reservationId;
      caps = lowerCaps(callCaps, res.value.tokens !== undefined ? { tokens: res.value.tokens } : undefined);
      // Signed (signing.ts) with the time after which no worker may start it: this front's deadline for it.
      const data = this.settings.key.seal('job', this.settings.prefix, runId, makeJob(), record.startedAt + timeoutS * 1000 + 2 * o.cfg.delegate.runs.cancelGraceMs);
      const job = { name: req.agent, data, opts: { jobId: runId, attempts, removeOnComplete: { age: keepS }, removeOnFail: { age: keepS } } };
      added = withTimeout(this.enqueue(job), ENQUEUE_TIMEOUT_MS, `no answer within ${ENQUEUE_TIMEOUT_MS / 1000} s`);
      await added;
    })().catch((err: Error) => notQueued(`queue unavailable: could not enqueue the run on Redis at ${safeRedisUrl(this.settings.url)}: ${err.message}`));
    return record;
  }

  /**
   * The run's books after its end, off the call's path: what its tree spent committed to its slice (or
   * the slice released: no report counts — the run failed before it spent, its worker was lost, or it
   * passed its deadline here), then its scope closed. The worker that ran it settles a slice still open a
   * while after it reported (this front gone), and charges what its run spent when the slice was released:
   * a commit that finds it settled already is that, not an error.
   */
  private settleBooks(rb: RunBudget, sliceId: string | undefined, treeUsage: Usage | undefined, usd: number | null): void {
    const o = this.orchestrator;
    const settled = sliceId ? this.books.settleSlice(sliceId, treeUsage ? { usage: treeUsage, usd } : null) : undefined;
    const closed = o.budget.closeRun(rb);
    void Promise.all([settled, closed]).catch((err: Error) => {
      if (/already settled/.test(err.message)) return; // its worker settled it first
      // The books expire an open run's records (runTtlS); until then its slice stays held there.
      log.warn(`queue: could not settle run ${rb.runId} in the budget books: ${errorMessage(err)}`);
    });
  }

  /**
   * Jobs started in the same tick (a delegate_parallel batch) go to Redis together, in addBulk calls of
   * up to ADD_EARLY_AT: a few round trips instead of one per run, and the first jobs of a large batch
   * reach the workers while the front still seals the others (measured on ×128: the first model
   * request ~20 ms sooner).
   */
  private pendingAdds: { job: BulkJob; resolve: () => void; reject: (err: Error) => void }[] = [];

  private enqueue(job: BulkJob): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const n = this.pendingAdds.push({ job, resolve, reject });
      if (n === 1) setImmediate(() => this.sendAdds());
      // A burst's first jobs go at once: workers start on them while this front seals the rest.
      else if (n >= ADD_EARLY_AT) this.sendAdds();
    });
  }

  private sendAdds(): void {
    const batch = this.pendingAdds;
    if (!batch.length) return; // sent early
    this.pendingAdds = [];
    // One job (a sequential call) goes as its own add: addBulk builds an ioredis pipeline, whose
    // constructor copies every script the connection knows (BullMQ's dozens) onto it.
    const sent = batch.length === 1 ? this.queue.add(batch[0].job.name, batch[0].job.data, batch[0].job.opts) : this.queue.addBulk(batch.map((b) => b.job));
    sent.then(
      () => batch.forEach((b) => b.resolve()),
      (err: Error) => batch.forEach((b) => b.reject(err)),
    );
  }

  /** A job ended (or its worker was lost): the run's result, and the audit line a lost run needs. */
  private ended(out: JobOutcome, record: RunRecord, req: RunRequest, finish: (r: RunResult, tree?: Usage) => void): void {
    if (out.kind === 'completed') {
      finish(out.value.result, out.value.treeUsage);
      return;
    }
    // An answer that failed verification, or a job Redis no longer has (nothing to take off the queue): stop whatever runs it.
    if (out.forged) void this.cancel(record.runId, 'cancelled', () => {});
    if (out.lost) void this.tellWorkers(record.runId, 'cancelled').catch((err: Error) => log.warn(`queue: could not tell the workers to stop run ${record.runId}: ${err.message}`));
    const lost = isWorkerLost(out.reason);
    const error = lost ? workerLostMessage(out.reason, false) : out.lost ? out.reason : `worker failed: ${out.reason}`;
    // The worker's own log has the run's start; its end is written here, so the merged tree shows it.
    const at = recordedLineage(req, record.runId);
    const audit = this.orchestrator.audit?.forRun({ run_id: record.runId, parent_run_id: at.parentRunId, root_run_id: at.rootRunId, depth: at.depth, agent: record.agent });
    audit?.emit({ event: 'error', message: `${error}; its budget reservation was released` });
    const result = errorResult(record.runId, record.agent, record.model, record.startedAt, error, 'failed');
    audit?.emit({ event: 'run_end', status: 'failed', turns: record.turn, usage: { ...record.usage }, cost_usd: null, duration_ms: result.duration_ms, error });
    finish(result);
  }

  private async cancel(runId: string, reason: 'cancelled' | 'timeout', notStarted: () => void, added?: Promise<void>): Promise<void> {
    try {
      // Marked first (`queue status` and a late reader see why), once the job is on the queue.
      await added?.catch(() => {}); // not added: the run failed already
      await this.conn.set(keys.cancelled(this.settings.prefix, runId), reason, 'EX', this.orchestrator.cfg.delegate.runs.keepS);
      // Still waiting: take it off the queue and end it here. Taken by a worker (it holds the job's lock):
      // tell every worker; the one holding it aborts the run, or (the message before its run started)
      // remembers the cancel and does not start it. A job Redis lost while a worker runs it also
      // "removes" (nothing is locked any more): the workers are told in that case too.
      if ((await this.queue.remove(runId)) === 1) notStarted();
      await this.tellWorkers(runId, reason, false);
    } catch (err) {
      log.warn(`queue: could not cancel run ${runId}: ${errorMessage(err)}`);
    }
  }

  /** Every worker hears the cancel; the one holding the run aborts it (`mark`: also for one that takes it later). */
  private async tellWorkers(runId: string, reason: 'cancelled' | 'timeout', mark = true): Promise<void> {
    if (mark) await this.conn.set(keys.cancelled(this.settings.prefix, runId), reason, 'EX', this.orchestrator.cfg.delegate.runs.keepS);
    await this.conn.publish(keys.cancelChannel(this.settings.prefix), cancelMessage(this.settings, runId, reason));
  }

  /** Whether a worker beat lately (the worker list in Redis, read at most once per beat interval). */
  private workersSeen = { alive: true, at: 0, warned: false };

  /** Why a queued run may wait long: no worker is there to take it (undefined while one is, or not known yet). */
  private noWorker(): string | undefined {
    const now = Date.now();
    if (now - this.workersSeen.at >= WORKER_BEAT_MS) {
      this.workersSeen.at = now;
      void this.conn.hvals(keys.workers(this.settings.prefix)).then(
        (raw) => {
          const alive = raw.some((r) => {
            try {
              return workerAlive(JSON.parse(r) as WorkerBeat);
            } catch {
              return false; // not a beat of ours
            }
          });
          this.workersSeen.alive = alive;
          if (!alive && !this.workersSeen.warned) log.warn(`queue: runs are waiting and no worker is taking runs from ${this.settings.prefix}:${RUN_QUEUE}; start one: delegate-mcp worker --queue ${safeRedisUrl(this.settings.url)}`);
          this.workersSeen.warned = !alive;
        },
        () => {}, // Redis away: `down` tells the callers
      );
    }
    if (this.workersSeen.alive) return undefined;
    return `no worker is taking runs from this queue (${this.settings.prefix}:${RUN_QUEUE}); start one: delegate-mcp worker --queue ${safeRedisUrl(this.settings.url)} --workspace DIR`;
  }

  /** "server busy" when more runs wait for a worker than delegate.queue.maxWaiting allows. */
  private busy(): string | undefined {
    const now = Date.now();
    if (now - this.waiting.at > 250) {
      this.waiting.at = now;
      this.waiting.addedSince = 0;
      // Runs added while the count is on its way are added to it (at worst one is counted twice: busy a little early).
      void this.queue.getWaitingCount().then((n) => (this.waiting.count = n + this.waiting.addedSince), () => {}); // Redis away: `down` answers calls
    }
    const n = this.waiting.count;
    if (n < this.settings.maxWaiting) return undefined;
    return `server busy: ${n} runs waiting for a worker (limit ${this.settings.maxWaiting}, delegate.queue.maxWaiting), retry later`;
  }

  /** A run another front started: a snapshot from its job, with a live `done` and a cancel that reaches its worker. */
  async find(runId: string, owner: string): Promise<RunRecord | undefined> {
    if (!/^run_[0-9a-f-]{36}$/.test(runId) || this.down) return undefined;
    const job = await this.queue.getJob(runId).catch(() => undefined); // Redis unreachable: unknown here, as to a front that never saw it
    if (!job) return undefined;
    const opened = openJob(this.settings, runId, job.data, 0); // a job no front of this queue signed is no run
    if (!opened.ok || !mayAccess(opened.job.owner, owner)) return undefined;
    const data: RunJob = opened.job;
    const state = await job.getState();
    const progress = openProgress(this.settings, runId, job.progress);
    const usage = progress?.usage ?? emptyUsage();
    const record: RunRecord = {
      runId,
      agent: data.agent,
      model: '',
      owner: data.owner,
      status: 'running',
      startedAt: job.processedOn ?? job.timestamp,
      lastProgress: progress?.line.replace(/^\S+ · turn \d+\/\d+ · /, '') ?? (state === 'active' ? 'running' : 'queued'),
      turn: progress?.turn ?? 0,
      usage,
      done: Promise.resolve(undefined as unknown as RunResult),
      cancel: (reason = 'cancelled') => void this.cancel(runId, reason, () => {}),
    };
    const apply = (out: JobOutcome): RunResult => {
      const result =
        out.kind === 'completed'
          ? out.value.result
          : errorResult(runId, data.agent, '', record.startedAt, isWorkerLost(out.reason) ? workerLostMessage(out.reason, false) : out.lost ? out.reason : `worker failed: ${out.reason}`, 'failed');
      record.status = result.status;
      record.result = result;
      record.model = result.model;
      record.endedAt = job.finishedOn ?? Date.now();
      Object.assign(usage, result.usage);
      return result;
    };
    if (state === 'completed') {
      record.done = Promise.resolve(apply(answerOutcome(this.settings, runId, job.returnvalue)));
      return record;
    }
    if (state === 'failed' || job.deferredFailure) {
      record.done = Promise.resolve(apply({ kind: 'failed', reason: job.failedReason || job.deferredFailure || 'failed' }));
      return record;
    }
    // Still running somewhere: `done` follows the job (a run_result wait or a run_cancel awaits it).
    let watching: ReturnType<JobWatch['wait']> | undefined;
    record.done = new Promise<RunResult>((resolve) => {
      watching = this.watch.wait(runId, (p) => {
        record.lastProgress = p.line;
        record.turn = p.turn;
      }, true);
      void watching.done.then((out) => resolve(apply(out)));
    });
    // Nobody may wait: the watcher is dropped once the job ends or after the longest run_result wait.
    setTimeout(() => watching?.stop(), 3_600_000).unref();
    return record;
  }

  async close(): Promise<void> {
    await this.watch.close();
    await this.queue.close().catch(() => {}); // closing: a lost connection has nothing left to flush
    this.conn.disconnect();
  }
}

type BulkJob = Parameters<Queue['addBulk']>[0][number];

type Caps = { run_tokens?: number; run_usd?: number };

/** The smaller of two sets of caps (a slice or a chain's budget only ever lowers a cap). */
function lowerCaps(call: Caps | undefined, slice: { tokens?: number; usd?: number } | undefined): Caps | undefined {
  if (!slice || (slice.tokens === undefined && slice.usd === undefined)) return call;
  const min = (a?: number, b?: number) => (a === undefined ? b : b === undefined ? a : Math.min(a, b));
  return { run_tokens: min(call?.run_tokens, slice.tokens), run_usd: min(call?.run_usd, slice.usd) };
}
