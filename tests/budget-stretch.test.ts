// Reservations that stretch: admission on expected cost (learned per agent and model, rebuilt from the
// ledger files at start), per-call output slices extended while a stream runs, and the charge of a
// stream cut short (the larger of the reported usage and the estimate plus the output streamed).
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BudgetLedger, type ReserveResult, type ReserveGranted } from '../src/budget/ledger.js';
import { RunHistory, HISTORY_MIN_RUNS } from '../src/budget/history.js';
import type { Usage } from '../src/contract/usage.js';

const M = 'openai-chat/llama-test'; // no price: tokens only
const usage = (input: number, output: number): Usage => ({ input_tokens: input, output_tokens: output, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 });
function granted(r: ReserveResult): ReserveGranted {
  if (!r.ok) assert.fail(`expected a grant, got: ${r.message}`);
  return r;
}
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('run history', () => {
  test('needs a few runs, then admits on the 90th percentile of the last ones', () => {
    const h = new RunHistory();
    const self = (tokens: number) => ({ tokens, usd: 0, unpricedTokens: tokens, calls: 1 });
    for (let i = 0; i < HISTORY_MIN_RUNS - 1; i++) h.record('a', M, self(100));
    assert.equal(h.expected('a', M), undefined);
    h.record('a', M, self(100));
    assert.equal(h.expected('a', M)?.tokens, 100);
    for (const t of [100, 100, 100, 100, 100, 100, 500]) h.record('a', M, self(t));
    // 10 runs: nearest rank of the 90th percentile is the 9th smallest.
    assert.equal(h.expected('a', M)?.tokens, 100);
    h.record('a', M, self(500));
    assert.equal(h.expected('a', M)?.tokens, 500);
    assert.equal(h.expected('a', 'other/model'), undefined);
    assert.equal(h.expected('a', M)?.usd, null, 'unpriced runs give no USD expectation');
  });
});

describe('admission and extensions', () => {
  test('calls draw on the admission hold first; what is left goes back when the run closes', () => {
    const l = new BudgetLedger({ server: { daily_tokens: 1000 }, warn: () => {} });
    l.openRun({ runId: 'r', agent: 'a' });
    assert.equal(l.admit({ runId: 'r', model: M, tokens: 400 }).ok, true);
    assert.equal(l.status().server.reserved.tokens, 400);
    const g = granted(l.reserve({ runId: 'r', model: M, inputTokens: 100, maxOutputTokens: 2000, outputSlice: 50, minOutputTokens: 1 }));
    assert.equal(g.reservedOutputTokens, 50);
    // The provider is asked for the whole max output: extensions bound what the stream may spend.
    assert.equal(g.maxOutputTokens, 2000);
    // 150 held by the call, 250 left of the admission.
    assert.equal(l.status().server.reserved.tokens, 400);
    const e = l.extend(g.reservationId, 300);
    assert.ok(e.ok);
    assert.equal(e.grantedOutputTokens, 300);
    // 250 came from the admission, 50 from the free budget.
    assert.equal(l.status().server.reserved.tokens, 450);
    l.commit(g.reservationId, usage(90, 200));
    assert.equal(l.status().server.spent.tokens, 290);
    assert.equal(l.status().server.reserved.tokens, 0, 'the admission was used up by the call');
    l.closeRun('r');
    assert.equal(l.status().server.reserved.tokens, 0);
  });

  test('a run that does not fit its expected cost is refused before any call; the leftover of an admitted one is released at close', () => {
    const l = new BudgetLedger({ server: { daily_tokens: 1000 }, warn: () => {} });
    l.openRun({ runId: 'r1', agent: 'a' });
    l.openRun({ runId: 'r2', agent: 'a' });
    assert.equal(l.admit({ runId: 'r1', model: M, tokens: 600 }).ok, true);
    const no = l.admit({ runId: 'r2', model: M, tokens: 600 });
    assert.equal(no.ok, false);
    if (!no.ok) assert.match(no.message, /server daily token limit 1000: spent 0, reserved 600, this run is expected to need 600/);
    l.closeRun('r1');
    assert.equal(l.status().server.reserved.tokens, 0);
    assert.equal(l.admit({ runId: 'r2', model: M, tokens: 600 }).ok, true);
  });

  test('a sliced call holds what fits of its slice (at least one token), counting its run\'s admission as its own', () => {
    const l = new BudgetLedger({ server: { daily_tokens: 1000 }, warn: () => {} });
    l.openRun({ runId: 'r1', agent: 'a' });
    l.openRun({ runId: 'r2', agent: 'a' });
    assert.equal(l.admit({ runId: 'r1', model: M, tokens: 150 }).ok, true);
    assert.equal(l.admit({ runId: 'r2', model: M, tokens: 800 }).ok, true);
    // 50 free + r1's own 150: the input (100) and 100 of the 256 slice.
    const g = granted(l.reserve({ runId: 'r1', model: M, inputTokens: 100, maxOutputTokens: 1000, outputSlice: 256, minOutputTokens: 1 }));
    assert.equal(g.reservedOutputTokens, 100);
    assert.equal(l.status().server.reserved.tokens, 1000);
    const no = l.reserve({ runId: 'r1', model: M, inputTokens: 100, maxOutputTokens: 1000, outputSlice: 256, minOutputTokens: 1 });
    assert.equal(no.ok, false);
  });

  test('a run is never expected to cost more than its own cap allows', () => {
    const l = new BudgetLedger({ warn: () => {} });
    l.openRun({ runId: 'r', agent: 'a', run: { tokens: 1500 } });
    // Recent runs of this agent hit their cap and went past it by a chunk: still admitted, on the cap.
    assert.equal(l.admit({ runId: 'r', model: M, tokens: 1700 }).ok, true);
    assert.equal(l.status({ runId: 'r' }).runs[0].reserved.tokens, 1500);
  });

  test('an extension grants what fits, then is refused; a cut stream is charged estimate + streamed, never more than cap + one step', () => {
    const cap = 1000;
    const step = 256;
    const l = new BudgetLedger({ server: { daily_tokens: cap }, warn: () => {} });
    l.openRun({ runId: 'r', agent: 'a' });
    const g = granted(l.reserve({ runId: 'r', model: M, inputTokens: 300, maxOutputTokens: 4000, outputSlice: step, minOutputTokens: 1 }));
    let held = g.reservedOutputTokens;
    let refusedAt = -1;
    for (let i = 0; i < 10; i++) {
      const e = l.extend(g.reservationId, step);
      if (!e.ok) {
        refusedAt = i;
        assert.match(e.message, /server daily token limit 1000: spent 0, reserved 1000.*cannot extend/);
        break;
      }
      held = e.reservedOutputTokens;
    }
    assert.equal(refusedAt, 2, 'two extensions (256, then the 188 that fit), then refused');
    assert.equal(held, cap - 300);
    // The stream streamed one more chunk before it was cut: charged what it sent and received.
    const c = l.commit(g.reservationId, null, { streamedOutputTokens: held + 20, cut: true });
    assert.equal(c.basis, 'streamed');
    assert.equal(c.tokens, 300 + held + 20);
    assert.ok(l.status().server.spent.tokens <= cap + step);
  });

  test('a cut stream: the larger of the reported usage and estimate + streamed, part by part; a complete stream: its usage', () => {
    const l = new BudgetLedger({ warn: () => {} });
    l.openRun({ runId: 'r', agent: 'a' });
    // Anthropic message_start: the real input, one output token.
    const a = granted(l.reserve({ runId: 'r', model: M, inputTokens: 0, maxOutputTokens: 100 }));
    const ca = l.commit(a.reservationId, usage(500, 1), { streamedOutputTokens: 120, inputEstimate: 450, cut: true });
    assert.deepEqual(ca.usage, { input_tokens: 500, output_tokens: 120, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 });
    // No usage at all (OpenAI killed mid-stream), no budget: the estimate made for the books.
    const b = granted(l.reserve({ runId: 'r', model: M, inputTokens: 0, maxOutputTokens: 100 }));
    const cb = l.commit(b.reservationId, null, { streamedOutputTokens: 40, inputEstimate: 450, cut: true });
    assert.deepEqual(cb.usage, { input_tokens: 450, output_tokens: 40, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 });
    // Normal end: the provider's final report, whatever was counted.
    const c = granted(l.reserve({ runId: 'r', model: M, inputTokens: 0, maxOutputTokens: 100 }));
    const cc = l.commit(c.reservationId, usage(300, 30), { streamedOutputTokens: 40, inputEstimate: 450 });
    assert.deepEqual(cc.usage, { input_tokens: 300, output_tokens: 30, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 });
    assert.equal(cc.basis, 'usage');
  });

  test('the history survives a restart: rebuilt from the ledger files', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'budget-stretch-'));
    dirs.push(dir);
    const now = () => new Date('2026-12-07T12:00:00Z');
    const a = await BudgetLedger.open({ stateDir: dir, now, warn: () => {} });
    for (let i = 0; i < 4; i++) {
      a.openRun({ runId: `r${i}`, agent: 'small' });
      for (const out of [50, 70]) {
        const g = granted(a.reserve({ runId: `r${i}`, model: M, inputTokens: 100, maxOutputTokens: 500 }));
        a.commit(g.reservationId, usage(100, out));
      }
      a.closeRun(`r${i}`);
    }
    assert.equal(a.history.expected('small', M)?.tokens, 320);
    await a.close();
    const b = await BudgetLedger.open({ stateDir: dir, now, warn: () => {} });
    assert.deepEqual(b.history.expected('small', M), { tokens: 320, usd: null, runs: 4 });
    await b.close();
  });
});
