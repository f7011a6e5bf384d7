// The worker warm-up streams one canned answer through each adapter over loopback: if a canned stream
// stopped matching what an adapter accepts, the warm-up would fail (and the first real call pay for it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { warmUp } from '../src/worker/warm.js';
import { DEFAULT_POOL_OPTIONS, startPoolEarly, takeEarlyPool } from '../src/orchestrator/pool-start.js';
import { CONTROL_ANNOUNCE } from '../src/contract/worker-protocol.js';
import { loadConfig } from '../src/config/config.js';
import { tempDir } from './helpers.js';

test('warm-up runs a canned stream through every wire API and loads the tokenizer', async () => {
  const t0 = performance.now();
  await warmUp({ wireApis: ['anthropic', 'openai-responses', 'openai-chat'], tokenizer: true });
  assert.ok(performance.now() - t0 < 30_000);
});

test('warm-up with nothing to warm resolves at once', async () => {
  await warmUp({ wireApis: [], tokenizer: false });
});

// `serve` starts the pool before its config is read (src/main.ts) with DEFAULT_POOL_OPTIONS; the
// RunPool takes it over only when the config asks for the same pool.
test('the early pool is started with what the config gives a server without a pool section', () => {
  const ws = tempDir('dmcp-warm-');
  const cfg = loadConfig({ workspace: ws }, ws, { HOME: ws, XDG_CONFIG_HOME: path.join(ws, 'xdg') });
  assert.deepEqual(cfg.delegate.pool, DEFAULT_POOL_OPTIONS);
});

test('an early pool is taken over with the same options (announces sent before included), refused with others', async () => {
  startPoolEarly();
  const other = takeEarlyPool({ ...DEFAULT_POOL_OPTIONS, maxThreads: 3 });
  assert.equal(other, undefined, 'a pool started with other options is not taken over');
  assert.equal(takeEarlyPool(DEFAULT_POOL_OPTIONS), undefined, 'it is gone once refused');

  startPoolEarly();
  const started = takeEarlyPool({ ...DEFAULT_POOL_OPTIONS });
  assert.ok(started, 'the same options take the early pool over');
  try {
    // The worker's announce arrives before anyone took the pool's messages: it is held for onMessage.
    const announced = new Promise<void>((resolve) => started.pool.on('message', (m: { kind?: string }) => m?.kind === CONTROL_ANNOUNCE && resolve()));
    await announced;
    const seen: unknown[] = [];
    started.onMessage((m) => seen.push(m));
    assert.equal(seen.length, 1, `held messages: ${JSON.stringify(seen.map((m) => (m as { kind?: string }).kind))}`);
    assert.equal((seen[0] as { kind: string }).kind, CONTROL_ANNOUNCE);
  } finally {
    await started.pool.close({ force: true });
  }
});
