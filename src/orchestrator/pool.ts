// The piscina pool agent runs execute on. Runs are I/O bound, so many share one worker
// (concurrentTasksPerWorker); no per-task AbortSignal is passed, because piscina cannot share a worker
// among tasks that carry one. Runs talk to this thread over their worker's control channel (see
// ControlAnnounce); cancellation is cooperative over it, and `killThread` is the hard fallback after
// the grace period.
import type { MessagePort } from 'node:worker_threads';
import type { Piscina } from 'piscina';
import { startPool, takeEarlyPool } from './pool-start.js';
import { warnOnce } from '../log.js';
import type { DelegateConfig } from '../config/config.js';
import type { WarmHint } from '../contract/worker-protocol.js';
import { ServerBusyError, type ReplyPort, type RunExecutor, type RunLine } from './run-executor.js';
import { CONTROL_ANNOUNCE, WORKER_WARNING, type WorkerWarning, type ControlAnnounce, type ControlDown, type ControlUp, type RunOutcome, type RunTask, type WarmCommand, type WorkerMessage } from '../contract/worker-protocol.js';

export { ServerBusyError, type RunLine } from './run-executor.js';

export class RunPool implements RunExecutor {
  private readonly pool: Piscina;
  private running = 0;

  /** Set once warm() was called: workers that announce themselves later warm up at once. */
  private warmHint?: WarmHint;

  /**
   * The threads start now, while the server is still starting (for `serve`, earlier still: src/main.ts
   * starts them before the CLI loads, and they are taken over here): on their own threads they load
   * the worker bundle (the provider SDKs). Starting them only after `initialize` was measured slower
   * for the first call: a client sends it a few ms later, and a worker needs ~100 ms of its own to load.
   */
  constructor(private opts: DelegateConfig['pool']) {
    const started = takeEarlyPool(opts) ?? startPool(opts);
    this.pool = started.pool;
    started.onMessage((msg) => {
      const m = msg as ControlAnnounce | WorkerWarning;
      if (m?.kind === CONTROL_ANNOUNCE) this.addControl(m.port);
      else if (m?.kind === WORKER_WARNING) warnOnce(m.message);
    });
  }

  /** Tells every worker (and every later one) to warm up in the background: see worker/warm.ts. */
  warm(hint: WarmHint): void {
    if (this.warmHint) return;
    this.warmHint = hint;
    for (const port of this.controls) port.postMessage({ kind: 'warm', hint } satisfies WarmCommand);
  }

  private readonly controls = new Set<MessagePort>();
  private readonly lines = new Map<string, (msg: WorkerMessage, port: ReplyPort) => void>();
  /** Cancels of runs still running, re-sent to a worker that announces itself later. */
  private readonly cancels = new Map<string, 'cancelled' | 'timeout'>();

  private addControl(port: MessagePort): void {
    this.controls.add(port);
    port.on('message', (msg: ControlUp) => this.lines.get(msg.runId)?.(msg, port));
    port.on('close', () => this.controls.delete(port)); // its worker is gone
    port.unref();
    for (const [runId, reason] of this.cancels) port.postMessage({ kind: 'cancel', reason, runId } satisfies ControlDown);
    if (this.warmHint) port.postMessage({ kind: 'warm', hint: this.warmHint } satisfies WarmCommand);
  }

  /** Opens a run's line before its task is dispatched (its first message may come at once). */
  open(runId: string, onMessage: (msg: WorkerMessage, port: ReplyPort) => void): RunLine {
    this.lines.set(runId, onMessage);
    return {
      reply: (port, msg) => port.postMessage({ ...msg, runId } as ControlDown),
      cancel: (reason) => {
        this.cancels.set(runId, reason);
        for (const port of this.controls) port.postMessage({ kind: 'cancel', reason, runId } satisfies ControlDown);
      },
      close: () => {
        this.lines.delete(runId);
        this.cancels.delete(runId);
      },
    };
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
      return (await this.pool.run(task)) as RunOutcome;
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
