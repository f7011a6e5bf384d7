// The Redis ledger (queue mode's one budget across nodes) on a real Redis (REDIS_URL, default
// redis://127.0.0.1:6379): the same books as the in-process ledger step for step, two processes racing
// one daily cap, release and closeRun giving holds back, day rollover, the status report. Each test
// works under its own key prefix and deletes it. Without Redis the file is skipped with a notice,
// except under CI=true, where that is a failure.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { connectAdmin, dropPrefix, reportMissingRedis, REDIS_URL } from './redis-check.js';
import { mulberry32 } from './prng.js';
import { BudgetLedger } from '../src/budget/ledger.js';
import { openRedisLedger, type RedisLedger, type RedisLedgerOptions } from '../src/budget/redis-ledger.js';
import type { LedgerStore } from '../src/budget/store.js';
import type { BudgetStatus, ReserveResult } from '../src/budget/types.js';
import type { AgentDefinition } from '../src/agents/definition.js';
import type { ModelCallEnd } from '../src/contract/worker-protocol.js';
import { BudgetGate } from '../src/orchestrator/budget-gate.js';
import { renderBudget } from '../src/mcp/budget-view.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REDIS_LEDGER_TS = pathToFileURL(path.join(ROOT, 'src', 'budget', 'redis-ledger.ts')).href;
const SONNET = 'anthropic/claude-sonnet-4-5';
const usage = (input: number, output: number) => ({ input_tokens: input, output_tokens: output, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 });

let admin: Redis | undefined;
let reachable = false;
before(async () => {
  admin = await connectAdmin();
  reachable = admin !== undefined;
  if (!reachable) reportMissingRedis('tests/budget-redis.test.ts (the Redis ledger tests)');
});
const prefixes: string[] = [];
const ledgers: RedisLedger[] = [];
after(async () => {
  for (const l of ledgers) await l.close();
  if (admin && reachable) for (const p of prefixes) await dropPrefix(admin, p);
  admin?.disconnect();
});


/** A fresh key prefix for one test (deleted after the file). */
function freshPrefix(): string {
  const p = `dmcp-test-${randomBytes(6).toString('hex')}`;
  prefixes.push(p);
  return p;
}

async function redisLedger(opts: RedisLedgerOptions): Promise<RedisLedger> {
  const l = await openRedisLedger({ url: REDIS_URL, warn: () => {}, ...opts });
  ledgers.push(l);
  return l;
}

/** Skips (visibly) when Redis is absent outside CI; `before` already failed the file under CI. */
function redisTest(name: string, fn: () => Promise<void>): void {
  test(name, async (t) => {
    if (!reachable) return t.skip(`Redis not reachable at ${REDIS_URL}`);
    await fn();
  });
}

/** Reservation ids differ between ledgers: everything else must match. */
const withoutId = (r: ReserveResult | { ok: true; reservationId: string }) => {
  const { reservationId: _id, ...rest } = r as { reservationId?: string };
  return rest;
};

/**
 * One script of ledger calls covering every scope: server and agent daily caps, run caps lowered by
 * per-call caps, a child's slice of its parent, shrinking, a sliced call extended while it streams,
 * admission, refusals, a release, closeRun with a hold outstanding, a late commit, and the report.
 * Returns everything the ledger answered, for comparison between the two implementations.
 */
async function script(l: LedgerStore): Promise<unknown[]> {
  const out: unknown[] = [];
  const id = (r: ReserveResult) => (r.ok ? r.reservationId : assert.fail(`refused: ${r.message}`));
  out.push(await l.openRun({ runId: 'p', agent: 'planner', run: { tokens: 50_000, usd: 1 }, call: { tokens: 20_000 }, agentDaily: { tokens: 40_000 } }));
  out.push(await l.openRun({ runId: 'c1', agent: 'coder', parentRunId: 'p', run: { tokens: 8_000 } }));
  out.push(await l.openRun({ runId: 'c2', agent: 'coder', parentRunId: 'p' }));
  const a = await l.reserve({ runId: 'c1', model: SONNET, inputTokens: 1_000, maxOutputTokens: 4_000 });
  out.push(withoutId(a));
  // Shrunk: the child's cap leaves 3 000 of output after a's hold and 1 000 input.
  const b = await l.reserve({ runId: 'c1', model: SONNET, inputTokens: 1_000, maxOutputTokens: 8_000, minOutputTokens: 500 });
  out.push(withoutId(b));
  // Refused: c1 has nothing left (named as the run's own cap), then c2 over the parent's call cap.
  out.push(await l.reserve({ runId: 'c1', model: SONNET, inputTokens: 1_000, maxOutputTokens: 8_000, minOutputTokens: 500 }));
  out.push(await l.reserve({ runId: 'c2', model: SONNET, inputTokens: 5_000, maxOutputTokens: 20_000, minOutputTokens: 20_000 }));
  out.push(await l.commit(id(a), usage(900, 3_000)));
  await l.release(id(b));
  // A sliced call: holds 256 of its output, extends while it streams.
  const s = await l.reserve({ runId: 'c2', model: SONNET, inputTokens: 2_000, maxOutputTokens: 16_000, outputSlice: 256 });
  out.push(withoutId(s));
  out.push(await l.extend(id(s), 256));
  out.push(await l.extend(id(s), 100_000)); // grows by what fits under the parent's 20 000 call cap
  out.push(await l.extend(id(s), 10)); // nothing fits any more
  out.push(await l.commit(id(s), usage(2_100, 400), { streamedOutputTokens: 450, cut: true }));
  // Admission: a new run holds its expected cost; its calls draw on that hold first.
  out.push(await l.openRun({ runId: 'q', agent: 'coder', run: { tokens: 30_000 } }));
  out.push(withoutId((await l.admit({ runId: 'q', model: SONNET, tokens: 12_000 })) as { ok: true; reservationId: string }));
  const qa = await l.reserve({ runId: 'q', model: SONNET, inputTokens: 3_000, maxOutputTokens: 2_000 });
  out.push(withoutId(qa));
  out.push(await l.status({ runId: 'q' }));
  out.push(await l.commit(id(qa), usage(3_000, 1_500)));
  // An unpriced model: USD caps cannot apply (note), tokens still count.
  const un = await l.reserve({ runId: 'p', model: 'local/llama-9', inputTokens: 100, maxOutputTokens: 300 });
  out.push(withoutId(un));
  out.push(await l.commit(id(un), usage(100, 250)));
  // closeRun with a hold outstanding releases it; a late commit is still charged.
  const late = await l.reserve({ runId: 'c2', model: SONNET, inputTokens: 500, maxOutputTokens: 500, minOutputTokens: 500 });
  out.push(withoutId(late));
  out.push(await l.status({ runId: 'p' }));
  out.push(await l.closeRun('p'));
  out.push(await l.status({ runId: 'p' }));
  out.push(await l.commit(id(late), usage(500, 200)));
  out.push(await l.runTotals('p'));
  out.push(await l.closeRun('q'));
  const st = await l.status({ runId: 'p' });
  out.push(st, renderBudget(st));
  // Errors name the same thing.
  const attempts: (() => unknown)[] = [
    () => l.openRun({ runId: 'p', agent: 'x' }),
    () => l.openRun({ runId: 'z', agent: 'x', parentRunId: 'nope' }),
    () => l.openRun({ runId: 'z2', agent: 'x', parentRunId: 'p' }),
    () => l.reserve({ runId: 'p', model: SONNET, inputTokens: 1, maxOutputTokens: 1 }),
    () => l.commit('rsv_nope', usage(1, 1)),
    () => l.closeRun('nope'),
  ];
  for (const bad of attempts) out.push(await Promise.resolve().then(bad).then(() => 'no error', (e: Error) => e.message));
  return out;
}

redisTest('the Redis ledger keeps the same books as the in-process ledger, answer for answer (and the same status text)', async () => {
  const opts = { server: { daily_tokens: 100_000, daily_usd: 5 }, now: () => new Date('2026-05-04T10:00:00Z'), warn: () => {} };
  const local = await script(new BudgetLedger(opts));
  const redis = await script(await redisLedger({ ...opts, prefix: freshPrefix() }));
  assert.equal(redis.length, local.length);
  assert.equal(local.length, 35);
  for (let i = 0; i < local.length; i++) assert.deepEqual(redis[i], local[i], `answer ${i} differs`);
  // The script really exercised refusals, shrinking, extension and the late commit.
  const txt = JSON.stringify(local);
  for (const needle of ['"shrunk":true', 'budget refused: run c1 (coder) token limit', 'cannot extend', 'no price known for local/llama-9', '"basis":"streamed"']) {
    assert.ok(txt.includes(needle), `the script covers ${needle}`);
  }
});

/** A child process that opens its own Redis ledger and races `runs` reservations of 500 tokens, all at once. */
function racer(prefix: string, tag: string, runs: number): Promise<{ granted: number; refused: number; messages: string[] }> {
  const code = `
    import { openRedisLedger } from ${JSON.stringify(REDIS_LEDGER_TS)};
    const l = await openRedisLedger({ url: ${JSON.stringify(REDIS_URL)}, prefix: ${JSON.stringify(prefix)}, server: { daily_tokens: 10000 } });
    const one = async (i) => {
      const runId = ${JSON.stringify(tag)} + '-' + i;
      await l.openRun({ runId, agent: 'racer' });
      const r = await l.reserve({ runId, model: 'anthropic/claude-sonnet-4-5', inputTokens: 100, maxOutputTokens: 400, minOutputTokens: 400 });
      if (r.ok) await l.commit(r.reservationId, { input_tokens: 100, output_tokens: 400, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 });
      await l.closeRun(runId);
      return r;
    };
    const results = await Promise.all(Array.from({ length: ${runs} }, (_, i) => one(i)));
    const refused = results.filter((r) => !r.ok);
    process.stdout.write(JSON.stringify({ granted: results.length - refused.length, refused: refused.length, messages: [...new Set(refused.map((r) => r.scope))] }) + '\\n');
    await l.close();
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`racer ${tag} exited ${code}: ${err}`))));
  });
}

redisTest('two processes racing 100 reservations against one daily cap never commit more than the cap', async () => {
  const prefix = freshPrefix();
  // 10 000 tokens a day, 500 a call: exactly 20 calls fit, whoever makes them.
  const [a, b] = await Promise.all([racer(prefix, 'a', 50), racer(prefix, 'b', 50)]);
  assert.equal(a.granted + a.refused, 50);
  assert.equal(b.granted + b.refused, 50);
  assert.equal(a.granted + b.granted, 20, `granted ${a.granted} + ${b.granted}`);
  for (const r of [a, b]) if (r.refused) assert.deepEqual(r.messages, ['server daily']);
  const l = await redisLedger({ prefix, server: { daily_tokens: 10_000 } });
  const st = await l.status();
  assert.equal(st.server.spent.tokens, 10_000);
  assert.equal(st.server.reserved.tokens, 0, 'nothing stays reserved');
  assert.equal(st.server.reservations, 0);
  assert.equal(st.server.calls, 20);
  assert.equal(st.openRuns, 0);
  assert.deepEqual(st.notes, []);
});

redisTest('two ledgers in one process share holds: an in-flight reservation of one counts against the other', async () => {
  const prefix = freshPrefix();
  const one = await redisLedger({ prefix, server: { daily_tokens: 1_000 } });
  const two = await redisLedger({ prefix, server: { daily_tokens: 1_000 } });
  await one.openRun({ runId: 'r1', agent: 'a' });
  await two.openRun({ runId: 'r2', agent: 'a' });
  const held = await one.reserve({ runId: 'r1', model: SONNET, inputTokens: 200, maxOutputTokens: 600, minOutputTokens: 600 });
  assert.equal(held.ok, true);
  const other = await two.reserve({ runId: 'r2', model: SONNET, inputTokens: 200, maxOutputTokens: 600, minOutputTokens: 600 });
  assert.equal(other.ok, false, 'the other ledger sees the hold (a shared state dir would not)');
  assert.equal(!other.ok && other.scope, 'server daily');
  assert.equal(!other.ok && other.reserved, '800');
});

redisTest('release on failure and closeRun give every hold back; a commit after closeRun still charges', async () => {
  const prefix = freshPrefix();
  const l = await redisLedger({ prefix, server: { daily_tokens: 5_000 } });
  await l.openRun({ runId: 'r', agent: 'a', agentDaily: { tokens: 4_000 } });
  const x = await l.reserve({ runId: 'r', model: SONNET, inputTokens: 1_000, maxOutputTokens: 1_000 });
  assert.ok(x.ok);
  let st = await l.status();
  assert.equal(st.server.reserved.tokens, 2_000);
  assert.equal(st.agents.a.reserved.tokens, 2_000);
  await l.release(x.reservationId); // the call failed before reaching the provider
  await l.release(x.reservationId); // idempotent
  st = await l.status();
  assert.equal(st.server.reserved.tokens, 0);
  assert.equal(st.agents.a.reserved.tokens, 0);
  assert.equal(st.server.spent.tokens, 0);
  await assert.rejects(l.commit(x.reservationId, usage(1, 1)), /commit of unknown or already settled reservation/);

  // A worker lost mid-run: the front closes the run, and its holds (admission and call) go back.
  await l.openRun({ runId: 'lost', agent: 'a' });
  await l.openRun({ runId: 'lost-child', agent: 'a', parentRunId: 'lost' });
  assert.ok((await l.admit({ runId: 'lost', model: SONNET, tokens: 1_000 })).ok);
  const y = await l.reserve({ runId: 'lost-child', model: SONNET, inputTokens: 500, maxOutputTokens: 500, minOutputTokens: 500 });
  assert.ok(y.ok);
  st = await l.status({ runId: 'lost' });
  assert.equal(st.server.reserved.tokens, 2_000);
  assert.equal(st.openRuns, 3);
  await l.closeRun('lost');
  st = await l.status({ runId: 'lost' });
  assert.equal(st.server.reserved.tokens, 0);
  assert.equal(st.server.reservations, 0);
  assert.deepEqual(st.runs.map((r) => [r.runId, r.open, r.reserved.tokens]), [['lost', false, 0], ['lost-child', false, 0]]);
  // The tokens were spent after all (the stream's usage arrived late): charged, not held.
  await l.commit(y.reservationId, usage(500, 300));
  st = await l.status();
  assert.equal(st.server.spent.tokens, 800);
  assert.equal(st.server.reserved.tokens, 0);
});

redisTest('day rollover: a new UTC day opens a new window; the old day stays readable and expires two days after it', async () => {
  const prefix = freshPrefix();
  let now = new Date('2026-03-01T23:59:00Z');
  const l = await redisLedger({ prefix, server: { daily_tokens: 1_000 }, now: () => now });
  await l.openRun({ runId: 'r', agent: 'a' });
  const x = await l.reserve({ runId: 'r', model: SONNET, inputTokens: 400, maxOutputTokens: 600, minOutputTokens: 600 });
  assert.ok(x.ok);
  const refusedToday = await l.reserve({ runId: 'r', model: SONNET, inputTokens: 1, maxOutputTokens: 1, minOutputTokens: 1 });
  assert.equal(refusedToday.ok, false);
  now = new Date('2026-03-02T00:00:30Z');
  // Charged to the day it was reserved on (that window approved it), after midnight.
  await l.commit(x.reservationId, usage(400, 600));
  const y = await l.reserve({ runId: 'r', model: SONNET, inputTokens: 400, maxOutputTokens: 600, minOutputTokens: 600 });
  assert.equal(y.ok, true, 'the new day has its whole window');
  const today = await l.status();
  assert.equal(today.day, '2026-03-02');
  assert.equal(today.server.spent.tokens, 0);
  assert.equal(today.server.reserved.tokens, 1_000);
  const yesterday = await l.status({ day: '2026-03-01' });
  assert.equal(yesterday.server.spent.tokens, 1_000);
  assert.equal(yesterday.server.reserved.tokens, 0);
  // Two days after the day ends, counted on the ledger's clock (it is not Redis's here) when the day's
  // window was first written (23:59:00; it is set once a day, not at every call).
  const ttl = await admin!.ttl(`${prefix}:{budget}:day:2026-03-01:server`);
  const expected = (Date.parse('2026-03-04T00:00:00Z') - Date.parse('2026-03-01T23:59:00Z')) / 1000;
  assert.ok(ttl > expected - 60 && ttl <= expected, `ttl ${ttl} s, expected about ${expected} s`);
  await assert.rejects(l.status({ day: '03/01/2026' }), /day must be YYYY-MM-DD/);
});

redisTest('status text: budget_status renders the Redis books like the in-process ones, per scope, agent, model and run', async () => {
  const prefix = freshPrefix();
  const l = await redisLedger({ prefix, server: { daily_tokens: 10_000, daily_usd: 1 } });
  await l.openRun({ runId: 'b', agent: 'delegate_parallel', call: { tokens: 6_000 } });
  await l.openRun({ runId: 't1', agent: 'coder', parentRunId: 'b', agentDaily: { usd: 0.5 } });
  const r = await l.reserve({ runId: 't1', model: SONNET, inputTokens: 1_000, maxOutputTokens: 1_000 });
  assert.ok(r.ok);
  await l.commit(r.reservationId, usage(1_000, 800));
  const st = await l.status({ runId: 'b' });
  assert.equal(st.server.spent.tokens, 1_800);
  assert.deepEqual(st.server.limits, { tokens: 10_000, usd: 1 });
  assert.deepEqual(Object.keys(st.agents), ['coder', 'delegate_parallel']);
  assert.deepEqual(st.agents.coder.limits, { usd: 0.5 });
  assert.equal(st.agents.coder.spent.usd, 0.015);
  assert.equal(st.models[SONNET].calls, 1);
  assert.equal(st.models[SONNET].tokens, 1_800);
  assert.deepEqual(st.runs.map((x) => [x.runId, x.depth, x.limits.tokens, x.remaining.tokens, x.children]), [
    ['b', 0, 6_000, 4_200, ['t1']],
    ['t1', 1, 6_000, 4_200, []],
  ]);
  assert.equal(st.runs[1].limitedByParent.tokens, true);
  const text = renderBudget(st);
  assert.match(text, /server daily/);
  assert.match(text, /run b \(delegate_parallel\)/);
  assert.match(text, /run t1 \(coder\)/);
});

redisTest('Redis down: opening fails at once with the URL named; a ledger whose Redis is gone fails calls fast', async () => {
  await assert.rejects(openRedisLedger({ url: 'redis://127.0.0.1:1', commandTimeoutMs: 2_000 }), /budget: cannot reach Redis at redis:\/\/127\.0\.0\.1:1/);
  const prefix = freshPrefix();
  const conn = new Redis(REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true });
  conn.on('error', () => {});
  await conn.connect();
  const l = await openRedisLedger({ redis: conn, prefix });
  await l.openRun({ runId: 'r', agent: 'a' });
  conn.disconnect();
  const started = Date.now();
  await assert.rejects(l.reserve({ runId: 'r', model: SONNET, inputTokens: 1, maxOutputTokens: 1 }), /budget: Redis ledger unavailable/);
  assert.ok(Date.now() - started < 1_000, 'failed fast');
  await l.close();
});

redisTest('the budget gate over the Redis ledger answers with Promises and decides as over the in-process ledger', async () => {
  const agent = { name: 'coder', budget: { runTokens: 3_000, dailyTokens: 50_000 }, policies: { context: {} } } as unknown as AgentDefinition;
  const end = { turn: 1, usage: usage(1_000, 900), streamedOutputChars: 3_600, streamedOutputTokens: 900 } as unknown as ModelCallEnd;
  const drive = async <L extends LedgerStore>(gate: BudgetGate<L>) => {
    const out: unknown[] = [];
    const rb = await gate.openRun({ runId: 'g1', agent, modelRef: SONNET });
    out.push(await gate.admit(rb));
    out.push(await gate.beforeCall(rb, 1_000, 1_500));
    out.push(await gate.afterCall(rb, end));
    out.push(await gate.beforeCall(rb, 1_000, 4_000)); // a second call holds a 256-token slice: over the 3 000 cap
    const slice = await gate.reserveSlice(rb, SONNET, 10_000); // a child's slice: what is left of the cap
    out.push(slice.ok ? { ...slice, reservationId: typeof slice.reservationId } : slice);
    out.push(await gate.closeRun(rb)); // the slice is still held: closing the run gives it back
    out.push(await gate.ledger.status());
    return out;
  };
  const local = new BudgetGate(new BudgetLedger({ server: { daily_tokens: 100_000 } }), true);
  const remote = new BudgetGate(await redisLedger({ prefix: freshPrefix(), server: { daily_tokens: 100_000 } }), true);
  const first = remote.openRun({ runId: 'probe', agent, modelRef: SONNET });
  assert.ok(first instanceof Promise, 'the Redis gate answers with a Promise');
  await first;
  const sync = local.openRun({ runId: 'probe', agent, modelRef: SONNET });
  assert.ok(!(sync instanceof Promise), 'the in-process gate answers at once');
  const a = await drive(local);
  const b = await drive(remote);
  assert.equal(a.length, 7);
  assert.deepEqual(b, a);
  assert.deepEqual(a[0], { ok: true });
  assert.equal((a[1] as { ok: boolean }).ok, true);
  assert.match((a[3] as { reason: string }).reason, /^budget refused: run g1 \(coder\) token limit 3000: spent 1900/);
  assert.deepEqual(a[4], { ok: true, reservationId: 'string', tokens: 1_100 });
  assert.equal((a[6] as BudgetStatus).server.spent.tokens, 1_900);
  assert.equal((a[6] as BudgetStatus).server.reserved.tokens, 0, 'closeRun gave the slice back');
});

redisTest('commitAndClose: another node settles a slice it did not reserve (one round trip): spent counted, nothing held, run closed; a second settle is refused', async () => {
  const prefix = freshPrefix();
  const front = await redisLedger({ prefix, server: { daily_tokens: 10_000 } });
  const worker = await redisLedger({ prefix, server: { daily_tokens: 10_000 } });
  await front.openRun({ runId: 'r1', agent: 'a', run: { tokens: 4000 } });
  const slice = await front.reserve({ runId: 'r1', model: SONNET, inputTokens: 0, maxOutputTokens: 4000, minOutputTokens: 1 });
  assert.ok(slice.ok);
  assert.equal((await worker.status()).server.reserved.tokens, 4000);
  await worker.commitAndClose('r1', slice.reservationId, SONNET, usage(300, 200), 0.0042);
  const st = await worker.status();
  assert.equal(st.server.spent.tokens, 500);
  assert.equal(st.server.reserved.tokens, 0);
  assert.equal(st.server.spent.usd, 0.0042, 'the run tree\'s USD as reported');
  assert.equal(st.models[SONNET]?.calls, 1, 'counted under the model it was told');
  assert.equal(st.openRuns, 0);
  await assert.rejects(worker.commitAndClose('r1', slice.reservationId, SONNET, usage(300, 200), null), /already settled/);
  assert.equal((await worker.status()).server.spent.tokens, 500, 'nothing charged twice');
});

redisTest('calls made in the same tick go to Redis as one budgetSteps script and answer exactly as one by one (errors stay with their own call)', async () => {
  const opts = { server: { daily_tokens: 10_000 }, now: () => new Date('2026-05-04T10:00:00Z'), warn: () => {} };
  const burst = await redisLedger({ ...opts, prefix: freshPrefix() });
  const single = await redisLedger({ ...opts, prefix: freshPrefix() });
  const sent: number[] = [];
  const r = burst.redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const steps = r.budgetSteps.bind(burst.redis);
  r.budgetSteps = (...a: unknown[]) => (sent.push(a.length), steps(...a));
  const settle = <T>(p: Promise<T>) => p.then((v) => v, (e: Error) => `error: ${e.message}`);
  // Five runs each open and reserve 3 000 of a 10 000 daily cap, in one tick: the fourth is shrunk,
  // the fifth refused; a second open of run 0 and a reserve for an unknown run fail on their own.
  const calls = (l: RedisLedger) => {
    const out: (() => Promise<unknown>)[] = [];
    for (let i = 0; i < 5; i++) {
      out.push(() => l.openRun({ runId: `r${i}`, agent: i % 2 ? 'odd' : 'even' }));
      out.push(() => l.reserve({ runId: `r${i}`, model: SONNET, inputTokens: 0, maxOutputTokens: 3_000, minOutputTokens: 500 }).then((x) => withoutId(x)));
    }
    out.push(() => l.openRun({ runId: 'r0', agent: 'even' }), () => l.reserve({ runId: 'nope', model: SONNET, inputTokens: 0, maxOutputTokens: 1 }));
    return out;
  };
  const together = await Promise.all(calls(burst).map((c) => settle(c())));
  const oneByOne: unknown[] = [];
  for (const c of calls(single)) oneByOne.push(await settle(c()));
  assert.deepEqual(together, oneByOne);
  assert.match(String(together[10]), /error: budget: run r0 was already opened/);
  assert.match(String(together[11]), /error: budget: unknown run nope/);
  assert.equal((together[9] as { ok: boolean }).ok, false, 'the fifth run finds the cap held by the first four');
  assert.equal(sent.length, 1, 'one script for the whole tick');
  // Settled in one tick too: every reservation committed, every run closed, the books alike.
  const settleAll = async (l: RedisLedger, ids: string[]) => Promise.all([...ids.map((id) => l.commit(id, usage(0, 1_000))), ...[0, 1, 2, 3, 4].map((i) => l.closeRun(`r${i}`))]);
  const reserved = async (l: RedisLedger) => {
    const st = await l.status();
    return { spent: st.server.spent, reserved: st.server.reserved, agents: st.agents };
  };
  const idsOf = async (l: RedisLedger) => {
    const keys = await admin!.keys(`${l.base}rsv:*`);
    return keys.map((k) => k.slice(`${l.base}rsv:`.length));
  };
  await settleAll(burst, await idsOf(burst));
  const sequential = await idsOf(single);
  for (const id of sequential) await single.commit(id, usage(0, 1_000));
  for (let i = 0; i < 5; i++) await single.closeRun(`r${i}`);
  assert.deepEqual(await reserved(burst), await reserved(single));
  assert.equal(sent.length, 2);
});

redisTest('every key the books make expires: day windows at the day\'s expiry, a run\'s keys with the run (open: its TTL, closed: the closed TTL)', async () => {
  const prefix = freshPrefix();
  const books = await redisLedger({ prefix, server: { daily_tokens: 100_000 }, runTtlS: 3_600, closedRunTtlS: 600, warn: () => {} });
  await books.openRun({ runId: 'p', agent: 'planner', run: { tokens: 50_000 }, agentDaily: { tokens: 40_000 } });
  await books.openRun({ runId: 'c', agent: 'coder', parentRunId: 'p' });
  const adm = await books.admit({ runId: 'c', model: SONNET, tokens: 1_000 });
  assert.ok(adm.ok);
  const a = await books.reserve({ runId: 'c', model: SONNET, inputTokens: 100, maxOutputTokens: 500 });
  const b = await books.reserve({ runId: 'p', model: 'local/llama-9', inputTokens: 100, maxOutputTokens: 500 });
  assert.ok(a.ok && b.ok);
  await books.commit(a.reservationId, usage(100, 200));
  await books.commit(b.reservationId, usage(100, 300));
  const ttls = async () => {
    const keys = await admin!.keys(`${prefix}:*`);
    const out: Record<string, number> = {};
    for (const k of keys) out[k.slice(books.base.length)] = await admin!.ttl(k);
    return out;
  };
  const open = await ttls();
  for (const [k, ttl] of Object.entries(open)) {
    if (k === 'open-runs' || k === 'limits:agent') continue; // the deployment's own, not a run's or a day's
    if (k.startsWith('run:') || k.startsWith('rsv:')) assert.ok(ttl > 3_500 && ttl <= 3_600, `${k}: ttl ${ttl}, expected the run TTL`);
    else assert.ok(ttl > 86_400, `${k}: ttl ${ttl}, expected the day's expiry`);
  }
  for (const k of ['run:p', 'run:c', 'run:p:children', 'run:c:models', 'run:p:models', 'run:c:rsv', `rsv:${adm.reservationId}`]) assert.ok(k in open, `${k} exists`);
  await books.closeRun('p');
  for (const [k, ttl] of Object.entries(await ttls())) {
    if (k === 'open-runs' || k === 'limits:agent') continue;
    if (k.startsWith('run:') || k.startsWith('rsv:')) assert.ok(ttl > 0 && ttl <= 600, `${k}: ttl ${ttl}, expected the closed TTL`);
    else assert.ok(ttl > 86_400, `${k}: ttl ${ttl}, expected the day's expiry`);
  }
});

redisTest('a step that fails midway in budgetSteps fails alone: the steps after it run on what Redis holds', async () => {
  const now = new Date('2026-05-04T10:00:00Z');
  const l = await redisLedger({ prefix: freshPrefix(), server: { daily_tokens: 10_000 }, now: () => now });
  await l.openRun({ runId: 'r1', agent: 'a' });
  const x = await l.reserve({ runId: 'r1', model: SONNET, inputTokens: 0, maxOutputTokens: 1_000 });
  assert.ok(x.ok);
  const clock = Math.floor(now.getTime() / 1000);
  const dayExpireAt = Date.parse('2026-05-04T00:00:00Z') / 1000 + 3 * 86_400;
  // An extend whose wanted size is no number breaks inside the script (no public call can send it).
  const steps = (l.redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown[]>>).budgetSteps.bind(l.redis);
  const replies = await steps(l.base, 'budgetExtend', 5, x.reservationId, 'not a number', '10000', '', 3_600, 'budgetOpenRun', 11, 'r2', 'a', '', '2026-05-04', dayExpireAt, 3_600, '', '', '', '', 'run r2 (a)', clock);
  assert.equal((replies[0] as string[])[0], '!budget-step-error');
  assert.match(String((replies[0] as string[])[1]), /^budget: Redis ledger unavailable \(/);
  assert.deepEqual(replies[1], ['', '', '0', '0'], 'the next step ran');
  const st = await l.status({ runId: 'r2' });
  assert.equal(st.server.reserved.tokens, 1_000, 'the failed step changed nothing');
});

redisTest("a burst's first calls reach Redis while the tick that makes them is still going (a front's books connection)", async () => {
  // A front starting a 128-run batch spends ~30 ms in one tick: its first runs' steps must be on the wire
  // by then (sent early, not auto-pipelined to the tick's end), so their jobs can go out sooner.
  const { connectBooks } = await import('../src/queue/connection.js');
  const books = await connectBooks(REDIS_URL);
  try {
    const l = await redisLedger({ redis: books, prefix: freshPrefix() });
    const socket = (books as unknown as { stream: { bytesWritten: number } }).stream;
    const before = socket.bytesWritten;
    const opened = Array.from({ length: 40 }, (_, i) => l.openRun({ runId: `r${i}`, agent: 'a' }));
    const inTick = socket.bytesWritten - before;
    await Promise.all(opened);
    assert.ok(inTick > 0, 'the first 32 steps were written before the tick ended');
    assert.ok(socket.bytesWritten - before > inTick, 'the rest went after it');
    assert.equal((await l.status()).openRuns, 40);
  } finally {
    books.disconnect();
  }
});

redisTest("charge: a run's spend with no reservation left (its slice released) counts on the day and its run, past the cap", async () => {
  const now = new Date('2026-05-04T10:00:00Z');
  const l = await redisLedger({ prefix: freshPrefix(), server: { daily_tokens: 1_000 }, now: () => now });
  await l.openRun({ runId: 'lost', agent: 'a' });
  const x = await l.reserve({ runId: 'lost', model: SONNET, inputTokens: 0, maxOutputTokens: 900 });
  assert.ok(x.ok);
  // Its front gave it up as lost: the slice goes back and the run closes; its worker went on and spent 1,500.
  await l.release(x.reservationId);
  await l.closeRun('lost');
  const c = await l.charge({ runId: 'lost', agent: 'a', model: SONNET, usage: usage(1_200, 300), usd: null });
  assert.equal(c.tokens, 1_500);
  const st = await l.status({ runId: 'lost' });
  assert.equal(st.server.spent.tokens, 1_500, 'counted past the daily cap: it was spent');
  assert.equal(st.server.reserved.tokens, 0);
  assert.equal(st.agents.a.spent.tokens, 1_500);
  assert.equal(st.runs.find((r) => r.runId === 'lost')?.spent.tokens, 1_500, 'and on the run');
  await l.openRun({ runId: 'next', agent: 'a' });
  const next = await l.reserve({ runId: 'next', model: SONNET, inputTokens: 0, maxOutputTokens: 10, minOutputTokens: 1 });
  assert.equal(next.ok, false, 'the day is spent: the next run is refused');
  if (!next.ok) assert.match(next.message, /daily|server/);
});

/**
 * Random sequences of ledger calls over a tree of runs (caps of every kind or none, admissions, sliced
 * calls that extend, commits over and under their holds, releases, runs closed with children and holds
 * still open, late commits, priced and unpriced models), the same on both ledgers; calls of one group
 * go to Redis in one tick (one budgetSteps script), the in-process ledger takes them one by one.
 */
redisTest('random call sequences: the Redis ledger answers every call as the in-process ledger does (one by one and in same-tick bursts)', async () => {
  const MODELS = [SONNET, SONNET, 'local/llama-9'];
  for (const seed of [1, 2, 3, 4]) {
    const rnd = mulberry32(seed);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)];
    const maybe = (p: number, v: () => number): number | undefined => (rnd() < p ? v() : undefined);
    const opts = { server: { daily_tokens: 1_500_000, daily_usd: 12 }, now: () => new Date('2026-05-04T10:00:00Z'), warn: () => {} };
    const local = new BudgetLedger(opts);
    const redis = await redisLedger({ ...opts, prefix: freshPrefix() });
    const runs: { id: string; parent?: string; open: boolean; admitted: boolean }[] = [];
    /** Open reservations: [local id, redis id, sliced]. */
    const holds: [string, string, boolean][] = [];
    const norm = (v: unknown): unknown => (v && typeof v === 'object' && 'reservationId' in v ? withoutId(v as ReserveResult) : v);
    let step = 0;
    for (let group = 0; group < 120; group++) {
      // Each call: its arguments drawn now, then run as fn(ledger, which).
      const calls: { what: string; fn: (l: LedgerStore, which: 0 | 1) => unknown }[] = [];
      const size = rnd() < 0.5 ? 1 : 2 + Math.floor(rnd() * 4);
      for (let k = 0; k < size; k++) {
        const r = rnd();
        const openRuns = runs.filter((x) => x.open);
        if (r < 0.12 || !runs.length) {
          const id = `r${runs.length}`;
          const parent = openRuns.length && rnd() < 0.6 ? pick(openRuns).id : undefined;
          const run = { tokens: maybe(0.5, () => 2_000 + Math.floor(rnd() * 60_000)), usd: maybe(0.3, () => Math.round(rnd() * 100) / 100) };
          const call = { tokens: maybe(0.3, () => 1_000 + Math.floor(rnd() * 40_000)) };
          const agentDaily = { tokens: maybe(0.3, () => 20_000 + Math.floor(rnd() * 200_000)) };
          const agent = pick(['coder', 'planner', 'tester']);
          runs.push({ id, parent, open: true, admitted: false });
          calls.push({ what: `openRun ${id} < ${parent}`, fn: (l) => l.openRun({ runId: id, agent, parentRunId: parent, run, call, agentDaily }) });
        } else if (r < 0.55) {
          const run = pick(rnd() < 0.9 && openRuns.length ? openRuns : runs);
          const sliced = rnd() < 0.25;
          const req = {
            runId: run.id,
            model: pick(MODELS),
            inputTokens: Math.floor(rnd() * 3_000),
            maxOutputTokens: 1 + Math.floor(rnd() * 8_000),
            minOutputTokens: maybe(0.5, () => Math.floor(rnd() * 2_000)),
            outputSlice: sliced ? 1 + Math.floor(rnd() * 1_000) : undefined,
          };
          const got: string[] = [];
          calls.push({
            what: `reserve ${run.id}`,
            fn: (l, which) =>
              Promise.resolve(l.reserve(req)).then((x) => {
                if (x.ok) got[which] = x.reservationId;
                if (which === 1 && got[0] && got[1]) holds.push([got[0], got[1], sliced]);
                return x;
              }),
          });
        } else if (r < 0.62 && holds.some((h) => h[2])) {
          const h = pick(holds.filter((x) => x[2]));
          const want = 1 + Math.floor(rnd() * 3_000);
          calls.push({ what: `extend ${h[0]}`, fn: (l, which) => l.extend(h[which], want) });
        } else if (r < 0.84 && holds.length) {
          const i = Math.floor(rnd() * holds.length);
          const h = holds.splice(i, 1)[0];
          const u = { ...usage(Math.floor(rnd() * 6_000), Math.floor(rnd() * 18_000)), ...(rnd() < 0.4 && { cache_read_input_tokens: Math.floor(rnd() * 4_000), cache_creation_input_tokens: Math.floor(rnd() * 2_000) }) };
          const fallback = rnd() < 0.15 ? { streamedOutputTokens: Math.floor(rnd() * 5_000), cut: rnd() < 0.5 } : undefined;
          calls.push({ what: `commit ${h[0]}`, fn: (l, which) => l.commit(h[which], u, fallback) });
        } else if (r < 0.88 && holds.length) {
          const h = holds.splice(Math.floor(rnd() * holds.length), 1)[0];
          calls.push({ what: `release ${h[0]}`, fn: (l, which) => l.release(h[which]) });
        } else if (r < 0.92 && openRuns.some((x) => !x.admitted)) {
          const run = pick(openRuns.filter((x) => !x.admitted));
          run.admitted = true;
          const tokens = 500 + Math.floor(rnd() * 30_000);
          const model = pick(MODELS);
          calls.push({ what: `admit ${run.id}`, fn: (l) => Promise.resolve(l.admit({ runId: run.id, model, tokens })) });
        } else if (r < 0.96 && openRuns.length) {
          const run = pick(openRuns);
          // Its descendants close with it.
          const closing = new Set([run.id]);
          for (const x of runs) if (x.parent && closing.has(x.parent)) closing.add(x.id);
          for (const x of runs) if (closing.has(x.id)) x.open = false;
          calls.push({ what: `closeRun ${run.id}`, fn: (l) => l.closeRun(run.id) });
        } else if (r < 0.985) {
          const run = pick(runs);
          calls.push({ what: `status ${run.id}`, fn: (l) => l.status({ runId: run.id }) });
        } else {
          const run = pick(runs);
          calls.push({ what: `runTotals ${run.id}`, fn: (l) => l.runTotals(run.id) });
        }
      }
      // Reservation ids differ between the two: an error names one as rsv_*.
      const settle = (v: unknown) => Promise.resolve(v).then(norm, (e: Error) => `error: ${e.message.replace(/rsv_\w+/g, 'rsv_*')}`);
      const localAnswers: unknown[] = [];
      for (const c of calls) {
        let v: unknown;
        try {
          v = c.fn(local, 0);
        } catch (e) {
          v = Promise.reject(e);
        }
        localAnswers.push(await settle(v));
      }
      const redisAnswers = await Promise.all(calls.map((c) => settle(Promise.resolve().then(() => c.fn(redis, 1)))));
      for (let k = 0; k < calls.length; k++) {
        assert.deepEqual(redisAnswers[k], localAnswers[k], `seed ${seed}, call ${step + k} (${calls[k].what}) answered differently`);
      }
      step += calls.length;
    }
    // The whole day's books alike at the end, and nothing the other does not hold.
    assert.deepEqual(await redis.status(), local.status(), `seed ${seed}: the day's books`);
  }
});

redisTest("a queue run's slice remembers how it ended (settleSlice): committed or released, for the closed-run TTL; a plain commit or release leaves nothing behind", async () => {
  const prefix = freshPrefix();
  const books = await redisLedger({ prefix, closedRunTtlS: 600, warn: () => {} });
  await books.openRun({ runId: 'q', agent: 'a' });
  const slice = (id: string) => books.reserve({ runId: id, model: SONNET, inputTokens: 0, maxOutputTokens: 1_000, minOutputTokens: 1 });
  const [kept, given, plainC, plainR] = await Promise.all([slice('q'), slice('q'), slice('q'), slice('q')]);
  assert.ok(kept.ok && given.ok && plainC.ok && plainR.ok);
  assert.equal(await books.settlement(kept.reservationId), 'held');
  await books.settleSlice(kept.reservationId, { usage: usage(100, 200), usd: null });
  await books.settleSlice(given.reservationId, null);
  await books.commit(plainC.reservationId, usage(10, 20));
  await books.release(plainR.reservationId);
  assert.equal(await books.settlement(kept.reservationId), 'committed');
  assert.equal(await books.settlement(given.reservationId), 'released');
  assert.equal(await books.settlement(plainC.reservationId), 'unknown');
  assert.equal(await books.settlement(plainR.reservationId), 'unknown');
  assert.equal(await books.settlement('rsv_never'), 'unknown');
  const ttl = await admin!.ttl(`${books.base}rsv:${kept.reservationId}:end`);
  assert.ok(ttl > 590 && ttl <= 600, `kept for the closed-run TTL: ${ttl}`);
  // Settled once, whoever comes first: the worker's commit after its front's release is refused.
  await assert.rejects(books.commitAndClose('q', given.reservationId, SONNET, usage(1, 1), null), /already settled/);
  assert.equal(await books.settlement(given.reservationId), 'released');
  assert.equal((await books.status()).server.spent.tokens, 330);
});
