// The durable transport and AuditLog: whole JSON lines, group commit, two writers (one a real process)
// sharing a directory, rotation, write failures, and records surviving kill -9 and SIGTERM.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { AuditLog, installShutdownFlush } from '../src/audit/audit-log.js';
import { DurableFileTransport } from '../src/audit/durable-file.js';
import { verifyChainFile } from '../src/storage/hash-chain.js';
import type { AuditEvent, RunContext } from '../src/audit/events.js';
import { readAuditDir } from '../src/audit/reader.js';
import { Redactor } from '../src/audit/redact.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const AUDIT_MODULE = pathToFileURL(path.join(ROOT, 'src/audit/audit-log.ts')).href;

const made: string[] = [];
const tempDir = () => {
  const d = fs.realpathSync(fs.mkdtempSync(path.join(tmpdir(), 'dmcp-audit-')));
  made.push(d);
  return d;
};
after(() => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
});
const filesIn = (dir: string) => fs.readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort();
const linesOf = (dir: string) => filesIn(dir).flatMap((f) => fs.readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean));
const today = () => new Date().toISOString().slice(0, 10);

const ctx: RunContext = { run_id: 'run_a', parent_run_id: null, root_run_id: 'run_a', depth: 0, agent: 'coder' };
const usage = { input_tokens: 10, output_tokens: 5, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 };

/** Runs TypeScript in a real child process (`node --import tsx`), with AuditLog imported as `AuditLog`. */
function spawnAuditChild(body: string): ChildProcess & { lines: AsyncIterator<string> } {
  const code = `import { AuditLog, installShutdownFlush } from ${JSON.stringify(AUDIT_MODULE)};\n${body}`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  }) as ChildProcess & { lines: AsyncIterator<string> };
  child.lines = (async function* () {
    let buf = '';
    for await (const chunk of child.stdout!) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        yield buf.slice(0, i);
        buf = buf.slice(i + 1);
      }
    }
  })();
  return child;
}

async function nextLine(child: { lines: AsyncIterator<string> }): Promise<string> {
  const r = await child.lines.next();
  assert.ok(!r.done, 'child closed stdout early');
  return r.value;
}

const exited = (child: ChildProcess) =>
  new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
    else child.once('exit', (code, signal) => resolve({ code, signal }));
  });

test('emit stamps v/ts/seq/pid, fills null context, redacts, and writes one complete JSON line per event', async () => {
  const dir = tempDir();
  const audit = AuditLog.open({ dir, redactor: new Redactor({ env: {}, secrets: ['config-secret-value'] }) });
  audit.emit({ event: 'server_start', version: '0.1.0', config_digest: 'sha256:0123456789abcdef', agents_loaded: 2 });
  const b = audit.forRun(ctx);
  b.emit({ event: 'error', message: 'provider said: bad key config-secret-value' });
  // server_start (like run_end) is written before emit returns; other events within 50 ms.
  assert.equal(linesOf(dir).length, 1);
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(linesOf(dir).length, 2);
  b.emit({ event: 'error', message: 'queued' });
  b.emit({ event: 'run_end', status: 'ok', turns: 1, usage: { input_tokens: 1, output_tokens: 1, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 }, cost_usd: null, duration_ms: 1 });
  assert.equal(linesOf(dir).length, 4, 'run_end takes the queued events with it, before emit returns');
  audit.close();

  const lines = linesOf(dir);
  assert.deepEqual(filesIn(dir), [`audit-${today()}.jsonl`]);
  const events = lines.map((l) => JSON.parse(l) as AuditEvent);
  const a = events[0];
  assert.equal(a.v, 1);
  assert.equal(a.pid, process.pid);
  assert.equal(a.run_id, null);
  assert.equal(a.agent, null);
  assert.ok(events[1].seq > events[0].seq);
  assert.equal(events[1].run_id, 'run_a');
  assert.equal(events[1].depth, 0);
  assert.equal((events[1] as { message: string }).message, 'provider said: bad key [REDACTED]');
  assert.ok(fs.readFileSync(path.join(dir, filesIn(dir)[0]), 'utf8').endsWith('}\n'));
  // Envelope fields come first, in a fixed order, for people reading the raw file.
  assert.deepEqual(Object.keys(events[1]).slice(0, 11), ['prev', 'v', 'ts', 'seq', 'pid', 'event', 'run_id', 'parent_run_id', 'root_run_id', 'depth', 'agent']);
  audit.emit({ event: 'server_stop' });
  assert.equal(linesOf(dir).length, 4, 'emit after close is a no-op');
});

test('a held run emitter writes nothing until release, then its first event and the rest in order, with their own times', async () => {
  const dir = tempDir();
  const audit = AuditLog.open({ dir, redactor: new Redactor({ env: {} }) });
  let built = 0;
  const run = audit.forRun(ctx, { held: true, first: () => (built++, { event: 'run_start', caller: 'test', input_digest: 'sha256:00', model: 'm' }) });
  run.emit({ event: 'budget_reserve', scope: 'run', tokens: 10, usd: null });
  const emittedAt = Date.now();
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(built, 0, 'the first event is built only on release');
  run.release();
  run.release(); // idempotent
  run.emit({ event: 'run_end', status: 'ok', turns: 1, usage: { input_tokens: 1, output_tokens: 1, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 }, cost_usd: null, duration_ms: 1 });
  const events = linesOf(dir).map((l) => JSON.parse(l) as AuditEvent);
  assert.deepEqual(events.map((e) => e.event), ['run_start', 'budget_reserve', 'run_end']);
  assert.equal(built, 1);
  assert.ok(Date.parse(events[1].ts) <= emittedAt, 'stamped when emitted, not when written');
  // A run_end while held releases the rest first.
  const dir2 = tempDir();
  const audit2 = AuditLog.open({ dir: dir2, redactor: new Redactor({ env: {} }) });
  const early = audit2.forRun(ctx, { held: true, first: () => ({ event: 'run_start', caller: null, input_digest: 'sha256:00', model: 'm' }) });
  early.emit({ event: 'run_end', status: 'error', turns: 0, usage: { input_tokens: 0, output_tokens: 0, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 }, cost_usd: null, duration_ms: 0, error: 'unknown agent' });
  assert.deepEqual(linesOf(dir2).map((l) => (JSON.parse(l) as AuditEvent).event), ['run_start', 'run_end']);
  audit.close();
  audit2.close();
});

test('previews: off by default, off for redacting agents, otherwise 500 redacted chars', () => {
  const dir = tempDir();
  const off = AuditLog.open({ dir, redactor: new Redactor({ env: {} }) });
  assert.equal(off.previewText('hello', false), undefined);
  off.close();
  const on = AuditLog.open({ dir, redactor: new Redactor({ env: {}, secrets: ['literal-secret-1'] }), previews: true });
  assert.equal(on.previewText('hello', true), undefined);
  assert.equal(on.previewText('use literal-secret-1 now', false), 'use [REDACTED] now');
  const long = on.previewText('x'.repeat(490) + ' ' + 'ghp_' + 'A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8' + ' tail'.repeat(200), false)!;
  assert.equal(long.length, 500);
  assert.ok(!long.includes('ghp_A1b2'), 'a secret straddling the cut is redacted before truncation');
  on.close();
});

test('group commit: fdatasync every N lines or after T ms (off the event loop), and flush() forces it', async () => {
  const dir = tempDir();
  const t = new DurableFileTransport({ dir, commitEvery: 4, commitIntervalMs: 60 });
  for (let i = 0; i < 3; i++) t.writeLine(`{"i":${i}}`);
  assert.equal(t.stats.written, 3);
  assert.equal(t.stats.synced, 0);
  t.writeLine('{"i":3}');
  assert.equal(t.stats.synced, 0, 'the group commit does not block the writer');
  await t.flushAsync(); // joins the sync the 4th line started
  assert.equal(t.stats.synced, 4, 'the 4th line commits the group');
  t.writeLine('{"i":4}');
  assert.equal(t.stats.synced, 4);
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(t.stats.synced, 5, 'the timer commits a partial group');
  t.writeLine('{"i":5}');
  t.flush();
  assert.equal(t.stats.synced, 6, 'flush commits at once');
  t.close();
  assert.deepEqual(linesOf(dir).map((l) => JSON.parse(l).i), [0, 1, 2, 3, 4, 5]);
});

test('flush() covers every line written before it: winston hands lines to the transport in the same tick', () => {
  const dir = tempDir();
  // Group commit and interval far away, and no await anywhere below: only flush() can write the queued
  // events and fdatasync them. Opened and written in the same tick, before winston's streams ever flowed.
  const audit = AuditLog.open({ dir, commitEvery: 100000, commitIntervalMs: 600000 });
  const emitted: string[] = [];
  for (let i = 0; i < 300; i++) {
    // run_end is written at once (its own winston message); the others wait in the 50 ms queue.
    const event = i % 7 === 0 ? 'run_end' : 'error';
    const message = `line ${i}`;
    if (event === 'run_end') audit.emit({ ...ctx, event, status: 'ok', turns: 1, usage, duration_ms: 1 } as never);
    else audit.emit({ event, message });
    emitted.push(event === 'run_end' ? 'run_end' : message);
  }
  assert.ok(audit.stats.written < 300 || audit.stats.synced < 300, 'before flush(), some lines are queued or unsynced');
  audit.flush();
  assert.equal(audit.stats.written, 300, 'every line reached the file');
  assert.equal(audit.stats.synced, 300, 'every line was fdatasync\'d');
  const lines = linesOf(dir).map((l) => JSON.parse(l) as { event: string; message?: string });
  assert.equal(lines.length, 300);
  assert.deepEqual(lines.map((e) => (e.event === 'run_end' ? 'run_end' : e.message)), emitted);
  audit.close();
});

test('two writers share a directory: a second AuditLog in-process and a real child process, 1000 whole lines', async (t) => {
  const dir = tempDir();
  // In-process pair first (same pid, shared seq counter).
  const x = AuditLog.open({ dir, redactor: new Redactor({ env: {} }) });
  const y = AuditLog.open({ dir, redactor: new Redactor({ env: {} }) });
  for (let i = 0; i < 50; i++) {
    x.emit({ ...ctx, event: 'cancelled', reason: `x${i}` });
    y.emit({ ...ctx, event: 'cancelled', reason: `y${i}` });
  }
  x.close();
  y.close();
  const pair = linesOf(dir).map((l) => JSON.parse(l) as AuditEvent);
  assert.equal(pair.length, 100);
  assert.equal(new Set(pair.map((e) => e.seq)).size, 100, 'seq is unique per process, across instances');
  for (const f of filesIn(dir)) fs.unlinkSync(path.join(dir, f));

  // Then a real second process. Big lines (~4 KB) make any interleaving inside a line visible.
  const N = 500;
  const pad = 'p'.repeat(4000);
  const child = spawnAuditChild(`
    const audit = AuditLog.open({ dir: ${JSON.stringify(dir)}, commitEvery: 8 });
    process.stdout.write('ready\\n');
    process.stdin.once('data', async () => {
      for (let i = 0; i < ${N}; i++) {
        audit.emit({ event: 'error', message: 'child ' + i + ' ${pad}' });
        if (i % 10 === 9) await new Promise((r) => setImmediate(r));
      }
      audit.close();
      process.stdout.write('done\\n');
      process.exit(0);
    });
  `);
  assert.equal(await nextLine(child), 'ready');
  const parent = AuditLog.open({ dir, redactor: new Redactor({ env: {} }), commitEvery: 8 });
  child.stdin!.write('go\n');
  for (let i = 0; i < N; i++) {
    parent.emit({ event: 'error', message: `parent ${i} ${pad}` });
    if (i % 10 === 9) await new Promise((r) => setImmediate(r));
  }
  parent.close();
  assert.equal(await nextLine(child), 'done');
  await exited(child);

  const lines = linesOf(dir);
  assert.equal(lines.length, 2 * N);
  const events = lines.map((l) => JSON.parse(l) as AuditEvent & { message: string }); // throws on any torn line
  const byPid = new Map<number, number[]>();
  for (const e of events) {
    assert.match(e.message, /^(parent|child) \d+ p{4000}$/);
    byPid.set(e.pid, [...(byPid.get(e.pid) ?? []), e.seq]);
  }
  assert.equal(byPid.size, 2);
  for (const seqs of byPid.values()) {
    assert.equal(seqs.length, N);
    assert.ok(seqs.every((s, i) => i === 0 || s > seqs[i - 1]), 'per-process seq is monotonic in file order');
  }
  const switches = events.filter((e, i) => i > 0 && e.pid !== events[i - 1].pid).length;
  t.diagnostic(`writers alternated ${switches} times in the file`);
});

test('rotation by size continues in .1.jsonl, .2.jsonl; by UTC day in a new dated file', () => {
  const dir = tempDir();
  const t = new DurableFileTransport({ dir, maxBytes: 1700 });
  const line = JSON.stringify({ pad: 'x'.repeat(80) }); // ~92 bytes + the chain hash (74) + newline: 10 a file
  for (let i = 0; i < 25; i++) t.writeLine(line);
  t.close();
  const day = today();
  assert.deepEqual(filesIn(dir), [`audit-${day}.1.jsonl`, `audit-${day}.2.jsonl`, `audit-${day}.jsonl`]);
  for (const f of filesIn(dir)) assert.ok(fs.statSync(path.join(dir, f)).size <= 1700, f);
  // Each file is a chain of its own.
  for (const f of filesIn(dir)) assert.equal(verifyChainFile(path.join(dir, f)).broken, null, f);
  assert.equal(linesOf(dir).length, 25);

  // A new writer continues in the highest file of the day rather than starting over at .0.
  const t2 = new DurableFileTransport({ dir, maxBytes: 1700 });
  t2.writeLine(line);
  assert.equal(path.basename(t2.stats.file!), `audit-${day}.2.jsonl`);
  t2.close();

  let now = Date.parse('2026-03-01T23:59:59.900Z');
  const d = tempDir();
  const t3 = new DurableFileTransport({ dir: d, now: () => now });
  t3.writeLine('{"a":1}');
  now += 200;
  t3.writeLine('{"a":2}');
  t3.close();
  assert.deepEqual(filesIn(d), ['audit-2026-03-01.jsonl', 'audit-2026-03-02.jsonl']);
});

test('write failures never throw: reported once, kept in memory, written after the directory comes back', () => {
  const base = tempDir();
  const dir = path.join(base, 'audit');
  const errors: Error[] = [];
  const t = new DurableFileTransport({ dir, retryMs: 0, onError: (e) => errors.push(e) });
  t.writeLine('{"n":1}');

  // The directory is removed under us: the unlinked file is noticed (nlink 0) and recreated.
  fs.rmSync(dir, { recursive: true });
  t.writeLine('{"n":2}');
  assert.deepEqual(linesOf(dir).map((l) => JSON.parse(l).n), [2]);
  assert.equal(errors.length, 0);

  // Now the path cannot be a directory at all: every write fails, one report.
  fs.rmSync(dir, { recursive: true });
  fs.writeFileSync(dir, 'not a directory');
  for (let n = 3; n <= 6; n++) t.writeLine(`{"n":${n}}`);
  t.flush();
  assert.equal(errors.length, 1);
  assert.match(errors[0].message, /EEXIST|ENOTDIR/);
  assert.equal(t.stats.failing, true);
  assert.equal(t.stats.backlog, 4);

  fs.rmSync(dir);
  t.flush(); // retries now and writes the backlog in order
  assert.equal(t.stats.failing, false);
  assert.equal(t.stats.backlog, 0);
  t.writeLine('{"n":7}');
  t.close();
  assert.deepEqual(linesOf(dir).map((l) => JSON.parse(l).n), [3, 4, 5, 6, 7]);
  assert.equal(errors.length, 1);
});

test('a torn last line left by a crash is terminated before the next writer appends', () => {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, `audit-${today()}.jsonl`), '{"v":1,"event":"run_end","ts":"2026');
  const t = new DurableFileTransport({ dir });
  t.writeLine('{"n":1}');
  t.close();
  const lines = linesOf(dir);
  assert.equal(lines.length, 2);
  const { prev, ...rest } = JSON.parse(lines[1]);
  assert.deepEqual(rest, { n: 1 });
  // The fragment is a crash leftover, not tampering: the chain verifies across it.
  const report = verifyChainFile(path.join(dir, `audit-${today()}.jsonl`));
  assert.equal(report.broken, null);
  assert.equal(report.lines, 2);
  assert.equal(typeof prev, 'string');
});

test('kill -9 right after flush(): every event emitted before it is on disk', async () => {
  const dir = tempDir();
  const child = spawnAuditChild(`
    // Huge group and interval, and none of these events is written at once (no run_end): they sit in
    // the 50 ms queue, so only flush() can put them in the file before the kill.
    const audit = AuditLog.open({ dir: ${JSON.stringify(dir)}, commitEvery: 100000, commitIntervalMs: 600000 });
    const c = { run_id: 'run_k', parent_run_id: null, root_run_id: 'run_k', depth: 0, agent: 'coder' };
    audit.emit({ ...c, event: 'run_start', caller: 'test', input_digest: 'sha256:0000000000000000', model: 'mock/m' });
    audit.emit({ event: 'error', message: 'queued before flush' });
    audit.flush();
    process.stdout.write('ok\\n'); // a pipe: written synchronously on Linux
    // Block the event loop for good: the queue's timer can never fire, whatever the kill's delay.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
  `);
  assert.equal(await nextLine(child), 'ok');
  child.kill('SIGKILL');
  const { signal } = await exited(child);
  assert.equal(signal, 'SIGKILL');
  const { events, torn, invalid } = readAuditDir(dir);
  assert.equal(torn + invalid, 0);
  assert.deepEqual(events.map((e) => [e.event, e.run_id]), [['run_start', 'run_k'], ['error', null]]);
});

test('installShutdownFlush: SIGTERM flushes and the process still dies by the signal', async () => {
  const dir = tempDir();
  const child = spawnAuditChild(`
    // No timer fires in this child (the queue's and the group commit's included), so the queued event
    // reaches the file only through the shutdown handler, however late the SIGTERM comes.
    globalThis.setTimeout = () => ({ unref() {}, ref() {}, hasRef: () => false });
    const audit = AuditLog.open({ dir: ${JSON.stringify(dir)}, commitEvery: 100000, commitIntervalMs: 600000 });
    installShutdownFlush(audit);
    audit.emit({ event: 'error', message: 'before shutdown' });
    process.stdout.write('ok\\n');
    setInterval(() => {}, 1000);
  `);
  assert.equal(await nextLine(child), 'ok');
  // Well past the 50 ms queue: a write by the queue's own timer would show up here.
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(readAuditDir(dir).events, [], 'nothing written before the signal');
  child.kill('SIGTERM');
  const { signal } = await exited(child);
  assert.equal(signal, 'SIGTERM', 'default signal behaviour kept when no other handler exists');
  assert.deepEqual(readAuditDir(dir).events.map((e) => [e.event, (e as { message?: string }).message]), [['error', 'before shutdown']]);

  // In-process: a listener per hook, all removed by the uninstaller.
  const before = ['SIGTERM', 'SIGINT', 'beforeExit', 'exit'].map((s) => process.listenerCount(s));
  const uninstall = installShutdownFlush({ flush() {} });
  assert.deepEqual(['SIGTERM', 'SIGINT', 'beforeExit', 'exit'].map((s) => process.listenerCount(s)), before.map((n) => n + 1));
  uninstall();
  assert.deepEqual(['SIGTERM', 'SIGINT', 'beforeExit', 'exit'].map((s) => process.listenerCount(s)), before);
});
