// `delegate-mcp runs` and `audit --run ID` (tree + timeline) over a real audit log: a delegation through
// the re-entry child with an allowed and a denied tool call, and a run that fails.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startMockModel, type MockModel, type MockRequestInfo, type MockReply } from './mock-model/server.js';
import { CLI, agentYaml, mockEnv, startServer, tempDir, writeTree } from './helpers.js';

const execFileP = promisify(execFile);

function planned(req: MockRequestInfo): MockReply {
  const who = /You are "([^"]+)"/.exec(req.system)?.[1] ?? '?';
  if (req.toolResults.length) return { text: `${who} done`, usage: { input_tokens: 120, output_tokens: 7 } };
  if (who === 'lead') return { toolCalls: [{ name: 'agent__helper', arguments: { task: 'read the notes' } }], usage: { input_tokens: 100, output_tokens: 10 } };
  if (who === 'helper') {
    return {
      toolCalls: [
        { name: 'read_file', arguments: { path: 'notes.txt' } },
        { name: 'read_file', arguments: { path: 'secret.txt' } },
      ],
      usage: { input_tokens: 90, output_tokens: 12 },
    };
  }
  return { text: `${who} answers` };
}

describe('runs and audit --run', () => {
  let mock: MockModel;
  let ws: string;
  let cfg: string;
  let leadRun: string;
  let helperRun: string;
  let failedRun: string;
  // The same environment as the server's (its state dir, hence its audit log, depends on XDG_STATE_HOME).
  const cli = (...args: string[]) => execFileP(process.execPath, [CLI, ...args, '--config', cfg, '--workspace', ws], { cwd: ws, env: mockEnv(mock.url) });

  before(async () => {
    mock = await startMockModel();
    mock.setHandler(planned);
    ws = tempDir('dmcp-runs-');
    const agentsDir = path.join(ws, 'agents');
    writeTree(agentsDir, {
      'lead.yaml': agentYaml('lead', 'anthropic/claude-sonnet-4-5', 'agents: [helper]'),
      'helper.yaml': `name: helper
description: Reads notes.
model: anthropic/claude-sonnet-4-5
permissions:
  allow: ["Read(./**)"]
  deny: ["Read(./secret.txt)"]
`,
      'broken.yaml': agentYaml('broken', 'nokey/some-model'),
    });
    writeTree(ws, { 'notes.txt': 'the notes', 'secret.txt': 'top secret' });
    cfg = path.join(ws, 'mcp.json');
    writeFileSync(cfg, JSON.stringify({ delegate: { agentsDir: 'agents', providers: { nokey: { wireApi: 'anthropic', apiKeyEnv: 'NO_SUCH_KEY_VAR' } } } }));
    const srv = await startServer({ args: ['--config', cfg, '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
    try {
      const ok = (await srv.client.callTool({ name: 'lead', arguments: { task: 'go' } })).structuredContent as any;
      assert.equal(ok.status, 'ok');
      leadRun = ok.run_id;
      const bad = await srv.client.callTool({ name: 'broken', arguments: { task: 'go' } });
      assert.equal(bad.isError, true);
      failedRun = /run (run_[0-9a-f-]+)/.exec(JSON.stringify(bad.content))?.[1] ?? '';
      assert.ok(failedRun, JSON.stringify(bad.content));
    } finally {
      await srv.close();
    }
  });
  after(async () => {
    await mock.close();
  });

  it('runs --json lists every run with ids, agent, caller, status, tokens; filters by agent and status', async () => {
    const all = JSON.parse((await cli('runs', '--json')).stdout).runs as any[];
    assert.equal(all.length, 3, JSON.stringify(all));
    const lead = all.find((r) => r.run_id === leadRun);
    assert.deepEqual([lead.agent, lead.status, lead.depth, lead.tokens, lead.model_calls], ['lead', 'ok', 0, 237, 2]);
    const helper = all.find((r) => r.agent === 'helper');
    helperRun = helper.run_id;
    assert.deepEqual([helper.status, helper.depth, helper.caller, helper.root_run_id, helper.denials], ['ok', 1, 'agent:lead', leadRun, 1]);
    const failed = JSON.parse((await cli('runs', '--json', '--status', 'error')).stdout).runs as any[];
    assert.deepEqual(failed.map((r) => r.run_id), [failedRun]);
    assert.match(failed[0].error, /NO_SUCH_KEY_VAR is not set/);
    const helpers = JSON.parse((await cli('runs', '--json', '--agent', 'helper')).stdout).runs as any[];
    assert.deepEqual(helpers.map((r) => r.run_id), [helperRun]);
    const roots = JSON.parse((await cli('runs', '--json', '--roots')).stdout).runs as any[];
    assert.equal(roots.length, 2);
    const future = JSON.parse((await cli('runs', '--json', '--since', '2999-01-01')).stdout).runs as any[];
    assert.equal(future.length, 0);
  });

  it('runs prints a table, newest first', async () => {
    const { stdout } = await cli('runs');
    const lines = stdout.trim().split('\n');
    assert.equal(lines.length, 4);
    assert.match(lines[0], /^started \(UTC\)\s+run id\s+agent\s+status\s+caller/);
    assert.ok(lines[1].includes(failedRun) && /\bbroken\b.*\berror\b/.test(lines[1]), lines[1]);
    assert.ok(lines.some((l) => l.includes(leadRun) && /\blead\b\s+ok\b/.test(l)));
  });

  it('runs refuses bad flags with the flag named', async () => {
    for (const [args, re] of [
      [['--status', 'weird'], /--status: expected one of running, ok, .*budget_exhausted.*, got "weird"/],
      [['--since', 'yesterday-ish'], /--since: not a date or a span/],
      [['--limit', '0'], /--limit: expected a positive whole number/],
    ] as const) {
      await assert.rejects(cli('runs', ...args), (err: any) => {
        assert.equal(err.code, 2);
        assert.match(err.stderr, re);
        assert.doesNotMatch(err.stderr, /at .*\.js:\d+/);
        return true;
      });
    }
  });

  it('audit --run shows the tree and a timeline of model calls (tokens) and tool calls (decision, rule, reason)', async () => {
    const { stdout } = await cli('audit', '--run', leadRun);
    const [tree, timeline] = stdout.split('\ntimeline (seconds from the first event):\n');
    assert.ok(timeline, stdout);
    assert.match(tree, new RegExp(`^${leadRun}  lead  ok`));
    assert.match(tree, /└─ run_[0-9a-f-]+  helper  ok/);
    const lines = timeline.trimEnd().split('\n');
    assert.match(lines[0], /^\s+\+0\.000s  lead\s+run start/);
    assert.ok(lines.some((l) => /lead\s+model call turn 1 · 100 in \/ 10 out tok · \d+ms · tool_use$/.test(l)), timeline);
    assert.ok(lines.some((l) => /^\s+\+\d+\.\d{3}s    helper\s+tool read_file · allow by rule Read\(\.\/\*\*\) · ok/.test(l)), timeline);
    const denied = lines.filter((l) => l.includes('tool read_file · deny'));
    assert.equal(denied.length, 1, timeline);
    assert.match(denied[0], /deny by rule Read\(\.\/secret\.txt\) \(denied by rule "Read\(\.\/secret\.txt\)".*\) · error/);
    assert.ok(lines.some((l) => /lead\s+delegated to helper \(run_[0-9a-f-]+, process\)/.test(l)));
    assert.ok(lines.some((l) => /lead\s+run end ok · /.test(l)));
    const json = JSON.parse((await cli('audit', '--run', leadRun, '--json')).stdout);
    assert.equal(json.children[0].run_id, helperRun);
    const kinds = json.timeline.map((e: any) => e.kind);
    assert.equal(kinds.filter((k: string) => k === 'model_call').length, 4);
    assert.equal(kinds.filter((k: string) => k === 'tool_call').length, 3);
    const deny = json.timeline.find((e: any) => e.kind === 'tool_call' && e.decision === 'deny');
    assert.equal(deny.rule, 'Read(./secret.txt)');
    assert.equal(deny.run_id, helperRun);
  });
});
