// RunSession driven in-process: the real orchestrator, budget gate, tool gate and audit log, the real
// agent loop (worker/run-loop.ts) run by InProcessPool in this thread, and a scripted model in place of
// a provider. No CLI, no subprocess, no worker thread.
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { AgentStore } from '../src/agents/store.js';
import { AuditLog } from '../src/audit/audit-log.js';
import { Redactor } from '../src/audit/redact.js';
import { loadConfig } from '../src/config/config.js';
import { BudgetGate } from '../src/orchestrator/budget-gate.js';
import { InProcessPool } from '../src/orchestrator/in-process-pool.js';
import { HEARTBEAT_MS, Orchestrator, type RunRequest } from '../src/orchestrator/orchestrator.js';
import type { AskQuestion } from '../src/orchestrator/tool-gate.js';
import type { ToolResultMessage } from '../src/contract/message.js';
import { ProviderError } from '../src/providers/types.js';
import { readAuditEvents, tempDir, writeTree } from './helpers.js';
import { ScriptedModel, type ScriptedTurn } from './scripted-model.js';

interface Harness {
  orch: Orchestrator;
  pool: InProcessPool;
  models: Record<string, ScriptedModel>;
  /** The audit events written so far (flushed first). */
  events(): any[];
  run(agent: string, task: string, extra?: Partial<RunRequest>): Promise<Awaited<ReturnType<Orchestrator['run']>>>;
}

const open: Orchestrator[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.close();
});

const agent = (name: string, extra = '') => `name: ${name}
description: Test agent ${name}.
instructions: Answer the task.
model: scripted/model-1
max_turns: 4
${extra}`;

/** An orchestrator over a temp workspace whose agents' loops run in this thread against scripted models (one per agent). */
function harness(agents: Record<string, string>, scripts: Record<string, ScriptedTurn[]>, delegate: Record<string, unknown> = {}): Harness {
  const ws = tempDir('dmcp-session-ws-');
  const stateDir = path.join(tempDir('dmcp-session-state-'), 'state');
  writeTree(ws, {
    'notes.txt': 'the notes say 42\n',
    '.env': 'SECRET=1\n',
    'mcp.json': JSON.stringify({ delegate: { stateDir, providers: { scripted: { wireApi: 'anthropic', apiKey: 'test-key' } }, ...delegate } }),
    ...Object.fromEntries(Object.entries(agents).map(([n, y]) => [`agents/${n}.yaml`, y])),
  });
  const cfg = loadConfig({ workspace: ws }, ws, { HOME: ws, XDG_CONFIG_HOME: path.join(ws, 'xdg') });
  const store = new AgentStore(cfg.agentsDir);
  const catalog = store.load();
  assert.deepEqual(catalog.errors, []);
  const models = Object.fromEntries(Object.entries(scripts).map(([n, s]) => [n, new ScriptedModel(s)]));
  const pool = new InProcessPool((_endpoint, task) => {
    const m = models[task.agent.name];
    if (!m) throw new Error(`no scripted model for agent ${task.agent.name}`);
    return m;
  });
  const audit = AuditLog.open({ dir: cfg.auditDir!, redactor: new Redactor({ secrets: [] }) });
  const orch = new Orchestrator(cfg, store, BudgetGate.inMemory(cfg), audit, pool);
  open.push(orch);
  return {
    orch,
    pool,
    models,
    events: () => {
      audit.flush();
      return readAuditEvents(stateDir);
    },
    run: (a, task, extra = {}) => orch.run({ agent: a, input: { task }, ...extra }),
  };
}

/** The tool results the model was sent in its request number `n` (0-based). */
function toolResults(m: ScriptedModel, n: number): ToolResultMessage[] {
  const last = m.requests[n].request.messages.at(-1)!;
  assert.equal(last.role, 'tool');
  return last.role === 'tool' ? last.results : [];
}

const eventsOf = (events: any[], runId: string, kind: string) => events.filter((e) => e.run_id === runId && e.event === kind);

describe('RunSession, driven in-process with a scripted model', { timeout: 30_000 }, () => {
  it('a plain answer: one model call, its usage on the result, run_start → model_call → run_end in the audit', async () => {
    const h = harness({ solo: agent('solo') }, { solo: [{ text: 'the answer is 42', usage: { input_tokens: 12, output_tokens: 7 }, chunks: 3 }] });
    const r = await h.run('solo', 'what is the answer?');
    assert.equal(r.status, 'ok');
    assert.equal(r.output, 'the answer is 42');
    assert.equal(r.turns, 1);
    assert.equal(r.usage.input_tokens, 12);
    assert.equal(r.usage.output_tokens, 7);
    const m = h.models.solo;
    assert.equal(m.requests.length, 1);
    const first = m.requests[0].request.messages[0];
    assert.equal(first.role, 'user');
    assert.ok(first.role === 'user' && first.content.includes('what is the answer?'));
    assert.equal(m.requests[0].request.model, 'model-1');
    const kinds = h.events().filter((e) => e.run_id === r.run_id).map((e) => e.event);
    assert.deepEqual(kinds, ['run_start', 'budget_reserve', 'model_call', 'budget_commit', 'run_end']);
    const end = eventsOf(h.events(), r.run_id, 'run_end')[0];
    assert.equal(end.status, 'ok');
    assert.equal(end.usage.output_tokens, 7);
  });

  it('a tool call the rules allow runs, and its result is the next request\'s input', async () => {
    const h = harness(
      { reader: agent('reader', 'permissions:\n  allow: [Read(**)]\n  deny: [Read(**/.env*)]\n') },
      { reader: [{ toolCalls: [{ name: 'read_file', arguments: { path: 'notes.txt' } }] }, { text: 'it says 42' }] },
    );
    const r = await h.run('reader', 'read the notes');
    assert.equal(r.status, 'ok');
    assert.equal(r.turns, 2);
    const [res] = toolResults(h.models.reader, 1);
    assert.equal(res.isError, false);
    assert.match(res.content, /the notes say 42/);
    const calls = eventsOf(h.events(), r.run_id, 'tool_call');
    assert.equal(calls.length, 1);
    assert.equal(calls[0].tool, 'read_file');
    assert.equal(calls[0].decision, 'allow');
    assert.equal(calls[0].rule, 'Read(**)');
    assert.equal(calls[0].outcome, 'ok');
    assert.equal(eventsOf(h.events(), r.run_id, 'permission_denied').length, 0);
  });

  it('a tool call the rules deny does not run: the model gets the refusal naming the rule, the audit a permission_denied', async () => {
    const h = harness(
      { reader: agent('reader', 'permissions:\n  allow: [Read(**)]\n  deny: [Read(**/.env*)]\n') },
      { reader: [{ toolCalls: [{ name: 'read_file', arguments: { path: '.env' } }] }, { text: 'could not read it' }] },
    );
    const r = await h.run('reader', 'read .env');
    assert.equal(r.status, 'ok');
    const [res] = toolResults(h.models.reader, 1);
    assert.equal(res.isError, true);
    assert.match(res.content, /^permission denied: .*Read\(\*\*\/\.env\*\)/);
    assert.doesNotMatch(res.content, /SECRET/);
    const calls = eventsOf(h.events(), r.run_id, 'tool_call');
    assert.equal(calls.length, 1);
    assert.equal(calls[0].decision, 'deny');
    assert.equal(calls[0].rule, 'Read(**/.env*)');
    const denied = eventsOf(h.events(), r.run_id, 'permission_denied');
    assert.equal(denied.length, 1);
    assert.equal(denied[0].rule, 'Read(**/.env*)');
  });

  it('a budget that cannot cover the first call: no model request is made', async () => {
    const h = harness({ tiny: agent('tiny', 'budget: {run_tokens: 50}\nmax_output_tokens: 1000\n') }, { tiny: [{ text: 'never sent' }] });
    const r = await h.run('tiny', 'hi');
    assert.equal(h.models.tiny.requests.length, 0);
    assert.equal(r.status, 'error');
    assert.match(r.error ?? '', /^budget refused: run \S+ \(tiny\) token limit 50: spent 0, reserved 0, this call needs \d+/);
    assert.equal(eventsOf(h.events(), r.run_id, 'budget_refused').length, 1);
    assert.equal(eventsOf(h.events(), r.run_id, 'model_call').length, 0);
  });

  it('over the in-process ledger a run is admitted, gated and dispatched before start() returns (no tick added)', async () => {
    const h = harness({ solo: agent('solo'), capped: agent('capped', 'budget: {run_tokens: 100000}\n') }, { solo: [{ text: 'a' }], capped: [{ text: 'b' }] });
    let dispatched = 0;
    const run = h.pool.run.bind(h.pool);
    h.pool.run = (task) => (dispatched++, run(task));
    // No estimate needed: openRun, admission and the first call's gate all answer in this call stack.
    const solo = h.orch.start({ agent: 'solo', input: { task: 'x' } });
    assert.equal(dispatched, 1);
    // Budgeted (estimates first): openRun and admission answer in this call stack too.
    const capped = h.orch.start({ agent: 'capped', input: { task: 'y' } });
    assert.equal(dispatched, 2);
    assert.equal((await solo.done).status, 'ok');
    assert.equal((await capped.done).status, 'ok');
  });

  it('a cancel mid-stream aborts the model request and ends the run as cancelled', async () => {
    const h = harness({ slow: agent('slow') }, { slow: [{ hang: true, partialText: 'thinking about it' }] });
    const ac = new AbortController();
    const done = h.run('slow', 'take your time', { signal: ac.signal });
    await h.models.slow.whenHanging();
    assert.equal(h.models.slow.requests[0].aborted, false);
    ac.abort();
    const r = await done;
    assert.equal(r.status, 'cancelled');
    assert.equal(h.models.slow.requests[0].aborted, true);
    const cancelled = eventsOf(h.events(), r.run_id, 'cancelled');
    assert.equal(cancelled.length, 1);
    assert.equal(cancelled[0].reason, 'cancelled by the client');
    assert.equal(eventsOf(h.events(), r.run_id, 'run_end')[0].status, 'cancelled');
  });

  it('the deadline (timeout_s) aborts the model request and ends the run as timeout', async () => {
    const h = harness({ slow: agent('slow', 'timeout_s: 0.3\n') }, { slow: [{ hang: true }] });
    const started = Date.now();
    const r = await h.run('slow', 'take your time');
    assert.equal(r.status, 'timeout');
    assert.ok(Date.now() - started >= 300, `ended after ${Date.now() - started} ms`);
    assert.equal(h.models.slow.requests[0].aborted, true);
    assert.equal(eventsOf(h.events(), r.run_id, 'cancelled')[0].reason, 'run deadline reached');
  });

  it('a loop that ignores the cancel is ended by the hard-kill fallback after the grace period', async () => {
    const h = harness(
      { stuck: agent('stuck', 'permissions:\n  allow: [Read(**)]\n') },
      { stuck: [{ toolCalls: [{ name: 'read_file', arguments: { path: 'notes.txt' } }] }, { hang: true, ignoreAbort: true }] },
      { runs: { cancelGraceMs: 100 } },
    );
    const ac = new AbortController();
    const done = h.run('stuck', 'hang', { signal: ac.signal });
    await h.models.stuck.whenHanging();
    ac.abort();
    const r = await done;
    assert.equal(r.status, 'cancelled');
    // The thread was terminated (its task rejected), not just given up on.
    assert.equal(r.error, 'run cancelled; worker stopped');
  });

  it('a first turn that ignores the cancel is settled after two grace periods (its thread is not known yet)', async () => {
    const h = harness({ stuck: agent('stuck') }, { stuck: [{ hang: true, ignoreAbort: true }] }, { runs: { cancelGraceMs: 100 } });
    const ac = new AbortController();
    const done = h.run('stuck', 'hang', { signal: ac.signal });
    await h.models.stuck.whenHanging();
    const cancelledAt = Date.now();
    ac.abort();
    const r = await done;
    assert.ok(Date.now() - cancelledAt >= 200, `settled after ${Date.now() - cancelledAt} ms`);
    assert.equal(r.status, 'cancelled');
    assert.equal(r.error, 'run cancelled');
  });

  it('progress lines follow the run (gate, stream, retry, tool call), and a heartbeat comes while the model is silent', async () => {
    const h = harness(
      { reader: agent('reader', 'permissions:\n  allow: [Read(**)]\n') },
      { reader: [{ retries: 1, toolCalls: [{ name: 'read_file', arguments: { path: 'notes.txt' } }] }, { hang: true }] },
    );
    const lines: string[] = [];
    const ac = new AbortController();
    const done = h.run('reader', 'read', { signal: ac.signal, onProgress: (l) => lines.push(l) });
    await h.models.reader.whenHanging();
    const before = lines.length;
    await new Promise((r) => setTimeout(r, HEARTBEAT_MS + 500));
    ac.abort();
    await done;
    const whats = lines.map((l) => l.split(' · ')[2]);
    assert.deepEqual(whats.slice(0, 6), ['thinking', 'retrying model call (attempt 1: scripted 529)', 'model responding', 'read_file notes.txt', 'thinking', 'model responding']);
    assert.match(lines[0], /^reader · turn 1\/4 · thinking · 0 tokens · \ds$/);
    assert.match(lines[4], /^reader · turn 2\/4 · thinking · 15 tokens · \ds$/);
    const beats = lines.slice(before).filter((l) => l.includes('model responding (waiting)'));
    assert.equal(beats.length, 1, lines.join('\n'));
  });

  it('a worker that dies mid-run ends that run with an error result; the next run is served', async () => {
    const h = harness({ slow: agent('slow') }, { slow: [{ hang: true }, { text: 'still serving' }] });
    const first = h.orch.start({ agent: 'slow', input: { task: 'crash' } });
    await h.models.slow.whenHanging();
    assert.equal(h.pool.crash(first.runId, new Error('worker exited with code 1')), true);
    const r = await first.done;
    assert.equal(r.status, 'error');
    assert.equal(r.error, 'worker failed: worker exited with code 1 (the run was stopped; the server keeps serving)');
    const errs = eventsOf(h.events(), r.run_id, 'error');
    assert.equal(errs.length, 1);
    assert.equal(eventsOf(h.events(), r.run_id, 'run_end')[0].status, 'error');
    const next = await h.run('slow', 'again');
    assert.equal(next.status, 'ok');
    assert.equal(next.output, 'still serving');
  });

  it('a provider error ends the run with an error naming the model', async () => {
    const h = harness({ solo: agent('solo') }, { solo: [{ error: new ProviderError('server', 'scripted 500') }] });
    const r = await h.run('solo', 'hi');
    assert.equal(r.status, 'error');
    assert.equal(r.error, 'model call failed (scripted/model-1): scripted 500');
  });
});

describe('delegation goes through the tool gate', { timeout: 30_000 }, () => {
  const inProcess = { reentry: { mode: 'in-process' } };

  it('an allowed agent__ call runs the child and is audited like any tool call (the rule that allowed it included)', async () => {
    const h = harness(
      { lead: agent('lead', 'permissions:\n  allow: [Agent(helper)]\n'), helper: agent('helper') },
      { lead: [{ toolCalls: [{ name: 'agent__helper', arguments: { task: 'check it' } }] }, { text: 'helper said fine' }], helper: [{ text: 'fine' }] },
      inProcess,
    );
    const r = await h.run('lead', 'delegate');
    assert.equal(r.status, 'ok');
    const [res] = toolResults(h.models.lead, 1);
    assert.equal(res.isError, false);
    assert.equal(res.content, 'fine');
    const ev = h.events();
    assert.equal(eventsOf(ev, r.run_id, 'delegation').length, 1);
    const calls = eventsOf(ev, r.run_id, 'tool_call');
    assert.equal(calls.length, 1);
    assert.equal(calls[0].tool, 'agent__helper');
    assert.equal(calls[0].decision, 'allow');
    assert.equal(calls[0].rule, 'Agent(helper)');
    assert.equal(calls[0].outcome, 'ok');
  });

  it('a denied agent__ call starts no child: tool_call deny + permission_denied, as for every tool', async () => {
    const h = harness(
      { lead: agent('lead', 'agents: [helper]\npermissions:\n  deny: [Agent(helper)]\n'), helper: agent('helper') },
      { lead: [{ toolCalls: [{ name: 'agent__helper', arguments: { task: 'check it' } }] }, { text: 'refused' }], helper: [] },
      inProcess,
    );
    const r = await h.run('lead', 'delegate');
    assert.equal(r.status, 'ok');
    assert.equal(h.models.helper.requests.length, 0);
    const [res] = toolResults(h.models.lead, 1);
    assert.equal(res.isError, true);
    assert.match(res.content, /^permission denied: .*Agent\(helper\)/);
    const ev = h.events();
    assert.equal(eventsOf(ev, r.run_id, 'delegation').length, 0);
    const calls = eventsOf(ev, r.run_id, 'tool_call');
    assert.equal(calls.length, 1);
    assert.equal(calls[0].decision, 'deny');
    const denied = eventsOf(ev, r.run_id, 'permission_denied');
    assert.equal(denied.length, 1);
    assert.equal(denied[0].tool, 'agent__helper');
    assert.equal(denied[0].rule, 'Agent(helper)');
  });

  it('an ask rule on Agent(...) asks the client, like an ask rule on any tool', async () => {
    const h = harness(
      { lead: agent('lead', 'permissions:\n  ask: [Agent(helper)]\n'), helper: agent('helper') },
      { lead: [{ toolCalls: [{ name: 'agent__helper', arguments: { task: 'check it' } }] }, { text: 'done' }], helper: [{ text: 'approved and done' }] },
      inProcess,
    );
    const asked: AskQuestion[] = [];
    const r = await h.run('lead', 'delegate', { ask: async (q) => (asked.push(q), 'once') });
    assert.equal(r.status, 'ok');
    assert.equal(asked.length, 1);
    assert.equal(asked[0].tool, 'agent__helper');
    assert.equal(asked[0].rule, 'Agent(helper)');
    assert.equal(toolResults(h.models.lead, 1)[0].content, 'approved and done');
    const calls = eventsOf(h.events(), r.run_id, 'tool_call');
    assert.equal(calls.length, 1);
    assert.equal(calls[0].decision, 'ask_approved');
  });

  it('an unknown agent__ target is refused before any rule, naming the agents there are', async () => {
    const h = harness(
      { lead: agent('lead', 'permissions:\n  allow: [Agent]\n'), helper: agent('helper') },
      { lead: [{ toolCalls: [{ name: 'agent__helpr', arguments: { task: 'x' } }] }, { text: 'ok' }], helper: [] },
      inProcess,
    );
    const r = await h.run('lead', 'delegate');
    const [res] = toolResults(h.models.lead, 1);
    assert.equal(res.isError, true);
    assert.match(res.content, /^unknown agent "helpr" \(did you mean "helper"\?\)/);
    const denied = eventsOf(h.events(), r.run_id, 'permission_denied');
    assert.equal(denied.length, 1);
    assert.equal(denied[0].reason, 'unknown agent');
    assert.equal(denied[0].rule, null);
  });
});
