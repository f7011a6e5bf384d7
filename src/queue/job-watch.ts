// How a node learns that a run it waits on moved or ended: a front's calls and run_result, a worker's
// delegations. The runs a node starts itself (jobs with `listens`) report on its own runs channel: their
// workers publish progress and the end there, signed, before BullMQ records the end — so no node reads
// every job's events. A run another node started (run_status / run_result from a second front) is
// followed on BullMQ's event stream, open while such waits last. A waiter registers before the job is
// added, so no message is missed while it is on its way. Pub/sub delivers at most once, and two ends
// bring no message at all: a job that ended while this node was away (its message lost, or its events
// trimmed from the stream, which keeps 10,000, before they were read), and a job that is gone (Redis
// back without its data: restarted with no persistence, flushed, failed over to an empty replica). The
// jobs waited on are checked in Redis now and then, and at once after a reconnect: those calls end
// instead of waiting for their deadline.
import type { Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import type { RunChannelMessage, RunJobFailure, RunJobProgress, RunJobReturn } from './jobs.js';
import type { QueueAuth } from './signing.js';
import { safeRedisUrl } from '../net/redis-url.js';
import { throttledWarn } from '../log.js';

/** BullMQ's failure reason for a job whose worker stopped renewing its lock (maxStalledCount 0). */
export const STALLED_REASON = 'job stalled more than allowable limit';
/** How often the jobs waited on are checked in Redis (and at once after a reconnect). */
const JOB_CHECK_MS = 5_000;
/** A job waited on for less than this may still be on its way to Redis (a front's enqueue waits up to 5 s). */
const CHECK_MIN_AGE_MS = 8_000;
/** After the runs channel reconnects, the jobs are read at once and again this long after. */
const RECHECKS_AFTER_RECONNECT_MS = [500, 1_500, 4_000];

/**
 * `forged`: the end came with an answer that failed verification (the run may still be going on its worker).
 * `lost`: the job is gone from Redis, so no end will come (its worker, if it still runs it, should be told to stop).
 */
export type JobOutcome = { kind: 'completed'; value: RunJobReturn } | { kind: 'failed'; reason: string; forged?: true; lost?: true };

function lostJobReason(url: string): string {
  return `the queue lost the run: its job is gone from Redis at ${safeRedisUrl(url)} (restarted without its data, flushed, or its keys deleted), so no worker can report its end; the worker running it is told to stop, and its own audit log has what it did. Retry the call; run Redis with persistence (appendonly yes) so that a restart keeps the queue and the shared budget books`;
}

/** A worker's answer as the books may take it, or a failure that counts nothing it reports. */
export function answerOutcome(auth: QueueAuth, runId: string, raw: unknown): JobOutcome {
  let value = raw;
  if (typeof raw === 'string') {
    try {
      value = JSON.parse(raw);
    } catch {
      value = undefined; // refused below as unsigned
    }
  }
  const opened = auth.key.open('return', auth.prefix, runId, value);
  if (!opened.ok) return { kind: 'failed', reason: `the answer for run ${runId} was refused (${opened.reason}); nothing it reports is counted`, forged: true };
  return { kind: 'completed', value: opened.body as unknown as RunJobReturn };
}

/** A progress report that verifies, else undefined (it could put words in a caller's view). */
export function openProgress(auth: QueueAuth, runId: string, raw: unknown): RunJobProgress | undefined {
  const opened = auth.key.open('progress', auth.prefix, runId, raw);
  return opened.ok ? (opened.body as unknown as RunJobProgress) : undefined;
}

/**
 * The queue side of `retry: {attempts, only: idempotent}`: a run whose worker was lost goes back to the
 * queue while its agent has tries left. `retry`: a failed job sent back (true when it was). `willRetry`:
 * whether a run whose worker was lost goes on, so its wait must not end now — its job was sent back
 * already or ended (news of the loss may come late, after its failure and retry), its failure is being
 * decided (that route says so), or it waits to be failed with tries left.
 */
export function optInRetries(queue: Queue, redis: Redis, retrying: (jobId: string, agent: string) => void): { retry: (jobId: string, reason: string) => Promise<boolean>; willRetry: (jobId: string) => Promise<boolean> } {
  return {
    retry: async (jobId, reason) => {
      const job = await queue.getJob(jobId);
      if (!job || !/stalled/i.test(reason) || job.attemptsMade >= (job.opts.attempts ?? 1)) return false;
      // BullMQ keeps the stall's deferred failure on the job; a retried job must not carry it (pinned 6.7 layout).
      await redis.hdel(queue.toKey(jobId), 'defa');
      try {
        await job.retry('failed');
      } catch (err) {
        // Sent back already (the same failure told twice): it runs again all the same.
        if ((await job.getState().catch(() => 'unknown')) !== 'failed') return true;
        throw err;
      }
      retrying(jobId, String((job.data as { agent?: unknown } | undefined)?.agent ?? ''));
      return true;
    },
    willRetry: async (jobId) => {
      const job = await queue.getJob(jobId);
      if (!job) return false;
      if (!job.deferredFailure) return true;
      if ((await job.getState()) === 'failed') return true;
      return job.attemptsMade + 1 < (job.opts.attempts ?? 1);
    },
  };
}

interface Waiter {
  onProgress?: (p: RunJobProgress) => void;
  settle: (o: JobOutcome) => void;
  since: number;
  /** Waits on a run another node started (followed on the event stream). */
  foreign?: true;
}

export class JobWatch {
  private readonly waiters = new Map<string, Set<Waiter>>();
  private jobCheck?: NodeJS.Timeout;
  private checking = false;
  /** BullMQ's event stream, open while someone here waits on a run another node started. */
  private events?: Promise<QueueEvents | undefined>;
  /** Those waits. */
  private foreignWaits = 0;
  private readonly ignored = throttledWarn();

  constructor(
    /** How to open the event stream, to follow runs other nodes started (undefined: this node waits on its own only). */
    private readonly openEvents: (() => Promise<QueueEvents>) | undefined,
    private readonly queue: Queue,
    /** Answers and progress are taken only signed with this key, for this queue and this run. */
    private readonly auth: QueueAuth & { url: string },
    /** Where the jobs waited on are checked to still exist. */
    private readonly redis: Redis,
    /** A failed job the watcher may send back to the queue (opt-in retry); true when it did. */
    private readonly retry?: (jobId: string, reason: string) => Promise<boolean>,
    /** Whether a stalled job will be tried again (its agent opted in and has tries left). */
    private readonly willRetry?: (jobId: string) => Promise<boolean>,
  ) {
    // Back after an outage: whatever Redis kept is known at once.
    redis.on('ready', () => void this.checkJobs());
  }

  /** The stream's events, for whoever waits here on their job. */
  private follow(events: QueueEvents): QueueEvents {
    events.on('progress', ({ jobId, data }) => this.progress(jobId, data));
    events.on('completed', ({ jobId, returnvalue }) => this.completed(jobId, returnvalue));
    events.on('stalled', ({ jobId }) => this.stalled(jobId));
    events.on('failed', ({ jobId, failedReason }) => this.failed(jobId, failedReason));
    return events;
  }

  /**
   * Listens on this node's runs channel (`sub`: a connection of its own, for pub/sub) before its first
   * run is enqueued. After a reconnect, the ends a lost message would have told are read from the jobs.
   */
  async listen(sub: Redis, channel: string): Promise<void> {
    sub.on('message', (ch: string, raw: string) => {
      if (ch === channel) this.heard(raw, channel);
    });
    let connected = sub.status === 'ready';
    sub.on('ready', () => {
      // A reconnect (the first 'ready' of a new connection is no news). The jobs are read once the channel
      // is subscribed again (ioredis resubscribes after 'ready'; this one is answered after it): an end
      // told in between is heard or read, not lost until the next periodic check.
      const check = () => {
        void this.checkJobs(true);
        // The workers' connections come back on their own schedule: an end told before this one
        // subscribed, and recorded by BullMQ only after this read, would wait for the periodic check.
        for (const ms of RECHECKS_AFTER_RECONNECT_MS) setTimeout(() => void this.checkJobs(true), ms).unref();
      };
      if (connected) void sub.subscribe(channel).then(check, check);
      connected = true;
    });
    await sub.subscribe(channel);
  }

  /** A message on the runs channel: for a job waited on here, signed parts only (anyone who can publish could send one). */
  private heard(raw: string, channel: string): void {
    let m: RunChannelMessage;
    try {
      m = JSON.parse(raw) as RunChannelMessage;
    } catch {
      return this.ignored(`queue: ignored a message on ${channel}: not JSON`);
    }
    if (typeof m?.runId !== 'string' || !this.waiters.has(m.runId)) return; // nobody here waits on it (any more)
    if (m.progress !== undefined) this.progress(m.runId, m.progress);
    if (m.end !== undefined) this.completed(m.runId, m.end);
    if (m.failure !== undefined) {
      const opened = this.auth.key.open('failure', this.auth.prefix, m.runId, m.failure);
      if (!opened.ok) return this.ignored(`queue: ignored a failure for run ${m.runId} on ${channel}: ${opened.reason}`);
      const f = opened.body as unknown as RunJobFailure;
      if (f.stalled) this.stalled(m.runId);
      else this.failed(m.runId, String(f.reason));
    }
  }

  private progress(jobId: string, data: unknown): void {
    const set = this.waiters.get(jobId);
    if (!set) return;
    const p = openProgress(this.auth, jobId, data);
    if (!p) return; // not from a worker of this queue: nothing to show
    for (const w of set) w.onProgress?.(p);
  }

  private completed(jobId: string, returnvalue: unknown): void {
    if (this.waiters.has(jobId)) this.settle(jobId, answerOutcome(this.auth, jobId, returnvalue));
  }

  // A lost worker's job is put back with a deferred failure: the next worker that takes it fails it
  // without running it. That may be long (every worker busy): the run ends now, unless it will be retried.
  private stalled(jobId: string): void {
    if (!this.waiters.has(jobId)) return;
    void (async () => {
      if (this.willRetry && (await this.willRetry(jobId).catch(() => false))) return;
      this.settle(jobId, { kind: 'failed', reason: STALLED_REASON });
    })();
  }

  private failed(jobId: string, failedReason: string): void {
    void (async () => {
      if (this.waiters.has(jobId) && this.retry && (await this.retry(jobId, failedReason).catch(() => false))) return;
      this.settle(jobId, { kind: 'failed', reason: failedReason });
    })();
  }

  /** Waits for the job's end. Register before adding the job; `existing`: it may have ended already. */
  wait(jobId: string, onProgress?: (p: RunJobProgress) => void, existing = false): { done: Promise<JobOutcome>; stop: () => void } {
    let waiter!: Waiter;
    const done = new Promise<JobOutcome>((resolve) => {
      waiter = { onProgress, settle: resolve, since: Date.now() };
    });
    let set = this.waiters.get(jobId);
    if (!set) this.waiters.set(jobId, (set = new Set()));
    set.add(waiter);
    if (existing) {
      waiter.foreign = true;
      this.foreignWaits++;
      void this.checkEnded(jobId);
      // Another node's run: its events, from the stream (read again once it is open: it may have ended meanwhile).
      if (!this.events && this.openEvents) {
        const opening: Promise<QueueEvents | undefined> = this.openEvents().then(
          (e) => this.follow(e),
          () => {
            if (this.events === opening) this.events = undefined; // Redis away: the next such wait tries again; the checks settle this one
            return undefined;
          },
        );
        this.events = opening;
      }
      void this.events?.then(() => this.checkEnded(jobId));
    }
    if (!this.jobCheck) {
      this.jobCheck = setInterval(() => void this.checkJobs(), JOB_CHECK_MS);
      this.jobCheck.unref();
    }
    return { done, stop: () => this.drop(jobId, waiter) };
  }

  /**
   * Ends the waits on jobs that ended unseen or are gone (one pipelined HMGET for all of them).
   * `reconnected`: this node's runs channel was away, so any end may have gone unheard.
   */
  private async checkJobs(reconnected = false): Promise<void> {
    const now = Date.now();
    /** Waited on long enough that its job must be in Redis by now (a younger one may be on its way there). */
    const dueInRedis = (id: string) => [...(this.waiters.get(id) ?? [])].some((w) => now - w.since >= CHECK_MIN_AGE_MS);
    const ids = [...this.waiters.keys()].filter((id) => reconnected || dueInRedis(id));
    if (!ids.length || this.checking || this.redis.status !== 'ready') return;
    this.checking = true;
    try {
      const pipe = this.redis.pipeline();
      for (const id of ids) pipe.hmget(this.queue.toKey(id), 'timestamp', 'finishedOn', 'defa');
      const answers = (await pipe.exec()) ?? [];
      ids.forEach((id, i) => {
        const [err, fields] = answers[i] ?? [];
        if (err || !Array.isArray(fields)) return;
        const [added, finished, deferred] = fields as (string | null)[];
        if (added === null) {
          if (dueInRedis(id)) this.settle(id, { kind: 'failed', reason: lostJobReason(this.auth.url), lost: true });
        }
        // Its message or event would have come by now (ended JOB_CHECK_MS ago): it was lost or trimmed away unread.
        else if (finished !== null && (reconnected || now - Number(finished) > JOB_CHECK_MS)) void this.checkEnded(id);
        // Put back after its worker was lost (the news of it lost too): it ends now, unless it will be retried.
        else if (finished === null && deferred !== null) this.stalled(id);
      });
    } catch {
      // Redis away again: the next check (or reconnect) asks again
    } finally {
      this.checking = false;
    }
  }

  /** A job that ended before anyone here listened: read its end from the job record. */
  private async checkEnded(jobId: string): Promise<void> {
    // Redis unreachable: the job's `completed`/`failed` event or the run's deadline settles it instead.
    const job = await this.queue.getJob(jobId).catch(() => undefined);
    if (!job) return;
    const state = await job.getState().catch(() => 'unknown');
    if (state === 'completed') this.settle(jobId, answerOutcome(this.auth, jobId, job.returnvalue));
    // Through the same routes as the news: an opted-in agent's run goes back to the queue.
    else if (state === 'failed') this.failed(jobId, job.failedReason || job.deferredFailure || 'failed');
    else if (job.deferredFailure) this.stalled(jobId);
  }

  private settle(jobId: string, o: JobOutcome): void {
    const set = this.waiters.get(jobId);
    if (!set) return;
    this.waiters.delete(jobId);
    for (const w of set) {
      if (w.foreign) this.foreignWaits--;
      w.settle(o);
    }
    this.idle();
  }

  private drop(jobId: string, w: Waiter): void {
    const set = this.waiters.get(jobId);
    if (!set?.delete(w)) return;
    if (w.foreign) this.foreignWaits--;
    if (!set.size) this.waiters.delete(jobId);
    this.idle();
  }

  /** Nobody waits on another node's run: the event stream closes. Nobody waits at all: no checks until someone does. */
  private idle(): void {
    if (!this.foreignWaits && this.events) {
      const events = this.events;
      this.events = undefined;
      void events.then((e) => e?.close()).catch(() => {}); // closing: a later wait opens a new one
    }
    if (this.waiters.size || !this.jobCheck) return;
    clearInterval(this.jobCheck);
    this.jobCheck = undefined;
  }

  /** Stops reading the event stream, if it was opened. */
  async close(): Promise<void> {
    const events = await this.events?.catch(() => undefined);
    await events?.close().catch(() => {}); // closing: no run waits on its events any more
  }

  /** Jobs someone here is waiting on. */
  get watching(): number {
    return this.waiters.size;
  }
}
