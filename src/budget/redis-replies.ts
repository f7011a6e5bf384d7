// What the Redis ledger's scripts answer (redis-scripts.ts), turned into the views the report and the
// refusal messages read (status.ts): scopes, per-model totals, blocking checks, run trees.
import { roundUsd, Scope, type Check, type Dim } from './scope.js';
import type { RunView } from './status.js';
import type { Usage } from '../contract/usage.js';
import { emptyUsage } from '../contract/usage-sum.js';
import type { BudgetLimits, ModelTotals } from './types.js';

/** A script's reply: strings (numbers as '%.17g' text), nulls for missing fields, nested arrays. */
export type Reply = (string | null | Reply)[];

const num = (v: string | null | undefined): number => (v === null || v === undefined || v === '' ? 0 : Number(v));
const opt = (v: string | null | undefined): number | undefined => (v === null || v === undefined || v === '' ? undefined : Number(v));

/** A scope from its Redis fields [lt, lu, st, su, rt, ru, n, c, ut]. */
export function scopeOf(label: string, f: (string | null)[]): Scope {
  const limits: BudgetLimits = {};
  const lt = opt(f[0]);
  const lu = opt(f[1]);
  if (lt !== undefined) limits.tokens = lt;
  if (lu !== undefined) limits.usd = lu;
  const s = new Scope(label, limits);
  s.spentTokens = num(f[2]);
  s.spentUsd = num(f[3]);
  s.reservedTokens = num(f[4]);
  s.reservedUsd = num(f[5]);
  s.reservations = num(f[6]);
  s.calls = num(f[7]);
  s.unpricedTokens = num(f[8]);
  return s;
}

/** The hash fields of a model's token parts (the day file's names), as the contract's Usage fields. */
const USAGE_FIELD: Record<string, keyof Usage> = {
  input: 'input_tokens',
  output: 'output_tokens',
  cache_read: 'cache_read_input_tokens',
  cache_write: 'cache_creation_input_tokens',
};

/** Per-model totals from a flat HGETALL of "<model>\n<field>" → value. */
export function modelsOf(flat: string[]): Map<string, ModelTotals> {
  const m = new Map<string, ModelTotals>();
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const cut = flat[i].lastIndexOf('\n');
    const model = flat[i].slice(0, cut);
    const field = flat[i].slice(cut + 1);
    const v = Number(flat[i + 1]);
    let t = m.get(model);
    if (!t) m.set(model, (t = { calls: 0, tokens: 0, usd: null, usage: emptyUsage() }));
    if (field in USAGE_FIELD) t.usage[USAGE_FIELD[field]] = v;
    else if (field === 'calls' || field === 'tokens' || field === 'usd') t[field] = v;
  }
  return m;
}

export function blockersOf(reply: Reply): Check[] {
  return (reply.slice(1) as string[][]).map(([name, hint, dim, limit, spent, reserved]) => {
    const d = dim as Dim;
    const s = new Scope(name, { [d]: Number(limit) });
    if (d === 'tokens') {
      s.spentTokens = Number(spent);
      s.reservedTokens = Number(reserved);
    } else {
      s.spentUsd = Number(spent);
      s.reservedUsd = Number(reserved);
    }
    return { scope: s, dim: d, name, hint };
  });
}

/** [id, agent, st, su, ut, c, xt, xu, xut, xc, models] → a run view for totalsOf. */
export function runFromTotals(t: Reply): RunView {
  const [runId, agent, st, su, ut, c, xt, xu, xut, xc, models] = t as [string, string, string, string, string, string, string, string, string, string, string[]];
  const scope = new Scope(`run ${runId} (${agent})`, {});
  scope.spentTokens = num(st);
  scope.spentUsd = num(su);
  scope.unpricedTokens = num(ut);
  scope.calls = num(c);
  return {
    runId,
    agent,
    depth: 0,
    open: false,
    scope,
    limitedByParent: { tokens: false, usd: false },
    self: { tokens: num(xt), usd: num(xu), unpricedTokens: num(xut), calls: num(xc) },
    byModel: modelsOf(models),
    children: [],
    reservations: [],
  };
}

/** The status script's runs (pre-order) → the tree of run views, its root first. */
export function runTree(rows: Reply[]): RunView | undefined {
  const byId = new Map<string, RunView & { childIds: string[] }>();
  for (const row of rows) {
    const [runId, h, fields, rt, ru, models, children] = row as [string, (string | null)[], (string | null)[], string, string, string[], string[]];
    const [agent, parent, depth, open, lbt, lbu, xt, xu, xut, xc] = h;
    const view = {
      runId,
      agent: agent ?? '',
      ...(parent ? { parent: { runId: parent } } : {}),
      depth: num(depth),
      open: open === '1',
      scope: scopeOf(`run ${runId} (${agent})`, fields),
      limitedByParent: { tokens: lbt === '1', usd: lbu === '1' },
      self: { tokens: num(xt), usd: num(xu), unpricedTokens: num(xut), calls: num(xc) },
      byModel: modelsOf(models),
      children: [] as RunView[],
      // The run's own holds, as one sum (the report only adds them up).
      reservations: [{ tokens: num(rt), usd: roundUsd(num(ru)) }],
      childIds: children,
    };
    byId.set(runId, view);
  }
  for (const v of byId.values()) v.children = v.childIds.map((id) => byId.get(id)).filter((c): c is RunView & { childIds: string[] } => c !== undefined);
  return rows.length ? byId.get((rows[0] as string[])[0]) : undefined;
}
