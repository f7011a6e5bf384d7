// Budgets end to end: the real server over stdio, a real MCP client, the mock model. No model call
// starts unless every covering scope can afford it, and the books balance.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { startMockModel, type MockModel } from './mock-model/server.js';
import { CLI, agentYaml, mockEnv, startServer, tempDir, writeTree } from './helpers.js';

const execFileP = promisify(execFile);

describe('budgets', () => {
  let mock: MockModel;
  let ws: string;
  let agentsDir: string;

  before(async () => {
    mock = await startMockModel();
    ws = tempDir('dmcp-budget-');
    agentsDir = path.join(ws, 'agents');
    writeTree(agentsDir, {
      'tiny.yaml': agentYaml('tiny', 'openai-chat/llama-test', 'budget: {run_tokens: 50}'),
      'capped.yaml': agentYaml('capped', 'openai-chat/llama-test', 'budget: {run_tokens: 400}\nmax_output_tokens: 1000'),
      'small.yaml': agentYaml('small', 'openai-chat/llama-test', 'max_output_tokens: 200'),
      'sonnet.yaml': agentYaml('sonnet', 'anthropic/claude-sonnet-4-5'),
      'gpt.yaml': agentYaml('gpt', 'openai/gpt-5'),
    });
  });
  after(async () => {
    await mock.close();
  });

  const serve = (stateDir: string, extra: object = {}) => {
    const cfg = path.join(ws, `cfg-${path.basename(stateDir)}.json`);
    writeFileSync(cfg, JSON.stringify({ delegate: { stateDir, ...extra } }));
    return startServer({ args: ['--agents', agentsDir, '--workspace', ws, '--config', cfg], env: mockEnv(mock.url), cwd: ws });
  };

  it('a run whose budget is smaller than the prompt is refused with the scope named; the model sees no request', async () => {
    const srv = await serve(tempDir('dmcp-state-'));
    try {
      mock.reset();
      const res = await srv.client.callTool({ name: 'tiny', arguments: { task: 'summarise the repository' } });
      assert.equal(res.isError, true);
      const text = (res.content as any)[0].text;
      assert.match(text, /budget refused: run run_\S+ \(tiny\) token limit 50: spent 0, reserved 0, this call needs \d+/);
      assert.equal(mock.requests.length, 0);
    } finally {
      await srv.close();
    }
  });

  it('a budget argument larger than the agent cap does not raise it; a smaller one lowers it', async () => {
    const srv = await serve(tempDir('dmcp-state-'));
    try {
      mock.reset();
      const raised = await srv.client.callTool({ name: 'capped', arguments: { task: 'hi', budget: { run_tokens: 1_000_000 } } });
      assert.equal(raised.isError, true);
      assert.match((raised.content as any)[0].text, /token limit 400/);
      const viaDelegate = await srv.client.callTool({ name: 'delegate', arguments: { agent: 'capped', task: 'hi', budget: { run_tokens: 1_000_000 } } });
      assert.match((viaDelegate.content as any)[0].text, /token limit 400/);
      const lowered = await srv.client.callTool({ name: 'small', arguments: { task: 'hi', budget: { run_tokens: 10 } } });
      assert.match((lowered.content as any)[0].text, /token limit 10\b/);
      assert.equal(mock.requests.length, 0);
    } finally {
      await srv.close();
    }
  });

  it('100 concurrent runs against a shared cap that fits about ten: never overspent, refused runs never reach the model, books balance', async () => {
    const stateDir = tempDir('dmcp-state-');
    const cap = 9000;
    const srv = await serve(stateDir, { budget: { daily_tokens: cap } });
    try {
      mock.reset();
      mock.setHandler(() => ({ text: 'ok', delayMs: 300, usage: { input_tokens: 100, output_tokens: 50 } }));
      const calls = Array.from({ length: 100 }, (_, i) => srv.client.callTool({ name: 'small', arguments: { task: `job ${i}` } }));
      const results = await Promise.all(calls);
      const ok = results.filter((r) => !r.isError);
      const refused = results.filter((r) => r.isError);
      assert.equal(ok.length + refused.length, 100);
      // At 150 tokens a run, at most 60 fit under 9000: the rest must have been refused.
      assert.ok(refused.length >= 40, `${refused.length} refused`);
      for (const r of refused) assert.match((r.content as any)[0].text, /budget refused: server daily token limit 9000/);
      // Without history the first runs are admitted on their worst case (~900 tokens each); once three
      // have finished, later ones are admitted on what they really cost (150), so more than ten may fit.
      assert.ok(ok.length >= 5, `${ok.length} runs fit`);
      assert.equal(mock.requests.length, ok.length, 'refused runs never reached the mock');
      const perRun = ok.map((r) => {
        const u = (r.structuredContent as any).usage;
        return u.input_tokens + u.output_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens;
      });
      const sum = perRun.reduce((a, b) => a + b, 0);
      assert.ok(sum <= cap, `committed ${sum} > cap ${cap}`);
      const st = (await srv.client.callTool({ name: 'budget_status', arguments: {} })).structuredContent as any;
      assert.equal(st.server.spent.tokens, sum, 'server scope equals the sum of per-run usage');
      assert.equal(st.server.reserved.tokens, 0, 'nothing stays reserved');
      assert.equal(st.agents.small.spent.tokens, sum);
      assert.equal(st.models['openai-chat/llama-test'].tokens, sum);
    } finally {
      mock.reset();
      await srv.close();
    }
  });

  it("restarting the server keeps today's spending (ledger under the state dir); the CLI reads it too", async () => {
    const stateDir = tempDir('dmcp-state-');
    mock.reset();
    mock.setHandler(() => ({ text: 'ok', usage: { input_tokens: 120, output_tokens: 30 } }));
    const a = await serve(stateDir, { budget: { daily_tokens: 100_000 } });
    try {
      const r = await a.client.callTool({ name: 'small', arguments: { task: 'one' } });
      assert.equal((r.structuredContent as any).status, 'ok');
    } finally {
      await a.close();
    }
    const b = await serve(stateDir, { budget: { daily_tokens: 100_000 } });
    try {
      const st = (await b.client.callTool({ name: 'budget_status', arguments: {} })).structuredContent as any;
      assert.equal(st.server.spent.tokens, 150);
      assert.equal(st.agents.small.spent.tokens, 150);
    } finally {
      mock.reset();
      await b.close();
    }
    const cfg = path.join(ws, `cfg-${path.basename(stateDir)}.json`);
    const { stdout } = await execFileP(process.execPath, [CLI, 'budget', '--json', '--config', cfg, '--workspace', ws]);
    assert.equal(JSON.parse(stdout).server.spent.tokens, 150);
  });

  it('usage with cache tokens is reconciled and priced for both providers', async () => {
    const srv = await serve(tempDir('dmcp-state-'));
    try {
      mock.reset();
      mock.setHandler(() => ({ text: 'cached', usage: { input_tokens: 1000, output_tokens: 500, cache_read: 2000, cache_write: 100 } }));
      const s = (await srv.client.callTool({ name: 'sonnet', arguments: { task: 'x' } })).structuredContent as any;
      assert.deepEqual(s.usage, { input_tokens: 1000, output_tokens: 500, cache_read_input_tokens: 2000, cache_creation_input_tokens: 100 });
      const expected = (1000 * 3 + 500 * 15 + 2000 * 0.3 + 100 * 3.75) / 1e6;
      assert.ok(Math.abs(s.cost_usd - expected) < 1e-9, `${s.cost_usd} vs ${expected}`);
      const g = (await srv.client.callTool({ name: 'gpt', arguments: { task: 'x' } })).structuredContent as any;
      assert.equal(g.usage.cache_read_input_tokens, 2000);
      assert.equal(g.usage.output_tokens, 500);
      assert.ok(g.cost_usd > 0);
      const st = (await srv.client.callTool({ name: 'budget_status', arguments: { run_id: s.run_id } })).structuredContent as any;
      assert.equal(st.runs[0].spent.tokens, 3600);
    } finally {
      mock.reset();
      await srv.close();
    }
  });

  it('a delegate_parallel budget is shared by its tasks: the batch never spends more', async () => {
    const srv = await serve(tempDir('dmcp-state-'));
    try {
      mock.reset();
      mock.setHandler(() => ({ text: 'ok', delayMs: 200, usage: { input_tokens: 100, output_tokens: 50 } }));
      const tasks = Array.from({ length: 20 }, (_, i) => ({ agent: 'small', task: `t${i}` }));
      const res = (await srv.client.callTool({ name: 'delegate_parallel', arguments: { tasks, budget: { run_tokens: 2500 } } })).structuredContent as any;
      assert.ok(res.ok > 0 && res.ok < 20, `${res.ok} fit`);
      assert.ok(res.usage.tokens <= 2500);
      assert.equal(res.usage.tokens, res.ok * 150);
      for (const r of res.results.filter((x: any) => x.status !== 'ok')) assert.match(r.error, /share of parent|parent of/);
    } finally {
      mock.reset();
      await srv.close();
    }
  });
});
