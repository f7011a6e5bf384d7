// The audit log end to end: a mixed session through the real server, then the file, the CLI and the
// MCP resources are read back. Secrets never reach the state dir or stderr.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startMockModel, type MockModel } from './mock-model/server.js';
import { CLI, agentYaml, mockEnv, startServer, tempDir, writeTree, readAuditEvents, stateDirOf } from './helpers.js';

const execFileP = promisify(execFile);
const FAKE_KEY = 'sk-ant-api03-FAKEKEYabcdefghijklmnopqrstuvwxyz0123456789';

const readEvents = readAuditEvents;

function allFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? allFiles(p) : [p];
  });
}

describe('audit log', () => {
  let mock: MockModel;
  let ws: string;
  let agentsDir: string;
  let stateDir: string;
  let cfg: string;

  before(async () => {
    mock = await startMockModel();
    ws = tempDir('dmcp-audit-');
    stateDir = stateDirOf(ws);
    agentsDir = path.join(ws, 'agents');
    writeTree(ws, { 'keyfile.txt': `token=${FAKE_KEY}\n` });
    writeTree(agentsDir, {
      'worker.yaml': agentYaml('worker', 'anthropic/claude-sonnet-4-5', 'artifacts: [report.md]'),
      'tiny.yaml': agentYaml('tiny', 'anthropic/claude-sonnet-4-5', 'budget: {run_tokens: 10}'),
    });
    cfg = path.join(ws, 'mcp.json');
    writeFileSync(cfg, JSON.stringify({ delegate: { audit: { previews: true } } }));
  });
  after(async () => {
    await mock.close();
  });

  const env = () => mockEnv(mock.url, { ANTHROPIC_API_KEY: FAKE_KEY, DELEGATE_MCP_LOG_LEVEL: 'debug' });

  it('a mixed session leaves a matching, consistent event for every outcome; the key never reaches disk or stderr', async () => {
    const srv = await startServer({ args: ['--config', cfg, '--agents', agentsDir, '--workspace', ws], env: env(), cwd: ws });
    const ids: Record<string, string> = {};
    try {
      // Success, with the model echoing the key it was sent and a tool printing it.
      mock.setHandler((req) =>
        req.toolResults.length
          ? { text: `<artifact name="report.md">auth was ${String(req.headers['authorization'])} and ${req.toolResults[0].content}</artifact>` }
          : { toolCalls: [{ name: 'read_file', arguments: { path: 'keyfile.txt' } }] },
      );
      const ok = await srv.client.callTool({ name: 'worker', arguments: { task: `use ${FAKE_KEY}` } });
      ids.ok = (ok.structuredContent as any).run_id;
      const art = (ok.structuredContent as any).artifacts[0];
      assert.equal(art.name, 'report.md');
      const read = await srv.client.readResource({ uri: art.uri });
      assert.match((read.contents[0] as any).text, /auth was Bearer \[REDACTED/);
      const listed = await srv.client.listResources();
      assert.ok(listed.resources.some((r) => r.uri === art.uri));

      // A denial: a path outside the workspace.
      mock.setHandler((req) => (req.toolResults.length ? { text: 'denied, fine' } : { toolCalls: [{ name: 'read_file', arguments: { path: '/etc/passwd' } }] }));
      ids.denied = ((await srv.client.callTool({ name: 'worker', arguments: { task: 'peek' } })).structuredContent as any).run_id;

      // A budget refusal.
      const refused = await srv.client.callTool({ name: 'tiny', arguments: { task: 'anything' } });
      ids.refused = /run (run_\S+)/.exec((refused.content as any)[0].text)![1];

      // A provider error.
      mock.setHandler(() => ({ error: { status: 400, message: 'mock says no' } }));
      const failed = await srv.client.callTool({ name: 'worker', arguments: { task: 'fail' } });
      ids.failed = /run (run_\S+)/.exec((failed.content as any)[0].text)![1];

      // A cancellation (background run cancelled).
      mock.setHandler(() => ({ text: 'late', delayMs: 30_000 }));
      const bg = await srv.client.callTool({ name: 'delegate', arguments: { agent: 'worker', task: 'slow', background: true } });
      ids.cancelled = (bg.structuredContent as any).run_id;
      await new Promise((r) => setTimeout(r, 300));
      await srv.client.callTool({ name: 'run_cancel', arguments: { run_id: ids.cancelled } });

      // A fan-out: its tasks hang under the batch in the run tree.
      mock.reset();
      const fan = await srv.client.callTool({ name: 'delegate_parallel', arguments: { tasks: [{ agent: 'worker', task: 'a' }, { agent: 'worker', task: 'b' }] } });
      ids.batch = (fan.structuredContent as any).batch_id;
    } finally {
      mock.reset();
      await srv.close();
    }
    await new Promise((r) => setTimeout(r, 300));

    const events = readEvents(stateDir);
    const ofRun = (id: string) => events.filter((e) => e.run_id === id);
    const end = (id: string) => ofRun(id).find((e) => e.event === 'run_end');
    for (const e of events) {
      for (const k of ['v', 'ts', 'seq', 'event', 'run_id', 'parent_run_id', 'root_run_id', 'depth', 'agent']) assert.ok(k in e, `${e.event} lacks ${k}`);
    }
    assert.ok(events.some((e) => e.event === 'server_start') && events.some((e) => e.event === 'server_stop'));
    assert.equal(end(ids.ok).status, 'ok');
    assert.ok(ofRun(ids.ok).some((e) => e.event === 'model_call' && e.usage && e.provider === 'anthropic'));
    assert.ok(ofRun(ids.ok).some((e) => e.event === 'tool_call' && e.tool === 'read_file' && e.decision === 'allow'));
    assert.ok(ofRun(ids.ok).some((e) => e.event === 'artifact' && e.name === 'report.md'));
    assert.ok(ofRun(ids.ok).some((e) => e.event === 'budget_commit'));
    assert.ok(ofRun(ids.denied).some((e) => e.event === 'permission_denied' && e.tool === 'read_file'));
    assert.ok(ofRun(ids.denied).some((e) => e.event === 'tool_call' && e.decision === 'deny'));
    assert.ok(ofRun(ids.refused).some((e) => e.event === 'budget_refused' && /token limit 10/.test(e.message)));
    assert.equal(end(ids.failed).status, 'error');
    assert.ok(ofRun(ids.failed).some((e) => e.event === 'model_call' && /400/.test(e.error)));
    assert.equal(end(ids.cancelled).status, 'cancelled');
    assert.ok(ofRun(ids.cancelled).some((e) => e.event === 'cancelled'));
    for (const id of Object.values(ids)) assert.equal(ofRun(id).filter((e) => e.event === 'run_start').length, 1, `one run_start for ${id}`);

    // The CLI rebuilds the summary and the tree of the fan-out.
    const sum = JSON.parse((await execFileP(process.execPath, [CLI, 'audit', '--json', '--config', cfg, '--workspace', ws], { env: env() })).stdout);
    const worker = sum.by_agent.find((r: any) => r.key === 'worker');
    assert.ok(worker.ok >= 3 && worker.error >= 1 && worker.cancelled >= 1 && worker.denied >= 1, JSON.stringify(worker));
    const tree = JSON.parse((await execFileP(process.execPath, [CLI, 'audit', '--json', '--run', ids.batch, '--config', cfg, '--workspace', ws], { env: env() })).stdout);
    assert.equal(tree.children.length, 2);
    const text = (await execFileP(process.execPath, [CLI, 'audit', '--run', ids.batch, '--config', cfg, '--workspace', ws], { env: env() })).stdout;
    assert.match(text, /worker/);

    // No secret anywhere under the state dir.
    const stateFiles = allFiles(stateDir);
    assert.ok(stateFiles.some((f) => /audit-[\d-]+\.jsonl$/.test(f)) && stateFiles.some((f) => /ledger-[\d-]+\.jsonl$/.test(f)), stateFiles.join('\n'));
    for (const f of stateFiles) assert.ok(!readFileSync(f, 'utf8').includes(FAKE_KEY), `${f} contains the key`);
    assert.ok(!srv.stderr().includes(FAKE_KEY), 'stderr contains the key');
  });

  it('kill -9 right after a run returns: its run_end is already on disk', async () => {
    const state = tempDir('dmcp-kill-');
    const kcfg = path.join(ws, 'kill.json');
    writeFileSync(kcfg, JSON.stringify({ delegate: { stateDir: state } }));
    const srv = await startServer({ args: ['--config', kcfg, '--agents', agentsDir, '--workspace', ws], env: env(), cwd: ws });
    const res = await srv.client.callTool({ name: 'worker', arguments: { task: 'quick' } });
    const id = (res.structuredContent as any).run_id;
    process.kill(srv.transport.pid!, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 200));
    const events = readEvents(state);
    assert.ok(events.some((e) => e.event === 'run_end' && e.run_id === id), 'run_end survived kill -9');
    await srv.close();
  });

  it('the audit summary is readable as an MCP resource', async () => {
    const srv = await startServer({ args: ['--config', cfg, '--agents', agentsDir, '--workspace', ws], env: env(), cwd: ws });
    try {
      const r = await srv.client.readResource({ uri: 'audit://summary/today' });
      const summary = JSON.parse((r.contents[0] as any).text);
      assert.ok(summary.total.runs >= 5);
    } finally {
      await srv.close();
    }
  });
  it('the per-run client log (notifications/message) goes only to a client that set a level, filtered by it', async () => {
    const srv = await startServer({ args: ['--config', cfg, '--agents', agentsDir, '--workspace', ws], env: env(), cwd: ws });
    const logs: { level: string; data: Record<string, unknown> }[] = [];
    srv.client.setNotificationHandler('notifications/message', (n) => {
      logs.push(n.params as { level: string; data: Record<string, unknown> });
    });
    try {
      mock.setHandler(() => ({ text: 'fine' }));
      const call = () => srv.client.callTool({ name: 'worker', arguments: { task: 'log me' } });
      await call();
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(logs.length, 0, 'no level set: no log message (the result carries it all)');

      await srv.client.setLoggingLevel('info');
      const r = await call();
      const runId = (r.structuredContent as { run_id: string }).run_id;
      await new Promise((res) => setTimeout(res, 200));
      assert.equal(logs.length, 1);
      assert.equal(logs[0].level, 'info');
      assert.equal(logs[0].data.run_id, runId);
      assert.equal(logs[0].data.status, 'ok');

      await srv.client.setLoggingLevel('error');
      await call();
      mock.setHandler(() => ({ error: { status: 400, message: 'bad request' } }));
      const failed = await call();
      assert.equal(failed.isError, true);
      await new Promise((res) => setTimeout(res, 200));
      assert.equal(logs.length, 1, 'info and warning are below the error threshold');

      await srv.client.setLoggingLevel('warning');
      await call();
      await new Promise((res) => setTimeout(res, 200));
      assert.equal(logs.length, 2);
      assert.equal(logs[1].level, 'warning');
      assert.equal(logs[1].data.status, 'error');
    } finally {
      mock.reset();
      await srv.close();
    }
  });
});

