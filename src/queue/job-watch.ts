// One QueueEvents stream per process, fanned out to whoever waits on a job: a front's calls and
// run_result, a worker's delegations. A waiter registers before the job is added, so no event is missed;
// after a Redis outage QueueEvents goes on reading the stream where it stopped. Two ends that no event
// brings are found by checking the jobs waited on now and then: a job that ended while its events were
// trimmed from the stream (it keeps 10,000) before this process read them, and a job that is gone (Redis
// back without its data: restarted with no persistence, flushed, failed over to an empty replica). Their
// calls end instead of waiting for their deadline.
import type { Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import type { RunJobProgress, RunJobReturn } from './jobs.js';
import type { QueueAuth } from './signing.js';
import { safeRedisUrl } from '../net/redis-url.js';

/** BullMQ's failure reason for a job whose worker stopped renewing its lock (maxStalledCount 0). */
export const STALLED_REASON = 'job stalled more than allowable limit';
/** How often the jobs waited on are checked in Redis (and at once after a reconnect). */
const JOB_CHECK_MS = 5_000;
/** A job waited on for less than this may still be on its way to Redis (a front's enqueue waits up to 5 s). */
const CHECK_MIN_AGE_MS = 8_000;

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

interface Waiter {
  onProgress?: (p: RunJobProgress) => void;
  settle: (o: JobOutcome) => void;
  since: number;
}

export class JobWatch {
  private readonly waiters = new Map<string, Set<Waiter>>();
  private jobCheck?: NodeJS.Timeout;
  private checking = false;

  constructor(
    readonly events: QueueEvents,
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
    events.on('progress', ({ jobId, data }) => {
      const set = this.waiters.get(jobId);
      if (!set) return;
      const p = openProgress(this.auth, jobId, data);
      if (!p) return; // not from a worker of this queue: nothing to show
      for (const w of set) w.onProgress?.(p);
    });
    events.on('completed', ({ jobId, returnvalue }) => {
      if (this.waiters.has(jobId)) this.settle(jobId, answerOutcome(this.auth, jobId, returnvalue));
    });
    // A lost worker's job is put back with a deferred failure: the next worker that takes it fails it
    // without running it. That may be long (every worker busy): the run ends now, unless it will be retried.
    events.on('stalled', ({ jobId }) => {
      if (!this.waiters.has(jobId)) return;
      void (async () => {
        if (this.willRetry && (await this.willRetry(jobId).catch(() => false))) return;
        this.settle(jobId, { kind: 'failed', reason: STALLED_REASON });
      })();
    });
    events.on('failed', ({ jobId, failedReason }) => {
      void (async () => {
        if (this.waiters.has(jobId) && this.retry && (await this.retry(jobId, failedReason).catch(() => false))) return;
        this.settle(jobId, { kind: 'failed', reason: failedReason });
      })();
    });
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
    if (existing) void this.checkEnded(jobId);
    if (!this.jobCheck) {
      this.jobCheck = setInterval(() => void this.checkJobs(), JOB_CHECK_MS);
      this.jobCheck.unref();
    }
    return { done, stop: () => this.drop(jobId, waiter) };
  }

  /** Ends the waits on jobs that ended unseen or are gone (one pipelined HMGET for all of them). */
  private async checkJobs(): Promise<void> {
    const now = Date.now();
    const ids = [...this.waiters].filter(([, set]) => [...set].some((w) => now - w.since >= CHECK_MIN_AGE_MS)).map(([id]) => id);
    if (!ids.length || this.checking || this.redis.status !== 'ready') return;
    this.checking = true;
    try {
      const pipe = this.redis.pipeline();
      for (const id of ids) pipe.hmget(this.queue.toKey(id), 'timestamp', 'finishedOn');
      const answers = (await pipe.exec()) ?? [];
      ids.forEach((id, i) => {
        const [err, fields] = answers[i] ?? [];
        if (err || !Array.isArray(fields)) return;
        const [added, finished] = fields as (string | null)[];
        if (added === null) this.settle(id, { kind: 'failed', reason: lostJobReason(this.auth.url), lost: true });
        // Its event would have come by now (ended JOB_CHECK_MS ago): it was trimmed away unread.
        else if (finished !== null && now - Number(finished) > JOB_CHECK_MS) void this.checkEnded(id);
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
    if (job.deferredFailure && state !== 'completed') this.settle(jobId, { kind: 'failed', reason: job.deferredFailure });
    if (state === 'completed') this.settle(jobId, answerOutcome(this.auth, jobId, job.returnvalue));
    else if (state === 'failed') this.settle(jobId, { kind: 'failed', reason: job.failedReason ?? 'failed' });
  }

  private settle(jobId: string, o: JobOutcome): void {
    const set = this.waiters.get(jobId);
    if (!set) return;
    this.waiters.delete(jobId);
    this.idle();
    for (const w of set) w.settle(o);
  }

  private drop(jobId: string, w: Waiter): void {
    const set = this.waiters.get(jobId);
    if (!set) return;
    set.delete(w);
    if (!set.size) this.waiters.delete(jobId);
    this.idle();
  }

  /** Nobody waits: no checks until someone does. */
  private idle(): void {
    if (this.waiters.size || !this.jobCheck) return;
    clearInterval(this.jobCheck);
    this.jobCheck = undefined;
  }

  /** Jobs someone here is waiting on. */
  get watching(): number {
    return this.waiters.size;
  }
}
