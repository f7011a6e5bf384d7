// Queue mode end to end, on a real Redis (REDIS_URL, default redis://127.0.0.1:6379): fronts and workers
// are separate processes of the built CLI, driven by the real MCP client, against the mock model server.
// Each test uses its own key prefix and deletes its keys afterwards. Without Redis the tests print a skip,
// and fail under CI=true.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import path from 'node:path';
import { CLI, agentYaml, mockEnv, runCli, startServer, tempDir, writeTree, type ServerHandle } from './helpers.js';
import { connectClient } from './http-helpers.js';
import { startMockModel, type MockModel } from './mock-model/server.js';
import { MODEL, REDIS_URL, World, cuttableRedis, redisOrSkip, structured, holdModel } from './queue-world.js';

const available = await redisOrSkip();

describe('queue mode (BullMQ on Redis)', { skip: !available }, () => {
  let mock: MockModel;
  before(async () => {
    mock = await startMockModel();
  });
  after(async () => {
    await mock?.close();
  });

  test('64 delegate_parallel tasks at 1 s model latency run as one wave: all 64 model requests in flight at once, on both workers', async () => {
    mock.reset();
    const w = new World(mock, { fast: agentYaml('fast', MODEL) });
    try {
      mock.setHandler((req) => ({ text: `answer: ${req.lastUserText}`, delayMs: 1000 }));
      const [wa] = await Promise.all([w.worker('a', ['--concurrency', '32']), w.worker('b', ['--concurrency', '32'])]);
      const front = await w.stdioFront('front');
      // Warm both workers' pools (first-run costs are not the queue's).
      await front.client.callTool({ name: 'delegate_parallel', arguments: { tasks: Array.from({ length: 8 }, (_, i) => ({ agent: 'fast', task: `warm ${i}` })) } });
      mock.maxInFlight = mock.inFlight;
      const t0 = Date.now();
      const res = await front.client.callTool({ name: 'delegate_parallel', arguments: { tasks: Array.from({ length: 64 }, (_, i) => ({ agent: 'fast', task: `task ${i}` })) } }, { timeout: 30_000 });
      const elapsed = Date.now() - t0;
      const s = structured(res);
      assert.equal(s.ok, 64, JSON.stringify(s.results.find((r: any) => r.status !== 'ok')));
      assert.equal(s.results[17].output, 'answer: task 17');
      if (process.env.QUEUE_DEBUG) {
        for (const n of ['a', 'b']) {
          const ev = w.auditEvents(n).filter((e) => Date.parse(e.ts) >= t0);
          const span = (k: string) => ev.filter((e) => e.event === k).map((e) => Date.parse(e.ts) - t0).sort((x, y) => x - y);
          const st = span('run_start'), en = span('run_end'), mc = span('model_call');
          console.log(n, 'start', st[0], st.at(-1), 'model_call', mc[0], mc.at(-1), 'end', en[0], en.at(-1), 'lat', ev.filter((e) => e.event === 'model_call').map((e) => e.latency_ms).sort((x, y) => x - y).at(-1));
        }
      }
      // The structural fact: the queue hop holds nothing back, so every task's model request is in flight at
      // the same time and the batch is one 1 s wave (a second wave would take ≥ 2 s). The ≤ 1.3 s figure is
      // a timing, measured by the bench (bench/queue.ts), not here: on a shared 2-core machine it swings
      // by hundreds of milliseconds with load alone.
      assert.equal(mock.maxInFlight, 64, `model requests in flight at once: ${mock.maxInFlight} of 64`);
      assert.ok(elapsed < 2000, `64 tasks took ${elapsed} ms: more than one 1 s wave`);
      console.log(`# 64 tasks over the queue: ${elapsed} ms`);
      // Where they ran: each worker's own audit log, every event stamped with its node and run id.
      const ends = (node: string) => w.auditEvents(node).filter((e) => e.event === 'run_end' && e.agent === 'fast');
      const a = ends('a').length;
      const b = ends('b').length;
      assert.equal(a + b, 72, `runs ended on a: ${a}, b: ${b}`);
      assert.ok(a > 0 && b > 0, `work on both workers (a: ${a}, b: ${b})`);
      const nodes = new Set(w.auditEvents('a').map((e) => e.node));
      assert.equal(nodes.size, 1);
      assert.match([...nodes][0], /^worker-/);
    } finally {
      await w.close();
    }
  });

  test('run_status / run_result / run_cancel from a second front; the cancel aborts the model request in ≤ 1 s; a front reads the event stream only to follow another front\'s run', async () => {
    mock.reset();
    const w = new World(mock, { slow: agentYaml('slow', MODEL) });
    const { Queue } = await import('bullmq');
    const { Redis } = await import('ioredis');
    const redis = new Redis(REDIS_URL);
    const queue = new Queue('runs', { connection: redis, prefix: w.prefix });
    /** Connections reading this queue's event stream (BullMQ names them). */
    const streamReaders = async () => (await queue.getQueueEvents()).length;
    try {
      mock.setHandler((req) =>
        req.lastUserText.includes('hang') ? { text: 'late', delayMs: 30_000 } : req.lastUserText.includes('6 s') ? { text: 'slow answer', delayMs: 6000 } : { text: `answer: ${req.lastUserText}`, delayMs: 200 },
      );
      await w.worker('a');
      const [fa, fb] = await Promise.all([w.httpFront('fa'), w.httpFront('fb')]);
      const ca = await connectClient(fa.url, 'modern');
      const cb = await connectClient(fb.url, 'modern');
      // Progress from the worker reaches the client, with a heartbeat at least every 5 s.
      const beats: number[] = [];
      const asked = Date.now();
      const slowRes = await ca.callTool({ name: 'delegate', arguments: { agent: 'slow', task: 'take 6 s' } }, { onprogress: () => beats.push(Date.now()), resetTimeoutOnProgress: true, timeout: 20_000 });
      assert.equal(structured(slowRes).status, 'ok', JSON.stringify(slowRes));
      assert.ok(beats.length >= 2, `${beats.length} progress notifications`);
      const stamps = [asked, ...beats, Date.now()];
      const gaps = stamps.slice(1).map((t, i) => t - stamps[i]);
      assert.ok(Math.max(...gaps) <= 5000, `progress gaps ${gaps.join(', ')} ms`);
      assert.equal(await streamReaders(), 0, "every front hears its own runs' progress and ends on its runs channel: nobody reads every job's events");
      // A finished run, fetched from the other front.
      const quick = structured(await ca.callTool({ name: 'delegate', arguments: { agent: 'slow', task: 'quick one', background: true } }));
      const got = await cb.callTool({ name: 'run_result', arguments: { run_id: quick.run_id, wait_s: 10 } });
      assert.equal(structured(got).status, 'ok');
      assert.equal(structured(got).output, 'answer: quick one');
      // A running one: status from B, cancel from B.
      const closed = new Promise<number>((resolve) => mock.onClosedEarly(() => resolve(Date.now())));
      const bg = structured(await ca.callTool({ name: 'delegate', arguments: { agent: 'slow', task: 'hang please', background: true } }));
      for (let i = 0; i < 100 && mock.inFlight === 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(mock.inFlight, 1, 'the model request is in flight');
      const st = structured(await cb.callTool({ name: 'run_status', arguments: { run_id: bg.run_id } }));
      assert.equal(st.status, 'running');
      assert.equal(st.agent, 'slow');
      for (let i = 0; i < 100 && (await streamReaders()) === 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(await streamReaders(), 1, "front B follows A's running run on the event stream, opened for it");
      const t0 = Date.now();
      const cancelled = await cb.callTool({ name: 'run_cancel', arguments: { run_id: bg.run_id } });
      const abortedAt = await closed;
      assert.ok(abortedAt - t0 <= 1000, `model request aborted ${abortedAt - t0} ms after run_cancel`);
      assert.equal(structured(cancelled).status, 'cancelled');
      const fromA = structured(await ca.callTool({ name: 'run_result', arguments: { run_id: bg.run_id, wait_s: 5 } }));
      assert.equal(fromA.status, 'cancelled');
      // Nobody on B follows a run of A's any more: B stops reading the stream.
      for (let i = 0; i < 100 && (await streamReaders()) > 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(await streamReaders(), 0, 'B closed the event stream once it followed no run of another front');
      await ca.close();
      await cb.close();
    } finally {
      await queue.close();
      redis.disconnect();
      await w.close();
    }
  });

  test('kill -9 of a worker fails only its runs ("worker lost") within 30 s; nothing stays reserved; the audit says so; an opted-in agent is retried', async () => {
    mock.reset();
    const w = new World(mock, { held: agentYaml('held', MODEL), again: agentYaml('again', MODEL, 'retry: {attempts: 2, only: idempotent}\n') }, { queue: { lostAfterS: 4 } });
    let release = () => {};
    try {
      ({ release } = holdModel(mock));
      const start = async (agent: string, task: string) => structured(await front.client.callTool({ name: 'delegate', arguments: { agent, task, background: true } })).run_id as string;
      const atModel = async (n: number) => {
        for (let i = 0; i < 200 && mock.inFlight < n; i++) await new Promise((r) => setTimeout(r, 50));
        assert.equal(mock.inFlight, n, `${n} runs at the model`);
      };
      // Worker a alone takes the first three runs; b, started next, the other three.
      const a = await w.worker('a', ['--concurrency', '3']);
      const front = await w.stdioFront('front');
      const onA = [await start('again', 'retry me'), await start('held', 'job 0'), await start('held', 'job 1')];
      await atModel(3);
      await w.worker('b', ['--concurrency', '3']);
      const onB = [await start('held', 'job 2'), await start('held', 'job 3'), await start('held', 'job 4')];
      await atModel(6);
      assert.deepEqual(new Set(w.auditEvents('a').filter((e) => e.event === 'run_start').map((e) => e.run_id)), new Set(onA));
      const killedAt = Date.now();
      a.child.kill('SIGKILL');
      await a.exited;
      // Its runs end "worker lost" (the opted-in one excepted); the others keep running.
      const lostIds = onA.slice(1);
      for (const id of lostIds) {
        const r = await front.client.callTool({ name: 'run_result', arguments: { run_id: id, wait_s: 30 } }, { timeout: 40_000 });
        assert.equal(r.isError, true, `run ${id}`);
        assert.match((r.content as any)[0].text, /worker lost/);
        assert.equal(structured(r).status, 'failed', `run ${id}`);
      }
      const lostAfter = Date.now() - killedAt;
      assert.ok(lostAfter <= 30_000, `lost runs failed after ${lostAfter} ms`);
      for (const id of [onA[0], ...onB]) assert.equal(structured(await front.client.callTool({ name: 'run_status', arguments: { run_id: id } })).status, 'running', id);
      release();
      for (const id of onB) assert.equal(structured(await front.client.callTool({ name: 'run_result', arguments: { run_id: id, wait_s: 10 } })).status, 'ok');
      // The opted-in run went back to the queue and ran again, on b.
      const retried = structured(await front.client.callTool({ name: 'run_result', arguments: { run_id: onA[0], wait_s: 20 } }, { timeout: 30_000 }));
      assert.equal(retried.status, 'ok', JSON.stringify(retried));
      assert.equal(retried.output, 'answer: retry me');
      assert.equal(mock.requests.filter((r) => r.lastUserText === 'retry me').length, 2);
      // Nothing stays reserved in the front's books.
      const books = structured(await front.client.callTool({ name: 'budget_status', arguments: {} }));
      assert.equal(books.server.reserved.tokens, 0);
      const lost = w.auditEvents('front').filter((e) => e.event === 'run_end' && lostIds.includes(e.run_id));
      assert.equal(lost.length, 2);
      for (const e of lost) {
        assert.equal(e.status, 'failed');
        assert.match(e.error, /worker lost/);
        assert.match(e.node, /^front-/);
      }
    } finally {
      release();
      await w.close();
    }
  });

  test('delegation across workers keeps depth, cycle and budget rules; audit --run --from merges the nodes into one tree', async () => {
    mock.reset();
    const role = (name: string, agents: string[]) => agentYaml(name, MODEL, `agents: [${agents.join(', ')}]\n`).replace('Answer the task. Use read_file when asked.', `ROLE=${name}`);
    const w = new World(mock, { lead: role('lead', ['helper', 'third', 'fourth']), helper: role('helper', ['third', 'lead']), third: role('third', ['fourth']), fourth: role('fourth', []) }, { reentry: { maxDepth: 2 } });
    try {
      mock.setHandler((req) => {
        if (req.toolResults.length) return { text: 'done: ' + req.toolResults.map((r) => r.content).join(' | ') };
        const me = /ROLE=(\w+)/.exec(req.system)![1];
        if (me === 'lead') return { toolCalls: [{ name: 'agent__helper', arguments: { task: 'help the lead' } }] };
        if (me === 'helper') return { toolCalls: [{ name: 'agent__third', arguments: { task: 'go deeper' } }, { name: 'agent__lead', arguments: { task: 'back to the lead' } }] };
        if (me === 'third') return { toolCalls: [{ name: 'agent__fourth', arguments: { task: 'deeper still' } }] };
        return { text: `${me} answers` };
      });
      // The lead takes worker a's only slot; its delegations can only run on b.
      await w.worker('a', ['--concurrency', '1']);
      const front = await w.stdioFront('front');
      const bg = structured(await front.client.callTool({ name: 'delegate', arguments: { agent: 'lead', task: 'lead the work', background: true } }));
      for (let i = 0; i < 100 && w.auditEvents('a').filter((e) => e.event === 'run_start').length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      await w.worker('b', ['--concurrency', '3']);
      const res = await front.client.callTool({ name: 'run_result', arguments: { run_id: bg.run_id, wait_s: 30 } }, { timeout: 40_000 });
      const out = structured(res);
      assert.equal(out.status, 'ok', JSON.stringify(res));
      assert.match(out.output, /would be depth 3, over max_depth 2/);
      assert.match(out.output, /cycle lead → helper → lead/);
      // Ran across workers: the lead on a, its delegations on b.
      assert.deepEqual(w.auditEvents('a').filter((e) => e.event === 'run_start').map((e) => e.agent), ['lead']);
      assert.deepEqual(w.auditEvents('b').filter((e) => e.event === 'run_start').map((e) => e.agent).sort(), ['helper', 'third']);
      // Each delegation's end came to its parent's worker on that worker's runs channel: nobody read the event stream.
      const { Queue } = await import('bullmq');
      const { Redis } = await import('ioredis');
      const redis = new Redis(REDIS_URL);
      const queue = new Queue('runs', { connection: redis, prefix: w.prefix });
      assert.equal((await queue.getQueueEvents()).length, 0, 'no node reads the job-event stream');
      await queue.close();
      redis.disconnect();
      // Budget: the lead committed what the helper's tree reported to the slice it reserved.
      const commits = w.auditEvents('a').filter((e) => e.event === 'budget_commit' && /re-entry child/.test(e.message ?? ''));
      assert.equal(commits.length, 1);
      assert.ok(commits[0].tokens > 0);
      // One tree from three nodes' logs.
      const merged = await runCli(['audit', '--run', bg.run_id, '--json', '--from', w.auditDir('a'), w.auditDir('b'), w.auditDir('front')], w.env('front'), w.ws);
      assert.equal(merged.code, 0, merged.stderr);
      const tree = JSON.parse(merged.stdout);
      assert.equal(tree.agent, 'lead');
      assert.equal(tree.children.length, 1);
      assert.equal(tree.children[0].agent, 'helper');
      assert.equal(tree.children[0].children[0].agent, 'third');
      assert.match(tree.nodes[0], /^worker-/);
      assert.notEqual(tree.nodes[0], tree.children[0].nodes[0]);
      // A client's own chain naming that tree (no parent signed it) goes through the front's signed job as
      // a claim: the worker records a root run, and the tree stays as it was.
      const claim = { v: 1, root_run_id: bg.run_id, parent_run_id: bg.run_id, depth: 1, ancestry: [{ agent: 'lead', task: 'x' }], budget: {}, rules: { layers: [] } };
      const forged = structured(await front.client.callTool({ name: 'fourth', arguments: { task: 'join the tree' }, _meta: { 'io.delegate-mcp/chain': claim } }));
      assert.equal(forged.status, 'ok');
      const start = [...w.auditEvents('a'), ...w.auditEvents('b')].find((e) => e.event === 'run_start' && e.run_id === forged.run_id);
      assert.equal(start?.parent_run_id, null);
      assert.equal(start?.root_run_id, forged.run_id);
      assert.deepEqual(start?.claimed_chain, { root_run_id: bg.run_id, parent_run_id: bg.run_id, depth: 1, agent: 'lead' });
      const again = await runCli(['audit', '--run', bg.run_id, '--json', '--from', w.auditDir('a'), w.auditDir('b'), w.auditDir('front')], w.env('front'), w.ws);
      assert.doesNotMatch(again.stdout, new RegExp(forged.run_id));
    } finally {
      await w.close();
    }
  });

  test('100 concurrent runs from two fronts against one daily cap never commit more than the cap (shared books in Redis)', async () => {
    mock.reset();
    const cap = 3000;
    const w = new World(mock, { cheap: agentYaml('cheap', MODEL) }, { budget: { daily_tokens: cap } });
    try {
      mock.setHandler(() => ({ text: 'ok', usage: { input_tokens: 300, output_tokens: 100 }, delayMs: 100 }));
      await w.worker('a', ['--concurrency', '64']);
      const [f1, f2] = await Promise.all([w.stdioFront('f1'), w.stdioFront('f2')]);
      const batch = (c: ServerHandle, tag: string) =>
        c.client.callTool({ name: 'delegate_parallel', arguments: { tasks: Array.from({ length: 50 }, (_, i) => ({ agent: 'cheap', task: `${tag} ${i}` })) } }, { timeout: 60_000 });
      const [r1, r2] = await Promise.all([batch(f1, 'one'), batch(f2, 'two')]);
      const results = [...structured(r1).results, ...structured(r2).results];
      assert.equal(results.length, 100);
      const ok = results.filter((r: any) => r.status === 'ok');
      assert.ok(ok.length >= 1, 'some runs fit the cap');
      for (const r of results.filter((r: any) => r.status !== 'ok')) assert.match(r.error, /budget refused|budget/);
      const st = await runCli(['budget', '--queue', REDIS_URL, '--json'], w.env('cli'), w.ws);
      assert.equal(st.code, 0, st.stderr);
      const books = JSON.parse(st.stdout);
      assert.ok(books.server.spent.tokens <= cap, `committed ${books.server.spent.tokens} of a ${cap} cap`);
      assert.equal(books.server.spent.tokens, ok.reduce((n: number, r: any) => n + r.usage.input_tokens + r.usage.output_tokens, 0));
      assert.equal(books.server.reserved.tokens, 0);
    } finally {
      await w.close();
    }
  });

  test("a delegate_parallel batch's cap and an agent's daily USD cap hold across two workers and two fronts", async () => {
    mock.reset();
    const w = new World(mock, { cheap: agentYaml('cheap', MODEL), pricey: agentYaml('pricey', MODEL, 'budget: {daily_usd: 0.03, run_tokens: 1500}\n') });
    try {
      mock.setHandler(() => ({ text: 'ok', usage: { input_tokens: 300, output_tokens: 100 }, delayMs: 100 }));
      await w.worker('a', ['--concurrency', '8']);
      await w.worker('b', ['--concurrency', '8']);
      const [f1, f2] = await Promise.all([w.stdioFront('f1'), w.stdioFront('f2')]);
      // The batch's 1,200 tokens are all its 20 tasks may spend together, on whichever worker they run.
      const capped = structured(await f1.client.callTool({ name: 'delegate_parallel', arguments: { budget: { run_tokens: 1200 }, tasks: Array.from({ length: 20 }, (_, i) => ({ agent: 'cheap', task: `capped ${i}` })) } }, { timeout: 60_000 }));
      const spentIn = (rs: any[]) => rs.filter((r) => r.status === 'ok').reduce((n, r) => n + r.usage.input_tokens + r.usage.output_tokens, 0);
      assert.ok(spentIn(capped.results) <= 1200, `the batch spent ${spentIn(capped.results)} of its 1,200`);
      assert.ok(capped.results.some((r: any) => r.status === 'ok'));
      for (const r of capped.results.filter((r: any) => r.status !== 'ok')) assert.match(r.error, /budget/);
      // pricey's day: $0.03 (a run's slice: 1,500 tokens, ≤ $0.0225), from both fronts at once.
      const batch = (c: ServerHandle, tag: string) => c.client.callTool({ name: 'delegate_parallel', arguments: { tasks: Array.from({ length: 10 }, (_, i) => ({ agent: 'pricey', task: `${tag} ${i}` })) } }, { timeout: 60_000 });
      const [r1, r2] = await Promise.all([batch(f1, 'one'), batch(f2, 'two')]);
      assert.ok([...structured(r1).results, ...structured(r2).results].some((r: any) => r.status === 'ok'));
      for (const r of [...structured(r1).results, ...structured(r2).results].filter((r: any) => r.status !== 'ok')) assert.match(r.error, /^budget refused: (agent pricey daily USD|run )/, 'refused by its day, once worded');
      const st = await runCli(['budget', '--queue', REDIS_URL, '--json'], w.env('cli'), w.ws);
      assert.equal(st.code, 0, st.stderr);
      const books = JSON.parse(st.stdout);
      assert.ok(books.agents.pricey.spent.usd <= 0.03 + 1e-9, `pricey spent $${books.agents.pricey.spent.usd} of $0.03`);
      assert.ok(books.agents.pricey.spent.usd > 0);
      assert.equal(books.server.reserved.tokens, 0);
      assert.equal(books.open_runs ?? books.openRuns ?? 0, 0, 'every run and batch closed');
    } finally {
      await w.close();
    }
  });

  test('a batch larger than a worker takes at once runs in waves: every task ends ok; --concurrency over the pool is capped, with a warning', async () => {
    mock.reset();
    const w = new World(mock, { fast: agentYaml('fast', MODEL) }, { pool: { maxThreads: 1, concurrentTasksPerWorker: 2, maxQueue: 2 } });
    try {
      mock.setHandler((req) => ({ text: `answer: ${req.lastUserText}`, delayMs: 100 }));
      // 2 at a time (a batch's runs come and go in waves on it), and one asking for more than its pool takes.
      await w.worker('a', ['--concurrency', '2']);
      const b = await w.worker('b', ['--concurrency', '32']);
      assert.match(b.stderr(), /--concurrency 32 is more than this worker's pool takes \(delegate\.pool: 1 threads × 2 runs \+ 2 queued = 4\); taking 4 at a time/);
      const front = await w.stdioFront('front');
      for (let round = 0; round < 2; round++) {
        const out = structured(await front.client.callTool({ name: 'delegate_parallel', arguments: { tasks: Array.from({ length: 16 }, (_, i) => ({ agent: 'fast', task: `wave ${round}.${i}` })) } }, { timeout: 60_000 }));
        assert.equal(out.ok, 16, JSON.stringify(out.results.filter((r: any) => r.status !== 'ok').map((r: any) => r.error)));
      }
      const status = JSON.parse((await runCli(['queue', 'status', '--json', '--queue', REDIS_URL], w.env('front'), w.ws)).stdout);
      assert.deepEqual(status.workers.map((x: any) => x.concurrency).sort(), [2, 4]);
    } finally {
      await w.close();
    }
  });

  test('a queued run keeps the heartbeat (≤ 5 s) while it waits for a worker, and says so when no worker is there', async () => {
    mock.reset();
    const w = new World(mock, { fast: agentYaml('fast', MODEL) });
    try {
      const front = await w.stdioFront('front');
      const lines: { at: number; line: string }[] = [];
      const t0 = Date.now();
      const call = front.client.callTool({ name: 'fast', arguments: { task: 'wait for a worker' } }, { onprogress: (p) => lines.push({ at: Date.now() - t0, line: p.message ?? '' }), timeout: 60_000 });
      const bg = structured(await front.client.callTool({ name: 'delegate', arguments: { agent: 'fast', task: 'in the background', background: true } }));
      for (let i = 0; i < 200 && !lines.some((l) => /no worker/.test(l.line)); i++) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 500));
      // A background run's status (nobody follows its progress) says so too.
      assert.match(structured(await front.client.callTool({ name: 'run_status', arguments: { run_id: bg.run_id } })).last_progress, /^queued: no worker is taking runs from this queue/);
      await w.worker('a');
      assert.equal(structured(await front.client.callTool({ name: 'run_result', arguments: { run_id: bg.run_id, wait_s: 20 } }, { timeout: 30_000 })).status, 'ok');
      const out = structured(await call);
      assert.equal(out.status, 'ok');
      const gaps = lines.map((l, i) => l.at - (i ? lines[i - 1].at : 0));
      assert.ok(Math.max(...gaps) <= 5000, `gaps ${gaps.join(', ')} ms`);
      assert.match(lines[0].line, /^fast · turn 0\/\d+ · queued \(waiting\) · 0 tokens · \d+s$/);
      assert.ok(lines.some((l) => /queued: no worker is taking runs from this queue \(dmcp-test-[0-9a-f]+:runs\); start one: delegate-mcp worker --queue redis:\/\/127\.0\.0\.1:6379 --workspace DIR \(waiting\)/.test(l.line)), lines.map((l) => l.line).join('\n'));
      assert.match(front.stderr(), /no worker is taking runs from dmcp-test-[0-9a-f]+:runs; start one/);
    } finally {
      await w.close();
    }
  });

  test('a full queue answers "server busy"; serve --queue --work runs the queue on its own', async () => {
    mock.reset();
    const w = new World(mock, { fast: agentYaml('fast', MODEL) }, { queue: { maxWaiting: 1 } });
    try {
      mock.setHandler((req) => ({ text: `answer: ${req.lastUserText}` }));
      // No worker yet: the first run waits, the second finds the queue full.
      const front = await w.stdioFront('front');
      const first = structured(await front.client.callTool({ name: 'delegate', arguments: { agent: 'fast', task: 'one', background: true } }));
      assert.equal(first.status, 'running');
      const second = await front.client.callTool({ name: 'delegate', arguments: { agent: 'fast', task: 'two' } });
      assert.equal(second.isError, true);
      assert.match((second.content as any)[0].text, /server busy: 1 runs waiting for a worker \(limit 1, delegate\.queue\.maxWaiting\)/);
      // A front with a local worker takes the waiting run and new ones.
      const both = await w.stdioFront('both', ['--work']);
      assert.equal(structured(await front.client.callTool({ name: 'run_result', arguments: { run_id: first.run_id, wait_s: 10 } })).output, 'answer: one');
      assert.equal(structured(await both.client.callTool({ name: 'delegate', arguments: { agent: 'fast', task: 'three' } })).output, 'answer: three');
    } finally {
      await w.close();
    }
  });

  test("runs a front makes itself (the drafter, an agent it made and did not save) count in the books every front shares", async () => {
    mock.reset();
    const w = new World(mock, { fast: agentYaml('fast', MODEL) }, { defaultModel: MODEL });
    try {
      mock.setHandler((req) =>
        req.system.includes('You design agent definitions for delegate-mcp')
          ? { text: JSON.stringify({ name: 'made-here', description: 'Says hello.', instructions: 'Say hello.' }), usage: { input_tokens: 200, output_tokens: 50 } }
          : { text: `answer: ${req.lastUserText}`, usage: { input_tokens: 100, output_tokens: 10 } },
      );
      await w.worker('a');
      const f1 = await w.stdioFront('f1');
      const made = await f1.client.callTool({ name: 'create_agent', arguments: { description: 'an agent that says hello' } });
      assert.notEqual(made.isError, true, JSON.stringify(made.content));
      const r = structured(await f1.client.callTool({ name: 'made-here', arguments: { task: 'hello' } }));
      assert.equal(r.status, 'ok');
      // Both ran on f1 itself (no worker has these agents), over the shared books: another front sees them.
      assert.equal(w.auditEvents('a').filter((e) => e.event === 'run_start').length, 0);
      const f2 = await w.stdioFront('f2');
      const day = structured(await f2.client.callTool({ name: 'budget_status', arguments: {} }));
      assert.equal(day.server.spent.tokens, 250 + 110);
      assert.equal(day.server.reserved.tokens, 0);
      const cli = await runCli(['budget', '--json', '--queue', REDIS_URL], w.env('f2'), w.ws);
      assert.equal(cli.code, 0, cli.stderr);
      assert.equal(JSON.parse(cli.stdout).server.spent.tokens, 360);
    } finally {
      await w.close();
    }
  });

  test('Redis lost mid-way: new calls fail fast with the reason; a running run finishes and reports when Redis is back', async () => {
    mock.reset();
    const w = new World(mock, { fast: agentYaml('fast', MODEL) });
    // The front reaches Redis through a proxy the test can cut.
    const link = await cuttableRedis();
    try {
      mock.setHandler((req) => ({ text: `answer: ${req.lastUserText}`, delayMs: req.lastUserText.includes('long') ? 3000 : 0 }));
      await w.worker('a');
      const h = await startServer({ args: ['--queue', link.url, '--workspace', w.ws], env: w.env('front') });
      try {
        const bg = structured(await h.client.callTool({ name: 'delegate', arguments: { agent: 'fast', task: 'a long one', background: true } }));
        for (let i = 0; i < 100 && mock.inFlight === 0; i++) await new Promise((r) => setTimeout(r, 20));
        link.cut();
        await new Promise((r) => setTimeout(r, 300));
        const t0 = Date.now();
        const refused = await h.client.callTool({ name: 'delegate', arguments: { agent: 'fast', task: 'during the outage' } });
        assert.ok(Date.now() - t0 < 1000, `answered in ${Date.now() - t0} ms`);
        assert.equal(refused.isError, true);
        assert.match((refused.content as any)[0].text, /queue unavailable: Redis at redis:\/\/127\.0\.0\.1:\d+: /);
        // A batch and the books say so too, at once, in a sentence.
        const t1 = Date.now();
        const batch = await h.client.callTool({ name: 'delegate_parallel', arguments: { tasks: [{ agent: 'fast', task: 'one' }, { agent: 'fast', task: 'two' }] } });
        assert.ok(Date.now() - t1 < 1000, `answered in ${Date.now() - t1} ms`);
        assert.equal(batch.isError, true);
        assert.match((batch.content as any)[0].text, /^budget: Redis ledger unavailable \(not connected to Redis; retry when it is back\)/);
        const books = await h.client.callTool({ name: 'budget_status', arguments: {} });
        assert.equal(books.isError, true);
        assert.match((books.content as any)[0].text, /^budget_status: budget: Redis ledger unavailable \(not connected to Redis/);
        link.restore();
        const r = structured(await h.client.callTool({ name: 'run_result', arguments: { run_id: bg.run_id, wait_s: 20 } }, { timeout: 30_000 }));
        assert.equal(r.status, 'ok');
        assert.equal(r.output, 'answer: a long one');
      } finally {
        await h.close();
      }
    } finally {
      link.close();
      await w.close();
    }
  });

  test('operations: /healthz, queue status per worker, graceful SIGTERM finishes the running run', async () => {
    mock.reset();
    const w = new World(mock, { fast: agentYaml('fast', MODEL) });
    try {
      mock.setHandler((req) => ({ text: `answer: ${req.lastUserText}`, delayMs: 1500 }));
      const a = await w.worker('a', ['--health-port', '0', '--concurrency', '4']);
      assert.ok(a.health, a.stderr());
      const h = await fetch(a.health!);
      assert.equal(h.status, 200);
      const hb = (await h.json()) as any;
      assert.equal(hb.ok, true);
      assert.equal(hb.concurrency, 4);
      const front = await w.stdioFront('front');
      const bg = structured(await front.client.callTool({ name: 'delegate', arguments: { agent: 'fast', task: 'finish me', background: true } }));
      for (let i = 0; i < 100 && mock.inFlight === 0; i++) await new Promise((r) => setTimeout(r, 20));
      const st = await runCli(['queue', 'status', '--queue', REDIS_URL, '--json'], w.env('cli'), w.ws);
      assert.equal(st.code, 0, st.stderr);
      const status = JSON.parse(st.stdout);
      assert.equal(status.counts.active, 1);
      assert.equal(status.workers.length, 1);
      assert.equal(status.workers[0].alive, true);
      assert.equal(status.workers[0].health, a.health);
      assert.equal(status.workers[0].concurrency, 4);
      // Whether this Redis keeps its data over a restart, as it says itself: the worker's start and
      // `queue status` warn exactly when it keeps nothing.
      const cfg = new Redis(REDIS_URL);
      const [save, aof] = [(await cfg.config('GET', 'save')) as string[], (await cfg.config('GET', 'appendonly')) as string[]];
      cfg.disconnect();
      const volatile = save[1].trim() === '' && aof[1] === 'no';
      assert.deepEqual(status.persistence, { snapshots: save[1].trim() !== '', appendOnly: aof[1] === 'yes' });
      const text = await runCli(['queue', 'status', '--queue', REDIS_URL], w.env('cli'), w.ws);
      const warning = /Redis at redis:\/\/\S+ keeps nothing on disk \(save "" and appendonly no\): if it restarts, .*shared budget books start again from 0/;
      for (const [what, out] of [['worker start', a.stderr()], ['queue status', text.stdout]]) {
        if (volatile) assert.match(out, warning, what);
        else assert.doesNotMatch(out, /keeps nothing on disk/, what);
      }
      a.child.kill('SIGTERM');
      const r = structured(await front.client.callTool({ name: 'run_result', arguments: { run_id: bg.run_id, wait_s: 10 } }));
      assert.equal(r.status, 'ok');
      assert.equal(await a.exited, 0);
    } finally {
      await w.close();
    }
  });
});

test('queue mode: Redis unavailable at start is one clear line naming the URL', async () => {
  const ws = tempDir('dmcp-queue-down-');
  writeTree(ws, { 'agents/a.yaml': agentYaml('a', MODEL) });
  const r = await runCli(['worker', '--queue', 'redis://127.0.0.1:1/0', '--workspace', ws], mockEnv('http://127.0.0.1:9'), ws);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /queue: cannot reach Redis at redis:\/\/127\.0\.0\.1:1\/0: .*\(is redis-server running\? set --queue/);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  const bad = await runCli(['serve', '--queue', 'http://x', '--workspace', ws], mockEnv('http://127.0.0.1:9'), ws);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--queue: expected redis:\/\/HOST:PORT\/DB/);
});

// ioredis reports a failed SELECT as an event and goes on in database 0: refused at start instead.
test('queue mode: a database the Redis server does not have is one clear line, not database 0', { skip: !available }, async () => {
  const ws = tempDir('dmcp-queue-db-');
  writeTree(ws, { 'agents/a.yaml': agentYaml('a', MODEL) });
  const url = `${REDIS_URL.replace(/\/\d+$/, '')}/99`;
  for (const args of [['worker', '--queue', url, '--workspace', ws], ['queue', 'status', '--queue', url, '--workspace', ws]]) {
    const r = await runCli(args, mockEnv('http://127.0.0.1:9'), ws);
    assert.equal(r.code, 2, `${args[0]}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /queue: Redis at redis:\/\/[^ ]+\/99 has no database 99 \(ERR DB index is out of range\); use one it has/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  }
});

test('queue mode: wrong credentials and TLS to a plain server say what to check', { skip: !available }, async () => {
  const ws = tempDir('dmcp-queue-auth-');
  writeTree(ws, { 'agents/a.yaml': agentYaml('a', MODEL) });
  const at = new URL(REDIS_URL);
  const wrong = await runCli(['worker', '--queue', `redis://nobody:wrong@${at.host}/0`, '--workspace', ws], mockEnv('http://127.0.0.1:9'), ws);
  assert.equal(wrong.code, 2);
  assert.match(wrong.stderr, /queue: cannot reach Redis at redis:\/\/nobody:\*\*\*@[^ ]+: .*check the user and password in the URL/);
  assert.doesNotMatch(wrong.stderr, /wrong/, 'the password is not printed');
  const tls = await runCli(['worker', '--queue', `rediss://${at.host}/0`, '--workspace', ws], mockEnv('http://127.0.0.1:9'), ws);
  assert.equal(tls.code, 2);
  assert.match(tls.stderr, /rediss:\/\/ speaks TLS: does this server have TLS on\? Without it, use redis:\/\//);
});

test('agent retry opt-in is validated: retry: {attempts, only: idempotent}', async () => {
  const ws = tempDir('dmcp-queue-retry-');
  writeTree(ws, {
    'agents/good.yaml': agentYaml('good', MODEL, 'retry: {attempts: 2, only: idempotent}\n'),
    'agents/bad.yaml': agentYaml('bad', MODEL, 'retry: {attempts: 2, only: always}\n'),
  });
  const r = await runCli(['agents', 'validate', path.join(ws, 'agents')], mockEnv('http://127.0.0.1:9'), ws);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /bad\.yaml:\d+:\d+: retry\.only/);
  assert.doesNotMatch(r.stderr, /good\.yaml/);
});

test('the embedded default never loads BullMQ or ioredis: nothing the CLI imports at start (statically) names them', () => {
  const dist = path.join(path.dirname(CLI));
  const seen = new Set<string>();
  const names: string[] = [];
  const walk = (file: string, entry = false) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    // Static imports (`import … from "x"`, `import "x"`); `import("x")` loads on demand, except the
    // entry's top-level `await import(…)` of the CLI itself, which every command loads.
    for (const m of text.matchAll(/(?:^|[;\n}])\s*(?:import|export)\s*(?:[^'"()]*?\sfrom\s*)?["']([^"']+)["']/g)) {
      const spec = m[1];
      if (spec.startsWith('.')) walk(path.resolve(path.dirname(file), spec));
      else names.push(spec);
    }
    if (entry) for (const m of text.matchAll(/^await import\(["'](\.[^"']+)["']\)/gm)) walk(path.resolve(path.dirname(file), m[1]));
  };
  walk(path.join(dist, 'cli.js'), true);
  assert.ok([...seen].some((f) => /\/cli-[^/]*\.js$/.test(f)), `the CLI chunk is followed (${[...seen].map((f) => path.basename(f)).join(', ')})`);
  assert.ok(seen.size >= 2, `followed ${seen.size} files`);
  assert.ok(names.includes('node:path'), 'the scan sees bare imports');
  assert.deepEqual(names.filter((n) => /^(bullmq|ioredis)(\/|$)/.test(n)), []);
});
