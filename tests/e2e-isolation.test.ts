// Client isolation end to end: two HTTP sessions (and a stdio client sharing the same state dir) each
// see only their own runs, batches and artifacts, through every tool and resource.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client } from '@modelcontextprotocol/client';
import { startMockModel, type MockModel } from './mock-model/server.js';
import { agentYaml, mockEnv, startServer, tempDir, writeTree } from './helpers.js';
import { connectClient, startHttpServer, type HttpServer } from './http-helpers.js';

const TOKEN = 'test-token-isolation-0123456789';
const textOf = (r: { content?: unknown }) => ((r.content as { text?: string }[] | undefined)?.[0]?.text ?? '') as string;

describe('client isolation', () => {
  let mock: MockModel;
  let srv: HttpServer;
  let ws: string;
  let args: string[];

  before(async () => {
    mock = await startMockModel();
    mock.setHandler(() => ({ text: '<artifact name="report.md">secret findings of A</artifact>' }));
    ws = tempDir('dmcp-iso-');
    const agentsDir = path.join(ws, 'agents');
    writeTree(agentsDir, { 'worker.yaml': agentYaml('worker', 'anthropic/claude-sonnet-4-5', 'artifacts: [report.md]') });
    const cfg = path.join(ws, 'mcp.json');
    writeFileSync(cfg, JSON.stringify({ delegate: {} }));
    args = ['--config', cfg, '--agents', agentsDir, '--workspace', ws];
    srv = await startHttpServer({ args, env: mockEnv(mock.url, { DELEGATE_MCP_TOKEN: TOKEN }), cwd: ws });
  });
  after(async () => {
    await srv?.stop();
    await mock.close();
  });

  it('session B sees none of session A\'s runs, batches or artifacts; a stdio client sees only its own', async () => {
    const a: Client = await connectClient(srv.url, 'legacy', TOKEN);
    const b: Client = await connectClient(srv.url, 'legacy', TOKEN);
    try {
      // A: a run with an artifact, a batch, and a background run.
      const run = await a.callTool({ name: 'worker', arguments: { task: 'write the report' } });
      assert.equal((run.structuredContent as any).status, 'ok');
      const runId: string = (run.structuredContent as any).run_id;
      const artUri: string = (run.structuredContent as any).artifacts[0].uri;
      const batch = await a.callTool({ name: 'delegate_parallel', arguments: { tasks: [{ agent: 'worker', task: 'one' }] } });
      const batchId: string = (batch.structuredContent as any).batch_id;
      assert.match(batchId, /^batch_/);
      const bg = await a.callTool({ name: 'delegate', arguments: { agent: 'worker', task: 'later', background: true } });
      const bgId: string = (bg.structuredContent as any).run_id;

      // A itself sees all of them (the checks below could not pass by seeing nothing at all).
      const ownBatch = await a.callTool({ name: 'budget_status', arguments: { run_id: batchId } });
      assert.equal(ownBatch.isError, undefined, textOf(ownBatch));
      assert.equal((ownBatch.structuredContent as any).runs[0].runId, batchId);
      assert.ok((await a.listResources()).resources.some((r) => r.uri === artUri));
      assert.equal(((await a.readResource({ uri: artUri })).contents[0] as any).text, 'secret findings of A');
      // A's finished foreground run is known to A (as ended, not kept); its background run is kept.
      assert.match(textOf(await a.callTool({ name: 'run_status', arguments: { run_id: runId } })), /ended with status ok/);
      assert.equal(((await a.callTool({ name: 'run_status', arguments: { run_id: bgId } })).structuredContent as any).run_id, bgId);

      // B: every tool treats A's ids as unknown.
      for (const id of [runId, batchId, bgId]) {
        const st = await b.callTool({ name: 'budget_status', arguments: { run_id: id } });
        assert.equal(st.isError, true, `budget_status ${id}: ${textOf(st)}`);
        assert.match(textOf(st), /unknown run/);
        for (const tool of ['run_status', 'run_result', 'run_cancel']) {
          const r = await b.callTool({ name: tool, arguments: { run_id: id } });
          assert.equal(r.isError, true, `${tool} ${id}: ${textOf(r)}`);
          assert.match(textOf(r), /unknown run/);
        }
      }
      // B: resources neither list nor read A's artifact.
      const listedB = await b.listResources();
      assert.equal(listedB.resources.filter((r) => r.uri.startsWith('artifact://')).length, 0, JSON.stringify(listedB.resources));
      await assert.rejects(b.readResource({ uri: artUri }), /no artifact/);

      // B's own run is B's: listed for B, not for A.
      const runB = await b.callTool({ name: 'worker', arguments: { task: 'B report' } });
      const uriB: string = (runB.structuredContent as any).artifacts[0].uri;
      assert.deepEqual((await b.listResources()).resources.filter((r) => r.uri.startsWith('artifact://')).map((r) => r.uri), [uriB]);
      assert.ok(!(await a.listResources()).resources.some((r) => r.uri === uriB));
      await assert.rejects(a.readResource({ uri: uriB }), /no artifact/);

      // Session-less (2026-07-28) clients: a run id is the capability to read, but nobody lists others' runs.
      const m1 = await connectClient(srv.url, 'modern', TOKEN);
      const m2 = await connectClient(srv.url, 'modern', TOKEN);
      try {
        const mr = await m1.callTool({ name: 'worker', arguments: { task: 'modern report' } });
        const mUri: string = (mr.structuredContent as any).artifacts[0].uri;
        for (const c of [m1, m2]) {
          const listed = (await c.listResources()).resources.filter((r) => r.uri.startsWith('artifact://'));
          assert.equal(listed.length, 0, JSON.stringify(listed));
        }
        assert.equal(((await m2.readResource({ uri: mUri })).contents[0] as any).text, 'secret findings of A');
        await assert.rejects(m2.readResource({ uri: artUri }), /no artifact/);
        await assert.rejects(b.readResource({ uri: mUri }), /no artifact/);
      } finally {
        await m1.close();
        await m2.close();
      }

      // A stdio client on the same state dir owns its own artifacts and sees none of the HTTP sessions'.
      const stdio = await startServer({ args, env: mockEnv(mock.url), cwd: ws });
      try {
        const listed0 = (await stdio.client.listResources()).resources.filter((r) => r.uri.startsWith('artifact://'));
        assert.equal(listed0.length, 0, JSON.stringify(listed0));
        await assert.rejects(stdio.client.readResource({ uri: artUri }), /no artifact/);
        const st = await stdio.client.callTool({ name: 'budget_status', arguments: { run_id: batchId } });
        assert.equal(st.isError, true);
        const own = await stdio.client.callTool({ name: 'worker', arguments: { task: 'stdio report' } });
        const ownUri: string = (own.structuredContent as any).artifacts[0].uri;
        assert.deepEqual((await stdio.client.listResources()).resources.filter((r) => r.uri.startsWith('artifact://')).map((r) => r.uri), [ownUri]);
        assert.equal(((await stdio.client.readResource({ uri: ownUri })).contents[0] as any).text, 'secret findings of A');
      } finally {
        await stdio.close();
      }
    } finally {
      await a.close();
      await b.close();
    }
  });
});
