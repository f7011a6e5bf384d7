// One QueueEvents stream per process, fanned out to whoever waits on a job: a front's calls and
// run_result, a worker's delegations. A waiter registers before the job is added, so no event is missed;
// after a Redis outage QueueEvents goes on reading the stream where it stopped.
import type { Queue, QueueEvents } from 'bullmq';
import type { RunJobProgress, RunJobReturn } from './jobs.js';

/** BullMQ's failure reason for a job whose worker stopped renewing its lock (maxStalledCount 0). */
export const STALLED_REASON = 'job stalled more than allowable limit';

export type JobOutcome = { kind: 'completed'; value: RunJobReturn } | { kind: 'failed'; reason: string };

interface Waiter {
  onProgress?: (p: RunJobProgress) => void;
  settle: (o: JobOutcome) => void;
}

export class JobWatch {
  private readonly waiters = new Map<string, Set<Waiter>>();

  constructor(
    readonly events: QueueEvents,
    private readonly queue: Queue,
    /** A failed job the watcher may send back to the queue (opt-in retry); true when it did. */
    private readonly retry?: (jobId: string, reason: string) => Promise<boolean>,
    /** Whether a stalled job will be tried again (its agent opted in and has tries left). */
    private readonly willRetry?: (jobId: string) => Promise<boolean>,
  ) {
    events.on('progress', ({ jobId, data }) => {
      const set = this.waiters.get(jobId);
      if (!set || typeof data !== 'object' || data === null) return;
      for (const w of set) w.onProgress?.(data as unknown as RunJobProgress);
    });
    events.on('completed', ({ jobId, returnvalue }) => {
      const value = (typeof returnvalue === 'string' ? JSON.parse(returnvalue) : returnvalue) as RunJobReturn;
      this.settle(jobId, { kind: 'completed', value });
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
      waiter = { onProgress, settle: resolve };
    });
    let set = this.waiters.get(jobId);
    if (!set) this.waiters.set(jobId, (set = new Set()));
    set.add(waiter);
    if (existing) void this.checkEnded(jobId);
    return { done, stop: () => this.drop(jobId, waiter) };
  }

  /** A job that ended before anyone here listened: read its end from the job record. */
  private async checkEnded(jobId: string): Promise<void> {
    // Redis unreachable: the job's `completed`/`failed` event or the run's deadline settles it instead.
    const job = await this.queue.getJob(jobId).catch(() => undefined);
    if (!job) return;
    const state = await job.getState().catch(() => 'unknown');
    if (job.deferredFailure && state !== 'completed') this.settle(jobId, { kind: 'failed', reason: job.deferredFailure });
    if (state === 'completed') this.settle(jobId, { kind: 'completed', value: job.returnvalue as RunJobReturn });
    else if (state === 'failed') this.settle(jobId, { kind: 'failed', reason: job.failedReason ?? 'failed' });
  }

  private settle(jobId: string, o: JobOutcome): void {
    const set = this.waiters.get(jobId);
    if (!set) return;
    this.waiters.delete(jobId);
    for (const w of set) w.settle(o);
  }

  private drop(jobId: string, w: Waiter): void {
    const set = this.waiters.get(jobId);
    if (!set) return;
    set.delete(w);
    if (!set.size) this.waiters.delete(jobId);
  }

  /** Jobs someone here is waiting on. */
  get watching(): number {
    return this.waiters.size;
  }
}
