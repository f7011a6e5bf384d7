// Budgets that admit what fits and charge what was spent, end to end: the real server over stdio, a
// real MCP client, the mock model streaming slowly, killed mid-stream, or reporting usage only in
// message_start. The books are read back from the ledger files and the audit log.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import { startMockModel, type MockModel } from './mock-model/server.js';
import { mockEnv, readAuditEvents, startServer, tempDir, writeTree } from './helpers.js';

/** The bound README states: a cap is never overspent by more than one extension step. */
const EXTENSION_STEP = 256;
const CHUNK = 12; // the mock streams text in 12-character pieces
const LONG = Array.from({ length: 4000 }, (_, i) => `word${i % 97} `).join('');

const bare = (name: string, model: string, extra = '') => `name: ${name}
description: Test agent ${name} with no tools.
instructions: Answer the task.
model: ${model}
max_turns: 2
${extra}`;

function ledgerLines(stateDir: string): any[] {
  const dir = path.join(stateDir, 'budget');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .flatMap((f) => readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)));
}

describe('budgets that stretch and charge what was spent', () => {
  let mock: MockModel;
  let ws: string;
  let agentsDir: string;

  before(async () => {
    mock = await startMockModel();
    ws = tempDir('dmcp-stretch-');
    agentsDir = path.join(ws, 'agents');
    writeTree(agentsDir, {
      'claude-a.yaml': bare('claude-a', 'anthropic/claude-sonnet-4-5'),
      'gpt-r.yaml': bare('gpt-r', 'openai/gpt-5'),
      'llama-c.yaml': bare('llama-c', 'openai-chat/llama-test'),
      'capped.yaml': bare('capped', 'openai-chat/llama-test', 'max_output_tokens: 8000\nbudget: {run_tokens: 1500}'),
      'burst.yaml': bare('burst', 'openai-chat/llama-test', 'max_output_tokens: 1000'),
    });
  });
  after(async () => {
    await mock.close();
  });

  const serve = (stateDir: string, extra: object = {}) => {
    const cfg = path.join(ws, `cfg-${path.basename(stateDir)}-${Date.now()}.json`);
    writeFileSync(cfg, JSON.stringify({ delegate: { stateDir, ...extra } }));
    return startServer({ args: ['--agents', agentsDir, '--workspace', ws, '--config', cfg], env: mockEnv(mock.url), cwd: ws });
  };

  // Events each wire format sends before its first text delta (see the mock's planners).
  const cases = [
    { agent: 'claude-a', before: 2 },
    { agent: 'gpt-r', before: 4 },
    { agent: 'llama-c', before: 1 },
  ];
  for (const budget of [undefined, { daily_tokens: 1_000_000 }]) {
    it(`interrupted streams (Anthropic, OpenAI Responses, Chat) are charged at least the input estimate + the output streamed, ${budget ? 'with' : 'without'} a budget`, async () => {
      const stateDir = tempDir('dmcp-state-');
      const srv = await serve(stateDir, budget ? { budget } : {});
      const deltas = 40;
      try {
        for (const c of cases) {
          mock.reset();
          mock.setHandler(() => ({ text: LONG, dropAfterEvents: c.before + deltas }));
          const res = await srv.client.callTool({ name: 'delegate', arguments: { agent: c.agent, task: 'write a long essay' } });
          assert.equal((res.structuredContent as any).status, 'error');
          assert.equal(mock.requests.length, 1);
        }
      } finally {
        mock.reset();
        await srv.close();
      }
      const lines = ledgerLines(stateDir);
      const calls = readAuditEvents(stateDir).filter((e) => e.event === 'model_call');
      const streamed = countTokens(LONG.slice(0, deltas * CHUNK));
      let checked = 0;
      for (const c of cases) {
        const line = lines.find((l) => l.agent === c.agent);
        const call = calls.find((e) => e.agent === c.agent);
        assert.ok(line && call, `ledger line and model_call event for ${c.agent}`);
        assert.equal(line.basis, 'streamed', c.agent);
        assert.equal(typeof call.estimated_input_tokens, 'number', `${c.agent}: an input estimate was made for the books`);
        assert.ok(call.estimated_input_tokens > 0);
        assert.ok(line.input >= call.estimated_input_tokens, `${c.agent}: input ${line.input} ≥ estimate ${call.estimated_input_tokens}`);
        assert.ok(line.output >= streamed, `${c.agent}: output ${line.output} ≥ streamed ${streamed}`);
        assert.equal(line.tokens, line.input + line.output + line.cache_read + line.cache_write);
        checked++;
      }
      assert.equal(checked, 3);
    });
  }

  it('an Anthropic stream whose only usage is message_start (1 output token) is charged the output it streamed', async () => {
    const stateDir = tempDir('dmcp-state-');
    const srv = await serve(stateDir);
    const text = LONG.slice(0, 600);
    try {
      mock.reset();
      mock.setHandler(() => ({ text, startUsageOnly: true }));
      const res = await srv.client.callTool({ name: 'delegate', arguments: { agent: 'claude-a', task: 'hi' } });
      assert.equal((res.structuredContent as any).status, 'ok');
      assert.ok((res.structuredContent as any).usage.output_tokens >= countTokens(text));
    } finally {
      mock.reset();
      await srv.close();
    }
    const [line] = ledgerLines(stateDir);
    assert.equal(line.basis, 'streamed');
    assert.ok(line.output >= countTokens(text), `output ${line.output}`);
  });

  it('a stream that would overrun its cap is cut at once (the mock sees the request aborted); the run ends budget_exhausted within cap + one step', async () => {
    const stateDir = tempDir('dmcp-state-');
    const srv = await serve(stateDir);
    try {
      mock.reset();
      mock.setHandler(() => ({ text: LONG, chunkDelayMs: 1 }));
      const res = await srv.client.callTool({ name: 'delegate', arguments: { agent: 'capped', task: 'write a long essay' } });
      const sc = res.structuredContent as any;
      assert.equal(sc.status, 'budget_exhausted');
      assert.match(sc.error, /stream cut: budget refused: run run_\S+ \(capped\) token limit 1500/);
      assert.ok(sc.output.length > 0 && sc.output.length < LONG.length, 'the run ends with what it had');
      assert.equal(mock.requests.length, 1);
      assert.equal(mock.closedEarly, 1, 'the provider request was aborted');
      const st = (await srv.client.callTool({ name: 'budget_status', arguments: { run_id: sc.run_id } })).structuredContent as any;
      assert.ok(st.runs[0].spent.tokens > 1000, `spent ${st.runs[0].spent.tokens}: the cap was used`);
      assert.ok(st.runs[0].spent.tokens <= 1500 + EXTENSION_STEP, `spent ${st.runs[0].spent.tokens} ≤ cap + one step`);
      assert.equal(st.runs[0].reserved.tokens, 0);
    } finally {
      mock.reset();
      await srv.close();
    }
    const lines = ledgerLines(stateDir);
    assert.equal(lines.length, 1);
    assert.ok(lines[0].tokens <= 1500 + EXTENSION_STEP);
  });

  it('after a few runs of history, 100 concurrent runs against a daily cap that fits 10: at least 8 complete, never more than cap + one step, refused runs make no model request', async () => {
    const stateDir = tempDir('dmcp-state-');
    // Usage the mock reports equals the server's own estimate (no tools, so system + task), so the
    // history's spend is what a run really costs.
    const handler = (req: any) => ({ text: 'ok', delayMs: 300, usage: { input_tokens: countTokens(req.system) + countTokens(req.lastUserText) + 8, output_tokens: 50 } });
    const history = await serve(stateDir);
    let perRun = 0;
    try {
      mock.reset();
      mock.setHandler(handler);
      for (let i = 0; i < 4; i++) {
        const r = (await history.client.callTool({ name: 'burst', arguments: { task: 'the same job' } })).structuredContent as any;
        assert.equal(r.status, 'ok');
        perRun = r.usage.input_tokens + r.usage.output_tokens;
      }
    } finally {
      await history.close();
    }
    const spentBefore = ledgerLines(stateDir).reduce((a, l) => a + l.tokens, 0);
    assert.equal(spentBefore, 4 * perRun);
    const cap = spentBefore + 10 * perRun + Math.floor(perRun / 2);
    // A restart: the history is rebuilt from the ledger.
    const srv = await serve(stateDir, { budget: { daily_tokens: cap } });
    try {
      mock.reset();
      mock.setHandler(handler);
      const results = await Promise.all(Array.from({ length: 100 }, () => srv.client.callTool({ name: 'burst', arguments: { task: 'the same job' } })));
      const ok = results.filter((r) => !r.isError);
      const refused = results.filter((r) => r.isError);
      assert.equal(ok.length + refused.length, 100);
      assert.ok(ok.length >= 8, `${ok.length} of 100 completed`);
      assert.ok(refused.length > 0, 'a cap that fits about ten runs refused some of 100');
      for (const r of refused) assert.match((r.content as any)[0].text, /budget refused: server daily token limit \d+/);
      assert.equal(mock.requests.length, ok.length, 'refused runs never reached the model');
      const st = (await srv.client.callTool({ name: 'budget_status', arguments: {} })).structuredContent as any;
      assert.ok(st.server.spent.tokens <= cap + EXTENSION_STEP, `spent ${st.server.spent.tokens} ≤ cap ${cap} + ${EXTENSION_STEP}`);
      assert.equal(st.server.reserved.tokens, 0);
    } finally {
      mock.reset();
      await srv.close();
    }
  });

  it('a finished foreground run is not kept (run_status says so); a background run is', async () => {
    const srv = await serve(tempDir('dmcp-state-'));
    try {
      mock.reset();
      const fg = (await srv.client.callTool({ name: 'delegate', arguments: { agent: 'llama-c', task: 'hi' } })).structuredContent as any;
      assert.equal(fg.status, 'ok');
      const gone = await srv.client.callTool({ name: 'run_status', arguments: { run_id: fg.run_id } });
      assert.equal(gone.isError, true);
      assert.match((gone.content as any)[0].text, /ended with status ok and is no longer kept: only background runs/);
      const unknown = await srv.client.callTool({ name: 'run_status', arguments: { run_id: 'run_nope' } });
      assert.match((unknown.content as any)[0].text, /unknown run "run_nope": not started here, expired/);

      const bg = (await srv.client.callTool({ name: 'delegate', arguments: { agent: 'llama-c', task: 'hi', background: true } })).structuredContent as any;
      const result = (await srv.client.callTool({ name: 'run_result', arguments: { run_id: bg.run_id, wait_s: 30 } })).structuredContent as any;
      assert.equal(result.status, 'ok');
      const kept = (await srv.client.callTool({ name: 'run_status', arguments: { run_id: bg.run_id } })).structuredContent as any;
      assert.equal(kept.status, 'ok');
    } finally {
      mock.reset();
      await srv.close();
    }
  });
});
