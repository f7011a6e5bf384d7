// No pattern stalls the server: while an agent's search_files runs a catastrophic-backtracking pattern
// and a pattern that is costly even for RE2, the server keeps answering MCP pings within 100 ms.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { startMockModel, type MockModel } from './mock-model/server.js';
import { agentYaml, mockEnv, startServer, tempDir, writeTree } from './helpers.js';

describe('search_files never stalls the server', () => {
  let mock: MockModel;
  before(async () => {
    mock = await startMockModel();
  });
  after(async () => {
    await mock.close();
  });

  it('MCP pings answer within 100 ms during the searches', async (t) => {
    const ws = tempDir('dmcp-stall-');
    const agentsDir = path.join(ws, 'agents');
    writeTree(agentsDir, { 'finder.yaml': agentYaml('finder', 'anthropic/claude-sonnet-4-5') });
    // ^(a+)+$ backtracks 2^n times on a line of n a's and a b (a JS RegExp stalled ~3 s on 27).
    writeFileSync(path.join(ws, 'redos.txt'), `${'a'.repeat(27)}b\n`.repeat(2));
    // (a|b){1,1000}c keeps RE2 itself busy for about a second on these lines: off the main thread.
    writeFileSync(path.join(ws, 'costly.txt'), `${'ab'.repeat(200)}\n`.repeat(2));
    const results: string[] = [];
    mock.setHandler((req) => {
      const n = req.toolResults.length;
      if (n === 0) return { toolCalls: [{ name: 'search_files', arguments: { pattern: '^(a+)+$', path: 'redos.txt' } }] };
      results.push(String(req.toolResults[n - 1].content));
      if (results.length === 1) return { toolCalls: [{ name: 'search_files', arguments: { pattern: '(a|b){1,1000}c', path: 'costly.txt' } }] };
      return { text: 'searched' };
    });
    const srv = await startServer({ args: ['--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
    try {
      await srv.client.ping(); // warm
      const latencies: number[] = [];
      let running = true;
      const pinger = (async () => {
        while (running) {
          const t = performance.now();
          await srv.client.ping();
          latencies.push(performance.now() - t);
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      const r = await srv.client.callTool({ name: 'finder', arguments: { task: 'search' } });
      running = false;
      await pinger;
      assert.equal((r.structuredContent as any).status, 'ok', JSON.stringify(r.content));
      assert.equal(results.length, 2);
      assert.match(results[0], /^No matches for \/\^\(a\+\)\+\$\/ in "redos.txt"/);
      assert.match(results[1], /^No matches for/);
      assert.ok(latencies.length >= 5, `only ${latencies.length} pings during the run`);
      const worst = Math.max(...latencies);
      t.diagnostic(`${latencies.length} pings during the run, worst ${worst.toFixed(1)} ms`);
      assert.ok(worst < 100, `worst ping ${worst.toFixed(1)} ms over ${latencies.length} pings`);
    } finally {
      await srv.close();
    }
  });
});
