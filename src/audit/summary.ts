// Per-agent and per-model summaries of the runs in an audit log, and their plain-text table for the CLI
// (--json prints the objects).
import type { AuditEvent } from './events.js';
import type { Usage } from '../contract/usage.js';
import { addUsage, emptyUsage, inputTokens, totalTokens } from '../contract/usage-sum.js';
import { formatDuration } from '../time/duration.js';
import { collectRuns, type RunInfo } from './run-info.js';
import { fmtCost, fmtTokens } from './text-format.js';

export interface SummaryRow {
  key: string;
  runs: number;
  ok: number;
  error: number;
  cancelled: number;
  timeout: number;
  max_turns: number;
  /** Runs that hit a budget_refused or permission_denied (whatever their final status). */
  denied: number;
  /** Runs without a run_end (still running, or their process died). */
  running: number;
  tokens: Usage & { total: number };
  cost_usd: number;
  /** Finished runs that reported no cost (unknown model price). */
  cost_unknown: number;
  p50_ms: number | null;
  p95_ms: number | null;
}

export interface Summary {
  since: string | null;
  until: string | null;
  total: SummaryRow;
  by_agent: SummaryRow[];
  by_model: SummaryRow[];
}

export interface SummaryOptions {
  since?: Date;
  until?: Date;
}

/** Per-agent and per-model statistics over runs that started in [since, until). */
export function summarize(events: Iterable<AuditEvent>, opts: SummaryOptions = {}): Summary {
  const since = opts.since?.getTime() ?? -Infinity;
  const until = opts.until?.getTime() ?? Infinity;
  const runs = [...collectRuns(events).values()].filter((r) => {
    const at = r.started_at ?? r.ended_at;
    if (at === null) return false; // only seen through a parent's delegation event
    const t = Date.parse(at);
    return t >= since && t < until;
  });
  const group = (keyOf: (r: RunInfo) => string) => {
    const groups = new Map<string, RunInfo[]>();
    for (const r of runs) {
      const k = keyOf(r);
      const list = groups.get(k);
      if (list) list.push(r);
      else groups.set(k, [r]);
    }
    return [...groups].map(([k, rs]) => summaryRow(k, rs)).sort((a, b) => b.runs - a.runs || a.key.localeCompare(b.key));
  };
  return {
    since: opts.since?.toISOString() ?? null,
    until: opts.until?.toISOString() ?? null,
    total: summaryRow('total', runs),
    by_agent: group((r) => r.agent ?? '(unknown)'),
    by_model: group((r) => r.model ?? '(unknown)'),
  };
}

function summaryRow(key: string, runs: RunInfo[]): SummaryRow {
  const row: SummaryRow = {
    key,
    runs: runs.length,
    ok: 0,
    error: 0,
    cancelled: 0,
    timeout: 0,
    max_turns: 0,
    denied: 0,
    running: 0,
    tokens: { ...emptyUsage(), total: 0 },
    cost_usd: 0,
    cost_unknown: 0,
    p50_ms: null,
    p95_ms: null,
  };
  const durations: number[] = [];
  for (const r of runs) {
    switch (r.status) {
      case 'ok':
      case 'error':
      case 'cancelled':
      case 'timeout':
      case 'max_turns':
      case 'running':
        row[r.status]++;
        break;
      case 'budget_exhausted':
      case 'failed':
        row.error++; // cut by a budget mid-stream, or its worker was lost: it did not finish its work
        break;
      case 'denied':
        break; // counted below, with runs that were refused part-way
    }
    if (r.denials > 0 || r.status === 'denied') row.denied++;
    addUsage(row.tokens, r.usage);
    if (r.status !== 'running') {
      if (r.cost_usd === null) row.cost_unknown++;
      else row.cost_usd += r.cost_usd;
    }
    if (r.duration_ms !== null) durations.push(r.duration_ms);
  }
  row.tokens.total = totalTokens(row.tokens);
  durations.sort((a, b) => a - b);
  row.p50_ms = percentile(durations, 50);
  row.p95_ms = percentile(durations, 95);
  return row;
}

/** Nearest-rank percentile of a sorted list. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (!sorted.length) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

export function renderSummary(s: Summary): string {
  const range = s.since || s.until ? `Runs from ${s.since ?? 'the beginning'} to ${s.until ?? 'now'}` : 'All runs';
  if (s.total.runs === 0) return `${range}: none.\n`;
  const header = ['', 'runs', 'ok', 'error', 'cancel', 'timeout', 'max_turns', 'denied', 'running', 'tokens in', 'tokens out', 'cost', 'p50', 'p95'];
  const rowCells = (r: SummaryRow) => [
    r.key,
    String(r.runs),
    String(r.ok),
    String(r.error),
    String(r.cancelled),
    String(r.timeout),
    String(r.max_turns),
    String(r.denied),
    String(r.running),
    fmtTokens(inputTokens(r.tokens)),
    fmtTokens(r.tokens.output_tokens),
    fmtCost(r.cost_usd) + (r.cost_unknown ? '+?' : ''),
    formatDuration(r.p50_ms),
    formatDuration(r.p95_ms),
  ];
  const section = (title: string, rows: SummaryRow[]) =>
    table([[title, ...header.slice(1)], ...rows.map(rowCells)]);
  return [
    `${range}: ${s.total.runs} run(s), ${fmtTokens(s.total.tokens.total)} tokens, ${fmtCost(s.total.cost_usd)}${s.total.cost_unknown ? ` (+${s.total.cost_unknown} run(s) of unknown cost)` : ''}`,
    '',
    section('agent', s.by_agent),
    '',
    section('model', s.by_model),
    '',
  ].join('\n');
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows
    .map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ').trimEnd())
    .join('\n');
}
