// The call chain's signature: a re-entry child takes a chain's ids only when its own parent signed it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CHAIN_KEY_ENV, CHAIN_MAC_META_KEY, CHAIN_META_KEY, ChainKey, parseChain, recordedLineage, type CallChain } from '../src/orchestrator/chain.js';

const chain: CallChain = {
  v: 1,
  root_run_id: 'run_root',
  parent_run_id: 'run_parent',
  depth: 1,
  ancestry: [{ agent: 'lead', task: 'abc' }],
  budget: { tokens: 100 },
  rules: { layers: [{ label: 'agent lead', deny: [], ask: [], allow: ['Read(**)'] }] },
};
// What arrives: the chain after a JSON round trip, keys in another order.
const sent = (c: unknown, mac?: string) => ({ [CHAIN_META_KEY]: JSON.parse(JSON.stringify(c)), ...(mac !== undefined && { [CHAIN_MAC_META_KEY]: mac }) });

test('the key a parent hands over is taken out of the environment, once', () => {
  const parent = ChainKey.random();
  const env: NodeJS.ProcessEnv = { [CHAIN_KEY_ENV]: parent.secret, PATH: '/bin' };
  const child = ChainKey.fromEnv(env)!;
  assert.deepEqual(env, { PATH: '/bin' });
  assert.equal(ChainKey.fromEnv(env), undefined);
  assert.equal(parseChain(sent(chain, parent.mac(chain)), child).claimed, false);
  // Too short to be a key of ours: none.
  assert.equal(ChainKey.fromEnv({ [CHAIN_KEY_ENV]: 'short' }), undefined);
});

test('a chain without its parent\'s signature is a claim: missing, made up, another key, or changed after signing', () => {
  const key = ChainKey.random();
  assert.equal(parseChain(sent(chain, key.mac(chain)), key).claimed, false);
  const reordered = { rules: chain.rules, budget: chain.budget, ancestry: chain.ancestry, depth: 1, parent_run_id: 'run_parent', root_run_id: 'run_root', v: 1 };
  assert.equal(parseChain(sent(reordered, key.mac(chain)), key).claimed, false, 'key order does not matter');
  assert.equal(parseChain(sent(chain), key).claimed, true);
  assert.equal(parseChain(sent(chain, 'A'.repeat(43)), key).claimed, true);
  assert.equal(parseChain(sent(chain, ChainKey.random().mac(chain)), key).claimed, true);
  assert.equal(parseChain(sent({ ...chain, parent_run_id: 'run_other' }, key.mac(chain)), key).claimed, true);
  assert.equal(parseChain(sent(chain, key.mac(chain)), undefined).claimed, true, 'a process no parent started takes no chain as signed');
  assert.equal(parseChain(sent(chain, 42 as unknown as string), key).claimed, true);
});

test('recorded lineage: a claimed chain makes a root run; a signed one, a child of its parent', () => {
  assert.deepEqual(recordedLineage({ chain }, 'run_me'), { parentRunId: 'run_parent', rootRunId: 'run_root', depth: 1 });
  assert.deepEqual(recordedLineage({ chain, chainClaimed: true }, 'run_me'), { parentRunId: null, rootRunId: 'run_me', depth: 0 });
  assert.deepEqual(recordedLineage({ parentRunId: 'batch_1' }, 'run_me'), { parentRunId: 'batch_1', rootRunId: 'batch_1', depth: 1 });
  assert.deepEqual(recordedLineage({}, 'run_me'), { parentRunId: null, rootRunId: 'run_me', depth: 0 });
});
