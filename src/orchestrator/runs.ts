// Run records: what the server remembers about the runs it started, so background runs can be
// polled, fetched and cancelled after the call that started them returned. In memory, behind a narrow
// interface. Only runs someone can still ask for (background runs, or runs a run_result is waiting on)
// are kept for `keepS` after they end; the others are dropped when they end (their result went back to
// the call that started them, and their record stays in the audit log), leaving a small tombstone so a
// later run_status can say what happened.
import type { RunResult, RunStatus } from '../contract/run.js';
import type { Usage } from '../contract/usage.js';

export interface RunRecord {
  runId: string;
  agent: string;
  model: string;
  /** Who may see it: runs are scoped to the client session that started them. */
  owner: string;
  status: RunStatus | 'running';
  startedAt: number;
  endedAt?: number;
  /** Latest progress line (for run_status). */
  lastProgress: string;
  turn: number;
  usage: Usage;
  result?: RunResult;
  costUsd?: number | null;
  /** What process-hop children reported for their trees (committed to this run's scope): not this run's own spend. */
  childCostUsd?: number;
  /** This run's own model spend (the audit's run_end.cost_usd): costUsd less its children's. */
  ownCostUsd?: number | null;
  /** Usage of this run and every run it delegated to (from the budget books). */
  treeUsage?: Usage;
  /** Where the run stands in its delegation tree. */
  lineage?: import('./chain.js').RunLineage;
  audit?: import('../audit/audit-log.js').RunAudit;
  /** The run's spans, when telemetry is on. */
  trace?: import('../telemetry/types.js').RunTrace;
  budgetNotes?: string[];
  /** A background run: someone will ask for it later, so it is kept for keepS after it ends. */
  keep?: boolean;
  /** run_result calls waiting on it right now (they keep it too). */
  waiters?: number;
  done: Promise<RunResult>;
  cancel(reason?: 'cancelled' | 'timeout'): void;
}

/** What is left of a run that was not kept: enough to answer "it ended" and for a re-entry parent's books. */
export interface EndedRun {
  runId: string;
  owner: string;
  agent: string;
  status: RunStatus;
  endedAt: number;
  treeUsage?: Usage;
}

/** Tombstones kept (oldest forgotten first): ~200 bytes each. */
const ENDED_KEPT = 1000;

export class RunRegistry {
  private runs = new Map<string, RunRecord>();
  private batches = new Map<string, { owner: string; endedAt?: number }>();
  private readonly endedRuns = new Map<string, EndedRun>();
  private timer: NodeJS.Timeout;

  constructor(private keepMs: number) {
    this.timer = setInterval(() => this.expire(), Math.min(keepMs, 60_000));
    this.timer.unref();
  }

  add(rec: RunRecord): void {
    this.runs.set(rec.runId, rec);
  }

  get(runId: string, owner?: string): RunRecord | undefined {
    const rec = this.runs.get(runId);
    if (!rec || (owner !== undefined && !mayAccess(rec.owner, owner))) return undefined;
    return rec;
  }

  /** A delegate_parallel batch: a budget scope owned like a run (budget_status checks it). */
  addBatch(batchId: string, owner: string): void {
    this.batches.set(batchId, { owner });
  }

  endBatch(batchId: string): void {
    const b = this.batches.get(batchId);
    if (b) b.endedAt = Date.now();
  }

  /** Whether `owner` may see the batch (same rule as runs). */
  ownsBatch(batchId: string, owner: string): boolean {
    const b = this.batches.get(batchId);
    return b !== undefined && mayAccess(b.owner, owner);
  }

  /** The run has ended: keep it if someone can still ask for it, otherwise drop it to a tombstone. */
  ended(rec: RunRecord): void {
    if (rec.keep || (rec.waiters ?? 0) > 0 || rec.status === 'running') return;
    this.runs.delete(rec.runId);
    this.endedRuns.set(rec.runId, { runId: rec.runId, owner: rec.owner, agent: rec.agent, status: rec.status, endedAt: rec.endedAt ?? Date.now(), ...(rec.treeUsage ? { treeUsage: rec.treeUsage } : {}) });
    if (this.endedRuns.size > ENDED_KEPT) this.endedRuns.delete(this.endedRuns.keys().next().value!);
  }

  /** A finished run that was not kept (same visibility rule as get). */
  endedRun(runId: string, owner?: string): EndedRun | undefined {
    const e = this.endedRuns.get(runId);
    if (!e || (owner !== undefined && !mayAccess(e.owner, owner))) return undefined;
    return e;
  }

  list(owner?: string): RunRecord[] {
    return [...this.runs.values()].filter((r) => owner === undefined || r.owner === owner);
  }

  private expire(now = Date.now()): void {
    for (const [id, r] of this.runs) if (r.endedAt && now - r.endedAt > this.keepMs) this.runs.delete(id);
    for (const [id, b] of this.batches) if (b.endedAt && now - b.endedAt > this.keepMs) this.batches.delete(id);
  }

  close(): void {
    clearInterval(this.timer);
  }
}

/**
 * Owners of session-less requests (the 2026-07-28 era over HTTP has no sessions: every request is a
 * new server instance) start with this prefix. For them the run id itself is the capability: it is a
 * random UUID that only the request that started the run was told, so a later request that presents
 * it may follow, fetch or cancel that run, while runs of session-bound clients stay invisible to it
 * (and theirs to them).
 */
export const SESSIONLESS_OWNER_PREFIX = 'sessionless_';

/** Whether `owner` may see what `recordOwner` started: the same session, or both session-less (see above). */
export function mayAccess(recordOwner: string, owner: string): boolean {
  return recordOwner === owner || (recordOwner.startsWith(SESSIONLESS_OWNER_PREFIX) && owner.startsWith(SESSIONLESS_OWNER_PREFIX));
}
