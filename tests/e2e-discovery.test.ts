// Where agents and mcp.json come from, whatever the process's cwd: the workspace's agent dirs, the
// user's config dir (HOME / XDG_CONFIG_HOME point at temp dirs here), and the agents shipped with the
// install. A client such as Claude Desktop starts the server from "/".
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startMockModel, type MockModel } from './mock-model/server.js';
import { ROOT, agentYaml, mockEnv, startServer, tempDir, writeTree, runCli } from './helpers.js';

const SHIPPED = readdirSync(path.join(ROOT, 'agents')).filter((f) => f.endsWith('.yaml')).map((f) => f.replace(/\.yaml$/, ''));

const cli = (args: string[], env: Record<string, string>, cwd = '/') => runCli(args, env, cwd);

const CLAUDE_MD = `---
name: claude-only
description: A Claude Code sub-agent that reads files and answers questions about them.
tools: Read, Grep
model: sonnet
---
Answer from the files.
`;

describe('agent and mcp.json discovery', () => {
  let mock: MockModel;
  let home: string;
  let env: Record<string, string>;

  before(async () => {
    mock = await startMockModel();
    home = tempDir('dmcp-disc-home-');
    env = mockEnv(mock.url, { HOME: home, XDG_CONFIG_HOME: path.join(home, 'xdg') });
  });
  after(async () => {
    await mock.close();
  });

  it('a workspace with only .claude/agents lists them (and the shipped agents, with their source) and exits 0', async () => {
    const ws = tempDir('dmcp-disc-claude-');
    writeTree(ws, { '.claude/agents/claude-only.md': CLAUDE_MD });
    const list = await cli(['agents', 'list', '--workspace', ws, '--json'], env);
    assert.equal(list.code, 0, list.stderr);
    const out = JSON.parse(list.stdout);
    assert.deepEqual(out.errors, []);
    const byName = new Map(out.agents.map((a: any) => [a.name, a]));
    assert.equal((byName.get('claude-only') as any)?.source, 'workspace');
    assert.equal((byName.get('claude-only') as any)?.model, 'anthropic/claude-sonnet-5-5');
    for (const n of SHIPPED) assert.equal((byName.get(n) as any)?.source, 'shipped', `shipped agent ${n}`);
    assert.equal(out.agents.length, SHIPPED.length + 1);
    const validate = await cli(['agents', 'validate', '--workspace', ws], env);
    assert.equal(validate.code, 0, validate.stderr);
    assert.match(validate.stdout, new RegExp(`${SHIPPED.length + 1} agent\\(s\\) valid`));
    const plain = await cli(['agents', 'list', '--workspace', ws], env);
    assert.match(plain.stdout, /^claude-only\s+workspace\s+anthropic\/claude-sonnet-5-5\s+\S+claude-only\.md$/m);
  });

  it('serve started from / with only --workspace serves the workspace agents and the shipped ones', async () => {
    const ws = tempDir('dmcp-disc-ws-');
    writeTree(ws, { 'agents/local.yaml': agentYaml('local', 'anthropic/claude-test-1') });
    const srv = await startServer({ args: ['--workspace', ws], env, cwd: '/' });
    try {
      const names = (await srv.client.listTools()).tools.map((t) => t.name);
      for (const n of ['local', ...SHIPPED, 'list_agents']) assert.ok(names.includes(n), `missing ${n} in ${names}`);
      const listed = (await srv.client.callTool({ name: 'list_agents', arguments: {} })).structuredContent as any;
      assert.equal(listed.agents.find((a: any) => a.name === 'local').source, 'workspace');
      assert.equal(listed.agents.find((a: any) => a.name === 'code-reviewer').source, 'shipped');
      assert.equal(listed.note, undefined);
      // It runs, too: the agent file is found and the model is called from cwd "/".
      const res = await srv.client.callTool({ name: 'local', arguments: { task: 'hello from slash' } });
      assert.equal((res.structuredContent as any).status, 'ok');
    } finally {
      await srv.close();
    }
  });

  it('serve started from / without --workspace warns that / is the workspace; with --workspace it does not', async () => {
    const bare = await startServer({ args: [], env, cwd: '/' });
    try {
      await bare.client.listTools();
      assert.match(bare.stderr(), /the workspace is \/ \(the server's working directory; no --workspace given\)/);
    } finally {
      await bare.close();
    }
    const ws = tempDir('dmcp-disc-ws2-');
    const named = await startServer({ args: ['--workspace', ws], env, cwd: '/' });
    try {
      await named.client.listTools();
      assert.doesNotMatch(named.stderr(), /the workspace is/);
    } finally {
      await named.close();
    }
  });

  it("the user's agents and mcp.json load from XDG_CONFIG_HOME, never shadowing a workspace agent; hot reload covers the user dir", async () => {
    const xdg = tempDir('dmcp-disc-xdg-');
    const userEnv = { ...env, XDG_CONFIG_HOME: xdg };
    const userAgents = path.join(xdg, 'delegate-mcp', 'agents');
    writeTree(userAgents, {
      'mine.yaml': agentYaml('mine', 'anthropic/claude-test-1'),
      // Same name as a workspace agent: the workspace's wins, this one is shadowed (not an error).
      'local.yaml': agentYaml('local', 'openai/gpt-test-1').replace(/^description: .*$/m, 'description: The USER copy of local, which must not be served.'),
    });
    writeTree(path.join(xdg, 'delegate-mcp'), { 'mcp.json': JSON.stringify({ delegate: { defaultModel: 'openai/gpt-user-default' } }) });
    const ws = tempDir('dmcp-disc-ws2-');
    writeTree(ws, {
      'agents/local.yaml': agentYaml('local', 'anthropic/claude-test-1'),
      'agents/nomodel.yaml': agentYaml('nomodel', 'x').replace(/^model: .*$/m, ''),
    });
    const list = await cli(['agents', 'list', '--workspace', ws, '--json'], userEnv);
    assert.equal(list.code, 0, list.stderr);
    const out = JSON.parse(list.stdout);
    const get = (n: string) => out.agents.find((a: any) => a.name === n);
    assert.equal(get('mine').source, 'user');
    assert.equal(get('local').source, 'workspace');
    assert.equal(get('local').model, 'anthropic/claude-test-1');
    assert.equal(get('nomodel').model, 'openai/gpt-user-default', 'defaultModel comes from the user mcp.json');
    assert.equal(out.shadowed.length, 1);
    assert.equal(out.shadowed[0].name, 'local');

    // A workspace mcp.json wins over the user's.
    writeTree(ws, { 'mcp.json': JSON.stringify({ delegate: { defaultModel: 'anthropic/claude-ws-default' } }) });
    const list2 = JSON.parse((await cli(['agents', 'list', '--workspace', ws, '--json'], userEnv)).stdout);
    assert.equal(list2.agents.find((a: any) => a.name === 'nomodel').model, 'anthropic/claude-ws-default');

    const srv = await startServer({ args: ['--workspace', ws], env: userEnv, cwd: '/' });
    try {
      let names = (await srv.client.listTools()).tools.map((t) => t.name);
      assert.ok(names.includes('mine') && names.includes('local'), names.join());
      writeFileSync(path.join(userAgents, 'later.yaml'), agentYaml('later', 'anthropic/claude-test-1'));
      const deadline = Date.now() + 5000;
      while (!names.includes('later') && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        names = (await srv.client.listTools()).tools.map((t) => t.name);
      }
      assert.ok(names.includes('later'), `a file added to the user dir is served: ${names}`);
    } finally {
      await srv.close();
    }
  });

  it('serving 0 agents is a loud stderr warning and a list_agents note', async () => {
    const ws = tempDir('dmcp-disc-empty-');
    writeTree(ws, { 'mcp.json': JSON.stringify({ delegate: { agentSources: { shipped: false, user: false } } }) });
    const srv = await startServer({ args: ['--workspace', ws], env: { ...env, DELEGATE_MCP_LOG_LEVEL: 'warn' }, cwd: '/' });
    try {
      const listed = (await srv.client.callTool({ name: 'list_agents', arguments: {} })).structuredContent as any;
      assert.equal(listed.agents.length, 0);
      assert.match(listed.note, /no agents are served: none found in .*\/agents \(yaml\)/);
      assert.match(srv.stderr(), /warn: \*\*\* no agents are served/);
    } finally {
      await srv.close();
    }
  });

  it('a named agents directory that does not exist is an error', async () => {
    const ws = tempDir('dmcp-disc-named-');
    const r = await cli(['agents', 'list', '--workspace', ws, '--agents', path.join(ws, 'nope')], env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /nope: agents directory not found/);
  });
});
