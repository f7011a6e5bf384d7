// The Redis ledger's step batching (src/budget/redis-steps.ts), through its send seam: what one tick's
// calls become on the wire, in which order, and when a large burst goes out without waiting for the tick.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StepBatcher, type SendScript } from '../src/budget/redis-steps.js';
import { STEP_ERROR } from '../src/budget/redis-scripts.js';

/** A send that records each script and answers each step with its run id (args[0]), or an error for 'bad'. */
function recorder() {
  const sent: { name: string; steps: string[]; at: 'in tick' | 'later' }[] = [];
  let inTick = true;
  const send: SendScript = async (name, args) => {
    if (name !== 'budgetSteps') {
      sent.push({ name, steps: [String(args[0])], at: inTick ? 'in tick' : 'later' });
      return `ok ${args[0]}`;
    }
    const steps: string[] = [];
    const replies: unknown[] = [];
    for (let i = 0; i < args.length; ) {
      const n = Number(args[i + 1]);
      const id = String(args[i + 2]);
      steps.push(id);
      replies.push(id === 'bad' ? [STEP_ERROR, 'budget: refused'] : `ok ${id}`);
      i += 2 + n;
    }
    sent.push({ name, steps, at: inTick ? 'in tick' : 'later' });
    return replies;
  };
  return { sent, send, endTick: () => (inTick = false) };
}

test('a few calls in one tick go as one budgetSteps script once the tick ends; one call alone as its own script', async () => {
  const r = recorder();
  const b = new StepBatcher(r.send);
  const replies = ['a', 'b', 'c'].map((id) => b.run('budgetReserve', [id, 1]));
  assert.equal(r.sent.length, 0, 'nothing is sent before the tick ends');
  r.endTick();
  assert.deepEqual(await Promise.all(replies), ['ok a', 'ok b', 'ok c']);
  assert.deepEqual(r.sent, [{ name: 'budgetSteps', steps: ['a', 'b', 'c'], at: 'later' }]);
  const alone = await b.run('budgetCommit', ['z']);
  assert.equal(alone, 'ok z');
  assert.deepEqual(r.sent[1], { name: 'budgetCommit', steps: ['z'], at: 'later' });
});

test('a burst sends its first 32 calls at once, in the tick that makes them, and the rest after it, in order', async () => {
  const r = recorder();
  const b = new StepBatcher(r.send);
  const ids = Array.from({ length: 40 }, (_, i) => `r${i}`);
  const replies = ids.map((id) => b.run('budgetOpenRun', [id]));
  assert.equal(r.sent.length, 1, 'the first 32 went out while the tick was still making calls');
  assert.deepEqual(r.sent[0], { name: 'budgetSteps', steps: ids.slice(0, 32), at: 'in tick' });
  r.endTick();
  assert.deepEqual(await Promise.all(replies), ids.map((id) => `ok ${id}`));
  assert.deepEqual(r.sent.slice(1), [{ name: 'budgetSteps', steps: ids.slice(32), at: 'later' }]);
  assert.deepEqual(r.sent.flatMap((s) => s.steps), ids, 'every call sent once, in the order made');
});

test("a step's error rejects that call only", async () => {
  const r = recorder();
  const b = new StepBatcher(r.send);
  const [a, bad, c] = ['a', 'bad', 'c'].map((id) => b.run('budgetReserve', [id]).then((v) => ({ ok: v }), (e: Error) => ({ err: e.message })));
  r.endTick();
  assert.deepEqual(await Promise.all([a, bad, c]), [{ ok: 'ok a' }, { err: 'budget: refused' }, { ok: 'ok c' }]);
});
