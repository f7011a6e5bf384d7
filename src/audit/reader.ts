// Reading the audit log back: all files of a directory (written by any number of processes), tolerant
// of a torn last line, then per-agent/per-model summaries and run trees across the re-entry boundary.
import fs from 'node:fs';
import path from 'node:path';
import { AuditEventSchema, type AuditEvent, type AuditRunStatus } from './events.js';
import type { Usage } from '../contract/usage.js';
import { addUsage, emptyUsage, inputTokens, totalTokens } from '../contract/usage-sum.js';
import { formatDuration } from '../time/duration.js';
import { DAY_MS } from '../time/utc-day.js';

const FILE_RE = /^audit-(\d{4}-\d{2}-\d{2})(?:\.(\d+))?\.jsonl$/;

export interface ReadResult {
  events: AuditEvent[];
  files: string[];
  /** Unparseable last lines of a file (a write cut short by a crash). */
  torn: number;
  /** Other lines that are not valid JSON or not a known v1 event. */
  invalid: number;
}

export interface ReadOptions {
  /** Skip files whose UTC day lies entirely outside [since, until] (one day of slack either side). */
  since?: Date;
  until?: Date;
}

/** Reads every audit file in `dir`, oldest first; events sorted by time. A missing dir reads as empty. */
export function readAuditDir(dir: string, opts: ReadOptions = {}): ReadResult {
  const result: ReadResult = { events: [], files: [], torn: 0, invalid: 0 };
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return result;
    throw err;
  }
  const files = names
    .map((name) => ({ name, m: FILE_RE.exec(name) }))
    .filter((f): f is { name: string; m: RegExpExecArray } => f.m !== null)
    .filter(({ m }) => {
      const dayStart = Date.parse(`${m[1]}T00:00:00Z`);
      if (opts.since && dayStart + 2 * DAY_MS <= opts.since.getTime()) return false;
      if (opts.until && dayStart - DAY_MS > opts.until.getTime()) return false;
      return true;
    })
    .sort((a, b) => (a.m[1] === b.m[1] ? Number(a.m[2] ?? 0) - Number(b.m[2] ?? 0) : a.m[1] < b.m[1] ? -1 : 1));
  for (const { name } of files) {
    const file = path.join(dir, name);
    result.files.push(file);
    const parsed = parseAuditText(fs.readFileSync(file, 'utf8'));
    for (const e of parsed.events) result.events.push(e);
    result.torn += parsed.torn;
    result.invalid += parsed.invalid;
  }
  result.events.sort(byTime);
  return result;
}

/** Several audit directories as one log (queue mode: each node writes its own; `audit --run … --from DIR…`). */
export function readAuditDirs(dirs: readonly string[], opts: ReadOptions = {}): ReadResult {
  const result: ReadResult = { events: [], files: [], torn: 0, invalid: 0 };
  for (const dir of dirs) {
    const r = readAuditDir(dir, opts);
    for (const e of r.events) result.events.push(e);
    result.files.push(...r.files);
    result.torn += r.torn;
    result.invalid += r.invalid;
  }
  result.events.sort(byTime);
  return result;
}

/** Parses JSONL text. A bad final line without a trailing newline counts as torn, anything else as invalid. */
export function parseAuditText(text: string): { events: AuditEvent[]; torn: number; invalid: number } {
  const events: AuditEvent[] = [];
  let torn = 0;
  let invalid = 0;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (!line.trim()) continue;
    const isTail = i === lines.length - 1; // no newline after it: the write may have been cut short
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      if (isTail) torn++;
      else invalid++;
      continue;
    }
    const parsed = AuditEventSchema.safeParse(json);
    if (parsed.success) events.push(parsed.data);
    else invalid++;
  }
  return { events, torn, invalid };
}

const byTime = (a: AuditEvent, b: AuditEvent) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : a.pid - b.pid || a.seq - b.seq);

// ---------------------------------------------------------------------------------------------------
// Runs: everything the log says about one run_id, gathered from whichever process wrote it.

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

// ---------------------------------------------------------------------------------------------------
// Summary

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
        row.error++; // cut by a budget mid-stream: it did not finish its work
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


// ---------------------------------------------------------------------------------------------------
// Run tree

export interface RunTreeNode extends RunInfo {
  children: RunTreeNode[];
  /** This run plus all its descendants. */
  subtree: { runs: number; usage: Usage; cost_usd: number; denials: number };
  /** Attached under the root because its recorded parent is missing from the log. */
  orphan?: boolean;
}

/**
 * The tree of runs under `rootRunId`, children linked by parent_run_id (or a parent's delegation
 * event), across all processes that wrote to the directory. Runs that name this root but whose
 * parent is missing are attached to the root as orphans. Undefined when the log never mentions the root.
 */
export function runTree(events: Iterable<AuditEvent>, rootRunId: string): RunTreeNode | undefined {
  const runs = collectRuns(events);
  const rootInfo = runs.get(rootRunId);
  if (!rootInfo) return undefined;
  const childrenOf = new Map<string, RunInfo[]>();
  for (const r of runs.values()) {
    if (r.parent_run_id === null || r.run_id === rootRunId) continue;
    const list = childrenOf.get(r.parent_run_id);
    if (list) list.push(r);
    else childrenOf.set(r.parent_run_id, [r]);
  }
  const visited = new Set<string>();
  const build = (info: RunInfo): RunTreeNode => {
    visited.add(info.run_id);
    const kids = (childrenOf.get(info.run_id) ?? []).filter((c) => !visited.has(c.run_id)); // a cycle in a corrupt log ends here
    kids.sort(byStart);
    const node: RunTreeNode = { ...info, children: [], subtree: { runs: 1, usage: { ...info.usage }, cost_usd: info.cost_usd ?? 0, denials: info.denials } };
    for (const k of kids) {
      if (visited.has(k.run_id)) continue;
      node.children.push(build(k));
    }
    for (const c of node.children) {
      node.subtree.runs += c.subtree.runs;
      addUsage(node.subtree.usage, c.subtree.usage);
      node.subtree.cost_usd += c.subtree.cost_usd;
      node.subtree.denials += c.subtree.denials;
    }
    return node;
  };
  const root = build(rootInfo);
  const orphans = [...runs.values()].filter((r) => r.root_run_id === rootRunId && !visited.has(r.run_id)).sort(byStart);
  for (const o of orphans) {
    if (visited.has(o.run_id)) continue; // already placed as a descendant of an earlier orphan
    const node = build(o);
    node.orphan = true;
    root.children.push(node);
    root.subtree.runs += node.subtree.runs;
    addUsage(root.subtree.usage, node.subtree.usage);
    root.subtree.cost_usd += node.subtree.cost_usd;
    root.subtree.denials += node.subtree.denials;
  }
  return root;
}

const byStart = (a: RunInfo, b: RunInfo) => (a.started_at ?? '').localeCompare(b.started_at ?? '') || a.run_id.localeCompare(b.run_id);

// ---------------------------------------------------------------------------------------------------
// Rendering (plain text for the CLI; --json prints the objects above)

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

export function renderTree(root: RunTreeNode): string {
  const lines: string[] = [];
  const describe = (n: RunTreeNode) =>
    [
      n.run_id,
      n.agent ?? '?',
      n.status,
      n.model ?? '',
      `${fmtTokens(totalTokens(n.usage))} tok`,
      n.cost_usd === null ? '$?' : fmtCost(n.cost_usd),
      formatDuration(n.duration_ms),
      `model×${n.model_calls}`,
      `tools×${n.tool_calls}`,
      n.denials ? `denied×${n.denials}` : '',
      n.nodes.length ? `on ${n.nodes.join(', ')}` : '',
      n.orphan ? '(parent missing)' : '',
    ]
      .filter(Boolean)
      .join('  ');
  const walk = (n: RunTreeNode, prefix: string, childPrefix: string) => {
    lines.push(prefix + describe(n));
    n.children.forEach((c, i) => {
      const last = i === n.children.length - 1;
      walk(c, childPrefix + (last ? '└─ ' : '├─ '), childPrefix + (last ? '   ' : '│  '));
    });
  };
  walk(root, '', '');
  const t = root.subtree;
  lines.push(
    '',
    `total: ${t.runs} run(s), ${fmtTokens(totalTokens(t.usage))} tokens, ${fmtCost(t.cost_usd)}${t.denials ? `, ${t.denials} denial(s)` : ''}`,
  );
  return lines.join('\n') + '\n';
}

/** Left-aligned first column, right-aligned numbers. */
function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows
    .map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ').trimEnd())
    .join('\n');
}

function fmtTokens(n: number): string {
  if (n < 1000) return String(n);
  if (n < 1_000_000) return `${(n / 1000).toFixed(n < 10_000 ? 1 : 0)}k`;
  return `${(n / 1_000_000).toFixed(2)}M`;
}

function fmtCost(usd: number): string {
  return `$${usd.toFixed(usd >= 100 ? 0 : usd >= 1 ? 2 : 4)}`;
}
