// RunSession driven in-process over the Redis ledger (queue mode's one budget across nodes): the real
// orchestrator made by Orchestrator.create(cfg, agents, { ledger, pool }), the real agent loop in this
// thread (InProcessPool) against a scripted model, and the books in a real Redis (REDIS_URL, default
// redis://127.0.0.1:6379). Each test works under its own key prefix, deleted after the file. Without
// Redis the file is skipped with a notice, except under CI=true, where that is a failure. The process-hop
// test starts a child delegate-mcp from dist/ (build first) answering from the mock model.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { connectAdmin, dropPrefix, reportMissingRedis, REDIS_URL } from './redis-check.js';
import { AgentStore } from '../src/agents/store.js';
import { openRedisLedger, type RedisLedger } from '../src/budget/redis-ledger.js';
import { loadConfig } from '../src/config/config.js';
import { InProcessPool } from '../src/orchestrator/in-process-pool.js';
import { Orchestrator, type RunRequest } from '../src/orchestrator/orchestrator.js';
import { tempDir, writeTree } from './helpers.js';
import { startMockModel } from './mock-model/server.js';
import { ScriptedModel, type ScriptedTurn } from './scripted-model.js';


let admin: Redis | undefined;
let reachable = false;
before(async () => {
  admin = await connectAdmin();
  reachable = admin !== undefined;
  if (!reachable) reportMissingRedis('tests/run-session-redis.test.ts (the Redis-ledger run tests)');
});

const prefixes: string[] = [];
const ledgers: RedisLedger[] = [];
const orchestrators: Orchestrator[] = [];
after(async () => {
  for (const o of orchestrators) await o.close();
  for (const l of ledgers) await l.close();
  if (admin && reachable) for (const p of prefixes) await dropPrefix(admin, p);
  admin?.disconnect();
});

const freshPrefix = () => {
  const p = `dmcp-test-${randomBytes(6).toString('hex')}`;
  prefixes.push(p);
  return p;
};

const agent = (name: string, extra = '') => `name: ${name}
description: Test agent ${name}.
instructions: Answer the task.
model: scripted/model-1
max_turns: 4
${extra}`;

/** The content of the tool result the model was sent in its second request. */
function toolResultOf(m: ScriptedModel): string {
  const last = m.requests[1].request.messages.at(-1)!;
  return last.role === 'tool' ? last.results[0].content : assert.fail(`expected tool results, got a ${last.role} message`);
}

interface Node {
  orch: Orchestrator;
  ledger: RedisLedger;
  models: Record<string, ScriptedModel>;
  run(agent: string, task: string, extra?: Partial<RunRequest>): ReturnType<Orchestrator['run']>;
}

/** One node: a workspace, its agents, scripted models, and an orchestrator over the Redis ledger under `prefix`. */
async function node(prefix: string, agents: Record<string, string>, scripts: Record<string, ScriptedTurn[] | (() => ScriptedTurn)>, delegate: Record<string, unknown> = {}): Promise<Node> {
  const ws = tempDir('dmcp-redis-session-ws-');
  const stateDir = path.join(tempDir('dmcp-redis-session-state-'), 'state');
  writeTree(ws, {
    'mcp.json': JSON.stringify({ delegate: { stateDir, providers: { scripted: { wireApi: 'anthropic', apiKey: 'test-key' } }, ...delegate } }),
    ...Object.fromEntries(Object.entries(agents).map(([n, y]) => [`agents/${n}.yaml`, y])),
  });
  const cfg = loadConfig({ workspace: ws }, ws, { HOME: ws, XDG_CONFIG_HOME: path.join(ws, 'xdg') });
  const store = new AgentStore(cfg.agentsDir);
  assert.deepEqual(store.load().errors, []);
  const models = Object.fromEntries(Object.entries(scripts).map(([n, s]) => [n, new ScriptedModel(s)]));
  const pool = new InProcessPool((_endpoint, task) => models[task.agent.name] ?? assert.fail(`no scripted model for ${task.agent.name}`));
  // What a queue worker does: open the shared ledger, hand it to the orchestrator.
  const ledger = await openRedisLedger({ url: REDIS_URL, prefix, server: cfg.delegate.budget, prices: cfg.delegate.prices, warn: () => {} });
  ledgers.push(ledger);
  const orch = await Orchestrator.create(cfg, store, { ledger, pool });
  orchestrators.push(orch);
  return { orch, ledger, models, run: (a, task, extra = {}) => orch.run({ agent: a, input: { task }, ...extra }) };
}

describe('RunSession over the Redis ledger', { timeout: 60_000 }, () => {
  const redisIt = (name: string, fn: () => Promise<void>) =>
    it(name, async (t) => {
      if (!reachable) return t.skip(`Redis not reachable at ${REDIS_URL}`);
      await fn();
    });

  redisIt('an admitted run commits its usage to the shared books; nothing stays reserved', async () => {
    const n = await node(freshPrefix(), { solo: agent('solo', 'budget:\n  run_tokens: 50000\n') }, { solo: [{ text: 'the answer is 42', usage: { input_tokens: 120, output_tokens: 30, cache_read_input_tokens: 8 } }] }, { budget: { daily_tokens: 100_000 } });
    const r = await n.run('solo', 'what is the answer?');
    assert.equal(r.status, 'ok', r.error);
    assert.equal(n.models.solo.requests.length, 1);
    assert.deepEqual(r.usage, { input_tokens: 120, output_tokens: 30, cache_read_input_tokens: 8, cache_creation_input_tokens: 0 });
    const st = await n.ledger.status({ runId: r.run_id });
    assert.equal(st.server.spent.tokens, 158);
    assert.equal(st.server.reserved.tokens, 0);
    assert.equal(st.agents.solo.spent.tokens, 158);
    assert.equal(st.runs.length, 1);
    assert.equal(st.runs[0].open, false);
    assert.equal(st.runs[0].spent.tokens, 158);
    assert.equal(st.runs[0].reservations, 0);
  });

  redisIt('a run the books cannot afford makes no model request', async () => {
    const n = await node(freshPrefix(), { solo: agent('solo', 'max_output_tokens: 4096\n') }, { solo: [{ text: 'never' }] }, { budget: { daily_tokens: 200 } });
    const r = await n.run('solo', 'anything');
    assert.equal(r.status, 'error');
    assert.match(r.error ?? '', /server daily/);
    assert.equal(n.models.solo.requests.length, 0);
    const st = await n.ledger.status();
    assert.equal(st.server.spent.tokens, 0);
    assert.equal(st.server.reserved.tokens, 0);
  });

  redisIt('cancelling a run mid-stream aborts its model request and releases its reservation', async () => {
    const n = await node(freshPrefix(), { solo: agent('solo', 'max_output_tokens: 1000\n') }, { solo: [{ hang: true, partialText: 'thinking about it' }] }, { budget: { daily_tokens: 100_000 } });
    const rec = n.orch.start({ agent: 'solo', input: { task: 'take your time' } });
    await n.models.solo.whenHanging();
    const held = await n.ledger.status();
    assert.ok(held.server.reserved.tokens >= 1000, `the call holds its max output while it streams (reserved ${held.server.reserved.tokens})`);
    rec.cancel('cancelled');
    const r = await rec.done;
    assert.equal(r.status, 'cancelled');
    assert.equal(n.models.solo.requests.length, 1);
    assert.equal(n.models.solo.requests[0].aborted, true);
    const st = await n.ledger.status({ runId: r.run_id });
    assert.equal(st.server.reserved.tokens, 0);
    assert.equal(st.runs[0].open, false);
    // What streamed before the cancel is charged (a cut stream is never free).
    assert.ok(st.server.spent.tokens > 0);
  });

  redisIt('a cancel that comes while the ledger is still opening the run: no model request, nothing held', async () => {
    const n = await node(freshPrefix(), { solo: agent('solo') }, { solo: [{ text: 'never' }] }, { budget: { daily_tokens: 100_000 } });
    const rec = n.orch.start({ agent: 'solo', input: { task: 'x' } });
    // The Redis ledger answers openRun later: the run is not dispatched yet when the cancel comes.
    rec.cancel('cancelled');
    const r = await rec.done;
    assert.equal(r.status, 'cancelled');
    assert.equal(n.models.solo.requests.length, 0);
    const st = await n.ledger.status({ runId: r.run_id });
    assert.equal(st.server.reserved.tokens, 0);
    assert.equal(st.server.spent.tokens, 0);
    assert.equal(st.runs[0].open, false);
  });

  redisIt('a refused stream extension cuts the stream; the run is charged what streamed, within one step of its cap', async () => {
    const long = Array.from({ length: 4000 }, (_, i) => `word${i % 97} `).join('');
    const n = await node(
      freshPrefix(),
      { capped: agent('capped', 'max_output_tokens: 8000\nbudget: {run_tokens: 1500}\npermissions:\n  allow: [Read(**)]\n') },
      // The second call holds a slice of output and asks for more as it streams (see budget-gate.ts).
      { capped: [{ toolCalls: [{ name: 'read_file', arguments: { path: 'mcp.json' } }], usage: { input_tokens: 300, output_tokens: 20 } }, { text: long, chunks: 1000, usage: { input_tokens: 400, output_tokens: 9000 } }] },
    );
    const r = await n.run('capped', 'write a lot');
    assert.equal(n.models.capped.requests.length, 2);
    assert.equal(r.status, 'budget_exhausted', r.error);
    assert.ok(r.output.length > 0 && r.output.length < long.length / 2, `cut after ${r.output.length} of ${long.length} characters`);
    const st = await n.ledger.status({ runId: r.run_id });
    const run = st.runs[0];
    assert.equal(run.reservations, 0);
    assert.equal(st.server.reserved.tokens, 0);
    // Charged what streamed (not the 9,000 the script would have reported), never more than one step over.
    assert.ok(run.spent.tokens > 1500 - 256 && run.spent.tokens <= 1500 + 256, `spent ${run.spent.tokens} of a 1500 cap`);
  });

  redisIt("a delegation's spend is charged to the parent's scopes, within the slice the parent has left", async () => {
    const n = await node(
      freshPrefix(),
      { lead: agent('lead', 'agents: [helper]\npermissions:\n  allow: [Agent(helper)]\nbudget:\n  run_tokens: 20000\n'), helper: agent('helper', 'budget:\n  run_tokens: 50000\n') },
      {
        lead: [{ toolCalls: [{ name: 'agent__helper', arguments: { task: 'check it' } }], usage: { input_tokens: 100, output_tokens: 10 } }, { text: 'done', usage: { input_tokens: 200, output_tokens: 20 } }],
        helper: [{ text: 'checked', usage: { input_tokens: 300, output_tokens: 40 } }],
      },
      { reentry: { mode: 'in-process' } },
    );
    const r = await n.run('lead', 'delegate');
    assert.equal(r.status, 'ok', r.error);
    assert.equal(n.models.helper.requests.length, 1);
    const st = await n.ledger.status({ runId: r.run_id });
    assert.equal(st.runs.length, 2);
    const [lead, helper] = st.runs;
    assert.equal(lead.runId, r.run_id);
    assert.equal(helper.parentRunId, r.run_id);
    assert.equal(helper.spent.tokens, 340);
    assert.equal(lead.self.spent.tokens, 330);
    assert.equal(lead.spent.tokens, 670, "the parent's scope carries its child's spend");
    // The child's own cap (50,000) is lowered to what the parent had left when it started.
    assert.equal(helper.limitedByParent.tokens, true);
    assert.ok(helper.limits.tokens! <= 20_000 - 110, `child's cap ${helper.limits.tokens}`);
    assert.equal(st.server.spent.tokens, 670);
    assert.equal(st.server.reserved.tokens, 0);
  });

  redisIt("over the process hop, the child's slice is reserved in the parent's scopes and what it reports is committed there", async () => {
    // The child delegate-mcp (dist/cli.js, books in memory) answers from the mock model over HTTP.
    const mock = await startMockModel({ handler: () => ({ text: 'checked by the child', usage: { input_tokens: 300, output_tokens: 40 } }) });
    try {
      const n = await node(
        freshPrefix(),
        { lead: agent('lead', 'agents: [helper]\npermissions:\n  allow: [Agent(helper)]\nbudget:\n  run_tokens: 20000\n'), helper: agent('helper', 'budget:\n  run_tokens: 5000\n') },
        { lead: [{ toolCalls: [{ name: 'agent__helper', arguments: { task: 'check it' } }], usage: { input_tokens: 100, output_tokens: 10 } }, { text: 'done', usage: { input_tokens: 200, output_tokens: 20 } }] },
        { providers: { scripted: { wireApi: 'anthropic', apiKey: 'test-key', baseURL: mock.url } }, budget: { daily_tokens: 100_000 } },
      );
      const r = await n.run('lead', 'delegate');
      assert.equal(r.status, 'ok', r.error);
      assert.equal(mock.requests.length, 1, 'the child made one model request');
      assert.equal(toolResultOf(n.models.lead), 'checked by the child');
      const st = await n.ledger.status({ runId: r.run_id });
      assert.equal(st.runs.length, 1, 'the child keeps its own books in memory; the parent holds its slice');
      const lead = st.runs[0];
      assert.equal(lead.self.calls, 3, "two model calls and the child's slice");
      assert.equal(lead.spent.tokens, 330 + 340);
      assert.equal(lead.reservations, 0);
      assert.equal(st.server.spent.tokens, 670);
      assert.equal(st.server.reserved.tokens, 0);
    } finally {
      await mock.close();
    }
  });

  redisIt("a batch's tasks draw on the batch's cap (as delegate_parallel opens it), and closeBatch totals them", async () => {
    const n = await node(freshPrefix(), { solo: agent('solo', 'max_output_tokens: 256\n') }, { solo: () => ({ text: 'ok', usage: { input_tokens: 40, output_tokens: 200 } }) });
    const batchId = `batch_${randomBytes(4).toString('hex')}`;
    await n.orch.budget.openBatch(batchId, 'delegate_parallel', { run_tokens: 1_000 });
    const task = (i: number) => n.orch.run({ agent: 'solo', input: { task: `t${i}` }, parentRunId: batchId, rootRunId: batchId, depth: 1 });
    const results = await Promise.all([0, 1, 2, 3, 4, 5].map(task));
    const ok = results.filter((r) => r.status === 'ok').length;
    assert.ok(ok >= 1 && ok < 6, `${ok} of 6 tasks fit a 1,000-token batch`);
    assert.equal(n.models.solo.requests.length, ok);
    const totals = await n.orch.budget.closeBatch(batchId);
    assert.equal(totals.tokens, ok * 240);
    assert.ok(totals.tokens <= 1_000);
    const st = await n.ledger.status({ runId: batchId });
    assert.equal(st.runs[0].open, false);
    assert.equal(st.runs[0].children.length, 6);
    assert.equal(st.server.reserved.tokens, 0);
  });

  redisIt('two orchestrators racing runs on one prefix never commit more than the daily cap', async () => {
    const prefix = freshPrefix();
    const cap = 3_000;
    // Each run's first call holds its prompt estimate + its whole max output (256) and reports no more than that.
    const turn = (): ScriptedTurn => ({ text: 'ok', usage: { input_tokens: 40, output_tokens: 256 } });
    const cfg = { budget: { daily_tokens: cap } };
    const a = await node(prefix, { solo: agent('solo', 'max_output_tokens: 256\n') }, { solo: turn }, cfg);
    const b = await node(prefix, { solo: agent('solo', 'max_output_tokens: 256\n') }, { solo: turn }, cfg);
    // Four lanes per node, each running one run after another: both nodes keep reserving while the other commits.
    const runs: Awaited<ReturnType<Node['run']>>[] = [];
    const lane = async (n: Node, l: number) => {
      for (let i = 0; i < 6; i++) runs.push(await n.run('solo', `lane ${l} task ${i}`));
    };
    await Promise.all([0, 1, 2, 3].flatMap((l) => [lane(a, l), lane(b, l)]));
    assert.equal(runs.length, 48);
    const ok = runs.filter((r) => r.status === 'ok');
    const refused = runs.filter((r) => r.status === 'error');
    assert.equal(ok.length + refused.length, 48);
    assert.ok(refused.length > 0, 'the cap was binding');
    for (const r of refused) assert.match(r.error ?? '', /server daily/);
    const okOn = (n: Node) => n.models.solo.requests.length;
    assert.ok(okOn(a) > 0 && okOn(b) > 0, `both nodes ran some (a ${okOn(a)}, b ${okOn(b)})`);
    assert.equal(okOn(a) + okOn(b), ok.length, 'a refused run made no model request');
    const st = await a.ledger.status();
    assert.equal(st.server.spent.tokens, ok.length * 296);
    assert.ok(st.server.spent.tokens <= cap, `committed ${st.server.spent.tokens} of a ${cap} cap`);
    assert.equal(st.server.reserved.tokens, 0);
  });
});
