// Run records: what the server remembers about every run it started, so background runs can be
// polled, fetched and cancelled after the call that started them returned. In memory, behind a narrow
// interface, expired after `keepS`.
import type { RunStatus } from '../worker/protocol.js';
import type { Usage } from '../providers/types.js';

export interface RunResult {
  run_id: string;
  agent: string;
  status: RunStatus;
  output: string;
  turns: number;
  usage: { input_tokens: number; output_tokens: number; cache_read_input_tokens: number; cache_creation_input_tokens: number };
  model: string;
  duration_ms: number;
  /** USD for the run and its children; null when no price is known for its model (tokens only). */
  cost_usd: number | null;
  /** Deliverables written from the answer, readable as MCP resources. */
  artifacts?: { name: string; uri: string; bytes: number }[];
  /** Budget notes, e.g. a max output shrunk to fit, or a model with no known price. */
  notes?: string[];
  error?: string;
}

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
  /** Usage of this run and every run it delegated to (from the budget books). */
  treeUsage?: Usage;
  /** Where the run stands in its delegation tree. */
  lineage?: import('./chain.js').RunLineage;
  audit?: import('../audit/audit-log.js').RunAudit;
  budgetNotes?: string[];
  done: Promise<RunResult>;
  cancel(reason?: 'cancelled' | 'timeout'): void;
}

export class RunRegistry {
  private runs = new Map<string, RunRecord>();
  private batches = new Map<string, { owner: string; endedAt?: number }>();
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
