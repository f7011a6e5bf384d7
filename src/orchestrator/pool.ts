// The piscina pool agent runs execute on. Runs are I/O bound, so many share one worker
// (concurrentTasksPerWorker); no per-task AbortSignal is passed, because piscina cannot share a worker
// among tasks that carry one. Cancellation is cooperative (over the run's port); `killThread` is the
// hard fallback after the grace period.
import { Piscina } from 'piscina';
import { WORKER_ENTRY } from '../paths.js';
import type { DelegateConfig } from '../config/config.js';
import type { RunOutcome, RunTask } from '../worker/protocol.js';

export class ServerBusyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ServerBusyError';
  }
}

export class RunPool {
  private pool: Piscina;
  private running = 0;

  constructor(private opts: DelegateConfig['pool']) {
    this.pool = new Piscina({
      filename: WORKER_ENTRY,
      minThreads: Math.min(opts.minThreads, opts.maxThreads),
      maxThreads: opts.maxThreads,
      concurrentTasksPerWorker: opts.concurrentTasksPerWorker,
      maxQueue: opts.maxQueue,
      idleTimeout: 60_000,
      // piscina's default ('sync') parks an idle worker in Atomics.wait: its event loop stops, so it
      // never sees the model server close idle keep-alive sockets, and the next fan-out reuses dead
      // ones and waits out the SDK's retry backoff (measured: 32 calls after 6.5 s idle took 1.46 s
      // instead of 1.07 s). With 'disabled' the loop keeps turning; per call it measured no slower.
      atomics: 'disabled',
      resourceLimits: { maxOldGenerationSizeMb: opts.maxOldGenerationSizeMb },
    });
    // A worker that dies is replaced by piscina; its tasks reject individually. Nothing to do here but
    // keep the event from becoming an unhandled 'error'.
    this.pool.on('error', () => {});
  }

  /** Capacity check before dispatch, so a full server answers "busy" at once instead of queueing. */
  assertCapacity(): void {
    const capacity = this.opts.maxThreads * this.opts.concurrentTasksPerWorker;
    const queued = Math.max(0, this.running - capacity);
    if (this.running >= capacity && queued >= this.opts.maxQueue) {
      throw new ServerBusyError(
        `server busy: ${Math.min(this.running, capacity)} runs running, ${queued} queued (limit ${capacity} running + ${this.opts.maxQueue} queued), retry later`,
      );
    }
  }

  async run(task: RunTask): Promise<RunOutcome> {
    this.assertCapacity();
    this.running++;
    try {
      return (await this.pool.run(task, { transferList: [task.port as any] })) as RunOutcome;
    } catch (err) {
      if (/queue is at limit/i.test(String((err as Error).message))) {
        throw new ServerBusyError(`server busy: task queue is at its limit (${this.opts.maxQueue}), retry later`);
      }
      throw err;
    } finally {
      this.running--;
    }
  }

  /** Terminates the worker thread with this id (it takes the other runs on that thread with it). */
  killThread(threadId: number): boolean {
    const w = this.pool.threads.find((t) => t.threadId === threadId);
    if (!w) return false;
    void w.terminate();
    return true;
  }


  async close(): Promise<void> {
    await this.pool.close({ force: true });
  }
}
