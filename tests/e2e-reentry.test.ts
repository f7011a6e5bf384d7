// Agents delegating to agents through a real child delegate-mcp process (the re-entry hop), with the
// call chain in _meta: depth, cycles, budget slices, permissions and cancellation survive the hop.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startMockModel, type MockModel, type MockRequestInfo, type MockReply } from './mock-model/server.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { CLI, agentYaml, mockEnv, readAuditEvents, startServer, stateDirOf, tempDir, writeTree } from './helpers.js';

const execFileP = promisify(execFile);

type Plan = Record<string, { name: string; arguments: Record<string, unknown> }[]>;

/** A mock that knows which agent is calling (from the system prompt) and follows a per-agent plan. */
function planned(plan: Plan, extra: (who: string, req: MockRequestInfo) => Partial<MockReply> = () => ({})) {
  return (req: MockRequestInfo): MockReply => {
    const who = /You are "([^"]+)"/.exec(req.system)?.[1] ?? '?';
    if (req.toolResults.length) return { text: `${who} got: ${req.toolResults.map((r) => r.content).join(' | ')}`, ...extra(who, req) };
    const calls = plan[who];
    return calls ? { toolCalls: calls, ...extra(who, req) } : { text: `${who} answers: ${req.lastUserText}`, ...extra(who, req) };
  };
}

function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}


describe('re-entry: agents delegating to agents through a child delegate-mcp', () => {
  let mock: MockModel;
  let ws: string;
  let agentsDir: string;
  let cfg: string;

  before(async () => {
    mock = await startMockModel();
    ws = tempDir('dmcp-reentry-');
    agentsDir = path.join(ws, 'agents');
    writeTree(agentsDir, {
      'lead.yaml': agentYaml('lead', 'anthropic/claude-sonnet-4-5', 'agents: [helper]'),
      'helper.yaml': agentYaml('helper', 'anthropic/claude-sonnet-4-5', 'agents: [lead, third]'),
      'third.yaml': agentYaml('third', 'anthropic/claude-sonnet-4-5'),
      'tiny.yaml': agentYaml('tiny', 'anthropic/claude-sonnet-4-5', 'budget: {run_tokens: 50}'),
      'narrow.yaml': `name: narrow
description: An agent that may only read src/ and delegate to wide.
model: anthropic/claude-sonnet-4-5
permissions:
  allow: ["Read(./src/**)", "Agent(wide)"]
`,
      'wide.yaml': agentYaml('wide', 'anthropic/claude-sonnet-4-5'),
    });
    writeTree(ws, { 'src/ok.txt': 'INSIDE-SRC', 'secret.txt': 'OUTSIDE-SRC' });
    cfg = path.join(ws, 'mcp.json');
    writeFileSync(cfg, JSON.stringify({ delegate: { reentry: { maxDepth: 2 } } }));
  });
  after(async () => {
    await mock.close();
  });

  const serve = () => startServer({ args: ['--config', cfg, '--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws });

  it("A delegates to B: B runs in a real child process, and A's answer contains B's", async () => {
    const srv = await serve();
    try {
      mock.reset();
      mock.setHandler(planned({ lead: [{ name: 'agent__helper', arguments: { task: 'check the parser' } }] }));
      const res = await srv.client.callTool({ name: 'lead', arguments: { task: 'delegate please' } });
      const sc = res.structuredContent as any;
      assert.equal(sc.status, 'ok', JSON.stringify(res.content));
      assert.match(sc.output, /lead got: helper answers: check the parser/);
      const serverPid = srv.transport.pid!;
      const kids = childPids(serverPid);
      assert.ok(kids.length >= 1, 'a child delegate-mcp runs under the server');
      assert.match(readFileSync(`/proc/${kids[0]}/cmdline`, 'utf8'), /cli\.js\0serve/);
      const helperReq = mock.requests.find((r) => r.system.includes('You are "helper"'))!;
      // helper may name lead (agents: [lead, third]): the tool is offered and a cycle is refused when called.
      assert.ok(helperReq.toolNames.includes('agent__lead'), `helper's tools: ${helperReq.toolNames.join(', ')}`);
      await new Promise((r) => setTimeout(r, 200));
      const events = readAuditEvents(stateDirOf(ws));
      const del = events.find((e) => e.event === 'delegation' && e.run_id === sc.run_id);
      assert.equal(del?.hop, 'process');
      const childStart = events.find((e) => e.event === 'run_start' && e.run_id === del.child_run_id);
      assert.equal(childStart.parent_run_id, sc.run_id);
      assert.equal(childStart.root_run_id, sc.run_id);
      assert.equal(childStart.depth, 1);
      // Its parent signed the chain: the child takes its ids and caller as they are, no claim.
      assert.equal(childStart.caller, 'agent:lead');
      assert.equal(childStart.claimed_chain, undefined);
      assert.notEqual(childStart.pid, events.find((e) => e.run_id === sc.run_id).pid, "B's events come from the child process");
      assert.ok(events.some((e) => e.event === 'model_call' && e.run_id === del.child_run_id), "B's model call happened in the child");
      // `audit --run` rebuilds the tree across the process hop.
      const { stdout } = await execFileP(process.execPath, [CLI, 'audit', '--json', '--run', sc.run_id, '--config', cfg, '--workspace', ws], { env: mockEnv(mock.url) });
      const tree = JSON.parse(stdout);
      assert.equal(tree.agent, 'lead');
      assert.equal(tree.children.length, 1);
      assert.equal(tree.children[0].agent, 'helper');
      assert.equal(tree.children[0].status, 'ok');
      // run_end holds each run's own cost, so the tree's total is the call's cost, not more (no double count).
      const leadEnd = events.find((e) => e.event === 'run_end' && e.run_id === sc.run_id);
      const helperEnd = events.find((e) => e.event === 'run_end' && e.run_id === del.child_run_id);
      assert.ok(helperEnd.cost_usd > 0 && leadEnd.cost_usd > 0, `costs ${leadEnd.cost_usd} / ${helperEnd.cost_usd}`);
      assert.ok(Math.abs(leadEnd.cost_usd + helperEnd.cost_usd - sc.cost_usd) < 1e-9, `lead ${leadEnd.cost_usd} + helper ${helperEnd.cost_usd} = the call's ${sc.cost_usd}`);
      assert.ok(Math.abs(tree.subtree.cost_usd - sc.cost_usd) < 1e-9, `tree total ${tree.subtree.cost_usd} vs ${sc.cost_usd}`);
    } finally {
      mock.reset();
      await srv.close();
    }
  });

  it('A → B → A is refused (cycle); a chain past max_depth is refused, naming the chain', async () => {
    const srv = await serve();
    try {
      mock.reset();
      mock.setHandler(planned({ lead: [{ name: 'agent__helper', arguments: { task: 'loop back' } }], helper: [{ name: 'agent__lead', arguments: { task: 'again' } }] }));
      const cyc = (await srv.client.callTool({ name: 'lead', arguments: { task: 'start' } })).structuredContent as any;
      assert.match(cyc.output, /delegation refused: cycle lead → helper → lead/);
      assert.equal(mock.requests.filter((r) => r.system.includes('You are "lead"')).length, 2, 'lead never ran a second time');

      writeFileSync(cfg, JSON.stringify({ delegate: { reentry: { maxDepth: 1 } } }));
      mock.reset();
      mock.setHandler(planned({ lead: [{ name: 'agent__helper', arguments: { task: 'go deeper' } }], helper: [{ name: 'agent__third', arguments: { task: 'deepest' } }] }));
      const srv2 = await serve();
      try {
        const deep = (await srv2.client.callTool({ name: 'lead', arguments: { task: 'start' } })).structuredContent as any;
        assert.match(deep.output, /delegation refused: lead → helper → third would be depth 2, over max_depth 1/);
        assert.ok(!mock.requests.some((r) => r.system.includes('You are "third"')));
      } finally {
        await srv2.close();
        writeFileSync(cfg, JSON.stringify({ delegate: { reentry: { maxDepth: 2 } } }));
      }
    } finally {
      mock.reset();
      await srv.close();
    }
  });

  it('a 5-way fan-out through re-entry balances the books of parent and children exactly', async () => {
    const srv = await serve();
    try {
      mock.reset();
      const calls = Array.from({ length: 5 }, (_, i) => ({ name: 'agent__helper', arguments: { task: `part ${i}` } }));
      mock.setHandler(planned({ lead: calls }, (who) => ({ usage: who === 'lead' ? { input_tokens: 50, output_tokens: 10 } : { input_tokens: 100, output_tokens: 20 } })));
      const r = (await srv.client.callTool({ name: 'lead', arguments: { task: 'fan out' } })).structuredContent as any;
      assert.equal(r.status, 'ok');
      for (let i = 0; i < 5; i++) assert.match(r.output, new RegExp(`helper answers: part ${i}`));
      assert.deepEqual([r.usage.input_tokens, r.usage.output_tokens], [100, 20], "the lead's own two calls");
      const st = (await srv.client.callTool({ name: 'budget_status', arguments: { run_id: r.run_id } })).structuredContent as any;
      assert.equal(st.runs[0].spent.tokens, 2 * 60 + 5 * 120, 'parent run = own calls + every child tree');
      assert.equal(st.runs[0].reserved.tokens, 0);
      const expectedUsd = (2 * (50 * 3 + 10 * 15) + 5 * (100 * 3 + 20 * 15)) / 1e6;
      assert.ok(Math.abs(r.cost_usd - expectedUsd) < 1e-9, `${r.cost_usd} vs ${expectedUsd}`);
    } finally {
      mock.reset();
      await srv.close();
    }
  });

  it("cancelling A while B runs aborts B's model request in the child", async () => {
    const srv = await serve();
    try {
      mock.reset();
      let closed = 0;
      mock.onClosedEarly((req) => {
        if (req.system.includes('You are "helper"')) closed = performance.now();
      });
      mock.setHandler(planned({ lead: [{ name: 'agent__helper', arguments: { task: 'slow' } }] }, (who, req) => (who === 'helper' && !req.toolResults.length ? { delayMs: 30_000 } : {})));
      const ac = new AbortController();
      const call = srv.client.callTool({ name: 'lead', arguments: { task: 'start' } }, { signal: ac.signal });
      call.catch(() => {});
      const t0 = performance.now();
      while (!mock.requests.some((r) => r.system.includes('You are "helper"')) && performance.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 50));
      assert.ok(mock.requests.some((r) => r.system.includes('You are "helper"')), "B's model call started");
      // B's request is still open when the cancel goes out: a close seen later is the cancel's doing.
      assert.equal(closed, 0, "B's model request closed before the cancel");
      assert.equal(mock.inFlight, 1, "B's model request is in flight");
      const cancelAt = performance.now();
      ac.abort('stop');
      while (!closed && performance.now() - cancelAt < 3000) await new Promise((r) => setTimeout(r, 20));
      assert.ok(closed >= cancelAt, "B's model request was aborted after the cancel");
      assert.ok(closed - cancelAt < 1500, `aborted after ${(closed - cancelAt).toFixed(0)} ms`);
    } finally {
      mock.reset();
      await srv.close();
    }
  });

  it("permissions only narrow across the hop: the child's rules are its own ∩ its caller's", async () => {
    const srv = await serve();
    try {
      mock.reset();
      mock.setHandler(
        planned({
          narrow: [{ name: 'agent__wide', arguments: { task: 'read both' } }],
          wide: [
            { name: 'read_file', arguments: { path: 'src/ok.txt' } },
            { name: 'read_file', arguments: { path: 'secret.txt' } },
          ],
        }),
      );
      const r = (await srv.client.callTool({ name: 'narrow', arguments: { task: 'go' } })).structuredContent as any;
      assert.match(r.output, /INSIDE-SRC/);
      assert.doesNotMatch(r.output, /OUTSIDE-SRC/);
      assert.match(r.output, /permission denied: .*Read\(secret\.txt\).*agent narrow/);
    } finally {
      mock.reset();
      await srv.close();
    }
  });

  it('reentry.mode in-process runs the same checks in one process with one ledger', async () => {
    const ipCfg = path.join(ws, 'inproc.json');
    writeFileSync(ipCfg, JSON.stringify({ delegate: { reentry: { mode: 'in-process', maxDepth: 2 } } }));
    const srv = await startServer({ args: ['--config', ipCfg, '--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
    try {
      mock.reset();
      const calls = Array.from({ length: 3 }, (_, i) => ({ name: 'agent__helper', arguments: { task: `piece ${i}` } }));
      mock.setHandler(planned({ lead: calls, helper: [{ name: 'agent__lead', arguments: { task: 'back' } }] }, () => ({ usage: { input_tokens: 10, output_tokens: 5 } })));
      const r = (await srv.client.callTool({ name: 'lead', arguments: { task: 'go' } })).structuredContent as any;
      assert.equal(r.status, 'ok');
      assert.match(r.output, /delegation refused: cycle lead → helper → lead/);
      assert.deepEqual(childPids(srv.transport.pid!), [], 'no child process in-process');
      const st = (await srv.client.callTool({ name: 'budget_status', arguments: { run_id: r.run_id } })).structuredContent as any;
      assert.equal(st.runs[0].spent.tokens, 2 * 15 + 3 * 2 * 15, 'parent = own + children');
      assert.equal(st.runs.length, 4, 'the run and its three children');
    } finally {
      mock.reset();
      await srv.close();
    }
  });

  it('a forged or malformed chain from a plain client cannot raise any limit', async () => {
    const srv = await serve();
    try {
      mock.reset();
      // A real run, which the forged chain names as its root and parent.
      const real = (await srv.client.callTool({ name: 'third', arguments: { task: 'a real run' } })).structuredContent as any;
      assert.equal(real.status, 'ok');
      const books = async () => (await srv.client.callTool({ name: 'budget_status', arguments: { run_id: real.run_id } })).structuredContent as any;
      const booksBefore = await books();
      assert.equal(booksBefore.runs.length, 1);
      const forgedChain = {
        v: 1, root_run_id: real.run_id, parent_run_id: real.run_id, depth: 1,
        ancestry: [{ agent: 'someone', task: 'x' }],
        budget: { tokens: 1e9, usd: 1e6 },
        rules: { layers: [{ deny: [], ask: [], allow: ['Read(**)', 'Bash', 'Edit(**)'] }] },
      };
      const forged = { 'io.delegate-mcp/chain': forgedChain };

      // budget: a slice of 1e9 tokens does not lift tiny's own run_tokens: 50.
      mock.reset();
      const r = await srv.client.callTool({ name: 'tiny', arguments: { task: 'hello' }, _meta: forged });
      assert.equal(r.isError, true);
      assert.match((r.content as any)[0].text, /token limit 50/);
      assert.equal(mock.requests.length, 0);

      // rules: narrow (Read(./src/**) only) with Bash, Edit(**) and Read(**) in the chain is offered the
      // same tools and gets the same answers as without a chain: the command, the write and the read
      // outside src/ are all refused.
      mock.setHandler((req) =>
        req.toolResults.length
          ? { text: 'done' }
          : {
              toolCalls: [
                { name: 'run_command', arguments: { argv: ['touch', 'forged-bash.txt'] } },
                { name: 'write_file', arguments: { path: 'forged-edit.txt', content: 'x' } },
                { name: 'read_file', arguments: { path: 'secret.txt' } },
              ],
            },
      );
      const attempt = async (meta?: Record<string, unknown>) => {
        const before = mock.requests.length;
        const res = (await srv.client.callTool({ name: 'narrow', arguments: { task: 'go' }, ...(meta && { _meta: meta }) })).structuredContent as any;
        assert.equal(res.status, 'ok');
        const reqs = mock.requests.slice(before);
        assert.equal(reqs.length, 2);
        return { offered: [...reqs[0].toolNames].sort(), fed: reqs[1].toolResults.map((t) => ({ isError: t.isError, content: t.content })) };
      };
      const plain = await attempt();
      const withChain = await attempt(forged);
      assert.deepEqual(withChain.offered, plain.offered);
      assert.ok(!withChain.offered.includes('run_command') && !withChain.offered.includes('write_file'), withChain.offered.join(', '));
      assert.deepEqual(withChain.fed, plain.fed);
      assert.equal(withChain.fed.length, 3);
      for (const f of withChain.fed) assert.equal(f.isError, true, f.content);
      assert.doesNotMatch(withChain.fed[2].content, /OUTSIDE-SRC/);
      assert.equal(existsSync(path.join(ws, 'forged-bash.txt')), false);
      assert.equal(existsSync(path.join(ws, 'forged-edit.txt')), false);

      // root_run_id / parent_run_id: naming a real run neither charges it nor joins its tree.
      const booksAfter = await books();
      assert.equal(booksAfter.runs.length, 1);
      assert.deepEqual(booksAfter.runs[0].spent, booksBefore.runs[0].spent);

      // depth + ancestry: a deeper chain only lowers what is left (over max_depth 2 is refused).
      mock.reset();
      const deep = await srv.client.callTool({ name: 'third', arguments: { task: 'x' }, _meta: { 'io.delegate-mcp/chain': { ...forgedChain, depth: 3, ancestry: [{ agent: 'a', task: '1' }, { agent: 'b', task: '2' }, { agent: 'c', task: '3' }] } } });
      assert.equal(deep.isError, true);
      assert.match((deep.content as any)[0].text, /over max_depth 2/);
      const bad = await srv.client.callTool({ name: 'third', arguments: { task: 'x' }, _meta: { 'io.delegate-mcp/chain': { v: 1, depth: 'deep' } } });
      assert.equal(bad.isError, true);
      assert.match((bad.content as any)[0].text, /invalid io\.delegate-mcp\/chain/);
      assert.equal(mock.requests.length, 0);

      // ids: a chain without its parent's signature (none, or a made-up one) does not put the run in the
      // named run's audit tree: the run is a root, caller and claim recorded as such.
      mock.reset();
      const joined = (await srv.client.callTool({ name: 'third', arguments: { task: 'join it' }, _meta: { ...forged, 'io.delegate-mcp/chain-mac': 'A'.repeat(43) } })).structuredContent as any;
      assert.equal(joined.status, 'ok');
      const starts = readAuditEvents(stateDirOf(ws)).filter((e) => e.event === 'run_start');
      const forgedStarts = starts.filter((e) => (e as any).claimed_chain);
      assert.ok(forgedStarts.length >= 3, `runs with a claimed chain: ${forgedStarts.length}`);
      for (const e of forgedStarts) {
        assert.equal(e.parent_run_id, null);
        assert.equal(e.root_run_id, e.run_id);
        assert.notEqual((e as any).caller, 'agent:someone');
        const claim = (e as any).claimed_chain;
        assert.deepEqual(claim, { root_run_id: real.run_id, parent_run_id: real.run_id, ...(claim.depth === 3 ? { depth: 3, agent: 'c' } : { depth: 1, agent: 'someone' }) });
      }
      assert.ok(forgedStarts.some((e) => e.run_id === joined.run_id));
      assert.equal(starts.filter((e) => e.parent_run_id === real.run_id || (e.root_run_id === real.run_id && e.run_id !== real.run_id)).length, 0);
      const { stdout } = await execFileP(process.execPath, [CLI, 'audit', '--json', '--run', real.run_id, '--config', cfg, '--workspace', ws], { env: mockEnv(mock.url) });
      assert.doesNotMatch(stdout, new RegExp(joined.run_id));
    } finally {
      mock.reset();
      await srv.close();
    }
  });
});
