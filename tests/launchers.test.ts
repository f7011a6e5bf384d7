// The explicit RunLauncher wrappers the MCP surface is handed (no Proxy): SlottedLauncher (HTTP per-session
// run slots, transports/http-limits.ts) and SessionAskingLauncher (meta tools' runs ask the session,
// mcp/approval.ts). The inner launcher here is a hand-driven one: each run ends when the test says so,
// which is what makes "waits for a slot" observable without timings. The HTTP behaviour end to end is in
// mcp-http-limit and e2e-http.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { RunResult } from '../src/contract/run.js';
import type { RunLauncher } from '../src/orchestrator/launcher.js';
import type { RunRequest } from '../src/orchestrator/orchestrator.js';
import type { RunRecord } from '../src/orchestrator/runs.js';
import { RunSlots, SlottedLauncher } from '../src/transports/http-limits.js';
import { SessionAskingLauncher } from '../src/mcp/approval.js';
import type { AskFn } from '../src/orchestrator/tool-gate.js';

function result(req: RunRequest, status: RunResult['status'] = 'ok'): RunResult {
  return { run_id: `run_${req.agent}`, agent: req.agent, status, output: '', turns: 0, usage: { input_tokens: 0, output_tokens: 0, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 }, model: 'm', duration_ms: 0, cost_usd: null };
}

/** Runs that end only when `finish(agent)` is called; records what it was asked. */
class HandDriven implements RunLauncher {
  readonly started: RunRequest[] = [];
  private readonly enders = new Map<string, () => void>();
  finish(agent: string): void {
    const end = this.enders.get(agent);
    assert.ok(end, `no run of ${agent} is going`);
    this.enders.delete(agent);
    end();
  }
  start(req: RunRequest): RunRecord {
    this.started.push(req);
    let settle!: (r: RunResult) => void;
    const done = new Promise<RunResult>((res) => (settle = res));
    this.enders.set(req.agent, () => settle(result(req)));
    return { runId: `run_${req.agent}`, agent: req.agent, model: 'm', owner: req.owner ?? 'local', status: 'running', startedAt: Date.now(), lastProgress: '', turn: 0, usage: result(req).usage, done, cancel: () => {} };
  }
  run(req: RunRequest): Promise<RunResult> {
    return this.start(req).done;
  }
}

const tick = () => new Promise((r) => setImmediate(r));

describe('SlottedLauncher', () => {
  it('run() waits for a free slot of its session (saying so), other sessions are not held up', async () => {
    const inner = new HandDriven();
    const slots = new RunSlots(2);
    const a = new SlottedLauncher(slots, inner, 'session_a');
    const b = new SlottedLauncher(slots, inner, 'session_b');
    const progress: string[] = [];
    const r1 = a.run({ agent: 'a1', input: {} });
    const r2 = a.run({ agent: 'a2', input: {} });
    const r3 = a.run({ agent: 'a3', input: {}, onProgress: (m) => progress.push(m) });
    const rb = b.run({ agent: 'b1', input: {} });
    await tick();
    assert.deepEqual(inner.started.map((r) => r.agent), ['a1', 'a2', 'b1']);
    assert.deepEqual(progress, ['waiting: this session already has 2 runs going']);
    assert.equal(slots.count('session_a'), 2);
    inner.finish('a1');
    assert.equal((await r1).status, 'ok');
    await tick();
    assert.deepEqual(inner.started.map((r) => r.agent), ['a1', 'a2', 'b1', 'a3']);
    for (const name of ['a2', 'a3', 'b1']) inner.finish(name);
    await Promise.all([r2, r3, rb]);
    assert.deepEqual(slots.totals(), { sessions: 0, runs: 0 });
  });

  it('a run cancelled while it waits for a slot takes none and goes to the inner launcher with its aborted signal', async () => {
    const inner = new HandDriven();
    const slots = new RunSlots(1);
    const a = new SlottedLauncher(slots, inner, 'session_a');
    const r1 = a.run({ agent: 'a1', input: {} });
    const abort = new AbortController();
    const r2 = a.run({ agent: 'a2', input: {}, signal: abort.signal });
    await tick();
    assert.deepEqual(inner.started.map((r) => r.agent), ['a1']);
    abort.abort();
    await tick();
    assert.deepEqual(inner.started.map((r) => r.agent), ['a1', 'a2']);
    assert.equal(inner.started[1].signal?.aborted, true);
    assert.equal(slots.count('session_a'), 1, 'the waiting run took no slot');
    inner.finish('a2');
    inner.finish('a1');
    await Promise.all([r1, r2]);
    assert.equal(slots.count('session_a'), 0);
  });

  it('start() at the limit is refused at once with the reason; a started run gives its slot back when it ends', async () => {
    const inner = new HandDriven();
    const slots = new RunSlots(1);
    const a = new SlottedLauncher(slots, inner, 'session_a');
    const rec = a.start({ agent: 'bg1', input: {}, background: true });
    const refused = a.start({ agent: 'bg2', input: {}, background: true });
    assert.equal(refused.status, 'error');
    assert.match(refused.result?.error ?? '', /already has 1 runs going \(delegate\.http\.maxRunsPerSession\)/);
    assert.deepEqual(inner.started.map((r) => r.agent), ['bg1']);
    inner.finish('bg1');
    await rec.done;
    await tick();
    assert.equal(slots.count('session_a'), 0);
    const again = a.start({ agent: 'bg3', input: {} });
    assert.equal(again.status, 'running');
    inner.finish('bg3');
    await again.done;
  });
});

describe('SessionAskingLauncher', () => {
  it('gives every run the session asker unless the request brings its own', async () => {
    const inner = new HandDriven();
    const sessionAsk: AskFn = async () => 'deny';
    const ownAsk: AskFn = async () => 'once';
    const launcher = new SessionAskingLauncher(inner, sessionAsk);
    const r1 = launcher.run({ agent: 'x', input: {} });
    const rec = launcher.start({ agent: 'y', input: {}, ask: ownAsk });
    assert.equal(inner.started[0].ask, sessionAsk);
    assert.equal(inner.started[1].ask, ownAsk);
    inner.finish('x');
    inner.finish('y');
    await Promise.all([r1, rec.done]);
  });
});
