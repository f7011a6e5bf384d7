// The worker warm-up streams one canned answer through each adapter over loopback: if a canned stream
// stopped matching what an adapter accepts, the warm-up would fail (and the first real call pay for it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { warmUp } from '../src/worker/warm.js';

test('warm-up runs a canned stream through every wire API and loads the tokenizer', async () => {
  const t0 = performance.now();
  await warmUp({ wireApis: ['anthropic', 'openai-responses', 'openai-chat'], tokenizer: true });
  assert.ok(performance.now() - t0 < 30_000);
});

test('warm-up with nothing to warm resolves at once', async () => {
  await warmUp({ wireApis: [], tokenizer: false });
});
