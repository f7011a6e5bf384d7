// The hash chain shared by the audit log and the budget ledger: what verifies, what breaks and where,
// several processes appending to one file, and a writer that notices the file changed behind it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ChainFile } from '../src/storage/durable-append.js';
import { genesisHash, verifyChainDir, verifyChainFile } from '../src/storage/hash-chain.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CHAIN_MODULE = pathToFileURL(path.join(ROOT, 'src', 'storage', 'durable-append.ts')).href;
const tempDir = () => fs.mkdtempSync(path.join(tmpdir(), 'dmcp-chain-'));

function chained(n: number): { file: string; lines: () => string[]; write: (lines: string[]) => void } {
  const dir = tempDir();
  const file = path.join(dir, 'audit-2026-12-07.jsonl');
  const c = new ChainFile(file);
  for (let i = 1; i <= n; i++) c.append([JSON.stringify({ n: i })]);
  c.close();
  return {
    file,
    lines: () => fs.readFileSync(file, 'utf8').split('\n').slice(0, -1),
    write: (lines) => fs.writeFileSync(file, lines.map((l) => l + '\n').join('')),
  };
}

test('a chain verifies; its first line chains to the genesis of its file name', () => {
  const { file, lines } = chained(5);
  const r = verifyChainFile(file);
  assert.deepEqual(r, { file, lines: 5, broken: null, tornTail: false, unchained: 0 });
  assert.equal(JSON.parse(lines()[0]).prev, genesisHash(file));
  // The same bytes under another name do not verify: lines cannot move between files.
  const other = path.join(path.dirname(file), 'audit-2026-12-08.jsonl');
  fs.copyFileSync(file, other);
  assert.equal(verifyChainFile(other).broken?.line, 1);
});

test('an edited, deleted or inserted line breaks the chain at the line after it', () => {
  const cases: [string, (l: string[]) => string[], number][] = [
    ['edit line 2', (l) => l.map((x, i) => (i === 1 ? x.replace('"n":2', '"n":20') : x)), 3],
    ['delete line 3', (l) => l.filter((_, i) => i !== 2), 3],
    ['insert after line 1', (l) => [l[0], JSON.stringify({ prev: JSON.parse(l[1]).prev, n: 99 }), ...l.slice(1)], 3],
    ['delete line 1', (l) => l.slice(1), 1],
    ['swap lines 2 and 3', (l) => [l[0], l[2], l[1], ...l.slice(3)], 2],
    ['garbage instead of line 4', (l) => l.map((x, i) => (i === 3 ? 'not json' : x)), 4],
  ];
  for (const [what, change, line] of cases) {
    const c = chained(5);
    c.write(change(c.lines()));
    const r = verifyChainFile(c.file);
    assert.equal(r.broken?.line, line, `${what}: ${JSON.stringify(r.broken)}`);
    assert.equal(r.broken?.file, c.file);
  }
  assert.equal(cases.length, 6);
});

test('an emptied file is a break; a torn tail and a terminated torn fragment are not', () => {
  const emptied = chained(3);
  fs.writeFileSync(emptied.file, '');
  assert.deepEqual(verifyChainFile(emptied.file).broken, { file: emptied.file, line: 1, reason: 'the file is empty: every line was removed' });

  const torn = chained(3);
  // A write cut short by a crash: the start of a line chained to line 3.
  const line3 = torn.lines()[2];
  fs.appendFileSync(torn.file, `{"prev":"${createHash('sha256').update(line3).digest('hex')}","n":4`);
  const r = verifyChainFile(torn.file);
  assert.equal(r.broken, null);
  assert.equal(r.tornTail, true);
  // The next writer ends the fragment and chains over it to line 3.
  const c = new ChainFile(torn.file);
  c.append([JSON.stringify({ n: 5 })]);
  c.close();
  const after = verifyChainFile(torn.file);
  assert.equal(after.broken, null);
  assert.equal(after.lines, 5);
  assert.equal(after.tornTail, false);
});

test('a writer that finds its last line changed keeps the break visible', () => {
  const dir = tempDir();
  const file = path.join(dir, 'ledger-2026-12-07.jsonl');
  const tampered: string[] = [];
  const c = new ChainFile(file, { onTamper: (m) => tampered.push(m) });
  c.append([JSON.stringify({ tokens: 1000 })]);
  c.append([JSON.stringify({ tokens: 2000 })]);
  // Someone rewrites the last line (a smaller charge) between two appends.
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines[1] = lines[1].replace('2000', '2');
  fs.writeFileSync(file, lines.join('\n'));
  c.append([JSON.stringify({ tokens: 3000 })]);
  c.close();
  assert.equal(tampered.length, 1);
  assert.match(tampered[0], /ledger-2026-12-07.jsonl: the file changed behind this process \(it shrank\)/);
  assert.equal(verifyChainFile(file).broken?.line, 3);
});

test('several processes appending to one file at once leave one chain that verifies', async () => {
  const dir = tempDir();
  const file = path.join(dir, 'audit-2026-12-07.jsonl');
  const PER = 150;
  const code = `import { ChainFile } from ${JSON.stringify(CHAIN_MODULE)};
    const c = new ChainFile(${JSON.stringify(file)});
    for (let i = 0; i < ${PER}; i++) c.append([JSON.stringify({ pid: process.pid, i }), JSON.stringify({ pid: process.pid, i, second: true })]);
    c.close();`;
  const children = [0, 1, 2].map(() => spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] }));
  const codes = await Promise.all(children.map((ch) => new Promise((r) => ch.on('exit', r))));
  assert.deepEqual(codes, [0, 0, 0]);
  const r = verifyChainFile(file);
  assert.equal(r.broken, null, JSON.stringify(r.broken));
  assert.equal(r.lines, 3 * PER * 2);
  assert.deepEqual(fs.readdirSync(dir), ['audit-2026-12-07.jsonl'], 'no lock or temporary file is left behind');
  assert.equal(verifyChainDir(dir, 'audit').length, 1);
});

test('a file written before chaining existed: its old lines are reported as unprotected, the chain starts after them', () => {
  const dir = tempDir();
  const file = path.join(dir, 'audit-2026-12-07.jsonl');
  fs.writeFileSync(file, '{"v":1,"event":"run_start"}\n{"v":1,"event":"run_e\n{"v":1,"event":"run_end"}\n');
  const c = new ChainFile(file);
  c.append([JSON.stringify({ v: 1, event: 'server_start' })]);
  c.append([JSON.stringify({ v: 1, event: 'run_start' })]);
  c.close();
  assert.deepEqual(verifyChainFile(file), { file, lines: 5, broken: null, tornTail: false, unchained: 2 });
  // An edit among the old lines is not visible (they carry no hash), one in the chained part is.
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines[3] = lines[3].replace('server_start', 'server_stop');
  fs.writeFileSync(file, lines.join('\n'));
  assert.equal(verifyChainFile(file).broken?.line, 5);
});
