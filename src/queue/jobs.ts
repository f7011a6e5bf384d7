// What a run looks like on the queue: the job's data (a RunRequest without its callbacks), what a worker
// returns, the progress it reports, and the Redis names fronts and workers share. Job id = run id. Jobs, answers,
// progress and cancels travel signed: a `sig` member next to these fields (signing.ts).
import { z } from 'zod';
import { CallChainSchema } from '../orchestrator/chain.js';
import type { RunResult, RunStatus } from '../contract/run.js';
import { emptyUsage } from '../contract/usage-sum.js';
import type { Usage } from '../contract/usage.js';

export const RunJobSchema = z.object({
  v: z.literal(1),
  runId: z.string().regex(/^run_[0-9a-f-]{36}$/),
  agent: z.string(),
  input: z.record(z.string(), z.unknown()),
  owner: z.string(),
  timeoutS: z.number().positive().optional(),
  /** Caps for the run: the caller's, lowered to the slice the front reserved for it in its books. */
  budget: z.object({ run_tokens: z.number().nonnegative().optional(), run_usd: z.number().nonnegative().optional() }).optional(),
  background: z.boolean().optional(),
  /** A delegate_parallel batch (audit lineage; the batch's books are the front's). */
  parentRunId: z.string().optional(),
  rootRunId: z.string().optional(),
  depth: z.number().int().min(0).optional(),
  caller: z.string().optional(),
  /** A delegation from a running agent: depth, cycle guard, budget slice and rules, enforced on arrival. */
  chain: CallChainSchema.optional(),
  /** The chain came from a client's `_meta` unsigned: its limits hold, its ids are only a claim (chain.ts). */
  chainClaimed: z.boolean().optional(),
  /**
   * The run's slice in the shared books (Redis), reserved by the front, which settles it when the run
   * ends; the worker that ran it settles it if it is still open a while after its report (the front is
   * gone), so the books are right either way.
   */
  sharedBooks: z.object({ reservationId: z.string().min(1).max(200), model: z.string().max(200) }).optional(),
  /** Whether someone follows the run's progress (the worker then sends it, heartbeats included). */
  progress: z.boolean(),
  /** The node that enqueued it. */
  from: z.string(),
  /** Its starter can be asked (`ask` rules): the worker sends the questions to the front `from` (approvals.ts). */
  ask: z.literal(true).optional(),
  /**
   * The node `from` listens on its runs channel (keys.runsChannel) for this run's progress and end: the
   * worker tells it there, rather than it reading every job's events from BullMQ's stream.
   */
  listens: z.literal(true).optional(),
});
export type RunJob = z.infer<typeof RunJobSchema>;

/** A worker's answer: the run's result, what its whole tree spent (for the books that hold its slice), and where it ran. */
export interface RunJobReturn {
  result: RunResult;
  treeUsage: Usage;
  node: string;
}

/** Why a job failed on a worker (signed 'failure' on a runs channel); `stalled`: its worker was lost. */
export interface RunJobFailure {
  reason: string;
  stalled?: true;
}

/** A message on a node's runs channel: one signed part, for the run `runId` (job-watch.ts opens it). */
export interface RunChannelMessage {
  runId: string;
  progress?: unknown;
  end?: unknown;
  failure?: unknown;
}

/** job.updateProgress payload. */
export interface RunJobProgress {
  line: string;
  turn: number;
  usage: Usage;
  node: string;
}

/** The result of a run that ended before (or without) a worker's loop: no turns, no usage, the reason. */
export function errorResult(runId: string, agent: string, model: string, startedAt: number, error: string, status: RunStatus = 'error'): RunResult {
  return { run_id: runId, agent, status, output: '', turns: 0, usage: emptyUsage(), model, duration_ms: Date.now() - startedAt, cost_usd: null, error };
}

/** The reason a front reads as "the worker holding the run is gone" (BullMQ's stalled-job failure). */
export function isWorkerLost(failedReason: string): boolean {
  return /stalled/i.test(failedReason);
}

export const WORKER_LOST = 'worker lost';

export function workerLostMessage(failedReason: string, retried: boolean): string {
  return `${WORKER_LOST}: the worker running it stopped renewing its lock (${failedReason})${retried ? '' : '; not retried (runs have side effects: an agent opts in with retry: {attempts, only: idempotent})'}`;
}

/** Redis names besides BullMQ's own keys, under the same prefix. */
export const keys = {
  /** Pub/sub channel: a cancel for a run, to whichever worker holds it. */
  cancelChannel: (prefix: string) => `${prefix}:dmcp:cancel`,
  /** Marks a cancelled run, so a worker that picks it up later does not start it. */
  cancelled: (prefix: string, runId: string) => `${prefix}:dmcp:cancelled:${runId}`,
  /** Hash of live workers (node id → JSON), refreshed every few seconds; `queue status` reads it. */
  workers: (prefix: string) => `${prefix}:dmcp:workers`,
  /** Pub/sub channel: approval questions for the runs a front started, from the workers running them. */
  askChannel: (prefix: string, front: string) => `${prefix}:dmcp:ask:${front}`,
  /** Pub/sub channel: the progress and ends of the runs a node started (jobs with `listens`), from their workers. */
  runsChannel: (prefix: string, node: string) => `${prefix}:dmcp:runs:${node}`,
  /** Pub/sub channel: the answers to a worker's approval questions. */
  answerChannel: (prefix: string, worker: string) => `${prefix}:dmcp:answer:${worker}`,
};

export interface CancelMessage {
  runId: string;
  reason: 'cancelled' | 'timeout';
}

export interface WorkerBeat {
  node: string;
  concurrency: number;
  active: number;
  done: number;
  failed: number;
  startedAt: string;
  beatAt: string;
  health?: string;
  closing?: boolean;
}

/** Workers beat this often; `queue status` calls one silent for 3 beats gone. */
export const WORKER_BEAT_MS = 5_000;

/** Whether a worker's last beat (`keys.workers`) says it is there: beaten within 3 beats. */
export function workerAlive(beat: Pick<WorkerBeat, 'beatAt'>, now = Date.now()): boolean {
  return now - Date.parse(beat.beatAt) < 3 * WORKER_BEAT_MS;
}
