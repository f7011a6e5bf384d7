// The ledger's words: refusal messages, run totals, and the status report (budget_status, `budget` CLI).
import type { ResolvedPrice } from './prices.js';
import { modelsRecord, roundUsd, USD_EPSILON, type Check, type Dim, type Scope } from './scope.js';
import type { BudgetStatus, ModelTotals, ReserveRefused, RunStatus, RunTotals, ScopeStatus } from './types.js';

/** What the report reads of a run (the in-process RunState, or one rebuilt from Redis). */
export interface RunView {
  runId: string;
  agent: string;
  parent?: { runId: string };
  depth: number;
  open: boolean;
  /** Spend and holds of the run's whole subtree, against its effective caps. */
  scope: Scope;
  limitedByParent: { tokens: boolean; usd: boolean };
  self: { tokens: number; usd: number; unpricedTokens: number; calls: number };
  byModel: Map<string, ModelTotals>;
  children: RunView[];
  /** The run's own open reservations. */
  reservations: Iterable<{ tokens: number; usd: number | null }>;
}

/** What the report reads of a day. */
export interface DayView {
  day: string;
  server: Scope;
  models: Map<string, ModelTotals>;
}

/** What refused a call: the first blocking scope in full, the others named. */
export function refusal(
  blockers: Check[],
  c: { input: number; maxOut: number; minOut: number; model: string; price: ResolvedPrice | null; need: (dim: Dim, out: number) => number },
): ReserveRefused {
  const b = blockers[0];
  const s = b.scope;
  const fmt = (n: number) => (b.dim === 'tokens' ? String(n) : fmtUsd(n));
  const limit = fmtLimit(b.dim, s.limits[b.dim]!);
  const spent = fmt(b.dim === 'tokens' ? s.spentTokens : s.spentUsd);
  const reserved = fmt(b.dim === 'tokens' ? s.reservedTokens : s.reservedUsd);
  const at = b.dim === 'usd' ? ` at ${c.price!.key} prices` : '';
  const needed = `${fmt(c.need(b.dim, c.maxOut))} (${c.input} input + ${c.maxOut} max output${at})`;
  let message = `budget refused: ${b.name} ${dimWord(b.dim)} limit ${limit}${b.hint}: spent ${spent}, reserved ${reserved}, this call needs ${needed}`;
  if (c.minOut < c.maxOut) message += `; even with max output shrunk to ${c.minOut} it needs ${fmt(c.need(b.dim, c.minOut))}`;
  if (blockers.length > 1) message += `; also over: ${blockers.slice(1).map((x) => `${x.name} ${dimWord(x.dim)} limit`).join(', ')}`;
  return { ok: false, scope: b.name, dimension: b.dim, limit, spent, reserved, needed, message };
}

export function totalsOf(run: RunView): RunTotals {
  return {
    runId: run.runId,
    agent: run.agent,
    tokens: run.scope.spentTokens,
    usd: roundUsd(run.scope.spentUsd),
    unpricedTokens: run.scope.unpricedTokens,
    calls: run.scope.calls,
    self: { ...run.self, usd: roundUsd(run.self.usd) },
    byModel: modelsRecord(run.byModel),
  };
}

export function runStatus(rs: RunView): RunStatus {
  let rt = 0;
  let ru = 0;
  for (const res of rs.reservations) {
    rt += res.tokens;
    ru += res.usd ?? 0;
  }
  return {
    ...rs.scope.status(),
    runId: rs.runId,
    agent: rs.agent,
    ...(rs.parent && { parentRunId: rs.parent.runId }),
    depth: rs.depth,
    open: rs.open,
    limitedByParent: { ...rs.limitedByParent },
    self: {
      spent: { tokens: rs.self.tokens, usd: roundUsd(rs.self.usd) },
      reserved: { tokens: rt, usd: roundUsd(ru) },
      calls: rs.self.calls,
      unpricedTokens: rs.self.unpricedTokens,
    },
    byModel: modelsRecord(rs.byModel),
    children: rs.children.map((c) => c.runId),
  };
}

/** The books of one day, with a run's subtree when asked for (`agentScopes` in name order). */
export function budgetStatus(day: DayView, agentScopes: [string, Scope][], run: RunView | undefined, openRuns: number): BudgetStatus {
  const agents: Record<string, ScopeStatus> = {};
  for (const [name, s] of agentScopes) agents[name] = s.status();

  const notes: string[] = [];
  const models: Record<string, ModelTotals> = {};
  for (const [m, t] of [...day.models].sort(([a], [b]) => a.localeCompare(b))) {
    models[m] = { ...t, usage: { ...t.usage } }; // a snapshot: the books go on adding to t.usage
    if (t.usd === null) notes.push(`no price known for ${m}: tokens only`);
  }
  const overrun = (s: Scope) => {
    for (const dim of ['tokens', 'usd'] as const) {
      const a = s.available(dim);
      if (a !== undefined && a < (dim === 'usd' ? -USD_EPSILON : 0)) {
        const spent = dim === 'tokens' ? String(s.spentTokens) : fmtUsd(s.spentUsd);
        notes.push(`${s.label} ${dimWord(dim)} limit ${fmtLimit(dim, s.limits[dim]!)} exceeded: spent ${spent} (calls used more than they reserved)`);
      }
    }
  };
  overrun(day.server);
  for (const [, s] of agentScopes) overrun(s);

  const runs: RunStatus[] = [];
  if (run) {
    const walk = (rs: RunView) => {
      runs.push(runStatus(rs));
      overrun(rs.scope);
      for (const [m, t] of rs.byModel) if (t.usd === null && !models[m]) notes.push(`no price known for ${m}: tokens only`);
      rs.children.forEach(walk);
    };
    walk(run);
  }
  return { day: day.day, server: day.server.status(), agents, models, runs, openRuns, notes: [...new Set(notes)] };
}

export function fmtUsd(n: number): string {
  return `$${Number(n.toFixed(6))}`;
}

export function fmtLimit(dim: 'tokens' | 'usd', n: number): string {
  return dim === 'tokens' ? String(n) : fmtUsd(n);
}

export function dimWord(dim: 'tokens' | 'usd'): string {
  return dim === 'tokens' ? 'token' : 'USD';
}
