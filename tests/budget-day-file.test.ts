// The day file keeps its format while the budget speaks the contract's Usage in memory: a day file
// written before the change (the lines below were written by the ledger at commit 768b62c, hash chain
// included) loads, its token parts come back as Usage, and new lines are written in the same format.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { BudgetLedger } from '../src/budget/ledger.js';

const DAY = '2026-11-22';
const OLD_DAY_FILE = [
  '{"prev":"7aea72354cb7cc8eb422e5d70cbf5fde138e714583e77eea31ab7f8a63d433c5","ts":"2026-11-22T12:00:00.000Z","day":"2026-11-22","runId":"run_old1","agent":"reviewer","model":"anthropic/claude-sonnet-4-5","tokens":3900,"usd":0.011325,"input":1200,"output":400,"cache_read":2000,"cache_write":300,"basis":"usage","pid":18812,"writer":"18812-d96f2ffa","seq":1}',
  '{"prev":"45a719bfa6e4fa4690a8929fc78bc6e0689b7120f9208215d566a06522226255","ts":"2026-11-22T12:00:00.000Z","day":"2026-11-22","runId":"run_old2","agent":"writer","model":"openai/gpt-5","tokens":550,"usd":0.001125,"input":500,"output":50,"cache_read":0,"cache_write":0,"basis":"streamed","pid":18812,"writer":"18812-d96f2ffa","seq":2}',
];
const now = () => new Date(`${DAY}T13:00:00Z`);
const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function stateDirWithOldDayFile(): { dir: string; file: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'dmcp-dayfile-'));
  dirs.push(dir);
  const file = path.join(dir, 'budget', `ledger-${DAY}.jsonl`);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, OLD_DAY_FILE.join('\n') + '\n');
  return { dir, file };
}

test('a day file written before the Usage change loads: its parts come back as the contract Usage', async () => {
  const { dir } = stateDirWithOldDayFile();
  const l = await BudgetLedger.open({ stateDir: dir, now, warn: (m) => assert.fail(`warning: ${m}`) });
  const st = l.status();
  assert.equal(st.server.spent.tokens, 4450);
  assert.equal(st.agents.reviewer.spent.tokens, 3900);
  assert.equal(st.agents.writer.spent.tokens, 550);
  assert.deepEqual(st.models['anthropic/claude-sonnet-4-5'], {
    calls: 1,
    tokens: 3900,
    usd: 0.011325,
    usage: { input_tokens: 1200, output_tokens: 400, cache_read_input_tokens: 2000, cache_creation_input_tokens: 300 },
  });
  assert.deepEqual(st.models['openai/gpt-5'].usage, { input_tokens: 500, output_tokens: 50, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 });
  await l.close();
});

test('new charges are written in the day file\'s own field names, and the old and new lines replay together', async () => {
  const { dir, file } = stateDirWithOldDayFile();
  const l = await BudgetLedger.open({ stateDir: dir, now, warn: () => {} });
  l.openRun({ runId: 'run_new', agent: 'reviewer' });
  const r = l.reserve({ runId: 'run_new', model: 'anthropic/claude-sonnet-4-5', inputTokens: 1000, maxOutputTokens: 500 });
  assert.ok(r.ok);
  const charge = l.commit(r.reservationId, { input_tokens: 100, output_tokens: 50, cache_read_input_tokens: 700, cache_creation_input_tokens: 20 });
  assert.deepEqual(charge.usage, { input_tokens: 100, output_tokens: 50, cache_read_input_tokens: 700, cache_creation_input_tokens: 20 });
  assert.equal(charge.tokens, 870);
  await l.close();

  const lines = readFileSync(file, 'utf8').trim().split('\n').map((s) => JSON.parse(s));
  assert.equal(lines.length, 3);
  const added = lines[2];
  assert.deepEqual([added.input, added.output, added.cache_read, added.cache_write], [100, 50, 700, 20]);
  assert.deepEqual(Object.keys(added).sort(), Object.keys(lines[0]).sort(), 'the same fields as the lines written before');

  const again = await BudgetLedger.open({ stateDir: dir, now, warn: (m) => assert.fail(`warning: ${m}`) });
  const m = again.status().models['anthropic/claude-sonnet-4-5'];
  assert.equal(m.calls, 2);
  assert.deepEqual(m.usage, { input_tokens: 1300, output_tokens: 450, cache_read_input_tokens: 2700, cache_creation_input_tokens: 320 });
  assert.equal(again.status().server.spent.tokens, 5320);
  await again.close();
});
