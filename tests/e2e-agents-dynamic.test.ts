// Meta-orchestration end to end, through the built server over stdio with the real MCP client and the
// mock model: hot reload of agent files (tools/list_changed within 2 s, a broken file keeps its last good
// version), Claude Code (.md) and Codex (.toml) agents, and create_agent (clamped permissions, a retry
// after an invalid draft, saving only when allowed).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Client } from '@modelcontextprotocol/client';
import { startMockModel, defaultHandler, type MockModel, type MockReply } from './mock-model/server.js';
import { CLI, agentYaml, mockEnv, readAuditEvents, startServer, stateDirOf, tempDir, writeTree, type ServerHandle } from './helpers.js';

const execFileP = promisify(execFile);
const READ_TOOLS = ['read_file', 'list_dir', 'search_files'];
const DRAFT_MARKER = 'You design agent definitions for delegate-mcp';

/** Counts tools/list_changed notifications; `next()` resolves on the next one (or rejects after ms). */
function watchListChanged(client: Client) {
  let count = 0;
  let waiters: (() => void)[] = [];
  client.setNotificationHandler('notifications/tools/list_changed', () => {
    count++;
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  });
  return {
    get count() {
      return count;
    },
    next(ms = 2000): Promise<void> {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no notifications/tools/list_changed within ${ms} ms`)), ms);
        waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    },
  };
}

/** Polls listTools until `pred` holds; fails after `ms`. Returns the tools and the time it took. */
async function waitForTools(client: Client, pred: (tools: any[]) => boolean, ms = 2000): Promise<{ tools: any[]; elapsed: number }> {
  const start = Date.now();
  for (;;) {
    const { tools } = await client.listTools();
    if (pred(tools)) return { tools, elapsed: Date.now() - start };
    if (Date.now() - start > ms) throw new Error(`tools did not reach the expected state within ${ms} ms: ${tools.map((t) => t.name).join(', ')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function listAgents(client: Client): Promise<{ agents: any[]; errors: string[] }> {
  const res = await client.callTool({ name: 'list_agents', arguments: {} });
  return res.structuredContent as any;
}

describe('hot reload of agent files', () => {
  let mock: MockModel;
  let ws: string;
  let agentsDir: string;
  let srv: ServerHandle;

  before(async () => {
    mock = await startMockModel();
    ws = tempDir('dmcp-hot-');
    agentsDir = path.join(ws, 'agents');
    writeTree(ws, { 'src/app.ts': 'export const x = 1; // MARKER-HOT\n' });
    writeTree(agentsDir, {
      'alpha.yaml': agentYaml('alpha', 'anthropic/claude-test-1'),
      'beta.yaml': agentYaml('beta', 'anthropic/claude-test-1'),
    });
    srv = await startServer({ args: ['--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
  });
  after(async () => {
    await srv?.close();
    await mock.close();
  });

  it('editing, adding and removing files updates the tools and notifies the client within 2 s', async () => {
    const changes = watchListChanged(srv.client);
    const initial = (await srv.client.listTools()).tools.map((t) => t.name);
    assert.ok(initial.includes('alpha') && initial.includes('beta'), initial.join());

    // Edit: a new description (and a new input schema) for alpha.
    let note = changes.next();
    writeFileSync(
      path.join(agentsDir, 'alpha.yaml'),
      agentYaml('alpha', 'anthropic/claude-test-1').replace(/^description: .*$/m, 'description: Alpha now summarises release notes for the team.') +
        'input_schema:\n  type: object\n  properties: {task: {type: string}, version: {type: string}}\n  required: [task]\n',
    );
    await note;
    let { tools, elapsed } = await waitForTools(srv.client, (ts) => ts.find((t) => t.name === 'alpha')?.description === 'Alpha now summarises release notes for the team.');
    assert.ok(elapsed < 2000);
    assert.ok((tools.find((t) => t.name === 'alpha')!.inputSchema as any).properties.version, 'the input schema was updated too');

    // Add.
    note = changes.next();
    writeFileSync(path.join(agentsDir, 'gamma.yaml'), agentYaml('gamma', 'anthropic/claude-test-1'));
    await note;
    ({ tools } = await waitForTools(srv.client, (ts) => ts.some((t) => t.name === 'gamma')));

    // Remove.
    note = changes.next();
    rmSync(path.join(agentsDir, 'beta.yaml'));
    await note;
    ({ tools } = await waitForTools(srv.client, (ts) => !ts.some((t) => t.name === 'beta')));
    assert.ok(tools.some((t) => t.name === 'alpha') && tools.some((t) => t.name === 'gamma'));

    // The added agent runs.
    const res = await srv.client.callTool({ name: 'gamma', arguments: { task: '[[tool:read_file {"path":"src/app.ts"}]]' } });
    assert.equal((res.structuredContent as any)?.status, 'ok', JSON.stringify(res.content));
    assert.match((res.structuredContent as any).output, /MARKER-HOT/);
    // A removed agent is gone for calls too.
    await assert.rejects(srv.client.callTool({ name: 'beta', arguments: { task: 'hi' } }), /Tool beta not found/);
  });

  it('a file that becomes invalid keeps its last good version serving, and list_agents shows the error', async () => {
    const file = path.join(agentsDir, 'alpha.yaml');
    const good = readFileSync(file, 'utf8');
    writeFileSync(file, good.replace('max_turns: 4', 'max_turns: many'));
    let listed = await listAgents(srv.client);
    const start = Date.now();
    while (!listed.errors.some((e) => e.includes('alpha.yaml')) && Date.now() - start < 2000) {
      await new Promise((r) => setTimeout(r, 50));
      listed = await listAgents(srv.client);
    }
    const errs = listed.errors.filter((e) => e.startsWith(file));
    assert.ok(errs.some((e) => /alpha\.yaml:\d+:\d+: max_turns: expected integer/.test(e)), errs.join('\n'));
    assert.ok(errs.some((e) => /still serving the last good version of agent "alpha"/.test(e)), errs.join('\n'));
    const alpha = listed.agents.find((a) => a.name === 'alpha');
    assert.ok(alpha, 'alpha is still listed');
    assert.equal(alpha.description, 'Alpha now summarises release notes for the team.');
    const { tools } = await srv.client.listTools();
    assert.equal(tools.find((t) => t.name === 'alpha')?.description, 'Alpha now summarises release notes for the team.');
    // The last good version still runs.
    const res = await srv.client.callTool({ name: 'alpha', arguments: { task: 'still there?' } });
    assert.equal((res.structuredContent as any)?.status, 'ok', JSON.stringify(res.content));

    // Fixing it clears the error.
    writeFileSync(file, good.replace(/^description: .*$/m, 'description: Alpha is fixed and serving again.'));
    await waitForTools(srv.client, (ts) => ts.find((t) => t.name === 'alpha')?.description === 'Alpha is fixed and serving again.');
    assert.deepEqual((await listAgents(srv.client)).errors, []);
  });

  it('a 2026-07-28 client gets the notification on its subscriptions/listen stream', async () => {
    const modern = await startServer({ args: ['--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws, era: 'modern' });
    try {
      const changes = watchListChanged(modern.client);
      const sub = await modern.client.listen({ toolsListChanged: true });
      assert.equal(sub.honoredFilter.toolsListChanged, true);
      const note = changes.next();
      const t0 = Date.now();
      writeFileSync(path.join(agentsDir, 'delta.yaml'), agentYaml('delta', 'anthropic/claude-test-1'));
      await note;
      const { elapsed } = await waitForTools(modern.client, (ts) => ts.some((t) => t.name === 'delta'));
      assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms (list ${elapsed} ms)`);
      await sub.close();
    } finally {
      await modern.close();
      rmSync(path.join(agentsDir, 'delta.yaml'), { force: true });
    }
  });
});

describe('Claude Code and Codex agent files', () => {
  let mock: MockModel;
  let ws: string;
  let srv: ServerHandle;

  before(async () => {
    mock = await startMockModel();
    ws = tempDir('dmcp-formats-');
    writeTree(ws, {
      'src/app.ts': 'export const y = 2; // MARKER-FORMATS\n',
      'agents/plain.yaml': agentYaml('plain', 'anthropic/claude-test-1'),
      '.claude/agents/claude-reader.md': `---
name: claude-reader
description: Reads the code base and answers questions about it (a Claude Code sub-agent).
tools: Read, Grep, Glob
model: claude-test-1
color: green
---
You are CLAUDE-BODY-MARKER, a careful reader.

Answer with file:line references.
`,
      '.codex/agents/codex-reader.toml': `name = "codex-reader"
description = "Traces code paths without changing anything (a Codex agent)."
model = "gpt-test-1"
model_reasoning_effort = "medium"
sandbox_mode = "read-only"
developer_instructions = """
You are CODEX-BODY-MARKER.
Trace real call paths.
"""
`,
    });
    srv = await startServer({ args: ['--agents', path.join(ws, 'agents'), '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
  });
  after(async () => {
    await srv?.close();
    await mock.close();
  });

  it('load from .claude/agents and .codex/agents under the workspace and are listed with their files', async () => {
    const { tools } = await srv.client.listTools();
    const names = tools.map((t) => t.name);
    for (const n of ['plain', 'claude-reader', 'codex-reader']) assert.ok(names.includes(n), `${n} missing: ${names}`);
    assert.match(tools.find((t) => t.name === 'claude-reader')!.description!, /Claude Code sub-agent/);
    const listed = await listAgents(srv.client);
    assert.deepEqual(listed.errors, []);
    const claude = listed.agents.find((a) => a.name === 'claude-reader');
    assert.equal(claude.file, path.join(ws, '.claude', 'agents', 'claude-reader.md'));
    assert.equal(claude.model, 'anthropic/claude-test-1');
    assert.deepEqual(claude.tools, READ_TOOLS);
    const codex = listed.agents.find((a) => a.name === 'codex-reader');
    assert.equal(codex.file, path.join(ws, '.codex', 'agents', 'codex-reader.toml'));
    assert.equal(codex.model, 'openai/gpt-test-1');
    assert.deepEqual(codex.tools, READ_TOOLS);
  });

  for (const [agent, api, marker] of [
    ['claude-reader', 'anthropic', 'CLAUDE-BODY-MARKER'],
    ['codex-reader', 'openai-responses', 'CODEX-BODY-MARKER'],
  ] as const) {
    it(`${agent} runs: its instructions are the system prompt, read_file works (${api})`, async () => {
      const before = mock.requests.length;
      const res = await srv.client.callTool({ name: agent, arguments: { task: 'Read it. [[tool:read_file {"path":"src/app.ts"}]]' } });
      const sc = res.structuredContent as any;
      assert.equal(sc?.status, 'ok', JSON.stringify(res.content));
      assert.match(sc.output, /MARKER-FORMATS/);
      const reqs = mock.requests.slice(before);
      assert.equal(reqs[0].api, api);
      assert.match(reqs[0].system, new RegExp(marker));
      assert.deepEqual([...reqs[0].toolNames].sort(), [...READ_TOOLS].sort());
    });
  }
});

describe('create_agent', () => {
  let mock: MockModel;
  let ws: string;
  let agentsDir: string;
  let configFile: string;
  let srv: ServerHandle;
  /** Replies the mock gives to drafting requests, in order; other requests get the default handler. */
  let drafts: string[] = [];
  const draftRequests = () => mock.requests.filter((r) => r.system.includes(DRAFT_MARKER));

  before(async () => {
    mock = await startMockModel({
      handler: (req): MockReply => {
        if (req.system.includes(DRAFT_MARKER)) return { text: drafts.shift() ?? 'no more drafts' };
        return defaultHandler(req) as MockReply;
      },
    });
    ws = tempDir('dmcp-create-');
    agentsDir = path.join(ws, 'agents');
    writeTree(ws, { 'src/app.ts': 'export const z = 3; // MARKER-CREATE\n' });
    writeTree(agentsDir, { 'existing.yaml': agentYaml('existing', 'anthropic/claude-test-1') });
    configFile = path.join(tempDir('dmcp-create-cfg-'), 'mcp.json');
    writeFileSync(configFile, JSON.stringify({ delegate: { defaultModel: 'anthropic/claude-test-1' } }));
    srv = await startServer({ args: ['--config', configFile, '--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
  });
  after(async () => {
    await srv?.close();
    await mock.close();
  });

  it('clamps a draft asking for a shell and writes to read-only; the agent is listed and callable in the same session', async () => {
    drafts = [
      JSON.stringify({
        name: 'repo-cleaner',
        description: 'Cleans the repository of build output and stale files.',
        instructions: 'Find stale files and remove them.',
        tools: { shell: { exec: ['rm -rf /'] }, fs: { write: true } },
      }),
    ];
    const changes = watchListChanged(srv.client);
    const note = changes.next();
    const res = await srv.client.callTool({ name: 'create_agent', arguments: { description: 'an agent that cleans up the repository' } });
    assert.equal(res.isError, undefined, JSON.stringify(res.content));
    const sc = res.structuredContent as any;
    assert.equal(sc.name, 'repo-cleaner');
    assert.equal(sc.tool_name, 'repo-cleaner');
    assert.equal(sc.attempts, 1);
    assert.equal(sc.saved, false);
    assert.ok(sc.clamped.some((c: string) => c.includes('rm -rf /')), sc.clamped.join());
    assert.ok(sc.clamped.some((c: string) => c.startsWith('tools.fs.write')), sc.clamped.join());
    assert.doesNotMatch(sc.yaml, /rm -rf|write: true/);
    assert.match(sc.yaml, /name: repo-cleaner/);
    await note;

    const { tools } = await srv.client.listTools();
    const tool = tools.find((t) => t.name === 'repo-cleaner');
    assert.ok(tool, 'the created agent is a tool now');
    assert.equal(tool.annotations?.readOnlyHint, true);
    const listed = await listAgents(srv.client);
    const agent = listed.agents.find((a) => a.name === 'repo-cleaner');
    assert.deepEqual(agent.tools, READ_TOOLS);
    assert.equal(agent.file, 'dynamic:repo-cleaner');

    // Callable: it is offered read tools only, and a command is refused as an unknown tool.
    const before = mock.requests.length;
    const run = await srv.client.callTool({ name: 'repo-cleaner', arguments: { task: '[[tool:run_command {"argv":["rm","-rf","/"]}]] [[tool:read_file {"path":"src/app.ts"}]]' } });
    assert.equal((run.structuredContent as any)?.status, 'ok', JSON.stringify(run.content));
    const reqs = mock.requests.slice(before);
    assert.deepEqual([...reqs[0].toolNames].sort(), [...READ_TOOLS].sort());
    const results = reqs[1].toolResults;
    assert.match(results.find((r) => /rm|run_command/.test(r.content) || r.name === 'run_command')!.content, /permission denied: agent repo-cleaner may not use run_command/);
    assert.ok(results.some((r) => /MARKER-CREATE/.test(r.content)));
  });

  it('an invalid first draft gets the validation errors and the second attempt succeeds', async () => {
    const before = draftRequests().length;
    drafts = [
      'Here you go:\n```json\n{"name": "notes-writer", "descripton": "Writes notes", "max_turns": "lots"}\n```',
      '```json\n{"name": "notes-writer", "description": "Writes release notes from the changes in the workspace.", "instructions": "Read the changes, then write notes.", "tools": {"fs": {"read": true}}}\n```',
    ];
    const res = await srv.client.callTool({ name: 'create_agent', arguments: { description: 'an agent that writes release notes' } });
    assert.equal(res.isError, undefined, JSON.stringify(res.content));
    const sc = res.structuredContent as any;
    assert.equal(sc.attempts, 2);
    assert.equal(sc.name, 'notes-writer');
    const reqs = draftRequests().slice(before);
    assert.equal(reqs.length, 2);
    // The second attempt was told what was wrong with the first.
    assert.match(reqs[1].lastUserText, /descripton.*did you mean "description"/);
    assert.match(reqs[1].lastUserText, /max_turns: expected integer/);
    assert.ok((await srv.client.listTools()).tools.some((t) => t.name === 'notes-writer'));
  });

  it('two invalid drafts are an error naming the problems; nothing is registered', async () => {
    drafts = ['not json at all', '{"name": "broken"}'];
    const res = await srv.client.callTool({ name: 'create_agent', arguments: { description: 'something' } });
    assert.equal(res.isError, true);
    assert.match((res.content as any)[0].text, /not a valid agent definition after 2 attempts[\s\S]*description/);
    assert.ok(!(await srv.client.listTools()).tools.some((t) => t.name === 'broken'));
  });

  it('a name that is taken is an error', async () => {
    const res = await srv.client.callTool({ name: 'create_agent', arguments: { description: 'anything', name: 'existing' } });
    assert.equal(res.isError, true);
    assert.match((res.content as any)[0].text, /name collision: an agent named "existing" already exists/);
    const builtin = await srv.client.callTool({ name: 'create_agent', arguments: { description: 'anything', name: 'list_agents' } });
    assert.equal(builtin.isError, true);
    assert.match((builtin.content as any)[0].text, /built-in tool/);
  });

  it('save: true without allowSave is refused with the reason (the agent still serves from memory)', async () => {
    drafts = [JSON.stringify({ name: 'saver', description: 'An agent someone wants saved.', instructions: 'Do the thing.' })];
    const res = await srv.client.callTool({ name: 'create_agent', arguments: { description: 'save me', save: true } });
    assert.equal(res.isError, undefined, JSON.stringify(res.content));
    const sc = res.structuredContent as any;
    assert.equal(sc.saved, false);
    assert.match(sc.save_refused, /not saved: .*delegate\.createAgent\.allowSave/);
    assert.match((res.content as any)[0].text, /not saved/);
    assert.equal(existsSync(path.join(agentsDir, 'saver.yaml')), false);
    assert.ok((await srv.client.listTools()).tools.some((t) => t.name === 'saver'));
  });

  it('with allowSave the file is written, served from the file, and passes `agents validate`', async () => {
    const cfg2 = path.join(tempDir('dmcp-create-cfg2-'), 'mcp.json');
    writeFileSync(cfg2, JSON.stringify({ delegate: { defaultModel: 'anthropic/claude-test-1', createAgent: { allowSave: true } } }));
    const srv2 = await startServer({ args: ['--config', cfg2, '--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
    try {
      drafts = [
        JSON.stringify({
          name: 'kept-agent',
          description: 'An agent that is kept on disk.',
          instructions: 'Answer from the files.',
          tools: { fs: { read: true }, net: { allow: ['evil.example.com'] } },
          permissions: { allow: ['Read(src/**)', 'Bash(curl evil.example.com)'], deny: ['Read(**/.env)'] },
        }),
      ];
      const res = await srv2.client.callTool({ name: 'create_agent', arguments: { description: 'keep me', save: true } });
      assert.equal(res.isError, undefined, JSON.stringify(res.content));
      const sc = res.structuredContent as any;
      const file = path.join(agentsDir, 'kept-agent.yaml');
      assert.equal(sc.saved, true);
      assert.equal(sc.file, file);
      assert.ok(existsSync(file));
      const text = readFileSync(file, 'utf8');
      assert.doesNotMatch(text, /evil\.example\.com|curl/);
      assert.match(text, /Read\(\*\*\/\.env\)/, 'deny rules are kept');
      const { stdout } = await execFileP(process.execPath, [CLI, 'agents', 'validate', agentsDir]);
      assert.match(stdout, /agent\(s\) valid/);
      // Served from the file, and the watcher's reload does not report it twice.
      await new Promise((r) => setTimeout(r, 400));
      const listed = await listAgents(srv2.client);
      assert.equal(listed.agents.find((a) => a.name === 'kept-agent')?.file, file);
      assert.deepEqual(listed.errors, []);
      // The other session (started earlier) sees it through hot reload.
      await waitForTools(srv.client, (ts) => ts.some((t) => t.name === 'kept-agent'));
    } finally {
      await srv2.close();
    }
  });

  it('`agents create` drafts from the command line and prints the YAML', async () => {
    drafts = [JSON.stringify({ name: 'cli-made', description: 'Made from the command line.', instructions: 'Help.', tools: { shell: { exec: ['make'] } } })];
    const { stdout, stderr } = await execFileP(
      process.execPath,
      [CLI, 'agents', 'create', 'an agent made from the CLI', '--config', configFile, '--agents', agentsDir, '--workspace', ws],
      { env: mockEnv(mock.url) },
    );
    assert.match(stdout, /^# Created by create_agent/);
    assert.match(stdout, /name: cli-made/);
    assert.doesNotMatch(stdout, /make/);
    assert.match(stderr, /removed by the permission ceiling: tools\.shell\.exec: make/);
    drafts = [JSON.stringify({ name: 'cli-saved', description: 'Someone wants this one saved.', instructions: 'Help.' })];
    const refused = await execFileP(process.execPath, [CLI, 'agents', 'create', 'again', '--save', '--config', configFile, '--agents', agentsDir, '--workspace', ws], {
      env: mockEnv(mock.url),
    }).then(
      () => ({ code: 0, stderr: '' }),
      (err: any) => ({ code: err.code as number, stderr: String(err.stderr) }),
    );
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /not saved: saving created agents is off/);
    assert.equal(existsSync(path.join(agentsDir, 'cli-saved.yaml')), false);
  });
});

describe('delegating to an agent made with create_agent', () => {
  it('runs it in this process (a re-entry child would not know it), with the chain recorded', async () => {
    const drafts = [JSON.stringify({ name: 'note-taker', description: 'Takes notes on what it is told.', instructions: 'Answer with a note.' })];
    const mock = await startMockModel({
      handler: (req): MockReply => {
        if (req.system.includes(DRAFT_MARKER)) return { text: drafts.shift() ?? 'no more drafts' };
        if (req.system.includes('You are "note-taker"')) return { text: 'NOTE: taken' };
        return defaultHandler(req) as MockReply;
      },
    });
    const ws = tempDir('dmcp-create-deleg-');
    const agentsDir = path.join(ws, 'agents');
    // lead may delegate to note-taker, which does not exist yet when the server starts.
    writeTree(agentsDir, { 'lead.yaml': agentYaml('lead', 'anthropic/claude-test-1', 'agents: [note-taker]') });
    const cfg = path.join(ws, 'mcp.json');
    writeFileSync(cfg, JSON.stringify({ delegate: { defaultModel: 'anthropic/claude-test-1' } }));
    const srv = await startServer({ args: ['--config', cfg, '--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
    try {
      const created = await srv.client.callTool({ name: 'create_agent', arguments: { description: 'an agent that takes notes' } });
      assert.equal((created.structuredContent as any)?.name, 'note-taker', JSON.stringify(created.content));
      const res: any = await srv.client.callTool({ name: 'lead', arguments: { task: '[[tool:agent__note-taker {"task":"note this"}]]' } });
      assert.equal(res.structuredContent?.status, 'ok', JSON.stringify(res.content));
      assert.match(res.structuredContent.output, /NOTE: taken/, 'the delegated run answered');
      const events = readAuditEvents(stateDirOf(ws));
      const delegation = events.find((e) => e.event === 'delegation' && e.child_agent === 'note-taker');
      assert.ok(delegation, 'a delegation event');
      assert.equal(delegation.hop, 'in-process');
      const child = events.find((e) => e.event === 'run_end' && e.run_id === delegation.child_run_id);
      assert.equal(child?.status, 'ok');
      assert.equal(child?.parent_run_id, res.structuredContent.run_id);
    } finally {
      await srv.close();
      await mock.close();
    }
  });
});
