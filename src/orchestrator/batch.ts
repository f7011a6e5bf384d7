// A batch: many agent tasks run at once as one unit — `delegate_parallel` over MCP and `delegate-mcp
// fanout` in the terminal both come here; they only translate their inputs and outputs. The batch runs
// its tasks in lanes (at most `concurrency` at a time, taken in input order), collects one result per
// task in input order, and cancels every task (queued ones end as cancelled too) when its signal aborts.
// With a scope it is also a run of its own: a budget scope its tasks draw slices from (they never spend
// more together than its caps) and the root of their tree in the audit log.
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { AuditLog } from '../audit/audit-log.js';
import { digest } from '../audit/events.js';
import type { LedgerStore, RunTotals } from '../budget/index.js';
import type { RunResult } from '../contract/run.js';
import { emptyUsage } from '../contract/usage-sum.js';
import type { TraceContext } from '../telemetry/types.js';
import type { BudgetGate, CallBudget } from './budget-gate.js';
import type { RunLauncher } from './launcher.js';
import type { RunRegistry } from './runs.js';
import type { AskFn } from './tool-gate.js';

export interface BatchTask {
  agent: string;
  task: string;
  context?: string;
}

/** A batch that is a run of its own: a budget scope and an audit root. */
export interface BatchScope {
  /** Names the batch in the books and in the audit log (the tool that opened it). */
  label: string;
  /** Caps for the whole batch: every task draws from them, and together they never spend more. */
  budget?: CallBudget;
  /** What the caller asked, digested into the root's run_start. */
  input: unknown;
}

export interface BatchSpec {
  tasks: readonly BatchTask[];
  /** The client session (or "cli") that owns the batch and its runs. */
  owner: string;
  /** How many tasks run at once (default: all). */
  concurrency?: number;
  /** Aborts every task: running ones are cancelled, queued ones end as cancelled without starting. */
  signal?: AbortSignal;
  /** Deadline for each task's run; can only lower the agent's own. */
  timeoutS?: number;
  /** Asks the client to approve a call an `ask` rule covers (for every task). */
  ask?: AskFn;
  trace?: TraceContext;
  /** Without one, the tasks are independent root runs that merely run side by side. */
  scope?: BatchScope;
  /** A task takes a lane (called before its run starts). */
  onTaskStart?(index: number): void;
  /** A progress line of a running task; without this hook the runs get no progress callback. */
  onTaskProgress?(index: number, message: string): void;
  /** A task ended; its lane waits for this before taking the next task (reports go out in order). */
  onTaskEnd?(index: number, result: RunResult, done: number): void | Promise<void>;
}

export interface BatchOutcome {
  /** One result per task, in input order. */
  results: RunResult[];
  ok: number;
  /** With a scope: its id (a run id budget_status accepts) and what the whole batch spent. */
  batchId?: string;
  totals?: RunTotals;
}

/** The orchestrator's books a scoped batch writes to (the Orchestrator has all three). */
export interface BatchBooks {
  budget: Pick<BudgetGate<LedgerStore>, 'openBatch' | 'closeBatch'>;
  runs: Pick<RunRegistry, 'addBatch' | 'endBatch'>;
  audit?: Pick<AuditLog, 'forRun'>;
}

/** Runs a batch to its end; never rejects for a task's failure (each task's status is in its result). */
export async function runBatch(books: BatchBooks, launcher: RunLauncher, spec: BatchSpec): Promise<BatchOutcome> {
  const total = spec.tasks.length;
  const scope = spec.scope && (await openScope(books, spec.owner, spec.scope));
  const results: RunResult[] = new Array(total);
  // One signal for the whole batch: every task's run listens on it, so lift the default listener cap.
  const batch = new AbortController();
  setMaxListeners(Math.max(16, total + 8), batch.signal);
  const caller = spec.signal;
  const onAbort = () => batch.abort(caller?.reason);
  if (caller?.aborted) onAbort();
  else caller?.addEventListener('abort', onAbort, { once: true });
  let next = 0;
  let done = 0;
  const lane = async () => {
    while (next < total) {
      const index = next++;
      const t = spec.tasks[index];
      spec.onTaskStart?.(index);
      const r = await launcher.run({
        agent: t.agent,
        input: { task: t.task, ...(t.context ? { context: t.context } : {}) },
        owner: spec.owner,
        ...(scope && { parentRunId: scope.batchId, rootRunId: scope.batchId, depth: 1 }),
        ...(spec.timeoutS !== undefined && { timeoutS: spec.timeoutS }),
        signal: batch.signal,
        onProgress: spec.onTaskProgress && ((m) => spec.onTaskProgress!(index, m)),
        ...(spec.trace && { trace: spec.trace }),
        ...(spec.ask && { ask: spec.ask }),
      });
      results[index] = r;
      done++;
      await spec.onTaskEnd?.(index, r, done);
    }
  };
  const lanes = Math.max(1, Math.min(spec.concurrency ?? total, total));
  let ok = 0;
  try {
    await Promise.all(Array.from({ length: lanes }, lane));
    ok = results.filter((r) => r.status === 'ok').length;
  } finally {
    caller?.removeEventListener('abort', onAbort);
  }
  if (!scope) return { results, ok };
  const totals = await scope.close(caller?.aborted ? 'cancelled' : ok === total ? 'ok' : 'error', ok < total ? `${total - ok} of ${total} tasks failed` : undefined);
  return { results, ok, batchId: scope.batchId, totals };
}

/** Opens the batch's budget scope and audit root; `close` ends both and returns what the batch spent. */
async function openScope(books: BatchBooks, owner: string, scope: BatchScope) {
  const batchId = `batch_${randomUUID()}`;
  // A Redis ledger answers with a promise; the in-process one synchronously (await costs it one tick).
  await books.budget.openBatch(batchId, scope.label, scope.budget);
  books.runs.addBatch(batchId, owner);
  const audit = books.audit?.forRun({ run_id: batchId, parent_run_id: null, root_run_id: batchId, depth: 0, agent: scope.label });
  const startedAt = Date.now();
  audit?.emit({ event: 'run_start', caller: owner, input_digest: digest(scope.input), model: '' });
  return {
    batchId,
    async close(status: 'ok' | 'error' | 'cancelled', error: string | undefined): Promise<RunTotals> {
      const totals = await books.budget.closeBatch(batchId);
      books.runs.endBatch(batchId);
      // The batch's own usage is nil (its tasks write their own run_end); its cost is what it was charged itself.
      audit?.emit({
        event: 'run_end',
        status,
        turns: 0,
        usage: emptyUsage(),
        cost_usd: totals.self.usd,
        duration_ms: Date.now() - startedAt,
        ...(error ? { error } : {}),
      });
      return totals;
    },
  };
}
