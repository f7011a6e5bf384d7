// Queue mode's faults end to end, on a real Redis: a worker's graceful SIGTERM (finish, hand back, or
// cancel with the reason), a worker that loses Redis mid-way, Redis restarted with its data, Redis back
// without its data, and a front
// killed while its run goes on. Same world as e2e-queue.test.ts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { agentYaml, runCli, startServer, tempDir, writeTree } from './helpers.js';
import { startMockModel, type MockModel } from './mock-model/server.js';
import { MODEL, REDIS_URL, World, cuttableRedis, ownRedis, redisOrSkip, structured, holdModel } from './queue-world.js';

const available = await redisOrSkip();

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`waited ${ms} ms for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * A world with agent `slow`, its model held until `release()`, worker a, and a stdio front reaching Redis
 * through a link the test can cut (the worker too, or not); all closed after `body`.
 */
async function linkedFront(
  mock: MockModel,
  through: 'front and worker' | 'front only',
  body: (t: { w: World; link: Awaited<ReturnType<typeof cuttableRedis>>; front: Awaited<ReturnType<typeof startServer>>; release: () => void }) => Promise<void>,
): Promise<void> {
  mock.reset();
  const w = new World(mock, { slow: agentYaml('slow', MODEL) });
  const link = await cuttableRedis();
  const { release } = holdModel(mock);
  let front: Awaited<ReturnType<typeof startServer>> | undefined;
  try {
    await w.worker('a', [], through === 'front and worker' ? link.url : REDIS_URL);
    front = await startServer({ args: ['--queue', link.url, '--workspace', w.ws], env: w.env('front') });
    await body({ w, link, front, release });
  } finally {
    release();
    await front?.close();
    link.close();
    await w.close();
  }
}

describe('queue mode: worker faults', { skip: !available }, () => {
  let mock: MockModel;
  before(async () => {
    mock = await startMockModel();
  });
  after(async () => {
    await mock?.close();
  });

  test('SIGTERM after the grace: a run with no model request yet and an opted-in one go back to the queue and finish on another worker; the rest is cancelled "worker shutting down"', async () => {
    mock.reset();
    // One pool slot pair on worker a: two runs at the model, the third waits in its pool (no model request yet;
    // its run cap makes the loop ask for its first turn's gate, so nothing is granted before it starts).
    const w = new World(
      mock,
      {
        held: agentYaml('held', MODEL),
        again: agentYaml('again', MODEL, 'retry: {attempts: 2, only: idempotent}\n'),
        later: agentYaml('later', MODEL, 'budget: {run_tokens: 50000}\n'),
      },
      { pool: { maxThreads: 1, concurrentTasksPerWorker: 2 } },
    );
    let release = () => {};
    try {
      ({ release } = holdModel(mock));
      const a = await w.worker('a', ['--concurrency', '3', '--grace', '1']);
      const front = await w.stdioFront('front');
      const start = async (agent: string, task: string) => structured(await front.client.callTool({ name: 'delegate', arguments: { agent, task, background: true } })).run_id as string;
      const held = await start('held', 'held one');
      await until('the first run at the model', () => mock.inFlight === 1);
      const again = await start('again', 'retry me');
      await until('the second run at the model', () => mock.inFlight === 2);
      const later = await start('later', 'not started');
      await until('the third run on worker a', () => w.auditEvents('a').some((e) => e.event === 'run_start' && e.run_id === later));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(mock.inFlight, 2, 'the third run made no model request');
      a.child.kill('SIGTERM');
      assert.equal(await a.exited, 0);
      // Nothing was left to a second worker until now: b takes what a handed back.
      await w.worker('b');
      release();
      const result = async (id: string) => structured(await front.client.callTool({ name: 'run_result', arguments: { run_id: id, wait_s: 20 } }, { timeout: 30_000 }));
      const rHeld = await result(held);
      assert.equal(rHeld.status, 'cancelled');
      assert.match(rHeld.error, /^worker shutting down: /);
      const rAgain = await result(again);
      assert.equal(rAgain.status, 'ok');
      assert.equal(rAgain.output, 'answer: retry me');
      const rLater = await result(later);
      assert.equal(rLater.status, 'ok');
      assert.equal(rLater.output, 'answer: not started');
      assert.equal(mock.requests.filter((r) => r.lastUserText === 'retry me').length, 2);
      assert.equal(mock.requests.filter((r) => r.lastUserText === 'not started').length, 1);
      // Each node's audit says what happened where.
      const handedBack = w.auditEvents('a').filter((e) => e.event === 'error' && /handed back to the queue/.test(e.message));
      assert.deepEqual(new Set(handedBack.map((e) => e.run_id)), new Set([again, later]));
      const onB = w.auditEvents('b').filter((e) => e.event === 'run_end');
      assert.deepEqual(new Set(onB.map((e) => e.run_id)), new Set([again, later]));
      const books = structured(await front.client.callTool({ name: 'budget_status', arguments: {} }));
      assert.equal(books.server.reserved.tokens, 0);
    } finally {
      release();
      await w.close();
    }
  });

  test('SIGTERM after the grace: an opted-in run handed back after it spent a turn; what that attempt spent is charged once, and its re-run counts too', async () => {
    mock.reset();
    const w = new World(mock, { again: agentYaml('again', MODEL, 'retry: {attempts: 2, only: idempotent}\n') });
    let release = () => {};
    const released = new Promise<void>((r) => (release = r));
    let a: Awaited<ReturnType<World['worker']>> | undefined;
    try {
      // Each attempt spends a first turn (a tool call), then waits at the model until released.
      mock.setHandler(async (req) => {
        if (!req.toolResults.length) return { toolCalls: [{ name: 'read_file', arguments: { path: 'notes.txt' } }] };
        await released;
        return { text: `answer: ${req.lastUserText}` };
      });
      a = await w.worker('a', ['--grace', '1']);
      const front = await w.stdioFront('front');
      const id = structured(await front.client.callTool({ name: 'delegate', arguments: { agent: 'again', task: 'spend then go back', background: true } })).run_id as string;
      await until("the run's second turn at the model", () => mock.inFlight === 1 && mock.requests.length === 2);
      a.child.kill('SIGTERM');
      assert.equal(await a.exited, 0);
      const aEnd = w.auditEvents('a').find((e) => e.event === 'run_end' && e.run_id === id);
      const tokens = (e: any) => e.usage.input_tokens + e.usage.output_tokens;
      assert.ok(tokens(aEnd) > 0, 'the first attempt spent its first turn');
      const charges = w.auditEvents('a').filter((e) => e.event === 'budget_commit' && e.run_id === id && /without a slice/.test(e.message ?? ''));
      assert.equal(charges.length, 1, `a charged the attempt it handed back before it exited:\n${a.stderr()}`);
      assert.equal(charges[0].tokens, tokens(aEnd));
      await w.worker('b');
      release();
      const r = structured(await front.client.callTool({ name: 'run_result', arguments: { run_id: id, wait_s: 20 } }, { timeout: 30_000 }));
      assert.equal(r.status, 'ok');
      const bEnd = w.auditEvents('b').find((e) => e.event === 'run_end' && e.run_id === id);
      await new Promise((res) => setTimeout(res, 500)); // the front settles the slice off the call's path
      const books = structured(await front.client.callTool({ name: 'budget_status', arguments: {} }));
      assert.equal(books.server.reserved.tokens, 0);
      assert.equal(books.server.spent.tokens, tokens(aEnd) + tokens(bEnd), 'both attempts count, each once');
    } finally {
      release();
      await w.close();
    }
  });

  test('Redis itself restarted (its data kept): the runs in flight finish and report within 1.5 s of its return; each node says once that it lost Redis and once that it is back, with no stack trace', async (t) => {
    const redis = await ownRedis();
    if (!redis) return t.skip('no redis-server on this machine');
    mock.reset();
    const w = new World(mock, { slow: agentYaml('slow', MODEL) });
    let front: Awaited<ReturnType<typeof startServer>> | undefined;
    try {
      mock.setHandler((req) => ({ text: `answer: ${req.lastUserText}`, delayMs: 2000 }));
      const worker = await w.worker('a', [], redis.url);
      front = await startServer({ args: ['--queue', redis.url, '--workspace', w.ws], env: w.env('front') });
      const tasks = ['one', 'two', 'three'];
      const calls = tasks.map((task) => front!.client.callTool({ name: 'slow', arguments: { task } }, { timeout: 60_000 }).then(structured));
      await until('the runs at the model', () => mock.inFlight === 3);
      await redis.stop();
      // The runs end while Redis is down: their ends wait on their worker.
      await until('the model answered', () => mock.inFlight === 0);
      await new Promise((r) => setTimeout(r, 1000));
      await redis.start();
      const back = Date.now();
      const results = await Promise.all(calls);
      const tookMs = Date.now() - back;
      results.forEach((r, i) => {
        assert.equal(r.status, 'ok', JSON.stringify(r));
        assert.equal(r.output, `answer: ${tasks[i]}`);
      });
      assert.ok(tookMs < 1500, `the runs reported ${tookMs} ms after Redis was back`);
      assert.equal(structured(await front.client.callTool({ name: 'slow', arguments: { task: 'after' } })).status, 'ok', 'a new call runs');
      for (const [node, err] of [['worker', worker.stderr()], ['front', front.stderr()]]) {
        assert.equal(err.match(/lost Redis at redis:\/\/127\.0\.0\.1:\d+\/0 \(/g)?.length, 1, `${node} says once that it lost Redis:\n${err}`);
        assert.equal(err.match(/Redis at redis:\/\/127\.0\.0\.1:\d+\/0 is back after \d+\.\d s/g)?.length, 1, `${node} says once that it is back:\n${err}`);
        assert.doesNotMatch(err, /Unhandled error event|\n\s+at /, `${node}: no stack trace:\n${err}`);
        assert.deepEqual(err.split('\n').filter((l) => /ECONNREFUSED/.test(l) && !/lost Redis/.test(l)), [], `${node}: no line per connection or retry`);
      }
    } finally {
      await front?.close();
      await w.close();
      await redis.close();
    }
  });

  test('a worker that loses Redis mid-way: its running run finishes and reports when Redis is back', async () => {
    mock.reset();
    const w = new World(mock, { slow: agentYaml('slow', MODEL) });
    const link = await cuttableRedis();
    let release = () => {};
    try {
      ({ release } = holdModel(mock));
      await w.worker('a', [], link.url);
      const front = await w.stdioFront('front');
      const bg = structured(await front.client.callTool({ name: 'delegate', arguments: { agent: 'slow', task: 'through the outage', background: true } }));
      await until('the run at the model', () => mock.inFlight === 1);
      link.cut();
      // The run ends while its worker cannot reach Redis.
      release();
      await until('the model answered', () => mock.inFlight === 0);
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(structured(await front.client.callTool({ name: 'run_status', arguments: { run_id: bg.run_id } })).status, 'running');
      link.restore();
      const t0 = Date.now();
      const r = structured(await front.client.callTool({ name: 'run_result', arguments: { run_id: bg.run_id, wait_s: 20 } }, { timeout: 30_000 }));
      assert.equal(r.status, 'ok');
      assert.equal(r.output, 'answer: through the outage');
      // Told once the worker is back (its connection keeps what it could not send), not found by the front's 5 s check.
      assert.ok(Date.now() - t0 < 4000, `the end reached the front ${Date.now() - t0} ms after Redis was back`);
      const books = structured(await front.client.callTool({ name: 'budget_status', arguments: {} }));
      assert.equal(books.server.reserved.tokens, 0);
      assert.equal(books.server.spent.tokens, r.usage.input_tokens + r.usage.output_tokens + r.usage.cache_read_input_tokens + r.usage.cache_creation_input_tokens, 'charged once');
    } finally {
      release();
      link.close();
      await w.close();
    }
  });

  test('Redis back without its data: the calls in flight end within 15 s with the reason, their worker stops them, new calls run', async () => {
    await linkedFront(mock, 'front and worker', async ({ w, link, front, release }) => {
      const held = front.client.callTool({ name: 'delegate', arguments: { agent: 'slow', task: 'in flight' } }, { timeout: 60_000 });
      const bg = structured(await front.client.callTool({ name: 'delegate', arguments: { agent: 'slow', task: 'in the background', background: true } }));
      await until('both runs at the model', () => mock.inFlight === 2);
      // A Redis restart with no persistence: every connection drops, and what comes back is empty.
      link.cut();
      const { Redis } = await import('ioredis');
      const r = new Redis(REDIS_URL);
      const gone = await r.keys(`${w.prefix}:*`);
      if (gone.length) await r.del(...gone);
      r.disconnect();
      link.restore();
      const t0 = Date.now();
      const res = await held;
      assert.ok(Date.now() - t0 < 15_000, `ended after ${Date.now() - t0} ms`);
      assert.equal(res.isError, true);
      assert.match((res.content as any)[0].text, /the queue lost the run: its job is gone from Redis at redis:\/\/127\.0\.0\.1:\d+ .*appendonly yes/);
      const b = structured(await front.client.callTool({ name: 'run_result', arguments: { run_id: bg.run_id, wait_s: 15 } }, { timeout: 30_000 }));
      assert.equal(b.status, 'failed');
      assert.match(b.error, /the queue lost the run/);
      // Nobody can hear their ends: their worker was told to stop, and their model requests were aborted.
      await until('the model requests aborted', () => mock.inFlight === 0, 5_000);
      release();
      mock.setHandler((req) => ({ text: `answer: ${req.lastUserText}` }));
      assert.equal(structured(await front.client.callTool({ name: 'delegate', arguments: { agent: 'slow', task: 'after it' } })).output, 'answer: after it');
    });
  });

  test('an end told while the front was cut off from Redis (its message lost, its events trimmed from the stream) is still found, with its answer', async () => {
    // Only the front goes through the link: it is away while the run ends and its events are trimmed.
    await linkedFront(mock, 'front only', async ({ w, link, front, release }) => {
      const call = front.client.callTool({ name: 'delegate', arguments: { agent: 'slow', task: 'ends unseen' } }, { timeout: 60_000 });
      await until('the run at the model', () => mock.inFlight === 1);
      link.cut();
      release();
      await until('the model answered', () => mock.inFlight === 0);
      const { Redis } = await import('ioredis');
      const r = new Redis(REDIS_URL);
      // The worker has reported the end (the job is finished in Redis), which the front did not hear; its events go too.
      for (let i = 0; i < 100; i++) {
        const job = (await r.keys(`${w.prefix}:runs:run_*`)).find((k) => /:run_[0-9a-f-]{36}$/.test(k));
        if (job && (await r.hget(job, 'finishedOn')) !== null) break;
        await new Promise((res) => setTimeout(res, 50));
      }
      await r.xtrim(`${w.prefix}:runs:events`, 'MAXLEN', 0);
      r.disconnect();
      link.restore();
      const t0 = Date.now();
      const out = structured(await call);
      assert.equal(out.status, 'ok');
      assert.equal(out.output, 'answer: ends unseen');
      assert.ok(Date.now() - t0 < 15_000, `found after ${Date.now() - t0} ms`);
    });
  });

  test('a worker whose lock lapsed while Redis was away: the run was declared lost; its late report is ignored, and what it spent is charged once', async () => {
    mock.reset();
    const w = new World(mock, { slow: agentYaml('slow', MODEL) }, { queue: { lostAfterS: 3 } });
    const link = await cuttableRedis();
    let release = () => {};
    try {
      ({ release } = holdModel(mock));
      const a = await w.worker('a', [], link.url);
      const front = await w.stdioFront('front');
      const bg = structured(await front.client.callTool({ name: 'delegate', arguments: { agent: 'slow', task: 'lost in the outage', background: true } }));
      await until('the run at the model', () => mock.inFlight === 1);
      // b, on a working link, is the one whose stalled-job check finds a's lapsed lock.
      await w.worker('b');
      link.cut();
      const r = await front.client.callTool({ name: 'run_result', arguments: { run_id: bg.run_id, wait_s: 30 } }, { timeout: 40_000 });
      assert.equal(r.isError, true);
      assert.match((r.content as any)[0].text, /worker lost/);
      // a finishes the run and, Redis back, tries to report it.
      release();
      await until('the model answered', () => mock.inFlight === 0);
      link.restore();
      await until("a's run ended in its audit", () => w.auditEvents('a').some((e) => e.event === 'run_end' && e.run_id === bg.run_id && e.status === 'ok'), 15_000);
      await new Promise((r) => setTimeout(r, 1500));
      const again = await front.client.callTool({ name: 'run_result', arguments: { run_id: bg.run_id } });
      assert.match((again.content as any)[0].text, /worker lost/);
      // The front released the lost run's slice; the tokens its worker spent anyway count, once.
      const end = w.auditEvents('a').find((e) => e.event === 'run_end' && e.run_id === bg.run_id);
      const spent = end.usage.input_tokens + end.usage.output_tokens;
      assert.ok(spent > 0);
      await until("a's late charge", () => /went on here unreported/.test(a.stderr()), 10_000);
      const charges = () => w.auditEvents('a').filter((e) => e.event === 'budget_commit' && e.run_id === bg.run_id && /without a slice/.test(e.message ?? ''));
      await until("a's audit of the charge", () => charges().length > 0, 5_000);
      assert.equal(charges().length, 1);
      assert.equal(charges()[0].tokens, spent);
      const books = structured(await front.client.callTool({ name: 'budget_status', arguments: {} }));
      assert.equal(books.server.reserved.tokens, 0);
      assert.equal(books.server.spent.tokens, spent, 'what the lost run spent is counted, once');
      await new Promise((r) => setTimeout(r, 2500));
      assert.equal(structured(await front.client.callTool({ name: 'budget_status', arguments: {} })).server.spent.tokens, spent, 'and only once');
      assert.equal(w.auditEvents('front').filter((e) => e.event === 'run_end' && e.run_id === bg.run_id).length, 1);
      assert.equal(a.child.exitCode, null, 'the worker goes on');
    } finally {
      release();
      link.close();
      await w.close();
    }
  });

  test('a worker paused past its lock (SIGSTOP): the run is declared lost; when the worker runs again it stops the run at once, and what it spent counts once', async () => {
    mock.reset();
    const w = new World(mock, { slow: agentYaml('slow', MODEL) }, { queue: { lostAfterS: 3 } });
    let release = () => {};
    let a: Awaited<ReturnType<World['worker']>> | undefined;
    try {
      ({ release } = holdModel(mock));
      a = await w.worker('a');
      const front = await w.stdioFront('front');
      const bg = structured(await front.client.callTool({ name: 'delegate', arguments: { agent: 'slow', task: 'paused mid-run', background: true } }));
      await until('the run at the model', () => mock.inFlight === 1);
      await w.worker('b');
      a.child.kill('SIGSTOP');
      const r = await front.client.callTool({ name: 'run_result', arguments: { run_id: bg.run_id, wait_s: 30 } }, { timeout: 40_000 });
      assert.equal(r.isError, true);
      assert.match((r.content as any)[0].text, /worker lost/);
      // Running again, a learns at its next lock renewal that the queue gave the run up: it stops it
      // (the model request is aborted, nothing more is spent or done for a caller who was told it failed).
      const resumed = Date.now();
      a.child.kill('SIGCONT');
      await until('the model request aborted', () => mock.inFlight === 0 && mock.closedEarly === 1, 10_000);
      assert.ok(Date.now() - resumed < 5_000, `stopped ${Date.now() - resumed} ms after it resumed (lock renewal every 1.5 s)`);
      await until("a's run ended in its audit", () => w.auditEvents('a').some((e) => e.event === 'run_end' && e.run_id === bg.run_id), 10_000);
      const events = w.auditEvents('a').filter((e) => e.run_id === bg.run_id);
      assert.ok(events.some((e) => e.event === 'error' && /gave this run up as lost/.test(e.message)), 'its audit says why it stopped');
      assert.equal(events.find((e) => e.event === 'run_end').status, 'cancelled');
      assert.equal(mock.requests.length, 1, 'no model request after it was given up');
      const end = events.find((e) => e.event === 'run_end');
      // An aborted request reports no usage: then nothing is charged (as a cancelled run's report commits
      // nothing); otherwise a's settle charges it.
      if (end.usage.input_tokens + end.usage.output_tokens > 0) await until("a's settle", () => /went on here unreported/.test(a!.stderr()), 10_000);
      else await new Promise((r) => setTimeout(r, 2_500));
      const books = structured(await front.client.callTool({ name: 'budget_status', arguments: {} }));
      assert.equal(books.server.reserved.tokens, 0, 'nothing stays reserved');
      assert.equal(books.server.spent.tokens, end.usage.input_tokens + end.usage.output_tokens, 'what it spent (its aborted request, as its books counted it) counts once');
      assert.equal(a.child.exitCode, null, 'the worker goes on');
      const again = front.client.callTool({ name: 'delegate', arguments: { agent: 'slow', task: 'after the pause' } });
      release();
      assert.notEqual((await again).isError, true, 'new runs go on');
    } finally {
      a?.child.kill('SIGCONT');
      release();
      await w.close();
    }
  });

  test("a delegation's worker paused past its lock: the parent goes on without it; the child stops when its worker runs again, and what it spent counts once", async () => {
    mock.reset();
    const role = (name: string, agents: string[]) => agentYaml(name, MODEL, `agents: [${agents.join(', ')}]\n`).replace('Answer the task. Use read_file when asked.', `ROLE=${name}`);
    const w = new World(mock, { lead: role('lead', ['helper']), helper: role('helper', []) }, { queue: { lostAfterS: 3 } });
    let release = () => {};
    const released = new Promise<void>((r) => (release = r));
    let b: Awaited<ReturnType<World['worker']>> | undefined;
    try {
      mock.setHandler(async (req) => {
        const me = /ROLE=(\w+)/.exec(req.system)![1];
        if (me === 'lead') return req.toolResults.length ? { text: 'lead done: ' + req.toolResults.map((r) => r.content).join(' | ') } : { toolCalls: [{ name: 'agent__helper', arguments: { task: 'help' } }] };
        // The helper spends a first turn, then waits at the model.
        if (!req.toolResults.length) return { toolCalls: [{ name: 'read_file', arguments: { path: 'notes.txt' } }] };
        await released;
        return { text: 'helper done' };
      });
      // The lead takes worker a's only slot: its delegation can only run on b.
      await w.worker('a', ['--concurrency', '1']);
      const front = await w.stdioFront('front');
      const bg = structured(await front.client.callTool({ name: 'delegate', arguments: { agent: 'lead', task: 'lead the work', background: true } }));
      await until("the lead on a", () => w.auditEvents('a').some((e) => e.event === 'run_start'));
      b = await w.worker('b');
      await until("the helper's second turn at the model", () => mock.inFlight === 1 && mock.requests.filter((r) => /ROLE=helper/.test(r.system)).length === 2);
      b.child.kill('SIGSTOP');
      // a's stalled-job check gives the helper up; the lead gets "worker lost" as its tool result and ends.
      const res = structured(await front.client.callTool({ name: 'run_result', arguments: { run_id: bg.run_id, wait_s: 30 } }, { timeout: 40_000 }));
      assert.equal(res.status, 'ok');
      assert.match(res.output, /worker lost/);
      b.child.kill('SIGCONT');
      await until("the helper's request aborted", () => mock.inFlight === 0 && mock.closedEarly === 1, 10_000);
      await until("b's charge", () => /went on here unreported/.test(b!.stderr()), 10_000);
      const lead = w.auditEvents('a').find((e) => e.event === 'run_end' && e.run_id === bg.run_id);
      const helper = w.auditEvents('b').find((e) => e.event === 'run_end' && e.agent === 'helper');
      const tokens = (e: any) => e.usage.input_tokens + e.usage.output_tokens;
      assert.ok(tokens(helper) > 0, 'the helper spent its first turn');
      const books = structured(await front.client.callTool({ name: 'budget_status', arguments: {} }));
      assert.equal(books.server.reserved.tokens, 0);
      assert.equal(books.server.spent.tokens, tokens(lead) + tokens(helper), "the lead's own spend (the lost child released from its tree) and the helper's, each once");
    } finally {
      b?.child.kill('SIGCONT');
      release();
      await w.close();
    }
  });

  test('a front killed mid-run: the worker finishes the run and commits what it spent to the shared books; nothing stays reserved', async () => {
    mock.reset();
    const w = new World(mock, { capped: agentYaml('capped', MODEL, 'budget: {run_tokens: 5000}\n') }, { budget: { daily_tokens: 100000 } });
    let release = () => {};
    try {
      ({ release } = holdModel(mock));
      await w.worker('a');
      const front = await w.stdioFront('front');
      const bg = structured(await front.client.callTool({ name: 'delegate', arguments: { agent: 'capped', task: 'outlive the front', background: true } }));
      await until('the run at the model', () => mock.inFlight === 1);
      const books = async () => JSON.parse((await runCli(['budget', '--queue', REDIS_URL, '--json'], w.env('cli'), w.ws)).stdout).server;
      assert.equal((await books()).reserved.tokens, 5000, "the run's slice is held in the shared books");
      process.kill(front.transport.pid!, 'SIGKILL');
      release();
      await until("a's run ended in its audit", () => w.auditEvents('a').some((e) => e.event === 'run_end' && e.run_id === bg.run_id && e.status === 'ok'), 15_000);
      const end = Date.now() + 5000;
      let after = await books();
      while (after.spent.tokens === 0 && Date.now() < end) after = await books();
      assert.equal(after.reserved.tokens, 0, 'nothing stays reserved');
      assert.ok(after.spent.tokens > 0, `the run's spend is in the shared books: ${JSON.stringify(after)}`);
      assert.equal(after.calls, 1);
    } finally {
      release();
      await w.close();
    }
  });

  test("a run whose front gave up at its deadline while its worker went on (it waited in the queue first): what the worker's run spent is charged once, nothing stays reserved", async () => {
    mock.reset();
    const w = new World(mock, { late: agentYaml('late', MODEL, 'timeout_s: 6\n') }, { runs: { cancelGraceMs: 500 } });
    let release = () => {};
    const released = new Promise<void>((r) => (release = r));
    try {
      // A first turn that spends (a tool call), then the model holds the second past the front's deadline.
      mock.setHandler(async (req) => {
        if (!req.toolResults.length) return { toolCalls: [{ name: 'read_file', arguments: { path: 'notes.txt' } }] };
        await released;
        return { text: `answer: ${req.lastUserText}` };
      });
      const front = await w.stdioFront('front');
      const id = structured(await front.client.callTool({ name: 'delegate', arguments: { agent: 'late', task: 'queued, then slow', background: true } })).run_id as string;
      // No worker for a second: the run starts on a late worker, whose own deadline is that much later than the front's.
      await new Promise((r) => setTimeout(r, 1000));
      await w.worker('a');
      await until("the run's second turn at the model", () => mock.inFlight === 1 && mock.requests.length === 2, 15_000);
      const r = structured(await front.client.callTool({ name: 'run_result', arguments: { run_id: id, wait_s: 20 } }, { timeout: 30_000 }));
      assert.equal(r.status, 'timeout', JSON.stringify(r));
      await until("a's run ended in its audit", () => w.auditEvents('a').some((e) => e.event === 'run_end' && e.run_id === id), 15_000);
      const aEnd = w.auditEvents('a').find((e) => e.event === 'run_end' && e.run_id === id);
      const spent = aEnd.usage.input_tokens + aEnd.usage.output_tokens;
      assert.ok(spent > 0, 'the run spent its first turn on a');
      const books = async () => structured(await front.client.callTool({ name: 'budget_status', arguments: {} })).server;
      const end = Date.now() + 10_000;
      let now = await books();
      while (now.spent.tokens < spent && Date.now() < end) {
        await new Promise((res) => setTimeout(res, 250));
        now = await books();
      }
      assert.equal(now.reserved.tokens, 0, 'nothing stays reserved');
      assert.equal(now.spent.tokens, spent, `what a's run spent counts once: ${JSON.stringify(now)}`);
    } finally {
      release();
      await w.close();
    }
  });

  test('a worker without the agent a front offers: the run fails at once, naming the worker and what to fix', async () => {
    mock.reset();
    const w = new World(mock, { here: agentYaml('here', MODEL), elsewhere: agentYaml('elsewhere', MODEL) });
    const fewer = tempDir('dmcp-queue-agents-');
    writeTree(fewer, { 'here.yaml': agentYaml('here', MODEL) });
    try {
      await w.worker('a', ['--agents', fewer]);
      const front = await w.stdioFront('front');
      const r = await front.client.callTool({ name: 'elsewhere', arguments: { task: 'where am I' } });
      assert.equal(r.isError, true);
      assert.match((r.content as any)[0].text, /\bfailed\b/, JSON.stringify(r));
      assert.match((r.content as any)[0].text, /worker worker-\S+ cannot run it: unknown agent "elsewhere".*--agents DIR/);
      assert.equal(mock.requests.length, 0);
      const ok = await front.client.callTool({ name: 'here', arguments: { task: 'still fine' } });
      assert.equal(structured(ok).status, 'ok', 'the worker goes on');
    } finally {
      await w.close();
    }
  });
});
