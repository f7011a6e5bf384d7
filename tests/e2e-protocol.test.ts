// Protocol promises (issue #17) through the real built server and real MCP clients: answer-first
// structuredContent, output schemas without type arrays, notes on an unknown cost, the progress
// heartbeat on every transport.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startMockModel, type MockModel } from './mock-model/server.js';
import { agentYaml, mockEnv, startServer, tempDir, writeTree } from './helpers.js';
import { connectClient, startHttpServer } from './http-helpers.js';

/** Every `type` keyword in a JSON Schema that is an array (["number","null"]) or the null type. */
function typeArrays(schema: unknown, at = '$'): string[] {
  if (Array.isArray(schema)) return schema.flatMap((s, i) => typeArrays(s, `${at}[${i}]`));
  if (typeof schema !== 'object' || schema === null) return [];
  const out: string[] = [];
  for (const [k, v] of Object.entries(schema)) {
    if (k === 'type' && (Array.isArray(v) || v === 'null')) out.push(`${at}.type = ${JSON.stringify(v)}`);
    out.push(...typeArrays(v, `${at}.${k}`));
  }
  return out;
}

describe('protocol: what clients and their models see', () => {
  let mock: MockModel;
  let ws: string;
  let agentsDir: string;

  before(async () => {
    mock = await startMockModel();
    ws = tempDir('dmcp-proto-');
    agentsDir = path.join(ws, 'agents');
    // claude-test-1 has no known price: its cost is unknown.
    writeTree(agentsDir, { 'answerer.yaml': agentYaml('answerer', 'anthropic/claude-test-1') });
  });
  after(async () => {
    await mock.close();
  });

  for (const era of ['legacy', 'modern'] as const) {
    it(`an agent result leads with the answer; unknown cost is left out with a note; no output schema has a type array (${era})`, async () => {
      const srv = await startServer({ args: ['--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws, era });
      try {
        const { tools } = await srv.client.listTools();
        const withOutput = tools.filter((t) => t.outputSchema);
        assert.ok(withOutput.length >= 3, `tools with an outputSchema: ${withOutput.map((t) => t.name)}`);
        for (const t of withOutput) assert.deepEqual(typeArrays(t.outputSchema), [], `${t.name} outputSchema`);
        const answerer = tools.find((t) => t.name === 'answerer')!;
        assert.deepEqual(Object.keys((answerer.outputSchema as any).properties).slice(0, 2), ['output', 'status']);

        const res = await srv.client.callTool({ name: 'answerer', arguments: { task: 'say hello' } });
        assert.equal(res.isError, undefined, JSON.stringify(res.content));
        const sc = res.structuredContent as any;
        assert.equal(sc.status, 'ok');
        const json = JSON.stringify(sc);
        assert.ok(json.startsWith('{"output":'), json.slice(0, 80));
        const at = json.indexOf('mock answer to:');
        assert.ok(at >= 0 && at < 40, `answer at ${at}: ${json.slice(0, 80)}`);
        assert.deepEqual(Object.keys(sc).slice(0, 2), ['output', 'status']);
        assert.equal('cost_usd' in sc, false, 'an unknown cost is left out, not null');
        assert.ok(
          (sc.notes as string[]).some((n) => n.startsWith('cost unknown: no price known for anthropic/claude-test-1')),
          JSON.stringify(sc.notes),
        );
      } finally {
        await srv.close();
      }
    });
  }

  for (const transport of ['stdio', 'http'] as const) {
    it(`progress comes at least every 5 s while the model is silent (${transport})`, async () => {
      mock.setHandler(() => ({ text: 'slow answer', delayMs: 11_500 }));
      const env = mockEnv(mock.url);
      const args = ['--agents', agentsDir, '--workspace', ws];
      const http = transport === 'http' ? await startHttpServer({ args, env, cwd: ws }) : undefined;
      const stdio = transport === 'stdio' ? await startServer({ args, env, cwd: ws }) : undefined;
      const client = http ? await connectClient(http.url, 'legacy') : stdio!.client;
      try {
        const stamps: number[] = [];
        const t0 = performance.now();
        const res = await client.callTool(
          { name: 'answerer', arguments: { task: 'take your time' } },
          { onprogress: () => stamps.push(performance.now()), resetTimeoutOnProgress: true },
        );
        const end = performance.now();
        assert.equal((res.structuredContent as any).status, 'ok');
        assert.ok(stamps.length >= 3, `progress notifications: ${stamps.length}`);
        const gaps = [...stamps, end].map((s, i, all) => s - (i ? all[i - 1] : t0));
        assert.ok(Math.max(...gaps) <= 5000, `gaps ${gaps.map((g) => g.toFixed(0))}`);
      } finally {
        mock.reset();
        if (http) {
          await client.close().catch(() => {});
          await http.stop();
        }
        await stdio?.close();
      }
    });
  }
});
