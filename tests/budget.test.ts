// Budget ledger: scopes, refusals, shrinking, settlement, prices, persistence, processes, rollover.
import { test, describe, after, mock } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs, { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BudgetLedger, type BudgetLedgerOptions, type ReserveResult, type ReserveGranted, type ReserveRefused } from '../src/budget/ledger.js';
import { Prices, DEFAULT_PRICES, localModelId } from '../src/budget/prices.js';
import { TokenScaler } from '../src/budget/estimate.js';
import { LedgerChainError } from '../src/budget/ledger-file.js';
import type { Usage } from '../src/contract/usage.js';

const SONNET = 'anthropic/claude-sonnet-4-5';
const LEDGER_TS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'budget', 'ledger.ts');

const usage = (input: number, output: number, cache_read = 0, cache_write = 0): Usage => ({
  input_tokens: input,
  output_tokens: output,
  cache_read_input_tokens: cache_read,
  cache_creation_input_tokens: cache_write,
});

function granted(r: ReserveResult): ReserveGranted {
  if (!r.ok) assert.fail(`expected a grant, got: ${r.message}`);
  return r;
}
function refused(r: ReserveResult): ReserveRefused {
  if (r.ok) assert.fail(`expected a refusal, got a grant of ${r.tokens} tokens`);
  return r;
}
/** Reserve exactly input+output and commit exactly that. */
function spend(l: BudgetLedger, runId: string, input: number, output: number, model = SONNET) {
  const r = granted(l.reserve({ runId, model, inputTokens: input, maxOutputTokens: output, minOutputTokens: output }));
  return l.commit(r.reservationId, usage(input, output));
}
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(path.join(tmpdir(), 'budget-'));
  dirs.push(d);
  return d;
};
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const clock = (iso: string) => {
  const c = { t: new Date(iso), now: () => c.t, set: (s: string) => (c.t = new Date(s)) };
  return c;
};
function collectWarnings(): { warn: (m: string) => void; msgs: string[] } {
  const msgs: string[] = [];
  return { warn: (m) => msgs.push(m), msgs };
}
const readLines = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((s) => s.trim())
    .map((s) => JSON.parse(s));

describe('refusals', () => {
  test('names the scope and every number, in one sentence', () => {
    const l = new BudgetLedger({});
    l.openRun({ runId: 'run_abc', agent: 'code-reviewer', agentDaily: { tokens: 10000 } });
    spend(l, 'run_abc', 9000, 200);
    const held = granted(l.reserve({ runId: 'run_abc', model: SONNET, inputTokens: 200, maxOutputTokens: 100, minOutputTokens: 100 }));
    assert.equal(held.tokens, 300);

    const r = refused(l.reserve({ runId: 'run_abc', model: SONNET, inputTokens: 1100, maxOutputTokens: 400, minOutputTokens: 400 }));
    assert.equal(r.scope, 'agent code-reviewer daily');
    assert.equal(r.dimension, 'tokens');
    assert.deepEqual([r.limit, r.spent, r.reserved], ['10000', '9200', '300']);
    assert.equal(r.needed, '1500 (1100 input + 400 max output)');
    assert.equal(
      r.message,
      'budget refused: agent code-reviewer daily token limit 10000: spent 9200, reserved 300, this call needs 1500 (1100 input + 400 max output)',
    );
    // With room to shrink, the message also says what the smallest acceptable call would need.
    const r2 = refused(l.reserve({ runId: 'run_abc', model: SONNET, inputTokens: 1100, maxOutputTokens: 400 }));
    assert.match(r2.message, /; even with max output shrunk to 256 it needs 1356$/);
    // Nothing was reserved by the refusals.
    assert.equal(l.status().server.reserved.tokens, 300);
  });

  test('run, server and USD scopes; every blocking scope is listed', () => {
    const l = new BudgetLedger({ server: { daily_tokens: 5000, daily_usd: 0.01 } });
    l.openRun({ runId: 'run_abc', agent: 'code-reviewer', run: { tokens: 3000 } });
    let r = refused(l.reserve({ runId: 'run_abc', model: SONNET, inputTokens: 3500, maxOutputTokens: 1000 }));
    assert.equal(r.scope, 'run run_abc (code-reviewer)');
    assert.match(r.message, /^budget refused: run run_abc \(code-reviewer\) token limit 3000: spent 0, reserved 0, this call needs 4500 /);
    assert.match(r.message, /also over: server daily USD limit/);

    l.openRun({ runId: 'run_x', agent: 'writer' });
    r = refused(l.reserve({ runId: 'run_x', model: SONNET, inputTokens: 3000, maxOutputTokens: 1000, minOutputTokens: 1000 }));
    // 3000 × $3/M + 1000 × $15/M = $0.024 > $0.01; tokens 4000 fit in 5000.
    assert.equal(r.scope, 'server daily');
    assert.equal(r.dimension, 'usd');
    assert.equal(
      r.message,
      'budget refused: server daily USD limit $0.01: spent $0, reserved $0, this call needs $0.024 (3000 input + 1000 max output at claude-sonnet-4-5 prices)',
    );
  });

  test('unknown runs and closed runs are programming errors, not refusals', () => {
    const l = new BudgetLedger({});
    assert.throws(() => l.reserve({ runId: 'nope', model: SONNET, inputTokens: 1, maxOutputTokens: 1 }), /unknown run nope/);
    l.openRun({ runId: 'r', agent: 'a' });
    assert.throws(() => l.openRun({ runId: 'r', agent: 'a' }), /already opened/);
    assert.throws(() => l.openRun({ runId: 'r2', agent: 'a', run: { tokens: -1 } }), /non-negative/);
    l.closeRun('r');
    assert.throws(() => l.reserve({ runId: 'r', model: SONNET, inputTokens: 1, maxOutputTokens: 1 }), /run r is closed/);
    assert.throws(() => l.openRun({ runId: 'c', agent: 'a', parentRunId: 'r' }), /closed parent/);
  });
});

describe('run caps and delegation', () => {
  test('a per-call cap can lower the run cap but never raise it', () => {
    const l = new BudgetLedger({});
    assert.deepEqual(l.openRun({ runId: 'a', agent: 'x', run: { tokens: 1000, usd: 1 }, call: { tokens: 5000, usd: 0.5 } }).limits, { tokens: 1000, usd: 0.5 });
    assert.deepEqual(l.openRun({ runId: 'b', agent: 'x', run: { tokens: 1000 }, call: { tokens: 400 } }).limits, { tokens: 400 });
    // No agent cap: the call's cap applies (min with "unlimited").
    assert.deepEqual(l.openRun({ runId: 'c', agent: 'x', call: { usd: 2 } }).limits, { usd: 2 });
    const r = refused(l.reserve({ runId: 'a', model: SONNET, inputTokens: 900, maxOutputTokens: 200, minOutputTokens: 200 }));
    assert.match(r.message, /token limit 1000:/);
  });

  test('a child gets a slice of its parent remaining, and its spend counts in the parent', () => {
    const l = new BudgetLedger({});
    l.openRun({ runId: 'P', agent: 'planner', run: { tokens: 10000 } });
    spend(l, 'P', 3000, 1000);
    const held = granted(l.reserve({ runId: 'P', model: SONNET, inputTokens: 500, maxOutputTokens: 500 })); // in flight: 1000

    const c = l.openRun({ runId: 'C', agent: 'reviewer', parentRunId: 'P', run: { tokens: 100000 } });
    assert.deepEqual(c.limits, { tokens: 5000 }); // 10000 − 4000 spent − 1000 reserved
    assert.deepEqual(c.limitedByParent, { tokens: true, usd: false });
    const small = l.openRun({ runId: 'C2', agent: 'reviewer', parentRunId: 'P', run: { tokens: 2000 } });
    assert.deepEqual(small.limits, { tokens: 2000 }); // own cap is lower than the slice
    l.release(held.reservationId);

    spend(l, 'C', 1500, 500);
    assert.equal(l.runTotals('P').tokens, 6000); // 4000 own + 2000 child
    assert.equal(l.runTotals('P').self.tokens, 4000);
    assert.equal(l.runTotals('C').tokens, 2000);

    // Grandchild: bounded by the least remaining over its whole ancestor chain.
    const g = l.openRun({ runId: 'G', agent: 'fixer', parentRunId: 'C' });
    assert.deepEqual(g.limits, { tokens: 3000 }); // C: 5000 − 2000
    spend(l, 'G', 1000, 0);
    assert.equal(l.runTotals('P').tokens, 7000);
    assert.equal(l.runTotals('C').tokens, 3000);

    // Siblings together can never exceed what the parent had left: C2 (cap 2000) has room in its own
    // slice, but P only has 3000 left, so a reservation that fits C2 is still checked against P.
    const hog = granted(l.reserve({ runId: 'G', model: SONNET, inputTokens: 1500, maxOutputTokens: 500, minOutputTokens: 500 }));
    const r = refused(l.reserve({ runId: 'C2', model: SONNET, inputTokens: 1000, maxOutputTokens: 500, minOutputTokens: 500 }));
    assert.equal(r.scope, 'run P (planner), parent of C2');
    assert.match(r.message, /run P \(planner\), parent of C2 token limit 10000: spent 7000, reserved 2000, this call needs 1500/);
    l.commit(hog.reservationId, usage(1500, 500));
    const rG = refused(l.reserve({ runId: 'G', model: SONNET, inputTokens: 100, maxOutputTokens: 1, minOutputTokens: 1 }));
    assert.match(rG.message, /^budget refused: run G \(fixer\) token limit 3000 \(its share of parent run C's remaining budget\): spent 3000/);

    // Status of a run shows it and its descendants.
    const st = l.status({ runId: 'P' });
    assert.deepEqual(
      st.runs.map((x) => [x.runId, x.spent.tokens, x.self.spent.tokens]),
      [
        ['P', 9000, 4000],
        ['C', 5000, 2000],
        ['G', 3000, 3000],
        ['C2', 0, 0],
      ],
    );
    assert.equal(st.runs[1].parentRunId, 'P');
    assert.deepEqual(st.runs[1].children, ['G']);
  });

  test('closing a parent closes its open children and releases every reservation', () => {
    const l = new BudgetLedger({ server: { daily_tokens: 100000 } });
    l.openRun({ runId: 'P', agent: 'planner', run: { tokens: 10000 } });
    l.openRun({ runId: 'C', agent: 'reviewer', parentRunId: 'P' });
    const a = granted(l.reserve({ runId: 'P', model: SONNET, inputTokens: 100, maxOutputTokens: 100 }));
    const b = granted(l.reserve({ runId: 'C', model: SONNET, inputTokens: 1000, maxOutputTokens: 1000 }));
    assert.equal(l.status().server.reserved.tokens, 2200);
    const totals = l.closeRun('P');
    assert.equal(totals.tokens, 0);
    const st = l.status({ runId: 'P' });
    assert.equal(st.server.reserved.tokens, 0);
    assert.equal(st.server.reservations, 0);
    assert.deepEqual(
      st.runs.map((r) => [r.runId, r.open, r.reserved.tokens]),
      [
        ['P', false, 0],
        ['C', false, 0],
      ],
    );
    // A late commit (usage arrived after the run was closed) is still charged: the tokens were spent.
    l.commit(b.reservationId, usage(900, 50));
    assert.equal(l.runTotals('P').tokens, 950);
    assert.equal(l.status().server.spent.tokens, 950);
    l.release(a.reservationId);
    l.release(a.reservationId); // idempotent
    assert.throws(() => l.commit(a.reservationId, usage(1, 1)), /unknown or already settled/);
    assert.throws(() => l.commit(b.reservationId, usage(1, 1)), /unknown or already settled/);
    assert.equal(l.status().server.reserved.tokens, 0);
  });
});

describe('reservations and settlement', () => {
  test('shrinks max output to what fits everywhere, down to minOutputTokens', () => {
    const l = new BudgetLedger({ server: { daily_usd: 1 } });
    l.openRun({ runId: 'r', agent: 'a', run: { tokens: 2000 } });
    const g = granted(l.reserve({ runId: 'r', model: SONNET, inputTokens: 1000, maxOutputTokens: 4000 }));
    assert.deepEqual([g.maxOutputTokens, g.shrunk, g.tokens], [1000, true, 2000]);
    assert.equal(g.usd, (1000 * 3 + 1000 * 15) / 1e6);
    l.release(g.reservationId);
    refused(l.reserve({ runId: 'r', model: SONNET, inputTokens: 1000, maxOutputTokens: 4000, minOutputTokens: 1200 }));
    // Requested output below the minimum: nothing to shrink, the request is all or nothing.
    refused(l.reserve({ runId: 'r', model: SONNET, inputTokens: 1900, maxOutputTokens: 200 }));
    const fits = granted(l.reserve({ runId: 'r', model: SONNET, inputTokens: 1800, maxOutputTokens: 200 }));
    assert.equal(fits.shrunk, false);
    l.release(fits.reservationId);

    // USD shrink: $0.0045 left after input of 1000 sonnet tokens ($0.003) → 100 output tokens.
    const u = new BudgetLedger({});
    u.openRun({ runId: 'r', agent: 'a', run: { usd: 0.0045 } });
    const gu = granted(u.reserve({ runId: 'r', model: SONNET, inputTokens: 1000, maxOutputTokens: 8000, minOutputTokens: 50 }));
    assert.equal(gu.maxOutputTokens, 100);
    assert.ok(gu.usd! <= 0.0045 + 1e-12);
  });

  test('commit charges input + cache read + cache write + output, priced per kind', () => {
    const l = new BudgetLedger({});
    l.openRun({ runId: 'r', agent: 'a' });
    const g = granted(l.reserve({ runId: 'r', model: SONNET, inputTokens: 5000, maxOutputTokens: 1000 }));
    const c = l.commit(g.reservationId, usage(100, 500, 4000, 900));
    assert.equal(c.tokens, 5500);
    assert.ok(Math.abs(c.usd! - (100 * 3 + 500 * 15 + 4000 * 0.3 + 900 * 3.75) / 1e6) < 1e-12);
    const m = l.status().models[SONNET];
    assert.deepEqual([m.calls, m.usage.input_tokens, m.usage.output_tokens, m.usage.cache_read_input_tokens, m.usage.cache_creation_input_tokens], [1, 100, 500, 4000, 900]);
  });

  test('null usage: charge the reserved input + streamed output (or the whole reservation without fallback)', () => {
    const l = new BudgetLedger({});
    l.openRun({ runId: 'r', agent: 'a' });
    const a = granted(l.reserve({ runId: 'r', model: SONNET, inputTokens: 1000, maxOutputTokens: 2000 }));
    const ca = l.commit(a.reservationId, null, { streamedOutputTokens: 150 });
    assert.equal(ca.tokens, 1150);
    assert.equal(ca.usd, (1000 * 3 + 150 * 15) / 1e6);
    const b = granted(l.reserve({ runId: 'r', model: SONNET, inputTokens: 1000, maxOutputTokens: 2000 }));
    assert.equal(l.commit(b.reservationId, null).tokens, 3000);
    assert.equal(l.runTotals('r').tokens, 4150);
    assert.equal(l.status().server.reserved.tokens, 0);
  });

  test('usage above the reservation is recorded as is, and the next reserve is refused', () => {
    const l = new BudgetLedger({ warn: () => {} });
    l.openRun({ runId: 'r', agent: 'a', run: { tokens: 3000 }, agentDaily: { tokens: 3200 } });
    const g = granted(l.reserve({ runId: 'r', model: SONNET, inputTokens: 1000, maxOutputTokens: 1000 }));
    assert.equal(l.commit(g.reservationId, usage(2500, 1000)).tokens, 3500);
    assert.equal(l.runTotals('r').tokens, 3500);
    const st = l.status({ runId: 'r' });
    assert.equal(st.agents.a.spent.tokens, 3500);
    assert.equal(st.agents.a.remaining.tokens, 0);
    assert.ok(st.notes.some((n) => n === 'agent a daily token limit 3200 exceeded: spent 3500 (calls used more than they reserved)'), st.notes.join('\n'));
    assert.ok(st.notes.some((n) => n.startsWith('run r (a) token limit 3000 exceeded: spent 3500')));
    const r = refused(l.reserve({ runId: 'r', model: SONNET, inputTokens: 1, maxOutputTokens: 1 }));
    assert.equal(r.scope, 'run r (a)');
    assert.match(r.message, /spent 3500, reserved 0, this call needs 2 /);
    // A new run of the same agent is still blocked by the over-run agent window.
    l.openRun({ runId: 'r2', agent: 'a', agentDaily: { tokens: 3200 } });
    assert.equal(refused(l.reserve({ runId: 'r2', model: SONNET, inputTokens: 1, maxOutputTokens: 1 })).scope, 'agent a daily');
  });
});

describe('prices', () => {
  test('exact, longest prefix at a separator, provider stripped, unknown', () => {
    const p = new Prices();
    assert.equal(p.lookup('anthropic/claude-sonnet-4-5')?.key, 'claude-sonnet-4-5');
    assert.equal(p.lookup('anthropic/claude-sonnet-4-5-20250929')?.key, 'claude-sonnet-4-5');
    assert.equal(p.lookup('anthropic/claude-sonnet-4-20250514')?.key, 'claude-sonnet-4');
    assert.equal(p.lookup('anthropic/claude-opus-4-1-20250805')?.input, 15);
    assert.equal(p.lookup('anthropic/claude-opus-4-5-20251101')?.input, 5);
    assert.equal(p.lookup('bedrock/claude-haiku-4-5@20251001')?.output, 5);
    assert.equal(p.lookup('openai/gpt-5-mini-2025-08-07')?.key, 'gpt-5-mini');
    assert.equal(p.lookup('openai/gpt-5-2025-08-07')?.key, 'gpt-5');
    assert.equal(p.lookup('openai/gpt-4.1-mini')?.key, 'gpt-4.1-mini');
    assert.equal(p.lookup('openai/o4-mini-2025-04-16')?.key, 'o4-mini');
    assert.equal(p.lookup('claude-haiku-4-5')?.input, 1); // bare ids work too
    assert.equal(p.lookup('openai/gpt-5x'), null); // no separator: not a gpt-5 snapshot
    assert.equal(p.lookup('ollama/llama3.1:8b'), null);
    const s = p.lookup(SONNET)!;
    assert.deepEqual([s.input, s.output, s.cache_read, s.cache_write], [3, 15, 0.3, 3.75]);
    const g5 = p.lookup('openai/gpt-5')!;
    assert.deepEqual([g5.input, g5.output, g5.cache_read, g5.cache_write], [1.25, 10, 0.125, 1.25]);
    assert.equal(localModelId('openrouter/meta-llama/llama-3-70b'), 'meta-llama/llama-3-70b');
    for (const k of ['gpt-4.1', 'gpt-4o', 'o3', 'o4-mini', 'claude-opus-4-1']) assert.ok(DEFAULT_PRICES[k], k);
  });

  test('overrides merge over the defaults; full refs win; bad entries throw', () => {
    const p = new Prices({ 'claude-sonnet-4-5': { input: 2, output: 10 }, 'ollama/llama3.1:8b': { input: 0, output: 0 } });
    const s = p.lookup('anthropic/claude-sonnet-4-5-20250929')!;
    assert.deepEqual([s.input, s.cache_read, s.cache_write], [2, 2, 2]); // cache prices default to input
    assert.equal(p.lookup('ollama/llama3.1:8b')?.input, 0);
    assert.equal(p.lookup('openai/gpt-5')?.output, 10);
    assert.throws(() => new Prices({ x: { input: -1, output: 1 } }), /invalid budget price table at x\.input/);
  });

  test('unknown-price models count tokens only: USD limits do not apply, and the grant says so', () => {
    const l = new BudgetLedger({ server: { daily_usd: 0.001 }, prices: { 'my-model': { input: 1, output: 1 } } });
    l.openRun({ runId: 'r', agent: 'a', run: { tokens: 10000 } });
    const g = granted(l.reserve({ runId: 'r', model: 'ollama/llama3', inputTokens: 1000, maxOutputTokens: 1000 }));
    assert.equal(g.usd, null);
    assert.equal(g.note, 'no price known for ollama/llama3: USD limits of server daily cannot apply to this call, counting tokens only');
    const c = l.commit(g.reservationId, usage(800, 200));
    assert.deepEqual({ tokens: c.tokens, usd: c.usd }, { tokens: 1000, usd: null });
    const st = l.status();
    assert.deepEqual(st.notes, ['no price known for ollama/llama3: tokens only']);
    assert.equal(st.models['ollama/llama3'].usd, null);
    assert.equal(st.server.unpricedTokens, 1000);
    assert.equal(st.server.spent.usd, 0);
    // Token limits still apply to it.
    refused(l.reserve({ runId: 'r', model: 'ollama/llama3', inputTokens: 9000, maxOutputTokens: 1000, minOutputTokens: 1000 }));
  });
});

describe('token estimate scaling', () => {
  test('starts at 1.15 for Claude and 1.0 otherwise, learns an EMA, clamps to 0.5..3', () => {
    const s = new TokenScaler();
    assert.equal(s.factor(SONNET), 1.15);
    assert.equal(s.factor('bedrock/claude-haiku-4-5'), 1.15);
    assert.equal(s.factor('openai/gpt-5'), 1);
    assert.equal(s.scale(SONNET, 1000), 1150);
    assert.equal(s.scale('openai/gpt-5', 1001), 1001);
    for (let i = 0; i < 30; i++) s.learn(SONNET, 1000, 1300);
    assert.ok(Math.abs(s.factor(SONNET) - 1.3) < 0.001);
    // Each observation's ratio is clamped before averaging, so one absurd report moves it a bounded step.
    s.learn('x/y', 1000, 1_000_000);
    assert.ok(Math.abs(s.factor('x/y') - (0.7 * 1 + 0.3 * 3)) < 1e-12);
    for (let i = 0; i < 60; i++) s.learn('x/y', 1000, 100000);
    assert.ok(s.factor('x/y') <= 3 && s.factor('x/y') > 2.999);
    for (let i = 0; i < 60; i++) s.learn('x/y', 1000, 1);
    assert.ok(s.factor('x/y') >= 0.5 && s.factor('x/y') < 0.501);
    s.learn('openai/gpt-5', 10, 1000); // too small to learn from
    assert.equal(s.factor('openai/gpt-5'), 1);
  });
});

describe('persistence', () => {
  const day = '2026-11-22';
  const opts = (dir: string, extra: Partial<BudgetLedgerOptions> = {}): BudgetLedgerOptions => ({
    stateDir: dir,
    now: () => new Date(`${day}T12:00:00Z`),
    warn: () => {},
    ...extra,
  });

  test('restart replays today\'s spending into the server and agent windows', async () => {
    const dir = tmp();
    const a = await BudgetLedger.open(opts(dir, { server: { daily_tokens: 10000 } }));
    a.openRun({ runId: 'r1', agent: 'reviewer', agentDaily: { tokens: 6000 } });
    spend(a, 'r1', 3000, 1000);
    a.openRun({ runId: 'r2', agent: 'writer' });
    spend(a, 'r2', 2000, 500);
    await a.close();

    const lines = readLines(path.join(dir, 'budget', `ledger-${day}.jsonl`));
    assert.equal(lines.length, 2);
    assert.deepEqual(Object.keys(lines[0]).sort(), ['agent', 'basis', 'cache_read', 'cache_write', 'day', 'input', 'model', 'output', 'pid', 'prev', 'runId', 'seq', 'tokens', 'ts', 'usd', 'writer'].sort());

    const b = await BudgetLedger.open(opts(dir, { server: { daily_tokens: 10000 } }));
    const st = b.status();
    assert.equal(st.server.spent.tokens, 6500);
    assert.equal(st.agents.reviewer.spent.tokens, 4000);
    assert.equal(st.agents.writer.spent.tokens, 2500);
    assert.equal(st.models[SONNET].calls, 2);
    b.openRun({ runId: 'r3', agent: 'reviewer', agentDaily: { tokens: 6000 } });
    const r = refused(b.reserve({ runId: 'r3', model: SONNET, inputTokens: 2000, maxOutputTokens: 500, minOutputTokens: 500 }));
    assert.match(r.message, /agent reviewer daily token limit 6000: spent 4000, reserved 0/);
    // A later day starts empty.
    const c = await BudgetLedger.open(opts(dir, { now: () => new Date('2026-11-23T00:00:00Z') }));
    assert.equal(c.status().server.spent.tokens, 0);
    await Promise.all([b.close(), c.close()]);
  });

  test('a torn line is skipped with file:line, never a crash; later appends stay intact and chained', async () => {
    const dir = tmp();
    const a = await BudgetLedger.open(opts(dir));
    a.openRun({ runId: 'r1', agent: 'x' });
    spend(a, 'r1', 100, 100);
    spend(a, 'r1', 100, 100);
    await a.close();
    const file = path.join(dir, 'budget', `ledger-${day}.jsonl`);
    // A record cut short by a crash: the start of a line chained to line 2.
    const line2 = readFileSync(file, 'utf8').split('\n')[1];
    appendFileSync(file, `{"prev":"${createHash('sha256').update(line2).digest('hex')}","ts":"2026-11-22T12:00:00Z","day":"2026-11-22","runId":"r9","agent":"x","mod`);
    // The crash was a while ago (a fresh unterminated tail could be a live writer mid-append).
    const old = new Date(Date.now() - 60_000);
    utimesSync(file, old, old);

    const w = collectWarnings();
    const b = await BudgetLedger.open(opts(dir, { warn: w.warn }));
    assert.equal(b.status().server.spent.tokens, 400);
    assert.deepEqual(w.msgs, [`${file}:3: skipped corrupt line (torn write: no trailing newline)`]);
    // The next append terminates the torn fragment first, so the new record is a line of its own.
    b.openRun({ runId: 'r2', agent: 'x' });
    spend(b, 'r2', 50, 50);
    await b.close();

    const w2 = collectWarnings();
    const c = await BudgetLedger.open(opts(dir, { warn: w2.warn }));
    assert.equal(c.status().server.spent.tokens, 500);
    // A crash leftover is not tampering: the chain runs over it and the ledger opens.
    assert.deepEqual(w2.msgs, [`${file}:3: skipped corrupt line`]);
    await c.close();
  });

  test('a ledger whose chain is broken (line edited, deleted, inserted; file emptied) is refused at open with file:line', async () => {
    const cases: [string, (lines: string[]) => string[], number, RegExp][] = [
      ['edited', (l) => l.map((x, i) => (i === 0 ? x.replace('"tokens":200', '"tokens":2') : x)), 2, /does not chain to the line before it/],
      ['deleted', (l) => l.filter((_, i) => i !== 1), 2, /does not chain to the line before it/],
      ['inserted', (l) => [l[0], 'not json at all', ...l.slice(1)], 2, /not a chained record/],
      ['emptied', () => [], 1, /the file is empty: every line was removed/],
      ['first line removed', (l) => l.slice(1), 1, /the first line does not chain to the file's start/],
    ];
    for (const [what, change, line, why] of cases) {
      const dir = tmp();
      const a = await BudgetLedger.open(opts(dir));
      a.openRun({ runId: 'r1', agent: 'x' });
      for (let i = 0; i < 3; i++) spend(a, 'r1', 100, 100);
      await a.close();
      const file = path.join(dir, 'budget', `ledger-${day}.jsonl`);
      const lines = readFileSync(file, 'utf8').split('\n').slice(0, -1);
      assert.equal(lines.length, 3);
      writeFileSync(file, change(lines).map((l) => l + '\n').join(''));
      const err = await BudgetLedger.open(opts(dir, { warn: () => {} })).then(
        () => null,
        (e: Error) => e,
      );
      assert.ok(err instanceof LedgerChainError, `${what}: ${String(err)}`);
      assert.equal(err.chainBreak.file, file, what);
      assert.equal(err.chainBreak.line, line, what);
      assert.match(err.message, why, what);
      assert.match(err.message, new RegExp(`^budget ledger ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${line}: .*move it aside knowingly`), what);
    }
    assert.equal(cases.length, 5);
  });

  test('a fresh unterminated tail is another writer mid-append: left alone, then counted once complete', async () => {
    const dir = tmp();
    const file = path.join(dir, 'budget', `ledger-${day}.jsonl`);
    mkdirSync(path.dirname(file), { recursive: true });
    const rec = JSON.stringify({ ts: `${day}T12:00:00Z`, day, runId: 'o1', agent: 'other', model: SONNET, tokens: 700, usd: 0.001, input: 600, output: 100, cache_read: 0, cache_write: 0, basis: 'usage', pid: 1, writer: 'w1', seq: 1 });
    writeFileSync(file, rec.slice(0, 40));
    const w = collectWarnings();
    const l = await BudgetLedger.open(opts(dir, { warn: w.warn }));
    assert.equal(l.status().server.spent.tokens, 0);
    appendFileSync(file, rec.slice(40) + '\n');
    assert.equal(l.status().server.spent.tokens, 700);
    assert.equal(l.status().agents.other.spent.tokens, 700);
    assert.deepEqual(w.msgs, []);
    await l.close();
  });

  test('two ledgers sharing a stateDir see each other\'s committed spend; no line lost or doubled', async () => {
    const dir = tmp();
    const mk = () => BudgetLedger.open(opts(dir, { server: { daily_tokens: 20000 } }));
    const [a, b] = [await mk(), await mk()];
    a.openRun({ runId: 'a1', agent: 'x' });
    b.openRun({ runId: 'b1', agent: 'y' });
    spend(a, 'a1', 5000, 1000);
    // b reads a's line before deciding.
    assert.equal(b.status().server.spent.tokens, 6000);
    spend(b, 'b1', 4000, 1000);
    const r = refused(a.reserve({ runId: 'a1', model: SONNET, inputTokens: 8001, maxOutputTokens: 1000, minOutputTokens: 1000 }));
    assert.equal(r.scope, 'server daily');
    assert.equal(r.spent, '11000');
    // Interleave many commits from both.
    let expected = 11000;
    for (let i = 0; i < 40; i++) {
      const l = i % 3 ? a : b;
      spend(l, l === a ? 'a1' : 'b1', 100, i);
      expected += 100 + i;
    }
    for (const l of [a, b]) {
      const st = l.status();
      assert.equal(st.server.spent.tokens, expected);
      assert.equal(st.agents.x.spent.tokens + st.agents.y.spent.tokens, expected);
      assert.equal(st.server.calls, 42);
    }
    await Promise.all([a.close(), b.close()]);
    const lines = readLines(path.join(dir, 'budget', `ledger-${day}.jsonl`));
    assert.equal(lines.length, 42);
    assert.equal(new Set(lines.map((x) => `${x.writer}:${x.seq}`)).size, 42);
    assert.equal(lines.reduce((s, x) => s + x.tokens, 0), expected);
  });

  test('two real processes appending concurrently: every line lands whole, once', async () => {
    const dir = tmp();
    const N = 300;
    const script = `
      import { BudgetLedger } from ${JSON.stringify(pathToFileURL(LEDGER_TS).href)};
      const l = await BudgetLedger.open({ stateDir: ${JSON.stringify(dir)}, now: () => new Date('${day}T12:00:00Z'), syncEvery: 1000 });
      l.openRun({ runId: 'run-' + process.pid, agent: 'agent-' + process.argv[1] });
      const pad = 'x'.repeat(Number(process.argv[1]) * 300); // different line lengths per process
      for (let i = 0; i < ${N}; i++) {
        const r = l.reserve({ runId: 'run-' + process.pid, model: 'anthropic/claude-sonnet-4-5' + (pad ? '-' + pad : ''), inputTokens: 10, maxOutputTokens: 5 });
        l.commit(r.reservationId, { input_tokens: 10, output_tokens: i % 5, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 });
      }
      await l.close();`;
    const run = (arg: string) =>
      new Promise<void>((resolve, reject) => {
        const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, arg], { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        p.stderr.on('data', (d) => (err += d));
        p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`child exited ${code}: ${err}`))));
      });
    await Promise.all([run('0'), run('1'), run('2')]);
    const raw = readFileSync(path.join(dir, 'budget', `ledger-${day}.jsonl`), 'utf8');
    const lines = raw.split('\n').filter(Boolean).map((s) => JSON.parse(s)); // throws if any line is torn
    assert.equal(lines.length, 3 * N);
    assert.equal(new Set(lines.map((x) => `${x.writer}:${x.seq}`)).size, 3 * N);
    const perCall = N * 10 + Array.from({ length: N }, (_, i) => i % 5).reduce((a, b) => a + b, 0);
    const w = collectWarnings();
    const l = await BudgetLedger.open(opts(dir, { warn: w.warn }));
    const st = l.status();
    assert.equal(st.server.spent.tokens, 3 * perCall);
    assert.deepEqual(Object.values(st.agents).map((a) => a.spent.tokens), [perCall, perCall, perCall]);
    assert.deepEqual(w.msgs, []);
    await l.close();
  });

  test('UTC day rollover: new window and new file; a call straddling midnight is charged to its reservation day', async () => {
    const dir = tmp();
    const c = clock('2026-11-22T23:59:58Z');
    const l = await BudgetLedger.open({ stateDir: dir, now: c.now, server: { daily_tokens: 5000 }, warn: () => {} });
    l.openRun({ runId: 'r', agent: 'a' });
    spend(l, 'r', 3000, 1000);
    const late = granted(l.reserve({ runId: 'r', model: SONNET, inputTokens: 500, maxOutputTokens: 500 }));
    refused(l.reserve({ runId: 'r', model: SONNET, inputTokens: 100, maxOutputTokens: 1, minOutputTokens: 1 }));

    c.set('2026-11-23T00:00:01Z');
    // New day: the window is empty (the straddling reservation belongs to yesterday).
    const st0 = l.status();
    assert.equal(st0.day, '2026-11-23');
    assert.deepEqual([st0.server.spent.tokens, st0.server.reserved.tokens], [0, 0]);
    spend(l, 'r', 4000, 500);
    l.commit(late.reservationId, usage(500, 200));

    assert.equal(l.status({ day: '2026-11-22' }).server.spent.tokens, 4700);
    assert.equal(l.status().server.spent.tokens, 4500);
    assert.equal(l.runTotals('r').tokens, 9200); // run caps are not daily
    l.closeRun('r');
    await l.close();
    assert.deepEqual(readdirSync(path.join(dir, 'budget')).sort(), ['ledger-2026-11-22.jsonl', 'ledger-2026-11-23.jsonl']);
    const d22 = readLines(path.join(dir, 'budget', 'ledger-2026-11-22.jsonl'));
    assert.deepEqual(d22.map((x) => [x.day, x.tokens]), [['2026-11-22', 4000], ['2026-11-22', 700]]);
    assert.ok(d22[1].ts.startsWith('2026-11-23T')); // written after midnight, into its reservation's day

    // A fresh process on the 23rd replays only the 23rd.
    const again = await BudgetLedger.open({ stateDir: dir, now: c.now, warn: () => {} });
    assert.equal(again.status().server.spent.tokens, 4500);
    assert.equal(again.status({ day: '2026-11-22' }).server.spent.tokens, 4700);
    assert.ok(!existsSync(path.join(dir, 'budget', 'ledger-2026-11-21.jsonl')));
    assert.equal(again.status({ day: '2026-11-21' }).server.spent.tokens, 0); // reading never creates files
    assert.ok(!existsSync(path.join(dir, 'budget', 'ledger-2026-11-21.jsonl')));
    await again.close();
  });

  test('in-memory mode writes nothing; an unwritable stateDir warns and keeps enforcing in memory', async () => {
    const dir = tmp();
    // In memory: not one file is opened, created or written (every ledger write goes through node:fs's
    // sync calls; fs/promises' mkdir only runs for a stateDir), yet the spend counts and is enforced.
    const fsWrites = ['openSync', 'writeSync', 'mkdirSync', 'appendFileSync', 'writeFileSync', 'renameSync'].map((name) => mock.method(fs, name as 'openSync'));
    const m = await BudgetLedger.open({ server: { daily_tokens: 3 } });
    m.openRun({ runId: 'r', agent: 'a' });
    spend(m, 'r', 1, 1);
    assert.equal(m.status().server.spent.tokens, 2);
    refused(m.reserve({ runId: 'r', model: SONNET, inputTokens: 2, maxOutputTokens: 1, minOutputTokens: 1 }));
    m.closeRun('r');
    await m.close();
    for (const f of fsWrites) f.mock.restore();
    assert.deepEqual(fsWrites.map((f) => f.mock.callCount()), [0, 0, 0, 0, 0, 0]);

    writeFileSync(path.join(dir, 'budget'), 'a file where the budget folder should be');
    await assert.rejects(BudgetLedger.open({ stateDir: dir }), /EEXIST|ENOTDIR/); // open() fails fast
    const w = collectWarnings();
    const l = new BudgetLedger({ stateDir: dir, warn: w.warn, server: { daily_tokens: 100 } });
    l.openRun({ runId: 'r', agent: 'a' });
    spend(l, 'r', 50, 40);
    assert.equal(w.msgs.length, 1);
    assert.match(w.msgs[0], /cannot append to .*ledger-\d{4}-\d{2}-\d{2}\.jsonl: .*; this charge \(90 tokens, run r\) is kept in memory only/);
    refused(l.reserve({ runId: 'r', model: SONNET, inputTokens: 20, maxOutputTokens: 1, minOutputTokens: 1 }));
    await l.close();
  });
});
