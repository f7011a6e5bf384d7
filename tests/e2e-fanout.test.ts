// Fan-out, progress, cancellation, backpressure, crash isolation and background runs, end to end
// through the built server over stdio with a real MCP client and the mock model server.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { startMockModel, type MockModel } from './mock-model/server.js';
import { agentYaml, mockEnv, startServer, tempDir, writeTree } from './helpers.js';

describe('fan-out and run control', () => {
  let mock: MockModel;
  let ws: string;
  let agentsDir: string;

  before(async () => {
    mock = await startMockModel();
    ws = tempDir('dmcp-fan-');
    agentsDir = path.join(ws, 'agents');
    writeTree(agentsDir, {
      'worker-a.yaml': agentYaml('worker-a', 'openai-chat/llama-test'),
      'worker-b.yaml': agentYaml('worker-b', 'anthropic/claude-test-1'),
    });
  });
  after(async () => {
    await mock.close();
  });

  const serve = (extraArgs: string[] = []) =>
    startServer({ args: ['--agents', agentsDir, '--workspace', ws, ...extraArgs], env: mockEnv(mock.url), cwd: ws });

  it('32 delegate_parallel tasks with a 1 s model run concurrently: 32 requests in flight at the mock at once', async () => {
    const srv = await serve();
    try {
      // Warm both worker threads and both adapters once: thread start-up and the first-run JIT of a
      // cold worker are not what this checks.
      const warm = Array.from({ length: 8 }, (_, i) => ({ agent: i % 2 ? 'worker-a' : 'worker-b', task: `warm ${i}` }));
      await srv.client.callTool({ name: 'delegate_parallel', arguments: { tasks: warm } });
      mock.reset();
      mock.setHandler((req) => ({ text: `answer for ${req.lastUserText}`, delayMs: 1000 }));
      const tasks = Array.from({ length: 32 }, (_, i) => ({ agent: i % 2 ? 'worker-a' : 'worker-b', task: `task ${i}` }));
      const progress: string[] = [];
      const t0 = performance.now();
      const res: any = await srv.client.callTool({ name: 'delegate_parallel', arguments: { tasks } }, { onprogress: (p) => progress.push(p.message ?? '') });
      const wall = performance.now() - t0;
      // The client dispatches notifications asynchronously; let the ones that preceded the result land.
      await new Promise((r) => setTimeout(r, 50));
      const sc = res.structuredContent as any;
      assert.equal(sc.ok, 32, JSON.stringify(sc.results.filter((r: any) => r.status !== 'ok').slice(0, 2)));
      assert.equal(sc.results.length, 32);
      sc.results.forEach((r: any, i: number) => {
        assert.equal(r.index, i);
        assert.equal(r.output, `answer for task ${i}`, 'results come back in input order');
        assert.ok(r.usage.output_tokens > 0);
      });
      assert.equal(mock.requests.length, 32);
      // The claim: all 32 model requests were open at the mock together (none waited for another).
      assert.equal(mock.maxInFlight, 32, `mock saw ${mock.maxInFlight} requests at once`);
      // A sanity bound only (32 × 1 s in sequence would be 32 s); the precise wall time (≤ 1.1 s target)
      // is measured by npm run bench, where noise is averaged, not retried away.
      assert.ok(wall < 3000, `wall ${wall.toFixed(0)} ms`);
      // Task progress is aggregated into this one call's progress as done/total. (The SDK client drops
      // notifications it handles after the response, so the very last lines may not arrive.)
      const counts = progress.map((m) => /^(\d+)\/32 done/.exec(m)).filter(Boolean).map((m) => Number(m![1]));
      assert.ok(counts.length >= 16, `aggregated progress lines: ${counts.length}`);
      assert.ok(counts.every((c, i) => i === 0 || c >= counts[i - 1]), 'done counts never go back');
    } finally {
      mock.reset();
      await srv.close();
    }
  });

  it('after the model server closes idle keep-alive connections, the next fan-out neither waits nor retries', async () => {
    // An idle worker must keep its event loop turning: one parked in Atomics.wait never sees the
    // sockets close, reuses dead ones, and each such call waits out the SDK's retry backoff.
    // Idle connections close after 1 s (Node's default is 5 s): the same event, sooner.
    const idleMock = await startMockModel({ keepAliveTimeoutMs: 1000 });
    const srv = await startServer({ args: ['--agents', agentsDir, '--workspace', ws], env: mockEnv(idleMock.url), cwd: ws });
    try {
      idleMock.setHandler(() => ({ text: 'fine', delayMs: 400 }));
      const fan = async () => {
        const lines: string[] = [];
        const t0 = performance.now();
        const results = await Promise.all(
          Array.from({ length: 32 }, (_, i) =>
            srv.client.callTool({ name: i % 2 ? 'worker-a' : 'worker-b', arguments: { task: `idle test ${i}` } }, { onprogress: (p) => lines.push(p.message ?? '') }),
          ),
        );
        assert.deepEqual(results.map((r) => (r.structuredContent as any)?.status), Array(32).fill('ok'), JSON.stringify(results.find((r) => r.isError)));
        return { wall: performance.now() - t0, retries: lines.filter((l) => /retrying/.test(l)) };
      };
      await fan(); // opens 32 keep-alive connections
      // Which call lands on a dead socket is up to timing, so the idle spell is repeated.
      for (let round = 0; round < 2; round++) {
        // The mock has closed them for 2 s (a loaded worker notices within that; the original test waited 1.5 s
        // past Node's 5 s): a socket still taken after that was never seen to close.
        await new Promise((r) => setTimeout(r, 3000));
        const again = await fan();
        assert.deepEqual(again.retries, [], `round ${round + 1}: no model call had to be retried`);
        // A call on a dead socket costs a second 400 ms request plus the SDK's backoff (≥ 500 ms): ≥ 1.3 s.
        // The bound leaves room for a loaded machine (seen: 876 ms with another suite running beside it).
        assert.ok(again.wall < 1200, `round ${round + 1}: the fan-out took ${again.wall.toFixed(0)} ms (model: 400 ms)`);
      }
    } finally {
      await srv.close();
      await idleMock.close();
    }
  });

  it('one failing task never fails the others', async () => {
    const srv = await serve();
    try {
      mock.setHandler((req) => (req.lastUserText.includes('boom') ? { error: { status: 400, message: 'bad request from mock' } } : { text: 'fine' }));
      const res = await srv.client.callTool({
        name: 'delegate_parallel',
        arguments: { tasks: [{ agent: 'worker-a', task: 'ok 1' }, { agent: 'worker-a', task: 'boom' }, { agent: 'nope', task: 'x' }, { agent: 'worker-b', task: 'ok 2' }] },
      });
      const sc = res.structuredContent as any;
      assert.deepEqual(sc.results.map((r: any) => r.status), ['ok', 'error', 'error', 'ok']);
      assert.match(sc.results[1].error, /400/);
      assert.match(sc.results[2].error, /unknown agent "nope"/);
    } finally {
      mock.reset();
      await srv.close();
    }
  });

  it('a long run sends progress at least every 10 s; cancelling aborts the model request within 1 s', async () => {
    const srv = await serve();
    try {
      let closedAt = 0;
      mock.onClosedEarly(() => (closedAt = performance.now()));
      mock.setHandler(() => ({ text: 'too late', delayMs: 60_000 }));
      const ac = new AbortController();
      const stamps: number[] = [];
      const t0 = performance.now();
      const call = srv.client.callTool(
        { name: 'worker-b', arguments: { task: 'think for a long time' } },
        { signal: ac.signal, onprogress: () => stamps.push(performance.now()), resetTimeoutOnProgress: true },
      );
      call.catch(() => {});
      await new Promise((r) => setTimeout(r, 11_500));
      assert.equal(mock.inFlight, 1, 'the model request is in flight');
      assert.equal(closedAt, 0, 'the model request was not closed before the cancel');
      const gaps = stamps.map((s, i) => s - (i ? stamps[i - 1] : t0));
      assert.ok(stamps.length >= 3, `progress notifications: ${stamps.length}`);
      assert.ok(Math.max(...gaps, performance.now() - stamps[stamps.length - 1]) < 10_000, `gaps ${gaps.map((g) => g.toFixed(0))}`);
      const cancelAt = performance.now();
      ac.abort('user pressed stop');
      await assert.rejects(call);
      while (!closedAt && performance.now() - cancelAt < 3000) await new Promise((r) => setTimeout(r, 20));
      assert.ok(closedAt >= cancelAt, 'the mock saw the connection close after the cancel');
      assert.ok(closedAt - cancelAt < 1000, `aborted after ${(closedAt - cancelAt).toFixed(0)} ms`);
      mock.reset();
      const next = await srv.client.callTool({ name: 'worker-b', arguments: { task: 'next' } });
      assert.equal((next.structuredContent as any).status, 'ok');
    } finally {
      mock.reset();
      await srv.close();
    }
  });

  it('timeout_s ends a run with status timeout and aborts its model request', async () => {
    const srv = await serve();
    try {
      mock.setHandler(() => ({ text: 'slow', delayMs: 30_000 }));
      const t0 = performance.now();
      const res = await srv.client.callTool({ name: 'delegate', arguments: { agent: 'worker-a', task: 'slow one', timeout_s: 1 } });
      assert.equal(res.isError, true);
      assert.match((res.content as any)[0].text, /timeout/);
      assert.ok(performance.now() - t0 < 2500);
      assert.equal((res.structuredContent as any).status, 'timeout');
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(mock.inFlight, 0);
    } finally {
      mock.reset();
      await srv.close();
    }
  });

  it('a run whose worker crashes (heap limit) returns isError and the next call succeeds', async () => {
    const cfg = path.join(ws, 'crash.json');
    writeFileSync(cfg, JSON.stringify({ delegate: { pool: { maxThreads: 1, maxOldGenerationSizeMb: 32 } } }));
    const srv = await serve(['--config', cfg]);
    try {
      // A tool call whose arguments parse into millions of objects, far more than the worker's heap
      // holds: the worker dies of OOM while parsing them. That takes ~9 s here, 17 s on a loaded machine:
      // the call's timeout bounds a hang, not a speed.
      const many = new Array(3_000_000).fill({ a: 1 });
      let first = true;
      mock.setHandler(() => {
        if (!first) return { text: 'the worker survived' };
        first = false;
        return { toolCalls: [{ name: 'read_file', arguments: { path: 'x', many } }] };
      });
      const res = await srv.client.callTool({ name: 'worker-a', arguments: { task: 'explode' } }, { timeout: 60_000 }).catch((e) => { throw new Error(`${e}; server stderr: ${srv.stderr()}`); });
      assert.equal(res.isError, true);
      assert.match((res.content as any)[0].text, /worker/i);
      mock.reset();
      const next = await srv.client.callTool({ name: 'worker-a', arguments: { task: 'after the crash' } });
      assert.equal(next.isError, undefined, `after the crash: ${JSON.stringify(next.content)}; server stderr: ${srv.stderr()}`);
      assert.equal((next.structuredContent as any).status, 'ok', JSON.stringify(next.content));
    } finally {
      mock.reset();
      await srv.close();
    }
  });

  it('with a small queue, excess calls get "server busy" at once', async () => {
    const cfg = path.join(ws, 'small.json');
    writeFileSync(cfg, JSON.stringify({ delegate: { pool: { maxThreads: 1, concurrentTasksPerWorker: 2, maxQueue: 1 } } }));
    const srv = await serve(['--config', cfg]);
    try {
      mock.setHandler(() => ({ text: 'slow', delayMs: 1500 }));
      const calls = Array.from({ length: 5 }, (_, i) => srv.client.callTool({ name: 'worker-a', arguments: { task: `t${i}` } }));
      const t0 = performance.now();
      const busy = await Promise.race(calls.slice(3));
      assert.ok(performance.now() - t0 < 500, 'busy answer is immediate');
      assert.equal(busy.isError, true);
      assert.match((busy.content as any)[0].text, /server busy: 2 runs running, 1 queued \(limit 2 running \+ 1 queued\), retry later/);
      const all = await Promise.all(calls);
      assert.deepEqual(all.map((r) => (r.structuredContent as any)?.status ?? 'busy'), ['ok', 'ok', 'ok', 'busy', 'busy']);
    } finally {
      mock.reset();
      await srv.close();
    }
  });

  it('a run cancelled the moment it starts ends cancelled at once (the cancel may overtake its task)', async () => {
    const srv = await serve();
    try {
      mock.setHandler(() => ({ text: 'too late', delayMs: 5000 }));
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now();
        const started = await srv.client.callTool({ name: 'delegate', arguments: { agent: 'worker-a', task: `cancel me ${i}`, background: true } });
        const runId = (started.structuredContent as any).run_id;
        await srv.client.callTool({ name: 'run_cancel', arguments: { run_id: runId } });
        const res = await srv.client.callTool({ name: 'run_result', arguments: { run_id: runId, wait_s: 10 } });
        const ms = performance.now() - t0;
        assert.equal((res.structuredContent as any)?.status, 'cancelled', JSON.stringify(res).slice(0, 300));
        // Well under the 2 s cancel grace: the worker acted on the cancel itself.
        assert.ok(ms < 1500, `run ${i} took ${ms.toFixed(0)} ms to end`);
      }
      const deadline = performance.now() + 2000;
      while (mock.inFlight > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(mock.inFlight, 0, 'no model request left running');
    } finally {
      mock.reset();
      await srv.close();
    }
  });

  it('background runs: start, poll status, fetch result; cancel another one', async () => {
    const srv = await serve();
    try {
      mock.setHandler((req) => (req.lastUserText.includes('forever') ? { text: 'never', delayMs: 60_000 } : { text: 'bg done', delayMs: 400 }));
      const a = await srv.client.callTool({ name: 'delegate', arguments: { agent: 'worker-a', task: 'quick', background: true } });
      const b = await srv.client.callTool({ name: 'delegate', arguments: { agent: 'worker-b', task: 'forever', background: true } });
      const ida = (a.structuredContent as any).run_id;
      const idb = (b.structuredContent as any).run_id;
      assert.equal((a.structuredContent as any).status, 'running');
      const st = await srv.client.callTool({ name: 'run_status', arguments: { run_id: ida } });
      assert.equal((st.structuredContent as any).status, 'running');
      const r = await srv.client.callTool({ name: 'run_result', arguments: { run_id: ida, wait_s: 10 } });
      assert.equal((r.structuredContent as any).status, 'ok');
      assert.equal((r.structuredContent as any).output, 'bg done');
      const c = await srv.client.callTool({ name: 'run_cancel', arguments: { run_id: idb } });
      assert.equal((c.structuredContent as any).status, 'cancelled');
      await new Promise((res) => setTimeout(res, 200));
      assert.equal(mock.inFlight, 0, 'the cancelled run no longer holds a model request');
      const sb = await srv.client.callTool({ name: 'run_status', arguments: { run_id: idb } });
      assert.equal((sb.structuredContent as any).status, 'cancelled');
      const unknown = await srv.client.callTool({ name: 'run_status', arguments: { run_id: 'run_nope' } });
      assert.equal(unknown.isError, true);
    } finally {
      mock.reset();
      await srv.close();
    }
  });
});
