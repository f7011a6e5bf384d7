// Runs: everything the log says about one run_id, gathered from whichever process wrote it.
import type { AuditEvent, AuditRunStatus } from './events.js';
import type { Usage } from '../contract/usage.js';
import { emptyUsage } from '../contract/usage-sum.js';

export type RunNodeStatus = AuditRunStatus | 'running';

export interface RunInfo {
  run_id: string;
  parent_run_id: string | null;
  root_run_id: string | null;
  depth: number | null;
  agent: string | null;
  model: string | null;
  /** 'running' when no run_end was found (still running, or the process died). */
  status: RunNodeStatus;
  started_at: string | null;
  ended_at: string | null;
  usage: Usage;
  cost_usd: number | null;
  duration_ms: number | null;
  turns: number;
  model_calls: number;
  tool_calls: number;
  /** permission_denied + budget_refused events (a denied tool_call comes with its permission_denied). */
  denials: number;
  error?: string;
  pids: number[];
  /** Nodes that wrote its events (queue mode); empty for a single machine. */
  nodes: string[];
}

/** Groups events into runs by run_id. */
export function collectRuns(events: Iterable<AuditEvent>): Map<string, RunInfo> {
  const runs = new Map<string, RunInfo>();
  const ensure = (id: string): RunInfo => {
    let r = runs.get(id);
    if (!r) {
      r = {
        run_id: id,
        parent_run_id: null,
        root_run_id: null,
        depth: null,
        agent: null,
        model: null,
        status: 'running',
        started_at: null,
        ended_at: null,
        usage: emptyUsage(),
        cost_usd: null,
        duration_ms: null,
        turns: 0,
        model_calls: 0,
        tool_calls: 0,
        denials: 0,
        pids: [],
        nodes: [],
      };
      runs.set(id, r);
    }
    return r;
  };
  for (const e of events) {
    if (e.run_id === null) continue;
    const r = ensure(e.run_id);
    // Any event may carry the context; the first non-null value wins.
    r.parent_run_id ??= e.parent_run_id;
    r.root_run_id ??= e.root_run_id;
    r.depth ??= e.depth;
    r.agent ??= e.agent;
    if (!r.pids.includes(e.pid)) r.pids.push(e.pid);
    if (e.node !== undefined && !r.nodes.includes(e.node)) r.nodes.push(e.node);
    switch (e.event) {
      case 'run_start':
        r.model = e.model;
        r.started_at = e.ts;
        break;
      case 'run_end':
        r.status = e.status;
        r.ended_at = e.ts;
        r.usage = { ...e.usage };
        r.cost_usd = e.cost_usd;
        r.duration_ms = e.duration_ms;
        r.turns = e.turns;
        if (e.error !== undefined) r.error = e.error;
        break;
      case 'model_call':
        r.model_calls++;
        r.model ??= e.model;
        break;
      case 'tool_call':
        r.tool_calls++;
        break;
      case 'permission_denied':
      case 'budget_refused':
        r.denials++;
        break;
      case 'delegation': {
        // The parent's record of the hop links the child even if the child's own lines are missing.
        const child = ensure(e.child_run_id);
        child.parent_run_id ??= e.run_id;
        child.root_run_id ??= e.root_run_id;
        child.agent ??= e.child_agent;
        child.depth ??= e.depth === null ? null : e.depth + 1;
        break;
      }
      default:
        break;
    }
  }
  return runs;
}
