// End to end through the real entry points: the built CLI serving stdio, a real MCP client (both
// protocol eras), and the real provider SDKs talking to the local mock model server.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { symlinkSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startMockModel, type MockModel } from './mock-model/server.js';
import { CLI, ROOT, agentYaml, mockEnv, startServer, tempDir, writeTree, type ServerHandle } from './helpers.js';

const execFileP = promisify(execFile);
const SHIPPED = ['code-reviewer', 'test-gen', 'sec-audit', 'researcher', 'architect'];

describe('stdio server end to end', () => {
  let mock: MockModel;
  let ws: string;
  let agentsDir: string;
  let outside: string;

  before(async () => {
    mock = await startMockModel();
    ws = tempDir('dmcp-ws-');
    outside = tempDir('dmcp-outside-');
    writeTree(outside, { 'secret.txt': 'TOP-SECRET-OUTSIDE' });
    writeTree(ws, { 'src/app.ts': 'export const answer = 42; // MARKER-APP\n', 'notes.md': '# notes\n' });
    symlinkSync(path.join(outside, 'secret.txt'), path.join(ws, 'leak.txt'));
    agentsDir = path.join(ws, 'agents');
    writeTree(agentsDir, {
      'reader-anthropic.yaml': agentYaml('reader-anthropic', 'anthropic/claude-test-1'),
      'reader-openai.yaml': agentYaml('reader-openai', 'openai/gpt-test-1'),
      'reader-chat.yaml': agentYaml('reader-chat', 'openai-chat/llama-test'),
      'hidden.yaml': agentYaml('hidden', 'anthropic/claude-test-1', 'expose: false'),
    });
  });
  after(async () => {
    await mock.close();
  });

  for (const era of ['legacy', 'modern'] as const) {
    it(`lists every shipped agent plus list_agents (${era} era)`, async () => {
      const srv = await startServer({ args: ['--agents', path.join(ROOT, 'agents'), '--workspace', ws], env: mockEnv(mock.url), cwd: ws, era });
      try {
        const { tools } = await srv.client.listTools();
        const names = tools.map((t) => t.name);
        for (const n of [...SHIPPED, 'list_agents']) assert.ok(names.includes(n), `missing tool ${n} in ${names}`);
        for (const t of tools) assert.ok(t.description && t.description.length > 20, `${t.name} needs a description`);
        const reviewer = tools.find((t) => t.name === 'code-reviewer')!;
        assert.deepEqual((reviewer.inputSchema as any).required, ['task']);
        assert.ok(reviewer.outputSchema, 'agent tools declare an outputSchema');
        // One $id for the agent tools' shared schema: the client SDK compiles it once, not once per agent.
        const agentSchemas = tools.filter((t) => SHIPPED.includes(t.name)).map((t) => t.outputSchema as Record<string, unknown>);
        assert.equal(agentSchemas.length, SHIPPED.length);
        for (const s of agentSchemas) assert.deepEqual(s, reviewer.outputSchema);
        assert.match(String((reviewer.outputSchema as Record<string, unknown>).$id), /^urn:delegate-mcp:agent-run-result:[0-9a-f]{32}$/);
        const listed = await srv.client.callTool({ name: 'list_agents', arguments: {} });
        const sc = listed.structuredContent as any;
        assert.deepEqual(sc.errors, []);
        assert.deepEqual(sc.agents.map((a: any) => a.name).sort(), [...SHIPPED].sort());
      } finally {
        await srv.close();
      }
    });
  }

  for (const [agent, api] of [
    ['reader-anthropic', 'anthropic'],
    ['reader-openai', 'openai-responses'],
    ['reader-chat', 'openai-chat'],
  ] as const) {
    for (const era of ['legacy', 'modern'] as const) {
      it(`${agent}: a turn that calls read_file, then an answer with what it read (${api}, ${era})`, async () => {
        const srv = await startServer({ args: ['--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws, era });
        try {
          const before = mock.requests.length;
          const res = await srv.client.callTool({
            name: agent,
            arguments: { task: 'Read the app. [[tool:read_file {"path":"src/app.ts"}]]' },
          });
          assert.equal(res.isError, undefined, JSON.stringify(res.content));
          const sc = res.structuredContent as any;
          assert.equal(sc.status, 'ok');
          assert.equal(sc.agent, agent);
          assert.equal(sc.turns, 2);
          assert.match(sc.run_id, /^run_/);
          assert.match(sc.output, /MARKER-APP/);
          assert.ok(sc.usage.input_tokens > 0 && sc.usage.output_tokens > 0, JSON.stringify(sc.usage));
          const reqs = mock.requests.slice(before);
          assert.equal(reqs.length, 2);
          assert.ok(reqs.every((r) => r.api === api), reqs.map((r) => r.api).join());
          assert.ok(reqs[0].toolNames.includes('read_file'));
          assert.match(reqs[1].toolResults[0].content, /MARKER-APP/);
          assert.match((res.content as any)[0].text, /MARKER-APP/);
        } finally {
          await srv.close();
        }
      });
    }
  }

  it('refuses reads outside the workspace (absolute, .., symlink) and feeds the refusal to the model', async () => {
    const srv = await startServer({ args: ['--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
    try {
      for (const p of [path.join(outside, 'secret.txt'), '../' + path.basename(outside) + '/secret.txt', 'leak.txt']) {
        const before = mock.requests.length;
        const res = await srv.client.callTool({
          name: 'reader-anthropic',
          arguments: { task: `[[tool:read_file ${JSON.stringify({ path: p })}]]` },
        });
        const sc = res.structuredContent as any;
        assert.equal(sc.status, 'ok');
        assert.doesNotMatch(sc.output, /TOP-SECRET/);
        const fed = mock.requests.slice(before)[1].toolResults[0];
        assert.equal(fed.isError, true);
        assert.match(fed.content, /outside the workspace|symlink/);
      }
    } finally {
      await srv.close();
    }
  });

  it('an unknown tool requested by the model is an error result for the model, not a crash', async () => {
    const srv = await startServer({ args: ['--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
    try {
      const before = mock.requests.length;
      const res = await srv.client.callTool({ name: 'reader-chat', arguments: { task: '[[tool:rm_rf {"path":"/"}]]' } });
      assert.equal((res.structuredContent as any).status, 'ok');
      const fed = mock.requests.slice(before)[1].toolResults[0];
      assert.match(fed.content, /unknown tool "rm_rf".*available: read_file/);
    } finally {
      await srv.close();
    }
  });

  it('a missing API key is a clear tool error at call time; listing works without keys', async () => {
    const env = mockEnv(mock.url);
    delete (env as any).ANTHROPIC_API_KEY;
    const srv = await startServer({ args: ['--agents', agentsDir, '--workspace', ws], env, cwd: ws });
    try {
      const { tools } = await srv.client.listTools();
      assert.ok(tools.some((t) => t.name === 'reader-anthropic'));
      assert.ok(!tools.some((t) => t.name === 'hidden'), 'expose: false hides the agent');
      const before = mock.requests.length;
      const res = await srv.client.callTool({ name: 'reader-anthropic', arguments: { task: 'hi' } });
      assert.equal(res.isError, true);
      assert.match((res.content as any)[0].text, /reader-anthropic uses anthropic\/claude-test-1, but ANTHROPIC_API_KEY is not set/);
      assert.match((res.content as any)[0].text, /run_/);
      assert.equal(mock.requests.length, before);
    } finally {
      await srv.close();
    }
  });

  it('a provider error (500) is an isError result with the run id and cause, and the server keeps serving', async () => {
    const srv = await startServer({ args: ['--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
    try {
      mock.setHandler(() => ({ error: { status: 500, message: 'mock overloaded' } }));
      const res = await srv.client.callTool({ name: 'reader-openai', arguments: { task: 'hi' } });
      assert.equal(res.isError, true);
      assert.match((res.content as any)[0].text, /run_\S+ \(reader-openai\) error: .*500/);
      mock.setHandler(undefined as any);
      const ok = await srv.client.callTool({ name: 'reader-openai', arguments: { task: 'hi again' } });
      assert.equal((ok.structuredContent as any).status, 'ok');
    } finally {
      mock.reset();
      await srv.close();
    }
  });

  it('stops after max_turns with a clear result', async () => {
    const srv = await startServer({ args: ['--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
    try {
      mock.setHandler(() => ({ text: 'still looking', toolCalls: [{ name: 'list_dir', arguments: { path: '.' } }] }));
      const res = await srv.client.callTool({ name: 'reader-chat', arguments: { task: 'loop forever' } });
      assert.equal(res.isError, true);
      assert.match((res.content as any)[0].text, /max_turns: stopped after 4 turns/);
      assert.match((res.content as any)[0].text, /still looking/);
    } finally {
      mock.reset();
      await srv.close();
    }
  });

  it('bad input is rejected with a clear message', async () => {
    const srv = await startServer({ args: ['--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
    try {
      const res = await srv.client.callTool({ name: 'reader-chat', arguments: { context: 'no task' } });
      assert.equal(res.isError, true);
      assert.match((res.content as any)[0].text, /task/);
    } finally {
      await srv.close();
    }
  });

  it('CLI: run prints the answer, --json the structured result', async () => {
    const env = { ...process.env, ...mockEnv(mock.url) };
    const { stdout } = await execFileP(process.execPath, [CLI, 'run', '--agents', agentsDir, '--workspace', ws, 'reader-anthropic', 'say', 'hello'], { env, cwd: ws });
    assert.match(stdout, /mock answer to: say hello/);
    const json = await execFileP(process.execPath, [CLI, 'run', '--json', '--agents', agentsDir, '--workspace', ws, 'reader-chat', 'hi'], { env, cwd: ws });
    const r = JSON.parse(json.stdout);
    assert.equal(r.status, 'ok');
    assert.equal(r.model, 'openai-chat/llama-test');
  });

  it('CLI: agents validate exits 1 naming file and line for a broken file; the good ones still load', async () => {
    const dir = tempDir('dmcp-agents-');
    writeTree(dir, {
      'good.yaml': agentYaml('good', 'anthropic/x'),
      'broken.yaml': 'name: broken\ndescription: a broken agent\nmax_turns: many\n',
    });
    await assert.rejects(execFileP(process.execPath, [CLI, 'agents', 'validate', dir]), (err: any) => {
      assert.equal(err.code, 1);
      assert.match(err.stderr, /broken\.yaml:3:\d+: max_turns/);
      return true;
    });
    const ok = await execFileP(process.execPath, [CLI, 'agents', 'validate', path.join(ROOT, 'agents')]);
    assert.match(ok.stdout, /5 agent\(s\) valid/);
    // The server still serves the good agent and reports the broken one in list_agents.
    const srv = await startServer({ args: ['--agents', dir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
    try {
      const { tools } = await srv.client.listTools();
      assert.ok(tools.some((t) => t.name === 'good'));
      const listed = await srv.client.callTool({ name: 'list_agents', arguments: {} });
      assert.match((listed.structuredContent as any).errors.join('\n'), /broken\.yaml:3/);
      assert.match(srv.stderr(), /broken\.yaml:3/);
    } finally {
      await srv.close();
    }
  });
});
