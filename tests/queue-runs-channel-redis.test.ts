// A node's runs channel (src/queue/job-watch.ts) on a real Redis (REDIS_URL, default
// redis://127.0.0.1:6379), without processes: what the workers of a node's runs tell it there (progress,
// the end, a failure, a lost worker) settles its waits only when signed for that run; and an end told
// while the channel's connection was away is read from the job as soon as it is back.
// Without Redis the file is skipped with a notice, except under CI=true, where that is a failure.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Queue, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { connectAdmin, dropPrefix, reportMissingRedis, REDIS_URL } from './redis-check.js';
import { cuttableRedis } from './queue-world.js';
import { JobWatch, optInRetries, STALLED_REASON, type JobOutcome } from '../src/queue/job-watch.js';
import { errorResult, keys, type RunChannelMessage, type RunJobFailure, type RunJobReturn } from '../src/queue/jobs.js';
import { QueueKey } from '../src/queue/signing.js';
import { emptyUsage } from '../src/contract/usage-sum.js';

let admin: Redis | undefined;
let reachable = false;
const prefix = `dmcp-test-${randomBytes(4).toString('hex')}`;
const key = new QueueKey(randomBytes(32).toString('base64url'), 'test');
const auth = { key, prefix, url: REDIS_URL };
const closers: (() => unknown)[] = [];
before(async () => {
  admin = await connectAdmin();
  reachable = admin !== undefined;
  if (!reachable) reportMissingRedis('tests/queue-runs-channel-redis.test.ts (a node\'s runs channel)');
});
after(async () => {
  for (const c of closers.reverse()) await c();
  if (admin) await dropPrefix(admin, prefix);
  admin?.disconnect();
});

async function connect(url = REDIS_URL): Promise<Redis> {
  const r = new Redis(url, { maxRetriesPerRequest: null });
  r.on('error', () => {}); // a cut link shows in what the test waits for
  closers.push(() => r.disconnect());
  await r.ping();
  return r;
}

const runId = () => `run_${randomUUID()}`;
const end = (id: string, output: string) => key.seal('return', prefix, id, { result: { ...errorResult(id, 'probe', 'm', Date.now(), '', 'ok'), error: undefined, output }, treeUsage: emptyUsage(), node: 'worker-test' } satisfies RunJobReturn);
const failure = (id: string, f: RunJobFailure) => key.seal('failure', prefix, id, f);
const settledWithin = async (p: Promise<unknown>, ms: number) => {
  let settled = false;
  void p.then(() => (settled = true));
  await new Promise((r) => setTimeout(r, ms));
  return settled;
};

/**
 * A node's watch listening on its runs channel (`cuttable`: through a link the test can cut; `retries`:
 * with a front's opt-in retries), and a connection to publish with.
 */
async function listening(cuttable = false, retries = false): Promise<{ watch: JobWatch; queue: Queue; tell: (m: RunChannelMessage | string) => Promise<number>; link: Awaited<ReturnType<typeof cuttableRedis>> | undefined }> {
  const link = cuttable ? await cuttableRedis() : undefined;
  if (link) closers.push(() => link.close());
  const subUrl = link?.url ?? REDIS_URL;
  const conn = await connect();
  const queue = new Queue('runs', { connection: conn, prefix });
  closers.push(() => queue.close());
  const policy = retries ? optInRetries(queue, conn, () => {}) : { retry: undefined, willRetry: async () => false };
  const watch = new JobWatch(undefined, queue, auth, conn, policy.retry, policy.willRetry);
  closers.push(() => watch.close());
  const channel = keys.runsChannel(prefix, `front-${randomBytes(3).toString('hex')}`);
  await watch.listen(await connect(subUrl), channel);
  const pub = await connect();
  return { watch, queue, tell: (m) => pub.publish(channel, typeof m === 'string' ? m : JSON.stringify(m)), link };
}

test("signed parts for the run settle its wait; unsigned ones, another run's, and noise are ignored", async (t) => {
  if (!reachable) return t.skip('no Redis');
  const { watch, tell } = await listening();
  const [a, b, c, d] = [runId(), runId(), runId(), runId()];
  const lines: string[] = [];
  const waitA = watch.wait(a, (p) => lines.push(p.line));
  const waitB = watch.wait(b);
  const waitC = watch.wait(c);
  const waitD = watch.wait(d);
  await tell('not json');
  await tell({ runId: runId(), end: end(a, 'nobody waits on this run') });
  await tell({ runId: a, progress: key.seal('progress', prefix, a, { line: 'probe · turn 1/4 · thinking', turn: 1, usage: emptyUsage(), node: 'worker-test' }) });
  await tell({ runId: a, progress: { line: 'unsigned words', turn: 1, usage: emptyUsage(), node: 'x' } });
  await tell({ runId: a, failure: { reason: 'unsigned: give up' } });
  await tell({ runId: a, failure: failure(b, { reason: "another run's failure" }) });
  assert.equal(await settledWithin(waitA.done, 200), false, 'nothing unsigned or meant for another run ends it');
  assert.deepEqual(lines, ['probe · turn 1/4 · thinking']);
  await tell({ runId: a, end: end(a, 'the answer') });
  const outA = await waitA.done;
  assert.equal(outA.kind, 'completed');
  assert.equal((outA as Extract<JobOutcome, { kind: 'completed' }>).value.result.output, 'the answer');
  // A lost worker (its agent not retried), a failure, and a genuine answer of another run moved onto this one.
  await tell({ runId: b, failure: failure(b, { reason: STALLED_REASON, stalled: true }) });
  await tell({ runId: c, failure: failure(c, { reason: 'worker refused it' }) });
  await tell({ runId: d, end: end(a, 'the answer') });
  assert.deepEqual(await waitB.done, { kind: 'failed', reason: STALLED_REASON });
  assert.deepEqual(await waitC.done, { kind: 'failed', reason: 'worker refused it' });
  const outD = await waitD.done;
  assert.equal(outD.kind === 'failed' && outD.forged, true, JSON.stringify(outD));
  assert.equal(watch.watching, 0);
});

test('an end told while the channel was away is read from the job as soon as the channel is back (not at the next 5 s check)', async (t) => {
  if (!reachable) return t.skip('no Redis');
  const { watch, queue, tell, link } = await listening(true);
  const id = runId();
  const waiting = watch.wait(id);
  link!.cut();
  // The job ends (BullMQ records its answer) and its end is told to nobody.
  const worker = new Worker('runs', async () => end(id, 'ended unheard'), { connection: await connect(), prefix });
  closers.push(() => worker.close());
  await queue.add('probe', {}, { jobId: id });
  for (let i = 0; i < 100 && (await queue.getJobState(id)) !== 'completed'; i++) await new Promise((r) => setTimeout(r, 50));
  // Gone before the next test: it shares the queue, and would take that test's jobs.
  await worker.close();
  assert.equal(await tell({ runId: id, end: end(id, 'ended unheard') }), 0, 'nobody heard it');
  const t0 = Date.now();
  link!.restore();
  const out = await waiting.done;
  assert.equal(out.kind, 'completed');
  assert.equal((out as Extract<JobOutcome, { kind: 'completed' }>).value.result.output, 'ended unheard');
  assert.ok(Date.now() - t0 < 4000, `read ${Date.now() - t0} ms after the channel came back`);
});

test('an end told before the channel was back, and recorded by BullMQ only after the reconnect read, is found within seconds (not at the 5 s check of a 5 s old end)', async (t) => {
  if (!reachable) return t.skip('no Redis');
  const { watch, queue, tell, link } = await listening(true);
  const id = runId();
  const waiting = watch.wait(id);
  let openGate = () => {};
  const gate = new Promise<void>((r) => (openGate = r));
  const worker = new Worker('runs', async () => (await gate, end(id, 'recorded late')), { connection: await connect(), prefix });
  closers.push(() => worker.close());
  closers.push(() => openGate()); // before the worker closes (closers run last first)
  await queue.add('probe', {}, { jobId: id });
  for (let i = 0; i < 100 && (await queue.getJobState(id)) !== 'active'; i++) await new Promise((r) => setTimeout(r, 50));
  link!.cut();
  // The worker tells its end while this node is away (nobody hears it); BullMQ has not recorded it yet.
  assert.equal(await tell({ runId: id, end: end(id, 'recorded late') }), 0, 'nobody heard it');
  link!.restore();
  for (let i = 0; i < 100 && (await tell('ping')) === 0; i++) await new Promise((r) => setTimeout(r, 50)); // the channel is back, its first read done
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(await settledWithin(waiting.done, 0), false, 'nothing to read yet');
  openGate(); // BullMQ records the end now, and nobody tells it again
  const t0 = Date.now();
  const out = await waiting.done;
  assert.equal(out.kind === 'completed' && out.value.result.output, 'recorded late', JSON.stringify(out));
  assert.ok(Date.now() - t0 < 4000, `found ${Date.now() - t0} ms after BullMQ recorded it`);
  await worker.close();
});

test('a reconnect does not take a job still on its way to Redis for a lost one', async (t) => {
  if (!reachable) return t.skip('no Redis');
  const { watch, queue, tell, link } = await listening(true);
  const id = runId();
  const waiting = watch.wait(id); // registered first, as a front does; its job is not in Redis yet
  link!.cut();
  await new Promise((r) => setTimeout(r, 200));
  link!.restore();
  for (let i = 0; i < 100 && (await tell('ping')) === 0; i++) await new Promise((r) => setTimeout(r, 50)); // the channel is back
  assert.equal(await settledWithin(waiting.done, 1000), false, 'not "the queue lost the run"');
  await queue.add('probe', {}, { jobId: id });
  await tell({ runId: id, end: end(id, 'on its way, then done') });
  const out = await waiting.done;
  assert.equal(out.kind, 'completed', JSON.stringify(out));
});

test("an opted-in run's lost worker: news of the loss that comes after its failure and retry does not end it; one with no tries left ends at once", async (t) => {
  if (!reachable) return t.skip('no Redis');
  const { watch, queue, tell } = await listening(false, true);
  // Sent back after its failure, then told late that its worker was lost: it goes on.
  const id = runId();
  let attempt = 0;
  let openGate = () => {};
  const gate = new Promise<void>((r) => (openGate = r));
  const worker = new Worker(
    'runs',
    async () => {
      attempt++;
      if (attempt === 1) throw new UnrecoverableError(STALLED_REASON); // as a worker fails a job whose worker was lost
      await gate;
      await tell({ runId: id, end: end(id, 'second try') });
      return end(id, 'second try');
    },
    { connection: await connect(), prefix },
  );
  closers.push(() => worker.close());
  closers.push(() => openGate()); // before the worker closes (closers run last first), whatever the test found
  const waiting = watch.wait(id);
  await queue.add('probe', { agent: 'again' }, { jobId: id, attempts: 2 });
  for (let i = 0; i < 100 && (await queue.getJobState(id)) !== 'failed'; i++) await new Promise((r) => setTimeout(r, 50));
  await tell({ runId: id, failure: failure(id, { reason: STALLED_REASON }) });
  for (let i = 0; i < 100 && attempt < 2; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(attempt, 2, 'sent back to the queue and taken again');
  await tell({ runId: id, failure: failure(id, { reason: STALLED_REASON, stalled: true }) });
  assert.equal(await settledWithin(waiting.done, 500), false, 'the late news of the loss ends nothing');
  openGate();
  const out = await waiting.done;
  assert.equal(out.kind === 'completed' && out.value.result.output, 'second try', JSON.stringify(out));
  await worker.close();
  // Lost with no tries left, still waiting to be failed by a worker: it ends now, "worker lost".
  const last = runId();
  const lastWait = watch.wait(last);
  await queue.add('probe', { agent: 'once' }, { jobId: last, attempts: 1 });
  await admin!.hset(queue.toKey(last), 'defa', STALLED_REASON);
  await tell({ runId: last, failure: failure(last, { reason: STALLED_REASON, stalled: true }) });
  assert.deepEqual(await lastWait.done, { kind: 'failed', reason: STALLED_REASON });
});
