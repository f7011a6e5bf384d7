// The approval round trip of queue mode (src/queue/approvals.ts) on a real Redis (REDIS_URL, default
// redis://127.0.0.1:6379), without processes: a front's desk and a worker's, each on its own
// connections. What reaches the run's asker, what a front refuses, what a worker ignores (forged or
// stray answers), and how an ask fails when its front is gone, Redis is away, or nobody answers.
// Without Redis the file is skipped with a notice, except under CI=true, where that is a failure.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { connectAdmin, reportMissingRedis, REDIS_URL } from './redis-check.js';
import { cuttableRedis } from './queue-world.js';
import { FrontApprovals, WorkerApprovals } from '../src/queue/approvals.js';
import { keys } from '../src/queue/jobs.js';
import { RedisLink, type QueueSettings } from '../src/queue/connection.js';
import { QueueKey } from '../src/queue/signing.js';
import type { AskAnswer, AskFn, AskQuestion } from '../src/orchestrator/tool-gate.js';

let admin: Redis | undefined;
let reachable = false;
before(async () => {
  admin = await connectAdmin();
  reachable = admin !== undefined;
  if (!reachable) reportMissingRedis('tests/queue-approvals-redis.test.ts (the approval round trip)');
});
const closers: (() => unknown)[] = [];
after(async () => {
  for (const c of closers.reverse()) await c();
  admin?.disconnect();
});

const prefix = `dmcp-test-${randomBytes(4).toString('hex')}`;
/** The queue key every desk here shares (signing.ts). */
const key = new QueueKey(randomBytes(32).toString('base64url'), 'test');
const settings = (nodeId: string, url = REDIS_URL): QueueSettings => ({ url, prefix, maxWaiting: 100, lockMs: 30_000, nodeId, key, link: new RedisLink(url, nodeId) });
const runId = () => `run_${randomUUID()}`;
const question = (over: Partial<AskQuestion> = {}): AskQuestion => ({ agent: 'asker', tool: 'read_file', summary: 'read `secret/plan.txt`', rule: 'Read(secret/**)', ...over });

async function connect(url = REDIS_URL): Promise<Redis> {
  const r = new Redis(url, { maxRetriesPerRequest: null });
  r.on('error', () => {}); // a cut link reports through the asks under test
  closers.push(() => r.disconnect());
  await r.ping();
  return r;
}

async function front(nodeId: string, askTimeoutMs = 30_000): Promise<FrontApprovals> {
  const desk = await FrontApprovals.open(await connect(), settings(nodeId), askTimeoutMs);
  closers.push(() => desk.close());
  return desk;
}

/** A worker's desk, subscribed to its answer channel as a worker node is. */
async function worker(nodeId: string, askTimeoutMs = 30_000, url = REDIS_URL): Promise<WorkerApprovals> {
  const desk = new WorkerApprovals(await connect(url), settings(nodeId, url), askTimeoutMs);
  const sub = await connect(url);
  sub.on('message', (ch: string, raw: string) => ch === desk.channel && desk.heard(raw));
  await sub.subscribe(desk.channel);
  closers.push(() => desk.close());
  return desk;
}

/** An asker the test answers by hand, in order; it records each question. */
function handAsker(): { ask: AskFn; asked: AskQuestion[]; answer: (a: AskAnswer) => void; next: () => Promise<AskQuestion> } {
  const asked: AskQuestion[] = [];
  const answers: ((a: AskAnswer) => void)[] = [];
  const unseen: AskQuestion[] = [];
  const waiters: ((q: AskQuestion) => void)[] = [];
  return {
    asked,
    ask: (q) =>
      new Promise<AskAnswer>((resolve) => {
        asked.push(q);
        answers.push(resolve);
        const waiter = waiters.shift();
        if (waiter) waiter(q);
        else unseen.push(q);
      }),
    answer: (a) => answers.shift()!(a),
    next: () => (unseen.length ? Promise.resolve(unseen.shift()!) : new Promise((r) => waiters.push(r))),
  };
}

const settledWithin = async (p: Promise<unknown>, ms: number) => {
  let settled = false;
  void p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await new Promise((r) => setTimeout(r, ms));
  return settled;
};

test('the question reaches the asker of the run the front holds (run id, agent, call, rule); its answer comes back', async (t) => {
  if (!reachable) return t.skip('no Redis');
  const f = await front('front-a');
  const w = await worker('worker-a');
  const id = runId();
  const h = handAsker();
  assert.equal(f.hold(id, 'asker', h.ask, new Promise(() => {})), true);
  assert.equal(f.hold(runId(), 'asker', undefined, new Promise(() => {})), false, 'a request without an asker cannot ask');
  const pending = w.askFor(id, 'front-a')(question());
  const q = await h.next();
  assert.deepEqual({ ...q, signal: undefined }, { ...question(), runId: id, signal: undefined });
  assert.ok(q.signal instanceof AbortSignal);
  h.answer('run');
  assert.equal(await pending, 'run');
  // Each question is asked anew (the worker's gate remembers allow_run, not the desks).
  const again = w.askFor(id, 'front-a')(question());
  await h.next();
  h.answer('deny');
  assert.equal(await again, 'deny');
  assert.equal(h.asked.length, 2);
});

test('a front answers only for runs it holds, and only for their agent', async (t) => {
  if (!reachable) return t.skip('no Redis');
  await front('front-b');
  const other = await front('front-c');
  const w = await worker('worker-b');
  const id = runId();
  const h = handAsker();
  other.hold(id, 'asker', h.ask, new Promise(() => {}));
  await assert.rejects(w.askFor(id, 'front-b')(question()), /^Error: the front that started this run \(front-b\) holds no run run_\S+ that can ask \(it ended, or another front started it\)$/);
  await assert.rejects(w.askFor(id, 'front-c')(question({ agent: 'impostor' })), new Error(`run ${id} is a run of asker, not impostor`));
  assert.equal(h.asked.length, 0, 'nobody was asked');
});

test('answers unsigned, signed with another key, for unknown questions or of another run are ignored; a question heard twice is asked once', async (t) => {
  if (!reachable) return t.skip('no Redis');
  const f = await front('front-d');
  const w = await worker('worker-d');
  const spy = await connect();
  const seen: any[] = [];
  spy.on('message', (_c: string, raw: string) => seen.push(JSON.parse(raw)));
  await spy.subscribe(keys.askChannel(prefix, 'front-d'));
  const id = runId();
  const h = handAsker();
  f.hold(id, 'asker', h.ask, new Promise(() => {}));
  const pending = w.askFor(id, 'front-d')(question());
  await h.next();
  const q = seen.find((m) => m.kind === 'ask');
  const qid = q.id;
  const other = new QueueKey(randomBytes(32).toString('base64url'), 'test');
  const signed = (m: { runId: string; [k: string]: unknown }, k = key) => JSON.stringify(k.seal('approval-answer', prefix, m.runId, m));
  const forge = (raw: string) => admin!.publish(w.channel, raw);
  await forge(JSON.stringify({ kind: 'answer', id: qid, runId: id, answer: 'once' })); // unsigned: what anyone on Redis could send
  await forge(signed({ kind: 'answer', id: qid, runId: id, answer: 'once' }, other));
  await forge(JSON.stringify({ ...JSON.parse(signed({ kind: 'answer', id: qid, runId: id, answer: 'deny' })), answer: 'once' })); // changed
  await forge(signed({ kind: 'answer', id: randomUUID(), runId: id, answer: 'once' }));
  await forge(signed({ kind: 'answer', id: qid, runId: runId(), answer: 'once' }));
  await forge(signed({ kind: 'answer', id: qid, runId: id, answer: 'always' }));
  await forge('not json');
  // The genuine question put back on the front's channel: not asked again.
  await admin!.publish(keys.askChannel(prefix, 'front-d'), JSON.stringify(q));
  assert.equal(await settledWithin(pending, 200), false, 'still waiting for the real answer');
  assert.equal(h.asked.length, 1);
  h.answer('deny');
  assert.equal(await pending, 'deny');
});

test('the front gone: nothing listening fails the ask at once; a front that closes fails its waiting questions with the reason', async (t) => {
  if (!reachable) return t.skip('no Redis');
  const w = await worker('worker-e');
  await assert.rejects(w.askFor(runId(), 'front-nobody')(question()), new Error('the front that started this run (front-nobody) is not answering: nothing listens on its channel (it stopped or restarted)'));
  const f = await front('front-e');
  const id = runId();
  const h = handAsker();
  f.hold(id, 'asker', h.ask, new Promise(() => {}));
  const pending = w.askFor(id, 'front-e')(question());
  const q = await h.next();
  await f.close();
  await assert.rejects(pending, /^Error: the front that started this run \(front-e\) (is shutting down|is not answering: it stopped listening on Redis)/);
  assert.equal(q.signal?.aborted, true, "the front's asker was told to stop");
});

test("the run ends on the front: its question fails; the worker gives up (cancel): the front's asker is told and nothing more is sent", async (t) => {
  if (!reachable) return t.skip('no Redis');
  const f = await front('front-f');
  const w = await worker('worker-f');
  const id = runId();
  const h = handAsker();
  let end!: () => void;
  f.hold(id, 'asker', h.ask, new Promise<void>((r) => (end = r)));
  const pending = w.askFor(id, 'front-f')(question());
  await h.next();
  end();
  await assert.rejects(pending, new Error('the run ended on the front that started it (front-f)'));

  const id2 = runId();
  const spy = await connect();
  const replies: any[] = [];
  spy.on('message', (_c: string, raw: string) => replies.push(JSON.parse(raw)));
  await spy.subscribe(w.channel);
  f.hold(id2, 'asker', h.ask, new Promise(() => {}));
  const cancel = new AbortController();
  const given = w.askFor(id2, 'front-f')(question({ signal: cancel.signal }));
  const q = await h.next();
  cancel.abort();
  await assert.rejects(given, new Error('the run was cancelled while waiting for approval'));
  for (let i = 0; i < 100 && !q.signal?.aborted; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(q.signal?.aborted, true, 'withdrawn at the front');
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(replies.map((m) => m.kind), ['asked'], 'no answer sent for a withdrawn question');
});

test('no answer: a question the front has put to its client times out as embedded; one nobody took names the front', async (t) => {
  if (!reachable) return t.skip('no Redis');
  const f = await front('front-g');
  const w = await worker('worker-g', 500);
  const id = runId();
  const h = handAsker();
  f.hold(id, 'asker', h.ask, new Promise(() => {}));
  await assert.rejects(w.askFor(id, 'front-g')(question()), new Error('no answer within 0.5 s'));
  // Something listens on a front's channel but never answers (a hung front).
  const mute = await connect();
  await mute.subscribe(keys.askChannel(prefix, 'front-mute'));
  await assert.rejects(w.askFor(runId(), 'front-mute')(question()), new Error('the front that started this run (front-mute) is not answering: no answer within 0.5 s'));
});

test("Redis away from the worker: the ask fails at once, naming the front and Redis", async (t) => {
  if (!reachable) return t.skip('no Redis');
  await front('front-h');
  const link = await cuttableRedis();
  closers.push(() => link.close());
  const w = await worker('worker-h', 30_000, link.url);
  link.cut();
  await new Promise((r) => setTimeout(r, 100));
  await assert.rejects(w.askFor(runId(), 'front-h')(question()), /^Error: the front that started this run \(front-h\) is not answering: Redis at redis:\/\/127\.0\.0\.1:\d+ is unreachable \(connection \w+\)$/);
});
