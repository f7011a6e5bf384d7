// The logging helpers a hostile sender could otherwise use to flood stderr.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { log, throttledWarn } from '../src/log.js';

test('throttledWarn: one line per interval, the next one counting what was left out', async (t) => {
  const lines: string[] = [];
  t.mock.method(log, 'warn', (m: string) => {
    lines.push(m);
    return log;
  });
  const warn = throttledWarn(50);
  for (let i = 0; i < 100; i++) warn(`bad message ${i}`);
  assert.deepEqual(lines, ['bad message 0']);
  await new Promise((r) => setTimeout(r, 60));
  warn('bad message 100');
  assert.equal(lines.length, 2);
  assert.match(lines[1], /^bad message 100 \(and 99 more like it in the last 0 s\)$/);
  await new Promise((r) => setTimeout(r, 60));
  warn('alone');
  assert.equal(lines[2], 'alone');
});
