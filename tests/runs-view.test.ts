// runs-view: the run list, the timeline (denial reasons paired with their tool calls), --since spans,
// and plain-text output that cannot carry terminal control sequences from model-chosen strings.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AuditEventSchema, AuditRunStatus, type AuditEvent, type AuditEventInput } from '../src/audit/events.js';
import { runTree } from '../src/audit/run-tree.js';
import { listRuns, parseSince, renderRunList, renderTimeline, runTimeline, RUN_STATUSES } from '../src/audit/runs-view.js';

const BASE = Date.parse('2026-03-01T10:00:00Z');
let clock = 0;
function ev(e: AuditEventInput & { run_id: string; agent: string; depth?: number; parent_run_id?: string | null }): AuditEvent {
  return AuditEventSchema.parse({ v: 1, ts: new Date(BASE + 1000 * clock++).toISOString(), seq: clock, pid: 1, root_run_id: 'r1', depth: 0, parent_run_id: null, ...e });
}
const usage = { input_tokens: 10, output_tokens: 5, cache_read_input_tokens: 2, cache_creation_input_tokens: 0 };

const events: AuditEvent[] = [
  ev({ event: 'run_start', run_id: 'r1', agent: 'lead', caller: 'cli', input_digest: 'x', model: 'anthropic/m' }),
  ev({ event: 'model_call', run_id: 'r1', agent: 'lead', provider: 'anthropic', model: 'anthropic/m', turn: 1, estimated_input_tokens: null, usage, latency_ms: 40, retries: 1, stop_reason: 'tool_use' }),
  ev({ event: 'tool_call', run_id: 'r1', agent: 'lead', tool: 'read_file', args_digest: 'a', decision: 'deny', rule: 'Read(./a)', duration_ms: 0, outcome: 'error' }),
  ev({ event: 'permission_denied', run_id: 'r1', agent: 'lead', tool: 'read_file', rule: 'Read(./a)', reason: 'first reason' }),
  ev({ event: 'tool_call', run_id: 'r1', agent: 'lead', tool: 'read_file', args_digest: 'b', decision: 'deny', rule: 'Read(./b)', duration_ms: 0, outcome: 'error' }),
  ev({ event: 'permission_denied', run_id: 'r1', agent: 'lead', tool: 'read_file', rule: 'Read(./b)', reason: 'second \u001b[31mreason\nnext line' }),
  ev({ event: 'delegation', run_id: 'r1', agent: 'lead', child_run_id: 'r2', child_agent: 'helper', hop: 'process' }),
  ev({ event: 'run_start', run_id: 'r2', agent: 'helper', depth: 1, parent_run_id: 'r1', caller: 'agent:lead', input_digest: 'y', model: 'anthropic/m' }),
  ev({ event: 'run_end', run_id: 'r2', agent: 'helper', depth: 1, parent_run_id: 'r1', status: 'error', turns: 1, usage, cost_usd: null, duration_ms: 900, error: 'boom' }),
  ev({ event: 'run_end', run_id: 'r1', agent: 'lead', status: 'ok', turns: 2, usage, cost_usd: 0.01, duration_ms: 5000 }),
  ev({ event: 'run_start', run_id: 'other', agent: 'solo', caller: null, input_digest: 'z', model: 'openai/x', root_run_id: 'other' } as any),
];

test('listRuns: newest first, with caller, filters by agent, status and roots', () => {
  const all = listRuns(events);
  assert.deepEqual(all.map((r) => r.run_id), ['other', 'r2', 'r1']);
  const lead = all.find((r) => r.run_id === 'r1')!;
  assert.deepEqual([lead.caller, lead.status, lead.tokens, lead.denials, lead.model_calls], ['cli', 'ok', 17, 2, 1]);
  assert.equal(all.find((r) => r.run_id === 'other')!.status, 'running');
  assert.deepEqual(listRuns(events, { status: 'error' }).map((r) => r.run_id), ['r2']);
  assert.deepEqual(listRuns(events, { agent: 'lead' }).map((r) => r.run_id), ['r1']);
  assert.deepEqual(listRuns(events, { rootsOnly: true }).map((r) => r.run_id), ['other', 'r1']);
  assert.deepEqual(listRuns(events, { limit: 1 }).map((r) => r.run_id), ['other']);
  assert.deepEqual(listRuns(events, { since: new Date(BASE + 7000) }).map((r) => r.run_id), ['other', 'r2']);
});

test('runTimeline: the tree in time order; each denial reason goes to its own tool call', () => {
  const tree = runTree(events, 'r1')!;
  const tl = runTimeline(events, tree);
  assert.deepEqual(tl.map((e) => e.kind), ['run_start', 'model_call', 'tool_call', 'tool_call', 'delegation', 'run_start', 'run_end', 'run_end']);
  const denials = tl.filter((e) => e.kind === 'tool_call');
  assert.deepEqual(denials.map((e) => (e.kind === 'tool_call' ? [e.rule, e.reason] : [])), [
    ['Read(./a)', 'first reason'],
    ['Read(./b)', 'second \u001b[31mreason\nnext line'],
  ]);
  const model = tl[1];
  assert.ok(model.kind === 'model_call');
  assert.deepEqual([model.input_tokens, model.output_tokens, model.retries], [12, 5, 1]);
  assert.ok(!tl.some((e) => e.run_id === 'other'));
});

test('plain text never carries control characters from the log', () => {
  const tl = runTimeline(events, runTree(events, 'r1')!);
  const text = renderTimeline(tl) + renderRunList(listRuns(events));
  assert.doesNotMatch(text.replace(/\n/g, ''), /[\u0000-\u001f\u007f]/);
  assert.match(renderTimeline(tl), /deny by rule Read\(\.\/b\) \(second  \[31mreason next line\)/);
  assert.equal(renderTimeline(tl).split('\n').length, tl.length + 2, 'one line per entry');
});

test('parseSince: spans back from now and ISO dates; anything else is undefined', () => {
  const now = Date.parse('2026-03-10T00:00:00Z');
  assert.equal(parseSince('12h', now)!.toISOString(), '2026-03-09T12:00:00.000Z');
  assert.equal(parseSince('7d', now)!.toISOString(), '2026-03-03T00:00:00.000Z');
  assert.equal(parseSince('30m', now)!.toISOString(), '2026-03-09T23:30:00.000Z');
  assert.equal(parseSince('2026-03-01', now)!.toISOString(), '2026-03-01T00:00:00.000Z');
  assert.equal(parseSince('yesterday', now), undefined);
});

test('the status filter accepts every status the audit log records (budget_exhausted included) and running', () => {
  assert.deepEqual([...RUN_STATUSES].sort(), ['running', ...AuditRunStatus.options].sort());
  assert.ok(RUN_STATUSES.includes('budget_exhausted'));
});
