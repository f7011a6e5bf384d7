// The queue key and message signatures (src/queue/signing.ts), without Redis: where the key comes from,
// the key file's checks, that the key shows nowhere, and what a signature binds (kind, queue, run, content,
// expiry). The end-to-end refusals over Redis are in e2e-queue-auth.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { inspect } from 'node:util';
import { loadConfig } from '../src/config/config.js';
import { ConfigError } from '../src/config/config-error.js';
import { protectedPaths } from '../src/permissions/protected-paths.js';
import { QUEUE_KEY_ENV, QueueKey, cancelMessage, loadQueueKey, openCancel, openJob } from '../src/queue/signing.js';
import { canonicalJson } from '../src/audit/events.js';
import { queueSettings } from '../src/queue/connection.js';
import { tempDir, writeTree } from './helpers.js';

const SECRET = 'k'.repeat(20) + 'secret-material-0123456789';
const RUN = 'run_0b5e3f7a-1c2d-4e5f-8a9b-0c1d2e3f4a5b';
const OTHER_RUN = 'run_1b5e3f7a-1c2d-4e5f-8a9b-0c1d2e3f4a5b';

function ws(mcp: Record<string, unknown> = {}): { dir: string; env: NodeJS.ProcessEnv } {
  const dir = tempDir('dmcp-qkey-');
  writeTree(dir, { 'mcp.json': JSON.stringify({ delegate: { watch: false, ...mcp } }) });
  return { dir, env: { HOME: dir, XDG_STATE_HOME: path.join(dir, '..', `${path.basename(dir)}-state`) } };
}

const job = (runId = RUN) => ({ v: 1, runId, agent: 'a', input: { task: 'x' }, owner: 'local', progress: false, from: 'front-x' });

test('no key given: queue.key is made in the state dir on first use (0600), and the next node reads the same one', () => {
  const { dir, env } = ws();
  const cfg = loadConfig({ workspace: dir }, dir, env);
  const a = loadQueueKey(cfg, env);
  const file = path.join(cfg.stateDir, 'queue.key');
  assert.equal(a.source, file);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.ok(readFileSync(file, 'utf8').trim().length >= 32);
  assert.equal(loadQueueKey(cfg, env).id, a.id, 'a second node on the same state dir has the same key');
  // The state dir (and so the key file) is hidden from agents: the file tools and the sandbox read this list.
  assert.ok(protectedPaths(cfg).some((p) => p.path === cfg.stateDir && p.read === 'hidden'));
});

test('DELEGATE_MCP_QUEUE_KEY wins; too short is refused without echoing it', () => {
  const { dir, env } = ws();
  const cfg = loadConfig({ workspace: dir }, dir, env);
  assert.equal(loadQueueKey(cfg, { ...env, [QUEUE_KEY_ENV]: SECRET }).source, QUEUE_KEY_ENV);
  assert.throws(
    () => loadQueueKey(cfg, { ...env, [QUEUE_KEY_ENV]: 'short-secret' }),
    (e: Error) => e instanceof ConfigError && /DELEGATE_MCP_QUEUE_KEY: too short \(12 characters; at least 32\)/.test(e.message) && !e.message.includes('short-secret'),
  );
});

test('delegate.queue.keyFile: relative to mcp.json, hidden from agents, refused when group/world-readable (names the file and the chmod), or missing', () => {
  const { dir, env } = ws({ queue: { keyFile: 'secrets/queue.key' } });
  const file = path.join(dir, 'secrets', 'queue.key');
  writeTree(dir, { 'secrets/queue.key': SECRET + '\n' });
  const cfg = loadConfig({ workspace: dir }, dir, env);
  assert.equal(cfg.delegate.queue.keyFile, file);
  assert.ok(protectedPaths(cfg).some((p) => p.path === file && p.read === 'hidden'), 'the key file is hidden from file tools and sandboxed commands');
  chmodSync(file, 0o644);
  assert.throws(
    () => loadQueueKey(cfg, env),
    (e: Error) => e instanceof ConfigError && e.message.includes(file) && e.message.includes('mode 0644') && e.message.includes(`chmod 600 ${file}`) && !e.message.includes(SECRET),
  );
  chmodSync(file, 0o600);
  const k = loadQueueKey(cfg, env);
  assert.equal(k.source, file);
  assert.equal(k.id, new QueueKey(SECRET, 'x').id, 'the file\'s key, trimmed');
  const gone = loadConfig({ workspace: dir }, dir, env);
  gone.delegate.queue.keyFile = path.join(dir, 'nope.key');
  assert.throws(() => loadQueueKey(gone, env), /delegate\.queue\.keyFile .*nope\.key: not found/);
});

test('delegate.queue.keyFile: an empty string is a precise config error', () => {
  const { dir, env } = ws({ queue: { keyFile: '' } });
  assert.throws(() => loadConfig({ workspace: dir }, dir, env), (e: Error) => e instanceof ConfigError && /delegate\.queue\.keyFile/.test(e.message));
});

test('the key shows nowhere: not in inspect, JSON, queue settings or an error', () => {
  const { dir, env } = ws();
  const cfg = loadConfig({ workspace: dir }, dir, env);
  const settings = queueSettings(cfg, 'redis://127.0.0.1:6379', 'worker', { ...env, [QUEUE_KEY_ENV]: SECRET });
  for (const shown of [inspect(settings, { depth: 10, showHidden: true }), JSON.stringify(settings), JSON.stringify(settings.key.seal('job', 'p', RUN, job()))]) {
    assert.ok(!shown.includes(SECRET) && !shown.includes(Buffer.from(SECRET).toString('base64')), shown);
  }
  const other = new QueueKey('o'.repeat(40), 'x');
  const r = settings.key.open('job', 'p', RUN, other.seal('job', 'p', RUN, job(), Date.now() + 1000));
  assert.equal(r.ok, false);
  assert.ok(!r.ok && !r.reason.includes(SECRET) && /another queue key/.test(r.reason));
});

test('a signature binds kind, queue, run, content and expiry; it survives the trip through Redis (JSON)', () => {
  const key = new QueueKey(SECRET, 'x');
  const a = { key, prefix: 'dmcp' };
  const exp = Date.now() + 60_000;
  const sealed = key.seal('job', 'dmcp', RUN, { ...job(), budget: { run_tokens: 5, run_usd: undefined } }, exp);
  const trip = JSON.parse(JSON.stringify(sealed));
  assert.equal(openJob(a, RUN, trip).ok, true);
  const reason = (r: ReturnType<typeof openJob>) => (r.ok ? 'ok' : r.reason);
  assert.match(reason(openJob(a, OTHER_RUN, trip)), /does not match/, 'moved to another job id');
  assert.match(reason(openJob({ key, prefix: 'other' }, RUN, trip)), /does not match/, 'moved to another queue');
  assert.match(reason(openJob(a, RUN, { ...trip, owner: 'someone-else' })), /does not match/, 'content changed');
  assert.match(reason(openJob(a, RUN, { ...trip, budget: undefined })), /does not match/, 'caps taken off');
  assert.match(reason(openJob(a, RUN, { ...trip, sig: { ...trip.sig, exp: exp + 3_600_000 } })), /does not match/, 'expiry pushed back');
  assert.match(reason(openJob(a, RUN, job())), /unsigned/);
  assert.match(reason(openJob(a, RUN, { ...job(), sig: { kid: key.id, mac: 'AAAA' } })), /does not match/);
  assert.match(reason(openJob(a, RUN, { ...job(), sig: { kid: '"; rm -rf', mac: 'AAAA' } })), /malformed signature/);
  assert.match(reason(openJob(a, RUN, trip, exp + 61_000)), /expired/, 'past its start-by time (and the clock allowance)');
  assert.equal(openJob(a, RUN, trip, exp + 30_000).ok, true, 'within the clock allowance');
  // A job's signature is not an answer's (same content, same run).
  assert.equal(key.open('return', 'dmcp', RUN, trip).ok, false);
  // Cancels.
  assert.deepEqual(openCancel(a, cancelMessage(a, RUN, 'timeout')), { ok: true, cancel: { runId: RUN, reason: 'timeout' } });
  assert.equal(openCancel(a, JSON.stringify({ runId: RUN, reason: 'cancelled' })).ok, false);
  const moved = { ...JSON.parse(cancelMessage(a, RUN, 'cancelled')), runId: OTHER_RUN };
  assert.equal(openCancel(a, JSON.stringify(moved)).ok, false);
  assert.equal(openCancel(a, 'not json').ok, false);
  // Nested deeper than the encoder goes (a hostile publish): refused, not thrown (a throw there would stop the worker).
  const deep = `${'['.repeat(50_000)}1${']'.repeat(50_000)}`;
  assert.equal(Array.isArray(JSON.parse(deep)), true, 'JSON.parse takes it');
  assert.deepEqual(openCancel(a, `{"runId":"${RUN}","reason":"cancelled","sig":{"kid":"${key.id}","mac":"AAAA"},"deep":${deep}}`), { ok: false, reason: 'malformed message (cannot be encoded)' });
});

test('canonical JSON: key order and undefined members do not matter; values do', () => {
  assert.equal(canonicalJson({ b: 1, a: [1, { d: undefined, c: 'x' }] }), canonicalJson(JSON.parse('{"a":[1,{"c":"x"}],"b":1}')));
  assert.notEqual(canonicalJson({ a: 1 }), canonicalJson({ a: '1' }));
  assert.equal(canonicalJson([undefined, NaN, -0]), JSON.stringify([null, null, 0]));
});

// A key file is checked at every start, not only when it is made.
test('a key file made world-readable later is refused at the next start', () => {
  const { dir, env } = ws();
  const cfg = loadConfig({ workspace: dir }, dir, env);
  loadQueueKey(cfg, env);
  const file = path.join(cfg.stateDir, 'queue.key');
  chmodSync(file, 0o604);
  assert.throws(() => loadQueueKey(cfg, env), /readable by its owner only: chmod 600/);
  writeFileSync(file, 'x'.repeat(10), { mode: 0o600 });
  chmodSync(file, 0o600);
  assert.throws(() => loadQueueKey(cfg, env), /too short \(10 characters/);
});
