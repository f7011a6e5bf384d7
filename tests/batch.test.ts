// The batch service (orchestrator/batch.ts), in-process: a real Orchestrator (its piscina pool runs the
// built worker, dist/) against the mock model, no MCP client, no CLI. delegate_parallel and `fanout`
// only translate to and from this; their e2e tests are e2e-fanout and e2e-cli-fanout.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { AgentStore } from '../src/agents/store.js';
import { loadConfig } from '../src/config/config.js';
import { openStateDir } from '../src/config/state-dir.js';
import { runBatch } from '../src/orchestrator/batch.js';
import type { RunLauncher } from '../src/orchestrator/launcher.js';
import { Orchestrator, type RunRequest } from '../src/orchestrator/orchestrator.js';
import type { RunResult } from '../src/contract/run.js';
import type { RunRecord } from '../src/orchestrator/runs.js';
import { startMockModel, type MockModel } from './mock-model/server.js';
import { agentYaml, mockEnv, readAuditEvents, tempDir, writeTree } from './helpers.js';

/** Counts the runs the batch has going at once (a structural fact, unlike model-side timings). */
class CountingLauncher implements RunLauncher {
  inFlight = 0;
  maxInFlight = 0;
  readonly requests: RunRequest[] = [];
  /** Whether each request's signal was already aborted when the batch launched it, by task input order. */
  readonly abortedAtLaunch: boolean[] = [];
  constructor(private readonly inner: RunLauncher) {}
  start(req: RunRequest): RunRecord {
    return this.inner.start(req);
  }
  async run(req: RunRequest): Promise<RunResult> {
    this.requests.push(req);
    this.abortedAtLaunch.push(req.signal?.aborted === true);
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
    try {
      return await this.inner.run(req);
    } finally {
      this.inFlight--;
    }
  }
}

describe('batch service', () => {
  let mock: MockModel;
  let ws: string;
  let stateDir: string;
  let orchestrator: Orchestrator;

  before(async () => {
    mock = await startMockModel();
    // The orchestrator resolves endpoints from this process's environment (and its workers inherit it).
    Object.assign(process.env, mockEnv(mock.url));
    ws = tempDir('dmcp-batch-');
    stateDir = tempDir('dmcp-batch-state-');
    writeTree(path.join(ws, 'agents'), {
      'small.yaml': agentYaml('small', 'openai-chat/llama-test', 'max_output_tokens: 200'),
      // Its own agent for the budget test: no run history, so each run's first call reserves its whole max output.
      'sliced.yaml': agentYaml('sliced', 'openai-chat/llama-test', 'max_output_tokens: 200'),
    });
    const cfgFile = path.join(ws, 'mcp.json');
    writeFileSync(cfgFile, JSON.stringify({ delegate: { stateDir } }));
    const cfg = loadConfig({ workspace: ws, config: cfgFile }, ws);
    openStateDir(cfg);
    const agents = new AgentStore(cfg.agentsDir);
    agents.load();
    orchestrator = await Orchestrator.create(cfg, agents);
  });
  after(async () => {
    await orchestrator?.close();
    await mock.close();
  });

  it('runs at most `concurrency` tasks at once, takes them in input order, returns results in input order', async () => {
    mock.reset();
    mock.setHandler((req) => ({ text: `answer to ${req.lastUserText.match(/t\d+/)?.[0]}`, delayMs: 50 }));
    const launcher = new CountingLauncher(orchestrator);
    const started: number[] = [];
    const ended: number[] = [];
    const tasks = Array.from({ length: 6 }, (_, i) => ({ agent: 'small', task: `t${i}` }));
    const out = await runBatch(orchestrator, launcher, {
      tasks,
      owner: 'test',
      concurrency: 2,
      onTaskStart: (i) => void started.push(i),
      onTaskEnd: (i, _r, done) => void ended.push(done),
    });
    assert.equal(launcher.maxInFlight, 2);
    assert.deepEqual(started, [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(ended, [1, 2, 3, 4, 5, 6]);
    assert.equal(out.results.length, 6);
    assert.equal(out.ok, 6);
    assert.deepEqual(out.results.map((r) => r.status), Array(6).fill('ok'));
    assert.deepEqual(out.results.map((r) => r.output), tasks.map((t) => `answer to ${t.task}`));
    // No scope: independent root runs, no batch id, no books of its own.
    assert.equal(out.batchId, undefined);
    assert.equal(out.totals, undefined);
    assert.equal(launcher.requests.length, 6);
    assert.deepEqual(launcher.requests.map((r) => r.parentRunId), Array(6).fill(undefined));
  });

  it('an abort cancels the running tasks, and the queued ones are launched already cancelled', async () => {
    mock.reset();
    mock.setHandler(() => ({ text: 'too late', delayMs: 30_000 }));
    const abort = new AbortController();
    const launcher = new CountingLauncher(orchestrator);
    const tasks = Array.from({ length: 5 }, (_, i) => ({ agent: 'small', task: `t${i}` }));
    const batch = runBatch(orchestrator, launcher, { tasks, owner: 'test', concurrency: 2, signal: abort.signal, scope: { label: 'test_batch', input: tasks } });
    // Both lanes' model requests are out before the abort: the cancel reaches running runs, not just queued ones.
    for (let i = 0; i < 600 && mock.inFlight < 2; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(mock.inFlight, 2);
    abort.abort();
    const out = await batch;
    assert.deepEqual(out.results.map((r) => r.status), Array(5).fill('cancelled'));
    assert.equal(out.ok, 0);
    // The three queued tasks reach the launcher with the batch's signal already aborted: the orchestrator
    // records each as a run cancelled before it began (its result, its audit trail).
    assert.deepEqual(launcher.abortedAtLaunch, [false, false, true, true, true]);
    assert.equal(new Set(launcher.requests.map((r) => r.signal)).size, 1);
    const events = readAuditEvents(stateDir).filter((e) => e.run_id === out.batchId);
    assert.deepEqual(events.map((e) => [e.event, e.status]), [['run_start', undefined], ['run_end', 'cancelled']]);
  });

  it('a scoped batch is a budget scope: its tasks draw slices of its cap, never spend more together, and hang under its audit root', async () => {
    mock.reset();
    mock.setHandler(() => ({ text: 'ok', delayMs: 100, usage: { input_tokens: 100, output_tokens: 50 } }));
    const tasks = Array.from({ length: 10 }, (_, i) => ({ agent: 'sliced', task: `t${i}` }));
    const out = await runBatch(orchestrator, orchestrator, { tasks, owner: 'test', scope: { label: 'test_batch', budget: { run_tokens: 2500 }, input: tasks } });
    assert.ok(out.batchId?.startsWith('batch_'));
    assert.ok(out.ok > 0 && out.ok < 10, `${out.ok} of 10 fit: ${JSON.stringify(out.results.map((r) => [r.status, r.error]))}`);
    assert.ok(out.totals!.tokens <= 2500, `spent ${out.totals!.tokens}`);
    assert.equal(out.totals!.tokens, out.ok * 150);
    const refused = out.results.filter((r) => r.status !== 'ok');
    assert.equal(refused.length, 10 - out.ok);
    for (const r of refused) assert.match(r.error ?? '', /share of parent|parent of/);
    assert.equal(orchestrator.runs.ownsBatch(out.batchId!, 'test'), true);
    assert.equal(orchestrator.runs.ownsBatch(out.batchId!, 'someone_else'), false);
    // Audit: the batch is the root of its tasks' tree (every task that started names it as parent and root).
    await orchestrator.audit?.flush();
    const events = readAuditEvents(stateDir);
    const root = events.filter((e) => e.run_id === out.batchId);
    assert.deepEqual(root.map((e) => e.event), ['run_start', 'run_end']);
    assert.equal(root[0].agent, 'test_batch');
    assert.equal(root[1].status, 'error');
    const children = events.filter((e) => e.event === 'run_start' && e.parent_run_id === out.batchId);
    assert.equal(children.length, 10);
    for (const c of children) assert.equal(c.root_run_id, out.batchId);
  });
});
