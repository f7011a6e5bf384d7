// Property tests of the budget ledger: random interleavings of openRun/reserve/commit/release/closeRun
// over many runs (roots and delegated children), checked against the invariants after every step.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BudgetLedger, type BudgetLimits, type BudgetStatus, type ReserveGranted, type RunStatus, type ScopeStatus } from '../src/budget/ledger.js';
import { Prices, plannedCost } from '../src/budget/prices.js';
import type { Usage } from '../src/contract/usage.js';
import { mulberry32 } from './prng.js';

const MODELS = ['anthropic/claude-sonnet-4-5', 'openai/gpt-5-mini', 'anthropic/claude-haiku-4-5-20251001', 'ollama/llama3'];
const AGENTS = ['planner', 'reviewer', 'writer'];
const EPS = 1e-7;
const prices = new Prices();

// ── generators ───────────────────────────────────────────────────────────────────────────────────
// Limits that a scenario's calls actually run into: sometimes tiny, mostly a few calls' worth, sometimes
// roomy; each dimension is often absent (unlimited).
const limitsArb = (tokens: number, usd: number) =>
  fc.record(
    {
      tokens: fc.oneof(
        { weight: 1, arbitrary: fc.integer({ min: 0, max: 3000 }) },
        { weight: 6, arbitrary: fc.noBias(fc.integer({ min: 3000, max: tokens })) },
        { weight: 2, arbitrary: fc.noBias(fc.integer({ min: tokens, max: tokens * 10 })) },
      ),
      usd: fc.oneof(
        { weight: 1, arbitrary: fc.double({ min: 0, max: 0.01, noNaN: true }) },
        { weight: 6, arbitrary: fc.noBias(fc.double({ min: 0.01, max: usd, noNaN: true })) },
        { weight: 2, arbitrary: fc.noBias(fc.double({ min: usd, max: usd * 10, noNaN: true })) },
      ),
    },
    { requiredKeys: [] },
  );

const opArb = fc.oneof(
  { weight: 2, arbitrary: fc.record({ t: fc.constant('open' as const), parent: fc.option(fc.nat(), { nil: undefined }), agent: fc.nat(AGENTS.length - 1), run: limitsArb(20_000, 0.1), call: limitsArb(20_000, 0.1) }) },
  {
    weight: 5,
    arbitrary: fc.record({
      t: fc.constant('reserve' as const),
      run: fc.nat(),
      model: fc.nat(MODELS.length - 1),
      input: fc.integer({ min: 0, max: 4000 }),
      maxOut: fc.integer({ min: 1, max: 4000 }),
      minOut: fc.integer({ min: 1, max: 1000 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant('commit' as const),
      res: fc.nat(),
      kind: fc.constantFrom('usage', 'usage', 'usage', 'streamed', 'null'),
      // Fractions of the reservation. `over` (over-run property only): usage this many times the
      // reservation instead, a third of the time.
      fIn: fc.double({ min: 0, max: 1, noNaN: true }),
      fCache: fc.double({ min: 0, max: 1, noNaN: true }),
      fOut: fc.double({ min: 0, max: 1, noNaN: true }),
      over: fc.option(fc.double({ min: 1.01, max: 3, noNaN: true }), { freq: 2, nil: undefined }),
      cacheWrite: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('release' as const), res: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('close' as const), run: fc.nat() }) },
);

const configArb = fc.record({
  server: limitsArb(60_000, 0.4),
  agents: fc.array(limitsArb(40_000, 0.2), { minLength: AGENTS.length, maxLength: AGENTS.length }),
  ops: fc.array(opArb, { minLength: 1, maxLength: 120, size: 'max' }),
});

// ── checks ───────────────────────────────────────────────────────────────────────────────────────
function withinLimits(s: ScopeStatus, where: string): void {
  if (s.limits.tokens !== undefined) assert.ok(s.spent.tokens + s.reserved.tokens <= s.limits.tokens, `${where}: ${s.scope} tokens ${s.spent.tokens}+${s.reserved.tokens} > ${s.limits.tokens}`);
  if (s.limits.usd !== undefined) assert.ok(s.spent.usd + s.reserved.usd <= s.limits.usd + EPS, `${where}: ${s.scope} usd ${s.spent.usd}+${s.reserved.usd} > ${s.limits.usd}`);
}

function nonNegative(s: ScopeStatus, where: string): void {
  assert.ok(s.reserved.tokens >= 0 && s.reserved.usd >= -EPS && s.reservations >= 0, `${where}: ${s.scope} reserved went negative`);
}

interface Model {
  roots: string[];
  committedTokens: number;
  committedUsd: number;
  commits: number;
}

function allRuns(l: BudgetLedger, m: Model): RunStatus[] {
  return m.roots.flatMap((r) => l.status({ runId: r }).runs);
}

function checkState(l: BudgetLedger, m: Model, strict: boolean, where: string): { st: BudgetStatus; runs: RunStatus[] } {
  const st = l.status();
  const runs = allRuns(l, m);
  const agents = Object.values(st.agents);
  for (const s of [st.server, ...agents, ...runs]) {
    nonNegative(s, where);
    if (strict) withinLimits(s, where);
  }
  // Books balance: server == Σ agents == Σ runs' own spend == what commit() returned.
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  assert.equal(st.server.spent.tokens, m.committedTokens, `${where}: server spent vs commits`);
  assert.equal(sum(agents.map((a) => a.spent.tokens)), m.committedTokens, `${where}: agents spent`);
  assert.equal(sum(runs.map((r) => r.self.spent.tokens)), m.committedTokens, `${where}: runs spent`);
  assert.ok(Math.abs(st.server.spent.usd - m.committedUsd) < EPS, `${where}: server usd`);
  assert.ok(Math.abs(sum(runs.map((r) => r.self.spent.usd)) - m.committedUsd) < EPS, `${where}: runs usd`);
  assert.equal(st.server.calls, m.commits);
  assert.equal(sum(agents.map((a) => a.reserved.tokens)), st.server.reserved.tokens, `${where}: agents reserved`);
  assert.equal(sum(runs.map((r) => r.self.reserved.tokens)), st.server.reserved.tokens, `${where}: runs reserved`);
  // Each run scope covers exactly itself and its descendants.
  const byId = new Map(runs.map((r) => [r.runId, r]));
  for (const r of runs) {
    const kids = r.children.map((c) => byId.get(c)!);
    assert.equal(r.spent.tokens, r.self.spent.tokens + sum(kids.map((k) => k.spent.tokens)), `${where}: ${r.runId} subtree spent`);
    assert.equal(r.reserved.tokens, r.self.reserved.tokens + sum(kids.map((k) => k.reserved.tokens)), `${where}: ${r.runId} subtree reserved`);
  }
  return { st, runs };
}

/** Scopes covering a run, as status reports them right now. */
function covering(st: BudgetStatus, runs: RunStatus[], runId: string): ScopeStatus[] {
  const byId = new Map(runs.map((r) => [r.runId, r]));
  const out: ScopeStatus[] = [];
  let r = byId.get(runId);
  const agent = r!.agent;
  for (; r; r = r.parentRunId ? byId.get(r.parentRunId) : undefined) out.push(r);
  out.push(st.agents[agent], st.server);
  return out;
}

type Config = typeof configArb extends fc.Arbitrary<infer T> ? T : never;

/** Runs one random scenario; `strict` = usage never exceeds its reservation. */
function runScenario(cfg: Config, strict: boolean): void {
  const l = new BudgetLedger({ server: { daily_tokens: cfg.server.tokens, daily_usd: cfg.server.usd }, now: () => new Date('2026-11-22T12:00:00Z') });
  const m: Model = { roots: [], committedTokens: 0, committedUsd: 0, commits: 0 };
  const open: string[] = [];
  const agentOf = new Map<string, number>();
  const live: ReserveGranted[] = [];
  const inputOf = new Map<string, number>();
  const runOf = new Map<string, string>();
  let n = 0;

  cfg.ops.forEach((op, i) => {
    const where = `step ${i} (${op.t})`;
    if (op.t === 'open') {
      const runId = `r${++n}`;
      const parent = op.parent !== undefined && open.length ? open[op.parent % open.length] : undefined;
      l.openRun({ runId, agent: AGENTS[op.agent], parentRunId: parent, run: op.run, call: op.call, agentDaily: cfg.agents[op.agent] as BudgetLimits });
      if (!parent) m.roots.push(runId);
      open.push(runId);
      agentOf.set(runId, op.agent);
    } else if (op.t === 'reserve') {
      if (!open.length) return;
      const runId = open[op.run % open.length];
      const model = MODELS[op.model];
      const { st, runs } = checkState(l, m, strict, `${where} pre`);
      const r = l.reserve({ runId, model, inputTokens: op.input, maxOutputTokens: op.maxOut, minOutputTokens: op.minOut });
      const scopes = covering(st, runs, runId);
      const price = prices.lookup(model);
      const minOut = Math.min(op.minOut, op.maxOut);
      if (r.ok) {
        // Granted: every covering scope had room for exactly what was reserved.
        assert.ok(r.maxOutputTokens <= op.maxOut && r.maxOutputTokens >= minOut && r.shrunk === r.maxOutputTokens < op.maxOut);
        for (const s of scopes) {
          if (s.limits.tokens !== undefined) assert.ok(s.spent.tokens + s.reserved.tokens + r.tokens <= s.limits.tokens, `${where}: granted over ${s.scope}`);
          if (s.limits.usd !== undefined && r.usd !== null) assert.ok(s.spent.usd + s.reserved.usd + r.usd <= s.limits.usd + EPS, `${where}: granted over ${s.scope} usd`);
        }
        live.push(r);
        inputOf.set(r.reservationId, op.input);
        runOf.set(r.reservationId, runId);
      } else {
        // Refused: some covering scope really could not take even the minimum call.
        const lacks = (s: ScopeStatus) =>
          (s.limits.tokens !== undefined && s.spent.tokens + s.reserved.tokens + op.input + minOut > s.limits.tokens) ||
          (s.limits.usd !== undefined && price !== null && s.spent.usd + s.reserved.usd + plannedCost(price, op.input, minOut) > s.limits.usd - EPS);
        assert.ok(scopes.some(lacks), `${where}: refused without cause: ${r.message}`);
        assert.ok(scopes.some((s) => s.scope === r.scope.split(', ')[0]), `${where}: refusal names a covering scope`);
      }
    } else if (op.t === 'commit') {
      if (!live.length) return;
      const g = live.splice(op.res % live.length, 1)[0];
      const input = inputOf.get(g.reservationId)!;
      const over = strict ? undefined : op.over;
      const fIn = over ?? op.fIn;
      const fOut = over ?? op.fOut;
      let charge;
      if (op.kind === 'usage') {
        const inTotal = Math.floor(input * fIn);
        const cacheRead = Math.floor(inTotal * op.fCache);
        const cacheWrite = !strict && op.cacheWrite ? Math.floor((inTotal - cacheRead) / 2) : 0;
        const u: Usage = {
          input_tokens: inTotal - cacheRead - cacheWrite,
          cache_read_input_tokens: cacheRead,
          cache_creation_input_tokens: cacheWrite,
          output_tokens: Math.floor(g.maxOutputTokens * fOut),
        };
        charge = l.commit(g.reservationId, u);
      } else if (op.kind === 'streamed') {
        charge = l.commit(g.reservationId, null, { streamedOutputTokens: Math.floor(g.maxOutputTokens * fOut) });
      } else charge = l.commit(g.reservationId, null);
      if (strict) {
        assert.ok(charge.tokens <= g.tokens, `${where}: strict usage above reservation`);
        if (charge.usd !== null) assert.ok(charge.usd <= g.usd! + EPS);
      }
      m.committedTokens += charge.tokens;
      m.committedUsd += charge.usd ?? 0;
      m.commits++;
    } else if (op.t === 'release') {
      if (!live.length) return;
      l.release(live.splice(op.res % live.length, 1)[0].reservationId);
    } else {
      if (!open.length) return;
      const runId = open[op.run % open.length];
      l.closeRun(runId);
      // Closing a run closes its descendants and releases their reservations. A commit arriving after
      // that is still charged (the tokens were spent) but no longer had budget held for it: the
      // documented late-commit over-run. The strict property therefore drops those reservations; the
      // over-run property keeps them live and commits them late.
      const closed = new Set(allRuns(l, m).filter((r) => !r.open).map((r) => r.runId));
      for (let k = open.length - 1; k >= 0; k--) if (closed.has(open[k])) open.splice(k, 1);
      if (strict) for (let k = live.length - 1; k >= 0; k--) if (closed.has(runOf.get(live[k].reservationId)!)) live.splice(k, 1);
    }
    checkState(l, m, strict, where);
  });

  // Settle what is still in flight half by commit-as-reserved, half by release, then close everything.
  live.forEach((g, k) => {
    if (k % 2) l.release(g.reservationId);
    else {
      const c = l.commit(g.reservationId, null);
      m.committedTokens += c.tokens;
      m.committedUsd += c.usd ?? 0;
      m.commits++;
    }
  });
  for (const r of m.roots) l.closeRun(r);
  const { st, runs } = checkState(l, m, strict, 'end');
  for (const s of [st.server, ...Object.values(st.agents), ...runs]) {
    assert.equal(s.reserved.tokens, 0, `end: ${s.scope} still holds tokens`);
    assert.equal(s.reserved.usd, 0, `end: ${s.scope} still holds usd`);
    assert.equal(s.reservations, 0);
  }
  assert.equal(st.openRuns, 0);
}

test('property: usage within reservations keeps spent + reserved ≤ limit in every scope, and the books balance', () => {
  fc.assert(
    fc.property(configArb, (cfg) => runScenario(cfg, true)),
    { numRuns: Number(process.env.BUDGET_RUNS ?? 150) },
  );
});

test('property: over-running usage is recorded, balanced, never hides, and every grant had room when made', () => {
  fc.assert(
    fc.property(configArb, (cfg) => runScenario(cfg, false)),
    { numRuns: Number(process.env.BUDGET_RUNS ?? 150) },
  );
});

// ── 100 concurrent runs against a shared cap that fits about ten ─────────────────────────────────
async function stampede(shared: 'server' | 'parent', seed: number) {
  const rand = mulberry32(seed);
  const PER_RUN = 3000; // one call: ≤ 2000 input + 1000 output
  const cap = 10 * PER_RUN;
  const l = new BudgetLedger(shared === 'server' ? { server: { daily_tokens: cap, daily_usd: 0.5 } } : {});
  if (shared === 'parent') l.openRun({ runId: 'root', agent: 'planner', run: { tokens: cap, usd: 0.5 } });
  let committed = 0;
  let refusals = 0;
  const sleep = () => new Promise((r) => setTimeout(r, Math.floor(rand() * 4)));

  await Promise.all(
    Array.from({ length: 100 }, async (_, i) => {
      await sleep();
      const runId = `run${i}`;
      l.openRun({ runId, agent: AGENTS[i % 3], ...(shared === 'parent' && { parentRunId: 'root' }) });
      try {
        for (let turn = 0; turn < 3; turn++) {
          const input = 1000 + Math.floor(rand() * 1000);
          const r = l.reserve({ runId, model: MODELS[i % 2], inputTokens: input, maxOutputTokens: 1000 });
          if (!r.ok) {
            refusals++;
            return;
          }
          await sleep(); // the model call
          const roll = rand();
          if (roll < 0.1) l.release(r.reservationId); // failed before reaching the provider
          else {
            const out = Math.floor(r.maxOutputTokens * rand());
            const c = roll < 0.2 ? l.commit(r.reservationId, null, { streamedOutputTokens: out }) : l.commit(r.reservationId, { input_tokens: input - 100, output_tokens: out, cache_read_input_tokens: 100, cache_creation_input_tokens: 0 });
            committed += c.tokens;
          }
          const s = l.status();
          const scope = shared === 'server' ? s.server : l.status({ runId: 'root' }).runs[0];
          assert.ok(scope.spent.tokens + scope.reserved.tokens <= cap);
          assert.ok(scope.spent.usd + scope.reserved.usd <= 0.5 + EPS);
        }
      } finally {
        l.closeRun(runId);
      }
    }),
  );
  const st = l.status();
  assert.ok(committed <= cap, `committed ${committed} > cap ${cap}`);
  assert.equal(st.server.spent.tokens, committed);
  assert.equal(st.server.reserved.tokens, 0);
  assert.ok(refusals >= 80, `only ${refusals} runs were refused`);
  assert.ok(committed > cap / 2, `the cap was badly under-used: ${committed}`);
  if (shared === 'parent') assert.equal(l.closeRun('root').tokens, committed);
}

test('100 concurrent runs against a shared server cap that fits about ten never overspend', async () => {
  for (const seed of [1, 2, 3]) await stampede('server', seed);
});

test('100 concurrent child runs sharing their parent budget never overspend it', async () => {
  for (const seed of [4, 5, 6]) await stampede('parent', seed);
});
