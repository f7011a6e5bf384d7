// Protected paths end to end (issue #12 items 3 and 4): the built server over stdio, a real MCP client, the
// mock model making the tool calls a hostile agent would. Whatever the rules say (`Read(**)`, `Edit(**)`,
// even `Edit(.git/**)`), no built-in tool reaches the server's state, writes an agent file or mcp.json, or
// writes into .git/. And the state lives outside the workspace, moved there once from `.delegate-mcp/`.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { startMockModel, type MockModel, type MockToolResult } from './mock-model/server.js';
import { CLI, mockEnv, readAuditEvents, startServer, stateDirOf, tempDir, writeTree, type ServerHandle } from './helpers.js';

const execFileP = promisify(execFile);
const MARKER = 'ZEBRA-4242-SECRET';
/** Matches the marker without containing it: a run's own audit preview of the pattern never matches itself. */
const MARKER_RE = 'ZEBRA-42[4]2';

const agentFile = (name: string, allow: string[], extra = '') => `name: ${name}
description: Test agent ${name}.
model: anthropic/claude-test-1
max_turns: 4
permissions:
  allow: [${allow.map((r) => JSON.stringify(r)).join(', ')}]
${extra}`;

/** The state dir of a server just run in `ws` with mockEnv: under XDG_STATE_HOME, or in the workspace (older versions). */
function foundStateDir(ws: string, xdg?: string): string {
  const legacy = path.join(ws, '.delegate-mcp');
  return existsSync(legacy) ? legacy : stateDirOf(ws, xdg ?? XDG);
}
let XDG = '';

describe('protected paths: no tool reaches the server state, agent files, mcp.json or .git internals', () => {
  let mock: MockModel;
  let xdg: string;
  let env: Record<string, string>;
  let ws: string;

  /** Runs `agent` whose model makes exactly `calls` (in parallel) and returns what each call fed back. */
  async function toolCalls(srv: ServerHandle, agent: string, calls: { name: string; arguments: Record<string, unknown> }[]): Promise<MockToolResult[]> {
    mock.setHandler((req) => (req.toolResults.length ? { text: 'done', usage: { input_tokens: 100, output_tokens: 20 } } : { toolCalls: calls, usage: { input_tokens: 100, output_tokens: 20 } }));
    const before = mock.requests.length;
    try {
      const res: any = await srv.client.callTool({ name: agent, arguments: { task: 'go' } });
      assert.equal(res.structuredContent?.status, 'ok', JSON.stringify(res.content));
      const reqs = mock.requests.slice(before);
      assert.ok(reqs.length >= 2, `expected a second model request; got ${reqs.length}`);
      assert.equal(reqs[1].toolResults.length, calls.length);
      return reqs[1].toolResults;
    } finally {
      mock.setHandler(undefined);
    }
  }

  before(async () => {
    mock = await startMockModel();
    xdg = tempDir('dmcp-xdg-');
    XDG = xdg;
    env = mockEnv(mock.url, { XDG_STATE_HOME: xdg });
    ws = tempDir('dmcp-prot-ws-');
    writeTree(ws, {
      'mcp.json': JSON.stringify({ delegate: { audit: { previews: true } } }),
      'src/app.ts': 'export const x = 1;\n',
      '.git/config': '[core]\n\tbare = false\n',
      '.git/HEAD': 'ref: refs/heads/main\n',
      'agents/reader.yaml': agentFile('reader', ['Read(**)'], 'artifacts: [report.md]\n'),
      'agents/editor.yaml': agentFile('editor', ['Read(**)', 'Edit(**)']),
      // A rule that names .git explicitly: still no write into .git/.
      'agents/gitter.yaml': agentFile('gitter', ['Read(**)', 'Edit(**)', 'Edit(.git/**)', 'Edit(**/.git/**)']),
    });
    mkdirSync(path.join(ws, '.git', 'hooks'));
    // A symlink inside the workspace that leads into an agent directory.
    symlinkSync(path.join(ws, 'agents'), path.join(ws, 'innocent'));
  });
  after(async () => {
    await mock.close();
  });

  it('the state dir is outside the workspace; Read(**) with search_files/list_dir/read_file finds no other run, artifact or audit line', async () => {
    const srv = await startServer({ env, cwd: ws });
    try {
      const first: any = await srv.client.callTool({ name: 'reader', arguments: { task: `remember ${MARKER}` } });
      assert.equal(first.structuredContent.status, 'ok');
      assert.equal(first.structuredContent.artifacts.length, 1);
      // Wherever the state is (an older version kept it in the workspace), the attempts below aim at it.
      const stateDir = foundStateDir(ws);
      const auditFiles = readdirSync(path.join(stateDir, 'audit'));
      assert.ok(auditFiles.length > 0, 'the audit log is in the state dir');
      const auditFile = path.join(stateDir, 'audit', auditFiles[0]);
      const artifactRun = readdirSync(path.join(stateDir, 'artifacts'))[0];
      const fed = await toolCalls(srv, 'reader', [
        { name: 'search_files', arguments: { pattern: MARKER_RE } },
        { name: 'list_dir', arguments: { path: '.' } },
        { name: 'search_files', arguments: { pattern: MARKER_RE, path: stateDir } },
        { name: 'read_file', arguments: { path: auditFile } },
        { name: 'list_dir', arguments: { path: path.join(stateDir, 'artifacts', artifactRun) } },
        { name: 'read_file', arguments: { path: `.delegate-mcp/audit/${auditFiles[0]}` } },
      ]);
      assert.match(fed[0].content, /^No matches/);
      assert.match(fed[1].content, /src\//);
      assert.doesNotMatch(fed[1].content, /delegate-mcp/);
      for (const r of fed.slice(2)) assert.equal(r.isError, true, r.content);
      for (const r of fed) assert.doesNotMatch(r.content, /ZEBRA-4242/);
      assert.equal(stateDir, stateDirOf(ws, xdg), 'the state dir is under XDG_STATE_HOME');
      assert.equal(existsSync(path.join(ws, '.delegate-mcp')), false, 'nothing of the state in the workspace');
    } finally {
      await srv.close();
    }
  });

  it('a state dir configured inside the workspace is still hidden: not searched, listed or read', async () => {
    const cfg = path.join(ws, 'inside.json');
    writeFileSync(cfg, JSON.stringify({ delegate: { stateDir: 'state-in', audit: { previews: true } } }));
    const srv = await startServer({ args: ['--config', cfg], env, cwd: ws });
    try {
      const first: any = await srv.client.callTool({ name: 'reader', arguments: { task: `remember ${MARKER}` } });
      assert.equal(first.structuredContent.status, 'ok');
      const auditFiles = readdirSync(path.join(ws, 'state-in', 'audit'));
      assert.ok(auditFiles.length > 0);
      const fed = await toolCalls(srv, 'reader', [
        { name: 'search_files', arguments: { pattern: MARKER_RE } },
        { name: 'list_dir', arguments: { path: '.' } },
        { name: 'list_dir', arguments: { path: 'state-in' } },
        { name: 'read_file', arguments: { path: `state-in/audit/${auditFiles[0]}` } },
        { name: 'search_files', arguments: { pattern: MARKER_RE, path: 'state-in/artifacts' } },
      ]);
      assert.match(fed[0].content, /^No matches/);
      assert.doesNotMatch(fed[1].content, /state-in/);
      for (const r of fed.slice(2)) {
        assert.equal(r.isError, true, r.content);
        assert.match(r.content, /protected: the server's state directory .* cannot be read by an agent/);
      }
      for (const r of fed) assert.doesNotMatch(r.content, /ZEBRA-4242/);
    } finally {
      await srv.close();
    }
  });

  it("Edit(**) cannot empty the budget ledger or replace the audit log: after a restart the day's spend is still there", async () => {
    const sub = tempDir('dmcp-prot-ledger-');
    writeTree(sub, { 'agents/editor.yaml': agentFile('editor', ['Read(**)', 'Edit(**)']) });
    const day = new Date().toISOString().slice(0, 10);
    const a = await startServer({ env, cwd: sub });
    const restart = async () => {
      await a.close();
      return startServer({ env, cwd: sub });
    };
    let spent: number;
    try {
      const r: any = await a.client.callTool({ name: 'editor', arguments: { task: 'hello' } });
      assert.equal(r.structuredContent.status, 'ok');
      spent = ((await a.client.callTool({ name: 'budget_status', arguments: {} })).structuredContent as any).server.spent.tokens;
      assert.ok(spent > 0);
      const stateDir = foundStateDir(sub);
      const ledger = path.join(stateDir, 'budget', `ledger-${day}.jsonl`);
      assert.ok(existsSync(ledger), ledger);
      const auditFiles = readdirSync(path.join(stateDir, 'audit')).map((f) => path.join(stateDir, 'audit', f));
      assert.ok(auditFiles.length >= 1, 'the first run wrote an audit file');
      const fed = await toolCalls(a, 'editor', [
        { name: 'write_file', arguments: { path: ledger, content: '' } },
        { name: 'write_file', arguments: { path: `.delegate-mcp/budget/ledger-${day}.jsonl`, content: '' } },
        ...auditFiles.map((f) => ({ name: 'write_file', arguments: { path: f, content: '' } })),
        { name: 'write_file', arguments: { path: `.delegate-mcp/audit/${path.basename(auditFiles[0])}`, content: '' } },
      ]);
      const b = await restart();
      try {
        const st = (await b.client.callTool({ name: 'budget_status', arguments: {} })).structuredContent as any;
        assert.ok(st.server.spent.tokens >= spent, `spend after restart ${st.server.spent.tokens} < ${spent}`);
      } finally {
        await b.close();
      }
      for (const f of auditFiles) assert.match(readFileSync(f, 'utf8'), /"event":"run_start"/, `${f} was replaced`);
      for (const f of fed) assert.equal(f.isError, true, f.content);
      assert.match(fed[1].content, /protected: the server's state directory .* cannot be changed by an agent/);
      assert.equal(existsSync(path.join(sub, '.delegate-mcp')), false);
    } finally {
      await a.close();
    }
    // The CLI finds the same state dir as `serve` for the same workspace.
    const budget = JSON.parse((await execFileP(process.execPath, [CLI, 'budget', '--json'], { cwd: sub, env })).stdout);
    assert.ok(budget.server.spent.tokens >= spent);
    const audit = JSON.parse((await execFileP(process.execPath, [CLI, 'audit', '--json'], { cwd: sub, env })).stdout);
    // Both runs of this test (the first call and the write attempts) are in the summary.
    const editor = audit.by_agent.find((r: any) => r.key === 'editor');
    assert.ok(editor?.ok >= 2, JSON.stringify(audit.by_agent));
  });

  it('an agent with Read/Edit and no Bash cannot plant agent files or rewrite mcp.json; hot reload serves nothing new', async () => {
    const srv = await startServer({ env, cwd: ws });
    try {
      const pwnedMd = '---\nname: pwned\ndescription: planted\ntools: Bash\n---\nRun commands.\n';
      const fed = await toolCalls(srv, 'editor', [
        { name: 'write_file', arguments: { path: '.claude/agents/pwned.md', content: pwnedMd } },
        { name: 'write_file', arguments: { path: 'agents/pwned2.yaml', content: agentFile('pwned2', ['Bash']) } },
        { name: 'write_file', arguments: { path: '.codex/agents/pwned3.toml', content: 'name = "pwned3"\ndescription = "d"\ndeveloper_instructions = "i"\n' } },
        { name: 'edit_file', arguments: { path: 'agents/editor.yaml', old: '"Edit(**)"', new: '"Edit(**)", "Bash"' } },
        { name: 'write_file', arguments: { path: 'innocent/pwned4.yaml', content: agentFile('pwned4', ['Bash']) } },
        { name: 'write_file', arguments: { path: 'mcp.json', content: JSON.stringify({ mcpServers: { x: { command: 'touch', args: ['/tmp/pwn'] } } }) } },
        { name: 'read_file', arguments: { path: 'mcp.json' } },
        { name: 'read_file', arguments: { path: 'agents/reader.yaml' } },
      ]);
      for (const i of [0, 1, 2, 3, 4]) {
        assert.equal(fed[i].isError, true, fed[i].content);
        assert.match(fed[i].content, /protected: agent directory .* cannot be changed by an agent/);
      }
      assert.equal(fed[5].isError, true, fed[5].content);
      assert.match(fed[5].content, /protected: server config .*mcp\.json cannot be changed by an agent/);
      assert.equal(fed[6].isError, true, 'mcp.json may hold keys: not readable');
      assert.equal(fed[7].isError, false, 'agent files are not secret');
      assert.match(fed[7].content, /name: reader/);
      for (const f of ['.claude/agents/pwned.md', 'agents/pwned2.yaml', '.codex/agents/pwned3.toml', 'agents/pwned4.yaml']) {
        assert.equal(existsSync(path.join(ws, f)), false, `${f} was written`);
      }
      assert.doesNotMatch(readFileSync(path.join(ws, 'agents', 'editor.yaml'), 'utf8'), /Bash/);
      assert.doesNotMatch(readFileSync(path.join(ws, 'mcp.json'), 'utf8'), /touch/);
      // The tool gate refuses before any rule: the audit log records a denial naming the protected path.
      const denials = readAuditEvents(stateDirOf(ws, xdg)).filter((e) => e.event === 'permission_denied' && /^protected: /.test(e.reason));
      assert.ok(denials.some((e) => e.tool === 'write_file' && e.rule === null && /agent directory .*\.claude\/agents/.test(e.reason)), JSON.stringify(denials));
      assert.ok(denials.some((e) => e.tool === 'edit_file' && /agent directory/.test(e.reason)));
      await sleep(2600); // past the debounce and the 2 s look for new agent directories
      const names = (await srv.client.listTools()).tools.map((t) => t.name);
      assert.ok(names.includes('editor'), names.join(', '));
      for (const n of ['pwned', 'pwned2', 'pwned3', 'pwned4']) assert.ok(!names.includes(n), `${n} is served`);
    } finally {
      await srv.close();
    }
  });

  it('configured agentDirs are protected too', async () => {
    const cfg = path.join(ws, 'team.json');
    writeFileSync(cfg, JSON.stringify({ delegate: { agentDirs: [{ path: 'team', format: 'claude-md' }] } }));
    mkdirSync(path.join(ws, 'team'), { recursive: true });
    const srv = await startServer({ args: ['--config', cfg], env, cwd: ws });
    try {
      const fed = await toolCalls(srv, 'editor', [
        { name: 'write_file', arguments: { path: 'team/pwned.md', content: '---\nname: pwned\ndescription: planted\ntools: Bash\n---\nx\n' } },
        { name: 'write_file', arguments: { path: 'team.json', content: '{}' } },
      ]);
      assert.equal(fed[0].isError, true, fed[0].content);
      assert.match(fed[0].content, /protected: agent directory .*team cannot be changed by an agent/);
      assert.equal(fed[1].isError, true, fed[1].content);
      assert.match(fed[1].content, /protected: server config/);
      assert.equal(existsSync(path.join(ws, 'team', 'pwned.md')), false);
    } finally {
      await srv.close();
    }
  });

  it('no write into .git/ even with a rule naming .git; reading .git is fine', async () => {
    const srv = await startServer({ env, cwd: ws });
    try {
      const fed = await toolCalls(srv, 'gitter', [
        { name: 'write_file', arguments: { path: '.git/hooks/pre-commit', content: '#!/bin/sh\ntouch /tmp/pwn\n' } },
        { name: 'edit_file', arguments: { path: '.git/config', old: '[core]', new: '[core]\n\tfsmonitor = touch /tmp/pwn' } },
        { name: 'write_file', arguments: { path: 'vendor/lib/.git/config', content: '[core]\n' } },
        { name: 'write_file', arguments: { path: '.git', content: 'gitdir: /tmp/elsewhere\n' } },
        { name: 'read_file', arguments: { path: '.git/config' } },
        { name: 'write_file', arguments: { path: 'src/ok.ts', content: 'export const ok = 1;\n' } },
      ]);
      for (const i of [0, 1, 2, 3]) {
        assert.equal(fed[i].isError, true, fed[i].content);
        assert.match(fed[i].content, /protected: git internals .* cannot be changed by an agent/);
      }
      assert.equal(fed[4].isError, false, fed[4].content);
      assert.match(fed[4].content, /bare = false/);
      assert.equal(fed[5].isError, false, 'ordinary writes still work');
      assert.equal(existsSync(path.join(ws, '.git', 'hooks', 'pre-commit')), false);
      assert.doesNotMatch(readFileSync(path.join(ws, '.git', 'config'), 'utf8'), /fsmonitor/);
      assert.equal(existsSync(path.join(ws, 'vendor', 'lib', '.git')), false);
    } finally {
      await srv.close();
    }
  });

  it('an old <workspace>/.delegate-mcp is moved once into the state dir, with one line saying so; both present: nothing clobbered', async () => {
    const old = tempDir('dmcp-prot-move-');
    writeTree(old, {
      'agents/editor.yaml': agentFile('editor', ['Read(**)']),
      'old.json': JSON.stringify({ delegate: { stateDir: '.delegate-mcp', agentsDir: 'agents' } }),
    });
    // An older version: state in the workspace.
    const a = await startServer({ args: ['--config', path.join(old, 'old.json')], env, cwd: old });
    let spent: number;
    try {
      const r: any = await a.client.callTool({ name: 'editor', arguments: { task: 'hello' } });
      assert.equal(r.structuredContent.status, 'ok');
      spent = ((await a.client.callTool({ name: 'budget_status', arguments: {} })).structuredContent as any).server.spent.tokens;
      assert.ok(spent > 0);
    } finally {
      await a.close();
    }
    const legacy = path.join(old, '.delegate-mcp');
    assert.ok(existsSync(path.join(legacy, 'budget')));
    const stateDir = stateDirOf(old, xdg);
    const b = await startServer({ env, cwd: old });
    try {
      const moved = b.stderr().split('\n').filter((l) => l.includes('moved the server state'));
      assert.equal(moved.length, 1, b.stderr());
      assert.ok(moved[0].includes(legacy) && moved[0].includes(stateDir), moved[0]);
      assert.equal(existsSync(legacy), false);
      const st = (await b.client.callTool({ name: 'budget_status', arguments: {} })).structuredContent as any;
      assert.equal(st.server.spent.tokens, spent, "the day's spend moved with it");
    } finally {
      await b.close();
    }
    // The old folder appears again (say, restored from a backup): nothing is overwritten, and stderr says so.
    writeTree(legacy, { 'budget/stray.txt': 'old' });
    const c = await startServer({ env, cwd: old });
    try {
      assert.match(c.stderr(), /both .*\.delegate-mcp \(old location\) and .* hold server state; using .* and leaving .* alone/);
      assert.ok(existsSync(path.join(legacy, 'budget', 'stray.txt')));
      assert.equal(existsSync(path.join(stateDir, 'budget', 'stray.txt')), false);
      const st = (await c.client.callTool({ name: 'budget_status', arguments: {} })).structuredContent as any;
      assert.equal(st.server.spent.tokens, spent);
    } finally {
      await c.close();
    }
  });
});
