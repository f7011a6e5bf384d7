// The reader: files from several processes (with a torn last line), summary counts and percentiles,
// and a 3-level run tree that crosses process boundaries.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { AuditEventSchema, type AuditEvent, type AuditEventInput } from '../src/audit/events.js';
import type { Usage } from '../src/contract/usage.js';
import { readAuditDir } from '../src/audit/reader.js';
import { percentile, renderSummary, summarize } from '../src/audit/summary.js';
import { renderTree, runTree } from '../src/audit/run-tree.js';

const BASE = Date.parse('2026-03-01T10:00:00Z');
let clock = 0;
const seqs = new Map<number, number>();

/** A full event as the writer would stamp it; each one a second after the previous. */
function ev(pid: number, e: AuditEventInput): AuditEvent {
  const seq = (seqs.get(pid) ?? 0) + 1;
  seqs.set(pid, seq);
  return AuditEventSchema.parse({
    v: 1,
    ts: new Date(BASE + 1000 * clock++).toISOString(),
    seq,
    pid,
    run_id: null,
    parent_run_id: null,
    root_run_id: null,
    depth: null,
    agent: null,
    ...e,
  });
}

const u = (input: number, output: number): Usage => ({ input_tokens: input, output_tokens: output, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 });

interface R {
  id: string;
  agent: string;
  model: string;
  parent?: string;
  root?: string;
  depth?: number;
  pid: number;
}
const ctxOf = (r: R) => ({ run_id: r.id, parent_run_id: r.parent ?? null, root_run_id: r.root ?? r.id, depth: r.depth ?? 0, agent: r.agent });
const start = (r: R) => ev(r.pid, { ...ctxOf(r), event: 'run_start', caller: r.parent ? 'agent' : 'client', input_digest: 'sha256:0000000000000000', model: r.model });
const end = (r: R, status: 'ok' | 'error' | 'cancelled' | 'timeout', usage: Usage, cost: number | null, ms: number) =>
  ev(r.pid, { ...ctxOf(r), event: 'run_end', status, turns: 1, usage, cost_usd: cost, duration_ms: ms });
const modelCall = (r: R) =>
  ev(r.pid, { ...ctxOf(r), event: 'model_call', provider: 'mock', model: r.model, turn: 1, estimated_input_tokens: 10, usage: u(1, 1), latency_ms: 5, retries: 0, stop_reason: 'end_turn' });
const toolCall = (r: R, decision: 'allow' | 'deny' = 'allow') =>
  ev(r.pid, { ...ctxOf(r), event: 'tool_call', tool: 'read_file', args_digest: 'sha256:1111111111111111', decision, rule: decision === 'deny' ? 'deny:read_file' : null, duration_ms: 1, outcome: decision === 'allow' ? 'ok' : 'error' });

// Three processes: pid 100 (root server), 200 (re-entry child), 300 (grandchild).
const R1: R = { id: 'run_root', agent: 'planner', model: 'anthropic/sonnet', pid: 100 };
const C1: R = { id: 'run_c1', agent: 'coder', model: 'openai/gpt', parent: R1.id, root: R1.id, depth: 1, pid: 200 };
const G1: R = { id: 'run_g1', agent: 'tester', model: 'openai/gpt', parent: C1.id, root: R1.id, depth: 2, pid: 300 };
const C2: R = { id: 'run_c2', agent: 'coder', model: 'openai/gpt', parent: R1.id, root: R1.id, depth: 1, pid: 100 };
const O1: R = { id: 'run_o1', agent: 'coder', model: 'openai/gpt', parent: 'run_lost', root: R1.id, depth: 2, pid: 400 };
const solo = Array.from({ length: 7 }, (_, i): R => ({ id: `run_s${i}`, agent: 'coder', model: 'openai/gpt', pid: 100 }));
const R9: R = { id: 'run_unfinished', agent: 'planner', model: 'anthropic/sonnet', pid: 100 };

const events: AuditEvent[] = [
  ev(100, { event: 'server_start', version: '0.1.0', config_digest: 'sha256:2222222222222222', agents_loaded: 3 }),
  start(R1),
  modelCall(R1),
  ev(100, { ...ctxOf(R1), event: 'delegation', child_run_id: C1.id, child_agent: 'coder', hop: 'process' }),
  start(C1),
  modelCall(C1),
  toolCall(C1),
  toolCall(C1, 'deny'),
  ev(200, { ...ctxOf(C1), event: 'permission_denied', tool: 'write_file', rule: 'deny:write_file', reason: 'not allowed' }),
  ev(200, { ...ctxOf(C1), event: 'delegation', child_run_id: G1.id, child_agent: 'tester', hop: 'process' }),
  start(G1),
  ev(300, { ...ctxOf(G1), event: 'budget_refused', scope: 'root', tokens: 5000, usd: null, message: 'over budget' }),
  end(G1, 'error', u(0, 0), null, 1100),
  end(C1, 'ok', u(300, 30), 0.02, 1000),
  ev(100, { ...ctxOf(R1), event: 'delegation', child_run_id: C2.id, child_agent: 'coder', hop: 'in-process' }),
  start(C2),
  end(C2, 'timeout', u(50, 5), 0.005, 900),
  start(O1),
  end(O1, 'cancelled', u(10, 1), 0.001, 800),
  modelCall(R1),
  toolCall(R1),
  end(R1, 'ok', u(100, 50), 0.01, 5000),
  ...solo.flatMap((r, i) => [start(r), end(r, 'ok', u(10, 10), 0.001, 100 * (i + 1))]),
  start(R9),
];

function writeSplit(dir: string): void {
  // Two rotated files of one day plus a file of the next day that ends in a torn line.
  const lines = events.map((e) => JSON.stringify(e));
  const a = Math.floor(lines.length / 3);
  fs.writeFileSync(path.join(dir, 'audit-2026-03-01.jsonl'), lines.slice(0, a).join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'audit-2026-03-01.1.jsonl'), lines.slice(a, 2 * a).join('\n') + '\nnot json at all\n');
  fs.writeFileSync(path.join(dir, 'audit-2026-03-02.jsonl'), lines.slice(2 * a).join('\n') + '\n{"v":1,"ts":"2026-03-01T11:00');
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'ignored');
}

test('readAuditDir reads every file, tolerates a torn last line, and orders events by time', () => {
  const dir = fs.mkdtempSync(path.join(tmpdir(), 'dmcp-audit-read-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  writeSplit(dir);
  const r = readAuditDir(dir);
  assert.equal(r.files.length, 3);
  assert.equal(r.events.length, events.length);
  assert.equal(r.torn, 1);
  assert.equal(r.invalid, 1);
  assert.deepEqual(r.events.map((e) => e.ts), events.map((e) => e.ts));
  assert.deepEqual(readAuditDir(path.join(dir, 'missing')).events, []);
  // Files of days far outside the window are not even opened.
  assert.equal(readAuditDir(dir, { since: new Date('2026-03-05T00:00:00Z') }).files.length, 0);
});

test('summarize: counts, denials, tokens, cost and percentiles per agent and per model', () => {
  const s = summarize(events);
  assert.equal(s.total.runs, 13);
  const coder = s.by_agent.find((r) => r.key === 'coder')!;
  assert.equal(coder.runs, 10);
  assert.equal(coder.ok, 8);
  assert.equal(coder.timeout, 1);
  assert.equal(coder.cancelled, 1);
  assert.equal(coder.error, 0);
  assert.equal(coder.denied, 1, 'run_c1 had a permission_denied');
  // Durations 100..1000 ms: nearest-rank p50 = 500, p95 = 1000.
  assert.equal(coder.p50_ms, 500);
  assert.equal(coder.p95_ms, 1000);
  assert.deepEqual(coder.tokens, { input_tokens: 430, output_tokens: 106, cache_read_input_tokens: 0, cache_creation_input_tokens: 0, total: 536 });
  assert.ok(Math.abs(coder.cost_usd - 0.033) < 1e-9);

  const tester = s.by_agent.find((r) => r.key === 'tester')!;
  assert.deepEqual([tester.runs, tester.error, tester.denied, tester.cost_unknown], [1, 1, 1, 1]);
  const planner = s.by_agent.find((r) => r.key === 'planner')!;
  assert.deepEqual([planner.runs, planner.ok, planner.running], [2, 1, 1]);
  assert.equal(planner.p50_ms, 5000);

  const gpt = s.by_model.find((r) => r.key === 'openai/gpt')!;
  assert.equal(gpt.runs, 11);
  assert.equal(s.by_model.find((r) => r.key === 'anthropic/sonnet')!.runs, 2);
  assert.equal(s.by_agent[0].key, 'coder', 'busiest first');

  // Time window: runs that started in the first 20 s only.
  const early = summarize(events, { since: new Date(BASE), until: new Date(BASE + 20_000) });
  assert.equal(early.total.runs, 5);
  assert.equal(early.since, new Date(BASE).toISOString());

  const text = renderSummary(s);
  assert.match(text, /13 run\(s\)/);
  assert.match(text, /^coder\s+10\s+8\s+0\s+1\s+1\s+0\s+1\s+0\s/m);
  assert.match(text, /^model\s+runs/m);
  assert.match(renderSummary(summarize([])), /none/);
});

test('runTree: three levels across processes, orphans under the root, per-node and subtree totals', () => {
  const tree = runTree(events, R1.id)!;
  assert.ok(tree);
  assert.equal(tree.agent, 'planner');
  assert.equal(tree.status, 'ok');
  assert.equal(tree.model_calls, 2);
  assert.equal(tree.tool_calls, 1);
  assert.deepEqual(tree.children.map((c) => c.run_id), [C1.id, C2.id, O1.id]);

  const c1 = tree.children[0];
  assert.deepEqual([c1.agent, c1.status, c1.depth, c1.model_calls, c1.tool_calls, c1.denials], ['coder', 'ok', 1, 1, 2, 1]);
  assert.deepEqual(c1.pids, [200]);
  assert.equal(c1.children.length, 1);
  const g1 = c1.children[0];
  assert.deepEqual([g1.run_id, g1.agent, g1.status, g1.depth, g1.denials, g1.cost_usd], [G1.id, 'tester', 'error', 2, 1, null]);
  assert.equal(tree.children[2].orphan, true);

  assert.equal(tree.subtree.runs, 5);
  assert.equal(tree.subtree.usage.input_tokens, 100 + 300 + 0 + 50 + 10);
  assert.ok(Math.abs(tree.subtree.cost_usd - 0.036) < 1e-9);
  assert.equal(tree.subtree.denials, 2);
  assert.equal(c1.subtree.runs, 2);

  const text = renderTree(tree);
  assert.match(text, /^run_root {2}planner {2}ok/m);
  assert.match(text, /^├─ run_c1 {2}coder {2}ok/m);
  assert.match(text, /^│ {2}└─ run_g1 {2}tester {2}error .*denied×1/m);
  assert.match(text, /^└─ run_o1 .*\(parent missing\)/m);
  assert.match(text, /total: 5 run\(s\)/);

  assert.equal(runTree(events, 'run_nope'), undefined);
  // A subtree can be asked for directly.
  assert.deepEqual(runTree(events, C1.id)!.children.map((c) => c.run_id), [G1.id]);
});

test('a child known only from its parent’s delegation event still appears in the tree', () => {
  const only = events.filter((e) => e.run_id !== G1.id);
  const c1 = runTree(only, R1.id)!.children[0];
  assert.equal(c1.children.length, 1);
  assert.deepEqual([c1.children[0].run_id, c1.children[0].agent, c1.children[0].status], [G1.id, 'tester', 'running']);
});

test('percentile is nearest-rank', () => {
  assert.equal(percentile([], 50), null);
  assert.equal(percentile([7], 95), 7);
  assert.equal(percentile([1, 2, 3, 4], 50), 2);
  assert.equal(percentile([1, 2, 3, 4], 95), 4);
});
