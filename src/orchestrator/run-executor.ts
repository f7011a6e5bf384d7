// Where a run's loop executes, as a RunSession sees it: the piscina pool (pool.ts, the server's) or the
// calling thread (in-process-pool.ts). A session opens its line, dispatches its task, answers what the
// loop asks over the line, and cancels over it; killThread is the hard fallback after the grace period.
import type { MainMessage, RunOutcome, RunTask, WarmHint, WorkerMessage } from '../contract/worker-protocol.js';

/** Where a reply to a run's request goes (its worker's control port, or the in-process channel). */
export interface ReplyPort {
  postMessage(msg: unknown): void;
}

/** A run's end of the control channels: what its loop sends arrives at `onMessage` with the port to answer on. */
export interface RunLine {
  reply(port: ReplyPort, msg: MainMessage): void;
  /** Tells every worker (the run's own may not have said a word yet); only the one running it acts. */
  cancel(reason: 'cancelled' | 'timeout'): void;
  close(): void;
}

export interface RunExecutor {
  /** Opens a run's line before its task is dispatched (its first message may come at once). */
  open(runId: string, onMessage: (msg: WorkerMessage, port: ReplyPort) => void): RunLine;
  /** Capacity check before dispatch, so a full server answers "busy" at once instead of queueing. */
  assertCapacity(): void;
  /** Runs the task's loop to its outcome; rejects when its thread dies (crash, OOM, kill). */
  run(task: RunTask): Promise<RunOutcome>;
  /** Ends the thread with this id (and the runs on it); false when there is none. */
  killThread(threadId: number): boolean;
  /** Warms threads in the background (idempotent). */
  warm(hint: WarmHint): void;
  close(): Promise<void>;
}

export class ServerBusyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ServerBusyError';
  }
}
