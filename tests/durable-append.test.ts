// The durable append primitive under the audit log and the budget ledger (storage/durable-append.ts):
// torn tails repaired, group commit by count and by time, flushes that cover every line before them.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { DurableAppendFile, type DurableAppendOptions } from '../src/storage/durable-append.js';
import { verifyChainFile } from '../src/storage/hash-chain.js';
import { sha256Hex } from '../src/storage/hash.js';

const made: string[] = [];
const tempDir = () => {
  const d = fs.realpathSync(fs.mkdtempSync(path.join(tmpdir(), 'dmcp-append-')));
  made.push(d);
  return d;
};
after(() => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
});

/** A file whose syncs are counted (lines made durable, background failures). */
function open(file: string, o: Partial<DurableAppendOptions> = {}) {
  const seen = { synced: 0, errors: [] as Error[] };
  const f = new DurableAppendFile(file, {
    commitEvery: 1000,
    commitIntervalMs: 600_000,
    onSyncError: (e) => seen.errors.push(e),
    onSynced: (n) => (seen.synced += n),
    ...o,
  });
  return { f, seen };
}

const records = (file: string) =>
  fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      try {
        const { prev: _p, ...rest } = JSON.parse(l) as Record<string, unknown>;
        return rest;
      } catch {
        return { fragment: l };
      }
    });

test('a torn tail left by a crash is ended before the next append, and the chain verifies across it', () => {
  const file = path.join(tempDir(), 'log.jsonl');
  const { f: first } = open(file);
  first.append(['{"n":1}']);
  first.close();
  // A write cut short by a crash: the start of the line that would have chained to line 1.
  const torn = `{"prev":"${sha256Hex(fs.readFileSync(file, 'utf8').slice(0, -1))}","n":2,"cut sh`;
  fs.appendFileSync(file, torn);
  const { f } = open(file);
  f.append(['{"n":3}', '{"n":4}']);
  f.close();
  assert.deepEqual(records(file), [{ n: 1 }, { fragment: torn }, { n: 3 }, { n: 4 }]);
  const report = verifyChainFile(file);
  assert.equal(report.broken, null);
  assert.equal(report.tornTail, false);
});

test('group commit: one fdatasync per commitEvery lines, off the event loop, shared by concurrent flushes', async () => {
  const file = path.join(tempDir(), 'log.jsonl');
  const { f, seen } = open(file, { commitEvery: 3 });
  f.append(['{"n":1}']);
  f.append(['{"n":2}']);
  assert.equal(f.unsyncedLines, 2);
  f.append(['{"n":3}']); // the third line starts the group's sync in the background
  assert.equal(f.unsyncedLines, 0, 'the group was handed to a sync');
  assert.equal(seen.synced, 0, 'the sync does not block the writer');
  f.append(['{"n":4}']);
  // Two callers while the group's sync is in flight share one follow-up that covers line 4.
  const a = f.flush();
  const b = f.flush();
  assert.equal(a, b, 'callers during a sync share the follow-up');
  await a;
  assert.equal(seen.synced, 4);
  assert.equal(f.unsyncedLines, 0);
  assert.deepEqual(seen.errors, []);
  f.close();
});

test('group commit by time: a partial group is synced commitIntervalMs after its first line', async () => {
  const file = path.join(tempDir(), 'log.jsonl');
  const { f, seen } = open(file, { commitEvery: 100, commitIntervalMs: 40 });
  f.append(['{"n":1}', '{"n":2}']);
  assert.equal(seen.synced, 0);
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(seen.synced, 2, 'the timer committed the partial group');
  assert.equal(f.unsyncedLines, 0);
  f.close();
});

test('flushSync and close make every line appended before them durable, in order', () => {
  const file = path.join(tempDir(), 'log.jsonl');
  const { f, seen } = open(file);
  for (let n = 1; n <= 5; n++) f.append([`{"n":${n}}`]);
  assert.equal(seen.synced, 0, 'nothing synced before the flush (group and interval far away)');
  f.flushSync();
  assert.equal(seen.synced, 5);
  assert.equal(f.unsyncedLines, 0);
  f.append(['{"n":6}']);
  f.close();
  assert.equal(seen.synced, 6, 'close syncs what is left');
  assert.equal(f.fd, null);
  assert.deepEqual(records(file), [1, 2, 3, 4, 5, 6].map((n) => ({ n })));
});

test('a file is created with its first lines in it, never empty; opening never creates it', async () => {
  const dir = tempDir();
  const file = path.join(dir, 'sub', 'log.jsonl');
  const { f, seen } = open(file, { commitEvery: 1 });
  assert.equal(f.openExisting(), -1);
  assert.equal(fs.existsSync(file), false);
  const r = f.append(['{"n":1}']);
  assert.equal(r.created, true);
  assert.deepEqual(records(file), [{ n: 1 }]);
  await f.flush();
  assert.equal(seen.synced, 1);
  assert.equal(f.append(['{"n":2}']).created, false);
  f.close();
  assert.deepEqual(seen.errors, []);
});
