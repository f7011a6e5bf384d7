// Views of the audit log for people: the list of recent runs (`delegate-mcp runs`, the /ui page) and a
// run tree's timeline of model calls, tool calls (with the permission decision and its reason),
// delegations and refusals (`audit --run`, the /ui page). Built on reader.ts; everything here is data
// from the log, which includes model-chosen strings: renderers must treat it as text.
import { AuditRunStatus, type AuditEvent } from './events.js';
import { inputTokens, totalTokens } from '../contract/usage-sum.js';
import { formatDuration } from '../time/duration.js';
import { DAY_MS } from '../time/utc-day.js';
import { collectRuns, type RunInfo, type RunNodeStatus } from './run-info.js';
import type { RunTreeNode } from './run-tree.js';

export interface RunListItem {
  run_id: string;
  root_run_id: string | null;
  parent_run_id: string | null;
  depth: number | null;
  agent: string | null;
  model: string | null;
  caller: string | null;
  status: RunNodeStatus;
  started_at: string | null;
  duration_ms: number | null;
  tokens: number;
  cost_usd: number | null;
  model_calls: number;
  tool_calls: number;
  denials: number;
  error?: string;
}

export interface RunFilter {
  agent?: string;
  status?: string;
  /** Runs that started at or after this time. */
  since?: Date;
  until?: Date;
  /** Only top-level runs (depth 0). */
  rootsOnly?: boolean;
  limit?: number;
}


/** Runs that match the filter, newest first. */
export function listRuns(events: readonly AuditEvent[], f: RunFilter = {}): RunListItem[] {
  const callers = new Map<string, string | null>();
  for (const e of events) if (e.event === 'run_start' && e.run_id) callers.set(e.run_id, e.caller);
  const since = f.since?.getTime() ?? -Infinity;
  const until = f.until?.getTime() ?? Infinity;
  const out: RunListItem[] = [];
  for (const r of collectRuns(events).values()) {
    if (r.started_at === null) continue; // only known from a parent's delegation line
    const t = Date.parse(r.started_at);
    if (t < since || t >= until) continue;
    if (f.agent !== undefined && r.agent !== f.agent) continue;
    if (f.status !== undefined && r.status !== f.status) continue;
    if (f.rootsOnly && r.depth !== 0) continue;
    out.push(listItem(r, callers.get(r.run_id) ?? null));
  }
  out.sort((a, b) => (b.started_at ?? '').localeCompare(a.started_at ?? '') || a.run_id.localeCompare(b.run_id));
  return f.limit !== undefined ? out.slice(0, f.limit) : out;
}

function listItem(r: RunInfo, caller: string | null): RunListItem {
  return {
    run_id: r.run_id,
    root_run_id: r.root_run_id,
    parent_run_id: r.parent_run_id,
    depth: r.depth,
    agent: r.agent,
    model: r.model,
    caller,
    status: r.status,
    started_at: r.started_at,
    duration_ms: r.duration_ms,
    tokens: totalTokens(r.usage),
    cost_usd: r.cost_usd,
    model_calls: r.model_calls,
    tool_calls: r.tool_calls,
    denials: r.denials,
    ...(r.error !== undefined && { error: r.error }),
  };
}

/** Every status a run can show: still running, or how the audit log says it ended (one list, from events.ts). */
export const RUN_STATUSES: readonly RunNodeStatus[] = ['running', ...AuditRunStatus.options];

// ---------------------------------------------------------------------------------------------------
// Timeline

interface EntryBase {
  ts: string;
  run_id: string;
  agent: string | null;
  depth: number | null;
}
export type TimelineEntry = EntryBase &
  (
    | { kind: 'run_start'; caller: string | null; model: string }
    | { kind: 'run_end'; status: string; duration_ms: number; cost_usd: number | null; tokens: number; error?: string }
    | {
        kind: 'model_call';
        turn: number;
        model: string;
        input_tokens: number | null;
        output_tokens: number | null;
        cache_read_tokens: number | null;
        latency_ms: number;
        retries: number;
        stop_reason: string | null;
        error?: string;
      }
    | { kind: 'tool_call'; tool: string; decision: string; rule: string | null; reason?: string; duration_ms: number; outcome: string }
    | { kind: 'delegation'; child_run_id: string; child_agent: string; hop: string }
    | { kind: 'budget_refused'; scope: string; message?: string }
    | { kind: 'cancelled' | 'error'; message: string }
  );

/** Every step of the runs in `tree` (the root and all its descendants), in time order. */
export function runTimeline(events: readonly AuditEvent[], tree: RunTreeNode): TimelineEntry[] {
  const ids = new Set<string>();
  const walk = (n: RunTreeNode) => {
    ids.add(n.run_id);
    n.children.forEach(walk);
  };
  walk(tree);
  const out: TimelineEntry[] = [];
  // A denied tool_call is followed by its permission_denied (same run, same tool): the reason comes from there.
  const pendingDenied = new Map<string, Extract<TimelineEntry, { kind: 'tool_call' }>[]>();
  for (const e of events) {
    if (e.run_id === null || !ids.has(e.run_id)) continue;
    const base: EntryBase = { ts: e.ts, run_id: e.run_id, agent: e.agent, depth: e.depth };
    switch (e.event) {
      case 'run_start':
        out.push({ ...base, kind: 'run_start', caller: e.caller, model: e.model });
        break;
      case 'run_end':
        out.push({ ...base, kind: 'run_end', status: e.status, duration_ms: e.duration_ms, cost_usd: e.cost_usd, tokens: totalTokens(e.usage), ...(e.error !== undefined && { error: e.error }) });
        break;
      case 'model_call':
        out.push({
          ...base,
          kind: 'model_call',
          turn: e.turn,
          model: e.model,
          input_tokens: e.usage ? inputTokens(e.usage) : null,
          output_tokens: e.usage?.output_tokens ?? null,
          cache_read_tokens: e.usage?.cache_read_input_tokens ?? null,
          latency_ms: e.latency_ms,
          retries: e.retries,
          stop_reason: e.stop_reason,
          ...(e.error !== undefined && { error: e.error }),
        });
        break;
      case 'tool_call': {
        const entry = { ...base, kind: 'tool_call' as const, tool: e.tool, decision: e.decision, rule: e.rule, duration_ms: e.duration_ms, outcome: e.outcome };
        out.push(entry);
        if (e.decision === 'deny' || e.decision === 'ask_denied') {
          const key = `${e.run_id}\0${e.tool}`;
          pendingDenied.set(key, [...(pendingDenied.get(key) ?? []), entry]);
        }
        break;
      }
      case 'permission_denied': {
        const key = `${e.run_id}\0${e.tool}`;
        const waiting = pendingDenied.get(key);
        const entry = waiting?.shift();
        if (entry) entry.reason = e.reason;
        else out.push({ ...base, kind: 'tool_call', tool: e.tool, decision: 'deny', rule: e.rule, reason: e.reason, duration_ms: 0, outcome: 'error' });
        break;
      }
      case 'delegation':
        out.push({ ...base, kind: 'delegation', child_run_id: e.child_run_id, child_agent: e.child_agent, hop: e.hop });
        break;
      case 'budget_refused':
        out.push({ ...base, kind: 'budget_refused', scope: e.scope, ...(e.message !== undefined && { message: e.message }) });
        break;
      case 'cancelled':
        out.push({ ...base, kind: 'cancelled', message: e.reason });
        break;
      case 'error':
        out.push({ ...base, kind: 'error', message: e.message });
        break;
      default:
        break;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Plain text for the CLI

export function renderRunList(runs: readonly RunListItem[]): string {
  if (!runs.length) return 'No runs.\n';
  const rows = [
    ['started (UTC)', 'run id', 'agent', 'status', 'caller', 'depth', 'duration', 'tokens', 'cost', 'denied'],
    ...runs.map((r) => [
      (r.started_at ?? '').replace('T', ' ').slice(0, 19),
      r.run_id,
      r.agent ?? '?',
      r.status,
      r.caller ?? '-',
      r.depth === null ? '?' : String(r.depth),
      formatDuration(r.duration_ms),
      String(r.tokens),
      r.cost_usd === null ? (r.status === 'running' ? '-' : '$?') : `$${r.cost_usd.toFixed(4)}`,
      r.denials ? String(r.denials) : '',
    ]),
  ];
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => oneLine(row[c]).length)));
  return rows.map((row) => row.map((cell, c) => oneLine(cell).padEnd(widths[c])).join('  ').trimEnd()).join('\n') + '\n';
}

export function renderTimeline(entries: readonly TimelineEntry[]): string {
  if (!entries.length) return 'timeline: no events.\n';
  const t0 = Date.parse(entries[0].ts);
  const lines = ['timeline (seconds from the first event):'];
  for (const e of entries) {
    const at = `+${((Date.parse(e.ts) - t0) / 1000).toFixed(3)}s`.padStart(10);
    const who = `${'  '.repeat(e.depth ?? 0)}${e.agent ?? '?'}`;
    lines.push(`${at}  ${oneLine(who).padEnd(16)} ${oneLine(describeEntry(e))}`);
  }
  return lines.join('\n') + '\n';
}

function describeEntry(e: TimelineEntry): string {
  switch (e.kind) {
    case 'run_start':
      return `run start ${e.run_id} (${e.model}${e.caller ? `, caller ${e.caller}` : ''})`;
    case 'run_end':
      return `run end ${e.status} · ${formatDuration(e.duration_ms)} · ${e.tokens} tok · ${e.cost_usd === null ? '$?' : `$${e.cost_usd.toFixed(4)}`}${e.error ? ` · ${e.error}` : ''}`;
    case 'model_call':
      return `model call turn ${e.turn} · ${e.input_tokens ?? '?'} in / ${e.output_tokens ?? '?'} out tok · ${formatDuration(e.latency_ms)} · ${e.stop_reason ?? '-'}${e.retries ? ` · ${e.retries} retr${e.retries === 1 ? 'y' : 'ies'}` : ''}${e.error ? ` · error: ${e.error}` : ''}`;
    case 'tool_call':
      return `tool ${e.tool} · ${e.decision}${e.rule ? ` by rule ${e.rule}` : ''}${e.reason ? ` (${e.reason})` : ''} · ${e.outcome} · ${formatDuration(e.duration_ms)}`;
    case 'delegation':
      return `delegated to ${e.child_agent} (${e.child_run_id}, ${e.hop})`;
    case 'budget_refused':
      return `budget refused (${e.scope})${e.message ? `: ${e.message}` : ''}`;
    case 'cancelled':
      return `cancelled: ${e.message}`;
    case 'error':
      return `error: ${e.message}`;
  }
}

/** Log strings may hold newlines or terminal escapes chosen by a model: one line, no control characters. */
function oneLine(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ');
}

/** `--since`: an ISO date/time, or a span back from now such as 30m, 12h, 7d. */
export function parseSince(text: string, now = Date.now()): Date | undefined {
  const rel = /^(\d+(?:\.\d+)?)\s*(m|min|h|d|w)$/i.exec(text.trim());
  if (rel) {
    const unit = { m: 60_000, min: 60_000, h: 3_600_000, d: DAY_MS, w: 604_800_000 }[rel[2].toLowerCase() as 'm'];
    return new Date(now - Number(rel[1]) * unit);
  }
  const d = new Date(text);
  return Number.isNaN(d.getTime()) ? undefined : d;
}
