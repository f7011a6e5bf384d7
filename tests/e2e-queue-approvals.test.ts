// Approvals for `ask` rules in queue mode, end to end on a real Redis: the run executes on a worker
// process, its question reaches the client of the front that started it (elicitation, as embedded), and
// the answer comes back to the worker's gate, which decides and audits as ever. Same world as
// e2e-queue.test.ts (separate processes of the built CLI, the mock model, a key prefix per test).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeTree } from './helpers.js';
import { defaultHandler, startMockModel, type MockModel } from './mock-model/server.js';
import { MODEL, World, redisOrSkip, structured } from './queue-world.js';

const available = await redisOrSkip();

const ASKER = `name: asker
description: Test agent whose reads under secret/ need approval.
model: ${MODEL}
max_turns: 4
permissions:
  allow: [Read(**)]
  ask: ["Read(secret/**)"]
`;
// Delegates to asker: the child's question has no client to go to, as for an embedded delegation.
const LEAD = `name: lead
description: Test agent that delegates to asker.
model: ${MODEL}
max_turns: 4
agents: [asker]
permissions:
  allow: [Read(**)]
`;

const readSecret = '[[tool:read_file {"path":"secret/plan.txt"}]]';

describe('queue mode: approvals for ask rules', { skip: !available }, () => {
  let mock: MockModel;
  before(async () => {
    mock = await startMockModel();
  });
  after(async () => {
    await mock?.close();
  });

  /** A world with one worker; `askTimeoutS` on every node. */
  async function world(askTimeoutS: number): Promise<World> {
    const w = new World(mock, { asker: ASKER, lead: LEAD }, { tools: { askTimeoutS } });
    writeTree(w.ws, { 'secret/plan.txt': 'PLAN-CONTENT' });
    await w.worker('a');
    return w;
  }

  /** What the worker's gate fed the model for the run's first tool call, and the run's tool decisions in the worker's audit. */
  function onWorker(w: World, runId: string): { decisions: any[]; denials: any[] } {
    const ev = w.auditEvents('a').filter((e) => e.run_id === runId);
    return { decisions: ev.filter((e) => e.event === 'tool_call'), denials: ev.filter((e) => e.event === 'permission_denied') };
  }

  test("a question from the worker reaches the starting front's client (both MCP eras): allow_once runs the call, deny refuses it; the other front is never asked; the worker audits it", async () => {
    mock.reset();
    const w = await world(30);
    try {
      const answers: string[] = [];
      const asked: any[] = [];
      const fa = await w.stdioFront('fa', [], {}, { elicit: async (p) => (asked.push(p), { action: 'accept', content: { decision: answers.shift() } }) });
      const otherAsked: any[] = [];
      // The other front speaks MCP 2026-07-28: its runs ask with input_required results (input-required.ts).
      const fb = await w.stdioFront('fb', [], {}, { era: 'modern', elicit: async (p) => (otherAsked.push(p), { action: 'accept', content: { decision: 'allow_once' } }) });

      answers.push('allow_once');
      const ok = structured(await fa.client.callTool({ name: 'delegate', arguments: { agent: 'asker', task: readSecret } }, { timeout: 30_000 }));
      assert.equal(ok.status, 'ok', JSON.stringify(ok));
      assert.match(ok.output, /PLAN-CONTENT/);
      assert.equal(asked.length, 1);
      assert.match(asked[0].message, /^agent asker wants to read `secret\/plan\.txt`\. Rule "Read\(secret\/\*\*\)" requires your approval/);
      const approved = onWorker(w, ok.run_id);
      assert.deepEqual(approved.decisions.map((d) => [d.tool, d.decision, d.rule]), [['read_file', 'ask_approved', 'Read(secret/**)']]);
      assert.match(approved.decisions[0].node, /^worker-/);

      answers.push('deny');
      const no = structured(await fa.client.callTool({ name: 'delegate', arguments: { agent: 'asker', task: readSecret } }, { timeout: 30_000 }));
      assert.equal(no.status, 'ok', JSON.stringify(no));
      assert.equal(no.output, 'done: permission denied: the user denied the request to read `secret/plan.txt` (rule "Read(secret/**)" requires approval)');
      assert.equal(asked.length, 2);
      const refused = onWorker(w, no.run_id);
      assert.deepEqual(refused.decisions.map((d) => d.decision), ['ask_denied']);
      assert.deepEqual(refused.denials.map((d) => d.reason), ['the user denied it']);

      // An agent tool called directly asks the same way (the call's own asker, not the session's).
      answers.push('allow_once');
      const direct = structured(await fa.client.callTool({ name: 'asker', arguments: { task: readSecret } }, { timeout: 30_000 }));
      assert.match(direct.output, /PLAN-CONTENT/);
      assert.equal(asked.length, 3);

      assert.equal(otherAsked.length, 0, 'the front that did not start the run is never asked');
      const modern = structured(await fb.client.callTool({ name: 'asker', arguments: { task: readSecret } }, { timeout: 30_000 }));
      assert.match(modern.output, /PLAN-CONTENT/);
      assert.equal(otherAsked.length, 1);
      assert.equal(asked.length, 3);
    } finally {
      await w.close();
    }
  });

  test('no answer within the ask timeout: denied with the reason, never a hang', async () => {
    mock.reset();
    const w = await world(3);
    try {
      let asked = 0;
      const fa = await w.stdioFront('fa', [], {}, { elicit: () => (asked++, new Promise(() => {})) });
      const t0 = Date.now();
      const r = structured(await fa.client.callTool({ name: 'delegate', arguments: { agent: 'asker', task: readSecret } }, { timeout: 30_000 }));
      console.log(`# denied after ${Date.now() - t0} ms (ask timeout 3 s)`);
      assert.equal(asked, 1);
      assert.equal(r.output, 'done: permission denied: approval needed but no client could answer (no answer within 3 s); rule "Read(secret/**)" requires approval to read `secret/plan.txt`');
      assert.deepEqual(onWorker(w, r.run_id).decisions.map((d) => d.decision), ['ask_denied']);
    } finally {
      await w.close();
    }
  });

  test('the front that started the run is gone while its question waits: the worker denies with a reason naming it, before the ask timeout', async () => {
    mock.reset();
    const w = await world(60);
    try {
      let asked!: () => void;
      const questionIn = new Promise<void>((r) => (asked = r));
      const fa = await w.stdioFront('fa', [], {}, { elicit: () => (asked(), new Promise(() => {})) });
      const call = fa.client.callTool({ name: 'delegate', arguments: { agent: 'asker', task: readSecret, background: true } });
      const runId = structured(await call).run_id as string;
      await Promise.race([questionIn, new Promise((_, reject) => setTimeout(() => reject(new Error("the question never reached the front's client")), 20_000).unref())]);
      const t0 = Date.now();
      process.kill(fa.transport.pid!, 'SIGKILL');
      // The worker goes on with the run: its next model request carries the denial.
      const end = Date.now() + 30_000;
      let denial: any;
      while (!(denial = onWorker(w, runId).denials[0]) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      console.log(`# denied ${Date.now() - t0} ms after the front was killed (ask timeout 60 s)`);
      assert.ok(denial, 'the worker denied the call');
      assert.match(denial.reason, /^approval needed but no client could answer: the front that started this run \(front-\S+\) is not answering: it stopped listening on Redis \(it stopped or restarted\)$/);
      // The run goes on without the call and ends as usual.
      let runEnd: any;
      while (!(runEnd = w.auditEvents('a').find((e) => e.event === 'run_end' && e.run_id === runId)) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      assert.equal(runEnd?.status, 'ok');
    } finally {
      await w.close();
    }
  });

  test("a delegated child's question is denied, as for an embedded delegation: the root's client is not asked", async () => {
    mock.reset();
    const w = await world(30);
    try {
      let asked = 0;
      const fa = await w.stdioFront('fa', [], {}, { elicit: async () => (asked++, { action: 'accept', content: { decision: 'allow_once' } }) });
      // lead calls agent__asker with a task whose read asks (a scripted turn: directives do not nest).
      mock.setHandler((req) => (req.lastUserText.includes('hand it on') && !req.toolResults.length ? { toolCalls: [{ name: 'agent__asker', arguments: { task: readSecret } }] } : defaultHandler(req)));
      const r = structured(await fa.client.callTool({ name: 'delegate', arguments: { agent: 'lead', task: 'hand it on' } }, { timeout: 30_000 }));
      assert.equal(r.status, 'ok', JSON.stringify(r));
      assert.equal(asked, 0);
      const child = w.auditEvents('a').find((e) => e.event === 'permission_denied' && e.agent === 'asker');
      assert.equal(child?.reason, 'approval needed but no client could answer: this run was not started by a client that can be asked');
    } finally {
      await w.close();
    }
  });
});
