// Scope arithmetic of the budget ledger: a scope's spend, holds and limits; the run tree whose every
// reservation also counts in every ancestor run; the limited scopes a call must fit in; checks and
// sums over limits and per-model totals.
import type { Usage } from '../contract/usage.js';
import { addUsage, emptyUsage } from '../contract/usage-sum.js';
import type { DayFile } from './ledger-file.js';
import type { ResolvedPrice } from './prices.js';
import type { BudgetLimits, ModelTotals, ScopeStatus } from './types.js';

export type Dim = 'tokens' | 'usd';

export const USD_EPSILON = 1e-9; // float slack for USD sums; far below any price of one token

export class Scope {
  spentTokens = 0;
  spentUsd = 0;
  reservedTokens = 0;
  reservedUsd = 0;
  reservations = 0;
  calls = 0;
  unpricedTokens = 0;
  constructor(
    readonly label: string,
    public limits: BudgetLimits,
  ) {}

  hold(tokens: number, usd: number | null): void {
    this.reservedTokens += tokens;
    this.reservedUsd += usd ?? 0;
    this.reservations++;
  }

  unhold(tokens: number, usd: number | null): void {
    this.reservations--;
    this.reservedTokens -= tokens;
    this.reservedUsd -= usd ?? 0;
    // Float subtraction drifts; with nothing held the exact answer is zero.
    if (this.reservations === 0) {
      this.reservedTokens = 0;
      this.reservedUsd = 0;
    }
  }

  charge(tokens: number, usd: number | null): void {
    this.calls++;
    this.spentTokens += tokens;
    if (usd === null) this.unpricedTokens += tokens;
    else this.spentUsd += usd;
  }

  available(dim: 'tokens' | 'usd'): number | undefined {
    const limit = this.limits[dim];
    if (limit === undefined) return undefined;
    return dim === 'tokens' ? limit - this.spentTokens - this.reservedTokens : limit - this.spentUsd - this.reservedUsd;
  }

  status(): ScopeStatus {
    const remaining: BudgetLimits = {};
    for (const dim of ['tokens', 'usd'] as const) {
      const a = this.available(dim);
      if (a !== undefined) remaining[dim] = Math.max(0, dim === 'usd' ? roundUsd(a) : a);
    }
    return {
      scope: this.label,
      limits: { ...this.limits },
      spent: { tokens: this.spentTokens, usd: roundUsd(this.spentUsd) },
      reserved: { tokens: this.reservedTokens, usd: roundUsd(this.reservedUsd) },
      remaining,
      reservations: this.reservations,
      calls: this.calls,
      unpricedTokens: this.unpricedTokens,
    };
  }
}

export interface RunState {
  runId: string;
  agent: string;
  parent?: RunState;
  root: RunState;
  depth: number;
  /** Spend and reservations of the whole subtree, against the effective caps. */
  scope: Scope;
  limitedByParent: { tokens: boolean; usd: boolean };
  self: { tokens: number; usd: number; unpricedTokens: number; calls: number };
  byModel: Map<string, ModelTotals>;
  children: RunState[];
  /** The run's own open reservations. */
  reservations: Set<Reservation>;
  /** What the run was admitted on (see admit): its calls draw on this hold before the scopes. */
  admission?: Reservation;
  /** The model of its calls (for the run history). */
  model?: string;
  open: boolean;
}

export interface DayState {
  day: string;
  server: Scope;
  agents: Map<string, Scope>;
  models: Map<string, ModelTotals>;
  file?: DayFile;
  /** Reservations (open or orphaned by closeRun) that will still settle into this day. */
  holds: number;
}

export interface Reservation {
  id: string;
  run: RunState;
  day: DayState;
  agentScope: Scope;
  model: string;
  price: ResolvedPrice | null;
  inputTokens: number;
  /** Output tokens held (the call's slice plus its extensions; for an admission, all of it). */
  maxOutputTokens: number;
  tokens: number;
  usd: number | null;
  /** 'orphaned': released by closeRun, still chargeable by a late commit. */
  state: 'open' | 'orphaned';
}

export interface Check {
  scope: Scope;
  dim: 'tokens' | 'usd';
  /** Scope name as shown to users. */
  name: string;
  /** Extra words after the limit (why a run's limit is what it is). */
  hint: string;
}

/** The run and its ancestors, innermost first. */
export function chain(run: RunState): RunState[] {
  const out: RunState[] = [];
  for (let r: RunState | undefined = run; r; r = r.parent) out.push(r);
  return out;
}

/** What a new child of `run` may still spend in `dim`: the least remaining over the run and its ancestors. */
export function remainingOverChain(run: RunState, dim: 'tokens' | 'usd'): number | undefined {
  let left: number | undefined;
  for (const rs of chain(run)) {
    const a = rs.scope.available(dim);
    if (a !== undefined) left = Math.max(0, left === undefined ? a : Math.min(left, a));
  }
  return left;
}

export function modelsRecord(m: Map<string, ModelTotals>): Record<string, ModelTotals> {
  const out: Record<string, ModelTotals> = {};
  for (const [k, v] of m) out[k] = { ...v, usd: v.usd === null ? null : roundUsd(v.usd), usage: { ...v.usage } };
  return out;
}

export function addModel(
  m: Map<string, ModelTotals>,
  model: string,
  tokens: number,
  usd: number | null,
  usage: Usage,
): void {
  let t = m.get(model);
  if (!t) {
    t = { calls: 0, tokens: 0, usd: usd === null ? null : 0, usage: emptyUsage() };
    m.set(model, t);
  }
  t.calls++;
  t.tokens += tokens;
  // A model is priced or not for the whole table; records from another process with other prices
  // may disagree, in which case the priced part is kept.
  if (usd !== null) t.usd = (t.usd ?? 0) + usd;
  addUsage(t.usage, usage);
}

export function minLimits(a: BudgetLimits, b: BudgetLimits): BudgetLimits {
  const out: BudgetLimits = {};
  for (const dim of ['tokens', 'usd'] as const) {
    const x = a[dim];
    const y = b[dim];
    const v = x === undefined ? y : y === undefined ? x : Math.min(x, y);
    if (v !== undefined) out[dim] = v;
  }
  return out;
}

export function checkLimits(l: BudgetLimits | undefined, what: string): BudgetLimits {
  const out: BudgetLimits = {};
  for (const dim of ['tokens', 'usd'] as const) {
    const v = l?.[dim];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new RangeError(`budget: ${what} ${dim} limit must be a non-negative number, got ${String(v)}`);
    out[dim] = v;
  }
  return out;
}

export function checkCount(v: number, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new RangeError(`budget: ${what} must be a non-negative number, got ${String(v)}`);
  return v;
}


export const roundUsd = (n: number) => Math.round(n * 1e9) / 1e9;

export const hasLimit = (l: BudgetLimits) => l.tokens !== undefined || l.usd !== undefined;

/** Holds a reservation in every scope covering it: its run and ancestors, its agent's and the server's day. */
export function holdAll(res: Reservation): void {
  for (const rs of chain(res.run)) rs.scope.hold(res.tokens, res.usd);
  res.agentScope.hold(res.tokens, res.usd);
  res.day.server.hold(res.tokens, res.usd);
}

export function unholdAll(res: Reservation): void {
  for (const rs of chain(res.run)) rs.scope.unhold(res.tokens, res.usd);
  res.agentScope.unhold(res.tokens, res.usd);
  res.day.server.unhold(res.tokens, res.usd);
}

/** Every limited scope a call of `run` must fit in (run chain, agent daily, server daily). */
export function checksFor(run: RunState, agentScope: Scope, day: DayState, price: ResolvedPrice | null): { checks: Check[]; skippedUsd: string[] } {
  const checks: Check[] = [];
  const skippedUsd: string[] = [];
  const addChecks = (scope: Scope, name: string, hint: (dim: Dim) => string) => {
    if (scope.limits.tokens !== undefined) checks.push({ scope, dim: 'tokens', name, hint: hint('tokens') });
    if (scope.limits.usd !== undefined) {
      if (price) checks.push({ scope, dim: 'usd', name, hint: hint('usd') });
      else skippedUsd.push(name);
    }
  };
  for (const rs of chain(run)) {
    const name = rs === run ? rs.scope.label : `${rs.scope.label}, ${rs === run.parent ? 'parent' : 'ancestor'} of ${run.runId}`;
    const slice = (dim: Dim) => (rs.limitedByParent[dim] && rs.parent ? ` (its share of parent run ${rs.parent.runId}'s remaining budget)` : '');
    addChecks(rs.scope, name, slice);
  }
  addChecks(agentScope, agentScope.label, () => '');
  addChecks(day.server, day.server.label, () => '');
  return { checks, skippedUsd };
}

/** Whether `need` of a check's dimension exceeds what its scope has available (USD with float slack). */
export function overLimit(c: Check, need: number): boolean {
  return need > c.scope.available(c.dim)! + (c.dim === 'usd' ? USD_EPSILON : 0);
}

/** The largest x in [lo, hi) with fits(x), given fits(lo) and not fits(hi) and fits monotone (needs grow with x). */
export function largestFitting(lo: number, hi: number, fits: (x: number) => boolean): number {
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}
