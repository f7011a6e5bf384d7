// Error quality in every CLI command: bad input gives one precise message (file:line:col, "did you mean")
// and a non-zero exit, never a stack trace; an unknown agent name leaves no audit row.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { startMockModel, type MockModel } from './mock-model/server.js';
import { CLI, agentYaml, mockEnv, startServer, tempDir, writeTree, runCli } from './helpers.js';

/** A V8 stack frame line: "    at fn (file:12:3)" or "    at file:12:3". */
const STACK_FRAME = /^\s+at .*:\d+:\d+\)?$/m;

const cli = (args: string[], env: Record<string, string>, cwd: string) => runCli(args, env, cwd);

/** Every file under dir whose content mentions `needle` (audit logs, ledgers, anything). */
function filesMentioning(dir: string, needle: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let entries: string[];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (readFileSync(p, 'utf8').includes(needle)) out.push(p);
    }
  };
  walk(dir);
  return out;
}

describe('CLI error quality', () => {
  let mock: MockModel;
  let ws: string;
  let env: Record<string, string>;
  let stateHome: string;

  before(async () => {
    mock = await startMockModel();
    ws = tempDir('dmcp-err-');
    stateHome = tempDir('dmcp-err-state-');
    writeTree(ws, {
      'agents/code-reviewer.yaml': agentYaml('code-reviewer', 'anthropic/claude-test-1'),
      'bad-agents/typo.yaml': agentYaml('typo', 'opneai/gpt-4.1'),
      'bad-key/mcp.json': '{\n  "delegate": {\n    "defaultModle": "anthropic/claude-test-1"\n  }\n}\n',
      'bad-json/mcp.json': '{\n  "delegate": {\n    "watch": true,\n  }\n}\n',
      'tasks-bad.json': '[{"agent": 1}]',
    });
    env = mockEnv(mock.url, { XDG_STATE_HOME: stateHome });
  });
  after(async () => {
    await mock.close();
  });

  it('every command with bad input exits non-zero with a message and no stack frames', async () => {
    const cases: { args: string[]; expect: RegExp }[] = [
      { args: ['serve', '--config', 'nope.json'], expect: /config file not found/ },
      { args: ['serve', '--workspace', '/does/not/exist'], expect: /workspace directory not found/ },
      { args: ['serve', '--http', '--port', 'abc'], expect: /port/i },
      { args: ['run', 'code-reviewr', 'look'], expect: /unknown agent "code-reviewr" \(did you mean "code-reviewer"\?\)/ },
      { args: ['run', 'code-reviewer', 'x', '--config', 'bad-json/mcp.json'], expect: /bad-json\/mcp\.json:4:3: invalid JSON/ },
      { args: ['fanout', '--file', 'nope.json'], expect: /nope\.json/ },
      { args: ['fanout', '--file', 'tasks-bad.json'], expect: /tasks-bad\.json/ },
      { args: ['fanout', 'no-colon-here'], expect: /agent:task/ },
      { args: ['budget', '--day', 'tomorrow'], expect: /expected today, yesterday or a UTC date YYYY-MM-DD, got "tomorrow"/ },
      { args: ['budget', '--day', '2026-02-30'], expect: /got "2026-02-30"/ },
      { args: ['audit', '--since', 'last tuesday-ish'], expect: /--since: not a date/ },
      { args: ['agents', 'list', '--config', 'bad-key/mcp.json'], expect: /bad-key\/mcp\.json:3:5: delegate\.defaultModle: unknown key "defaultModle" \(did you mean "defaultModel"\?\)/ },
      { args: ['agents', 'validate', 'bad-agents'], expect: /typo\.yaml:4:8: model: unknown provider "opneai" in "opneai\/gpt-4\.1" \(did you mean "openai"\?\)/ },
      { args: ['agents', 'validate', '--format', 'docx'], expect: /--format: expected yaml, claude-md or codex-toml/ },
      { args: ['agents', 'create', 'an agent', '--config', 'bad-key/mcp.json'], expect: /unknown key "defaultModle"/ },
      { args: ['init', path.join(ws, 'tasks-bad.json')], expect: /not a directory/ },
      { args: ['no-such-command'], expect: /unknown command/ },
    ];
    let checked = 0;
    for (const c of cases) {
      const r = await cli(c.args, env, ws);
      const all = r.stdout + r.stderr;
      assert.notEqual(r.code, 0, `${c.args.join(' ')} should fail: ${all}`);
      assert.match(all, c.expect, `${c.args.join(' ')}`);
      assert.doesNotMatch(all, STACK_FRAME, `${c.args.join(' ')} printed a stack trace:\n${all}`);
      assert.doesNotMatch(all, /at position \d+/, 'JSON errors give line:col');
      checked++;
    }
    assert.equal(checked, cases.length);
  });

  it('budget --day today and yesterday are accepted', async () => {
    for (const day of ['today', 'yesterday']) {
      const r = await cli(['budget', '--day', day, '--json'], env, ws);
      assert.equal(r.code, 0, r.stderr);
      const expected = new Date(Date.now() - (day === 'yesterday' ? 86_400_000 : 0)).toISOString().slice(0, 10);
      assert.equal(JSON.parse(r.stdout).day, expected);
    }
  });

  it('an unknown agent name leaves no audit row, from the CLI or the delegate tool', async () => {
    const r = await cli(['run', 'code-reviewr', 'look'], env, ws);
    assert.equal(r.code, 2);
    const srv = await startServer({ args: ['--workspace', ws], env, cwd: '/' });
    try {
      const res = await srv.client.callTool({ name: 'delegate', arguments: { agent: 'code-reviewr', task: 'look' } });
      assert.equal(res.isError, true);
      assert.match((res.content as any)[0].text, /unknown agent "code-reviewr" \(did you mean "code-reviewer"\?\)/);
      // A real run in the same server is audited, so the audit log exists and is being written.
      const ok = await srv.client.callTool({ name: 'code-reviewer', arguments: { task: 'fine' } });
      assert.equal((ok.structuredContent as any).status, 'ok');
    } finally {
      await srv.close();
    }
    const audited = [...filesMentioning(ws, '"run_start"'), ...filesMentioning(stateHome, '"run_start"')];
    assert.ok(audited.length > 0, 'the real run was audited');
    assert.deepEqual([...filesMentioning(ws, 'code-reviewr'), ...filesMentioning(stateHome, 'code-reviewr')], []);
  });
});
