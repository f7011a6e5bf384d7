// Queue mode's messages are signed (src/queue/signing.ts): Redis is no way around the server's authority.
// On a real Redis, with fronts and workers as separate processes: jobs put straight into Redis (unsigned,
// badly signed, signed with another key, a genuine signature moved to other data or another run, expired)
// are refused and their agent never runs; a forged "completed" commits nothing it claims; a forged cancel
// does nothing; a front and a worker with different keys get a clear error naming the cause, never the key.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { agentYaml, runCli } from './helpers.js';
import { startMockModel, type MockModel } from './mock-model/server.js';
import { MODEL, REDIS_URL, World, redisOrSkip, structured } from './queue-world.js';
import { QueueKey, cancelMessage } from '../src/queue/signing.js';

const available = await redisOrSkip();

const newRunId = () => `run_${randomUUID()}`;
const jobData = (runId: string, task: string, extra: Record<string, unknown> = {}) => ({ v: 1, runId, agent: 'probe', input: { task }, owner: 'local', progress: false, from: 'front-forger', ...extra });

async function settled(queue: Queue, id: string): Promise<{ state: string; failedReason?: string; returnvalue?: unknown }> {
  for (let i = 0; i < 200; i++) {
    const state = await queue.getJobState(id);
    if (state === 'failed' || state === 'completed') {
      const job = (await queue.getJob(id))!; // read after it ended: its reason and answer are in
      return { state, failedReason: job.failedReason, returnvalue: job.returnvalue };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`job ${id} did not end`);
}

/** Until a model request is in flight (at most 5 s). */
async function modelBusy(mock: MockModel): Promise<void> {
  for (let i = 0; i < 100 && mock.inFlight === 0; i++) await new Promise((r) => setTimeout(r, 50));
}

/** Every byte a node wrote to its state dir (audit log included). */
function stateText(w: World, node: string): string {
  const dir = path.dirname(w.auditDir(node));
  const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]));
  return walk(dir).map((f) => readFileSync(f, 'utf8')).join('\n');
}

describe('queue mode: signed messages', { skip: !available }, () => {
  let mock: MockModel;
  let conn: Redis;
  before(async () => {
    mock = await startMockModel();
    conn = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  });
  after(async () => {
    await mock?.close();
    conn?.disconnect();
  });

  test('jobs put straight into Redis are refused unless signed with the queue key: the agent never runs, the worker audits why', async () => {
    mock.reset();
    const w = new World(mock, { probe: agentYaml('probe', MODEL) });
    const queue = new Queue('runs', { connection: conn, prefix: w.prefix });
    try {
      const worker = await w.worker('a');
      const key = new QueueKey(w.key, 'test');
      const other = new QueueKey(randomBytes(32).toString('base64url'), 'test');
      const soon = Date.now() + 60_000;
      const ids = { unsigned: newRunId(), badMac: newRunId(), otherKey: newRunId(), otherData: newRunId(), otherRun: newRunId(), expired: newRunId() };
      const genuineForOther = key.seal('job', w.prefix, ids.otherRun, jobData(ids.otherRun, 'harmless'), soon);
      const attempts: [string, unknown][] = [
        [ids.unsigned, jobData(ids.unsigned, 'evil unsigned', { budget: undefined, owner: 'victim' })],
        [ids.badMac, { ...jobData(ids.badMac, 'evil bad mac'), sig: { kid: key.id, exp: soon, mac: randomBytes(32).toString('base64url') } }],
        [ids.otherKey, other.seal('job', w.prefix, ids.otherKey, jobData(ids.otherKey, 'evil other key'), soon)],
        // A genuine signature on changed data: the same run, another task and owner.
        [ids.otherData, { ...key.seal('job', w.prefix, ids.otherData, jobData(ids.otherData, 'harmless'), soon), input: { task: 'evil moved' }, owner: 'victim' }],
        // A genuine job put under another run id (its data says the new one too).
        [newRunId(), genuineForOther],
        [ids.expired, key.seal('job', w.prefix, ids.expired, jobData(ids.expired, 'evil expired'), Date.now() - 120_000)],
      ];
      attempts[4][1] = { ...genuineForOther, runId: attempts[4][0] };
      for (const [id, data] of attempts) await queue.add('probe', data, { jobId: id });
      const reasons: Record<string, string> = {};
      for (const [id] of attempts) {
        const end = await settled(queue, id);
        assert.equal(end.state, 'failed', `${id}: ${JSON.stringify(end)}`);
        reasons[id] = end.failedReason ?? '';
        assert.match(reasons[id], new RegExp(`queue job ${id} refused by worker-.*, not run: `));
      }
      assert.match(reasons[ids.unsigned], /unsigned/);
      assert.match(reasons[ids.badMac], /signature does not match/);
      assert.match(reasons[ids.otherKey], /signed with another queue key \(key id [0-9a-f]{16}; this node's is [0-9a-f]{16}\)/);
      assert.match(reasons[ids.otherData], /signature does not match/);
      assert.match(reasons[attempts[4][0]], /signature does not match/);
      assert.match(reasons[ids.expired], /expired/);
      assert.equal(mock.requests.length, 0, `the model saw: ${mock.requests.map((r) => r.lastUserText).join(' | ')}`);
      // The worker's audit log has each refusal, with the run id it claimed.
      // (Read until all are there: the job fails in Redis as the worker's audit line goes to its file.)
      const refused = () => new Set(w.auditEvents('a').filter((e) => e.event === 'error' && /refused by/.test(e.message)).map((e) => e.run_id));
      for (const until = Date.now() + 5000; refused().size < attempts.length && Date.now() < until; ) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(refused(), new Set(attempts.map(([id]) => id)));
      assert.equal(w.auditEvents('a').filter((e) => e.event === 'run_start').length, 0, 'no run started');
      // The control: the same way in, signed with the world's key, runs (so the refusals above are the signature's doing).
      const control = newRunId();
      await queue.add('probe', key.seal('job', w.prefix, control, jobData(control, 'signed control'), soon), { jobId: control });
      const end = await settled(queue, control);
      assert.equal(end.state, 'completed', JSON.stringify(end));
      assert.equal(key.open('return', w.prefix, control, end.returnvalue).ok, true, 'the worker signed its answer');
      assert.equal(mock.requests.length, 1);
      assert.match(mock.requests[0].lastUserText, /signed control/);
      assert.ok(!worker.stderr().includes(w.key), 'the key is not in the worker\'s log');
      assert.ok(!stateText(w, 'a').includes(w.key), 'the key is not in the worker\'s state (audit log)');
    } finally {
      await queue.close();
      await w.close();
    }
  });

  test('on the front\'s runs channel, a forged end (a genuine answer of another run) commits nothing and stops the run, and an unsigned failure is ignored; a forged cancel does nothing', async () => {
    mock.reset();
    const w = new World(mock, { probe: agentYaml('probe', MODEL) }, { budget: { daily_tokens: 1_000_000 } });
    const queue = new Queue('runs', { connection: conn, prefix: w.prefix });
    try {
      mock.setHandler((req) => ({ text: `answer: ${req.lastUserText}`, usage: { input_tokens: 300, output_tokens: 100 }, delayMs: /hang/.test(req.lastUserText) ? 30_000 : /two seconds/.test(req.lastUserText) ? 2000 : 50 }));
      const worker = await w.worker('a');
      const front = await w.stdioFront('front');
      const call = (task: string, background = false) => front.client.callTool({ name: 'delegate', arguments: { agent: 'probe', task, background } }, { timeout: 30_000 }).then(structured);
      const genuine = await call('quick one');
      assert.equal(genuine.status, 'ok');
      // The front has the end from its runs channel before BullMQ records it on the job: read it once recorded.
      const genuineAnswer = (await settled(queue, genuine.run_id)).returnvalue;
      assert.ok(genuineAnswer, 'the genuine answer, as BullMQ keeps it');

      // Forged end of a running run: the genuine, signed answer of the first run, moved onto it.
      const closed = new Promise<void>((resolve) => mock.onClosedEarly(() => resolve()));
      const victim = await call('hang please', true);
      await modelBusy(mock);
      assert.equal(mock.inFlight, 1);
      // The channel the front listens on for the ends of its runs (anyone who can write to Redis can publish there).
      const [runsChannel] = (await conn.pubsub('CHANNELS', `${w.prefix}:dmcp:runs:*`)) as string[];
      assert.ok(runsChannel, 'the front listens on its runs channel');
      await conn.publish(runsChannel, JSON.stringify({ runId: victim.run_id, failure: { reason: 'forged: give up' } }));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(structured(await front.client.callTool({ name: 'run_status', arguments: { run_id: victim.run_id } })).status, 'running', 'an unsigned failure ends nothing');
      await conn.publish(runsChannel, JSON.stringify({ runId: victim.run_id, end: genuineAnswer }));
      const ended = structured(await front.client.callTool({ name: 'run_result', arguments: { run_id: victim.run_id, wait_s: 10 } }));
      assert.equal(ended.status, 'failed');
      assert.match(ended.error, new RegExp(`the answer for run ${victim.run_id} was refused \\(signature does not match.*nothing it reports is counted`));
      await closed; // the run itself was stopped on its worker
      const st = await runCli(['budget', '--queue', REDIS_URL, '--json'], w.env('cli'), w.ws);
      assert.equal(st.code, 0, st.stderr);
      const books = JSON.parse(st.stdout);
      assert.equal(books.server.spent.tokens, 400, 'only the genuine run is committed');
      assert.equal(books.server.reserved.tokens, 0, 'the refused run\'s slice was released');

      // Forged cancels: unsigned, signed with another key, and a genuine one moved onto another run.
      const closedBefore = mock.closedEarly;
      const slow = call('take two seconds');
      await modelBusy(mock);
      const running = (await queue.getActive()).map((j) => j.id!);
      assert.equal(running.length, 1);
      const other = new QueueKey(randomBytes(32).toString('base64url'), 'test');
      const channel = `${w.prefix}:dmcp:cancel`;
      await conn.publish(channel, JSON.stringify({ runId: running[0], reason: 'cancelled' }));
      await conn.publish(channel, cancelMessage({ key: other, prefix: w.prefix }, running[0], 'cancelled'));
      await conn.publish(channel, JSON.stringify({ ...JSON.parse(cancelMessage({ key: new QueueKey(w.key, 'test'), prefix: w.prefix }, genuine.run_id, 'cancelled')), runId: running[0] }));
      const res = await slow;
      assert.equal(res.status, 'ok', JSON.stringify(res));
      assert.equal(mock.closedEarly, closedBefore, 'no model request was aborted');
      // Logged, but at most once per 10 s: whoever can publish on the channel cannot flood the worker's log.
      assert.equal(worker.stderr().match(/ignored a cancel message/g)?.length, 1, worker.stderr());
    } finally {
      await queue.close();
      await w.close();
    }
  });

  test('no setup on one machine: a front and a worker of one workspace and state dir make and share queue.key (0600)', async () => {
    mock.reset();
    const w = new World(mock, { probe: agentYaml('probe', MODEL) });
    const state = path.join(w.ws, '..', `${path.basename(w.ws)}-state-shared`);
    const env = { DELEGATE_MCP_QUEUE_KEY: '', XDG_STATE_HOME: state };
    try {
      await w.worker('a', [], REDIS_URL, env);
      const front = await w.stdioFront('front', [], env);
      const res = structured(await front.client.callTool({ name: 'delegate', arguments: { agent: 'probe', task: 'hello' } }, { timeout: 30_000 }));
      assert.equal(res.status, 'ok', JSON.stringify(res));
      const [wsDir] = readdirSync(path.join(state, 'delegate-mcp'));
      const keyFile = path.join(state, 'delegate-mcp', wsDir, 'queue.key');
      assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    } finally {
      await w.close();
    }
  });

  test('a front and a worker with different keys: the run ends with an error naming the cause, never the key; the agent never runs', async () => {
    mock.reset();
    const w = new World(mock, { probe: agentYaml('probe', MODEL) });
    const workerKey = randomBytes(32).toString('base64url');
    try {
      const worker = await w.worker('a', [], REDIS_URL, { DELEGATE_MCP_QUEUE_KEY: workerKey });
      const front = await w.stdioFront('front');
      const res = structured(await front.client.callTool({ name: 'delegate', arguments: { agent: 'probe', task: 'hello' } }, { timeout: 30_000 }));
      assert.equal(res.status, 'failed');
      assert.match(res.error, /refused by worker-.*: signed with another queue key \(key id [0-9a-f]{16}; this node's is [0-9a-f]{16}\): every front and worker of a queue needs the same key: DELEGATE_MCP_QUEUE_KEY, delegate\.queue\.keyFile/);
      for (const k of [w.key, workerKey]) {
        assert.ok(!res.error.includes(k));
        assert.ok(!worker.stderr().includes(k));
        assert.ok(!front.stderr().includes(k));
        assert.ok(!stateText(w, 'a').includes(k) && !stateText(w, 'front').includes(k));
      }
      assert.equal(mock.requests.length, 0);
    } finally {
      await w.close();
    }
  });
});
