// A downstream MCP server reached over Streamable HTTP (a `url` entry in mcp.json): the downstream is
// another delegate-mcp serving --http, whose model-free `list_agents` tool the upstream agent calls.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { startMockModel, type MockModel } from './mock-model/server.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { ROOT, mockEnv, startServer, tempDir, writeTree, type ServerHandle } from './helpers.js';
import { startHttpServer, type HttpServer } from './http-helpers.js';

describe('downstream MCP server over HTTP', () => {
  let mock: MockModel;
  let down: HttpServer;
  let up: ServerHandle;
  let ws: string;
  let downArgs: string[];
  let downEnv: { env: Record<string, string>; cwd: string };

  before(async () => {
    mock = await startMockModel();
    const downWs = tempDir('dmcp-down-');
    writeTree(path.join(downWs, 'agents'), {
      'remote-helper.yaml': 'name: remote-helper\ndescription: An agent that only the downstream server has.\nmodel: anthropic/claude-test-1\n',
    });
    downArgs = ['--agents', path.join(downWs, 'agents'), '--workspace', downWs];
    downEnv = { env: mockEnv(mock.url), cwd: downWs };
    down = await startHttpServer({ args: downArgs, ...downEnv });

    ws = tempDir('dmcp-up-');
    writeTree(path.join(ws, 'agents'), {
      'caller.yaml': 'name: caller\ndescription: Uses the remote delegate-mcp over HTTP.\nmodel: anthropic/claude-test-1\nmax_turns: 4\ntools:\n  mcp: [remote]\n',
    });
    const cfg = path.join(ws, 'mcp.json');
    writeFileSync(cfg, JSON.stringify({ mcpServers: { remote: { url: `${down.url}/mcp` } } }));
    up = await startServer({ args: ['--config', cfg, '--agents', path.join(ws, 'agents'), '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
  });
  after(async () => {
    await up?.close();
    await down?.stop();
    await mock.close();
  });

  it('its tools are offered as mcp__<server>__<tool>, and a call reaches it and returns its answer', async () => {
    const before = mock.requests.length;
    const res: any = await up.client.callTool({ name: 'caller', arguments: { task: '[[tool:mcp__remote__list_agents {}]]' } });
    assert.equal(res.structuredContent?.status, 'ok', JSON.stringify(res.content));
    const reqs = mock.requests.slice(before);
    assert.ok(reqs[0].toolNames.includes('mcp__remote__list_agents'), `offered: ${reqs[0].toolNames}`);
    assert.equal(reqs[1].toolResults.length, 1);
    assert.equal(reqs[1].toolResults[0].isError, false, reqs[1].toolResults[0].content);
    assert.match(reqs[1].toolResults[0].content, /remote-helper/, 'the downstream answered with its own agents');
  });

  it('a downstream that went away gives the model a clear tool error; once it is back, the next call reaches it', async () => {
    const port = new URL(down.url).port;
    await down.stop();
    const call = async () => {
      const before = mock.requests.length;
      const res: any = await up.client.callTool({ name: 'caller', arguments: { task: '[[tool:mcp__remote__list_agents {}]]' } });
      assert.equal(res.structuredContent?.status, 'ok', JSON.stringify(res.content));
      const fed = mock.requests.slice(before)[1]?.toolResults ?? [];
      assert.equal(fed.length, 1);
      return fed[0];
    };
    const failed = await call();
    assert.equal(failed.isError, true);
    assert.match(failed.content, new RegExp(`cannot reach MCP server "remote" at http://127\\.0\\.0\\.1:${port}/mcp: .*ECONNREFUSED`));
    down = await startHttpServer({ args: [...downArgs, '--port', port], ...downEnv });
    const again = await call();
    assert.equal(again.isError, false, again.content);
    assert.match(again.content, /remote-helper/);
  });
});

describe('downstream MCP server over HTTP: results of any size', () => {
  const FIXTURE = path.join(ROOT, 'tests', 'fixtures', 'mcp-echo-http-server.mjs');
  let mock: MockModel;
  let ws: string;
  const fixtures: ChildProcess[] = [];

  /** Starts the HTTP fixture in a response mode; resolves with its /mcp url. */
  const startFixture = async (mode: 'json' | 'sse'): Promise<string> => {
    const child = spawn(process.execPath, [FIXTURE, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
    fixtures.push(child);
    const port = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /listening (\d+)/.exec(out);
        if (m) resolve(m[1]);
      });
      child.once('exit', (code) => reject(new Error(`HTTP fixture exited (${code}) before listening`)));
    });
    return `http://127.0.0.1:${port}/mcp`;
  };

  before(async () => {
    mock = await startMockModel();
    ws = tempDir('dmcp-http-big-');
    writeTree(path.join(ws, 'agents'), {
      'user.yaml': 'name: user\ndescription: Uses HTTP downstream servers.\nmodel: anthropic/claude-test-1\nmax_turns: 4\ntools:\n  mcp: [json, sse]\n',
    });
  });
  after(async () => {
    for (const f of fixtures) f.kill();
    await mock.close();
  });

  const serve = async (tools: Record<string, unknown>) => {
    const cfg = path.join(ws, `mcp-${fixtures.length}.json`);
    const [json, sse] = [await startFixture('json'), await startFixture('sse')];
    writeFileSync(cfg, JSON.stringify({ mcpServers: { json: { url: json }, sse: { url: sse } }, delegate: { stateDir: path.join(ws, 'state'), tools } }));
    return startServer({ args: ['--config', cfg, '--agents', path.join(ws, 'agents'), '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
  };
  /** Runs `user` on a directive; returns the one tool result the model was fed. */
  const fed = async (srv: ServerHandle, directive: string) => {
    const before = mock.requests.length;
    const res: any = await srv.client.callTool({ name: 'user', arguments: { task: directive } });
    assert.equal(res.structuredContent?.status, 'ok', JSON.stringify(res.content));
    const results = mock.requests.slice(before)[1]?.toolResults ?? [];
    assert.equal(results.length, 1);
    return results[0];
  };

  it('a 12 MB result (JSON and SSE answers) is read under the default limit and cut to the cap with a note', async () => {
    const srv = await serve({});
    try {
      for (const server of ['json', 'sse']) {
        const r = await fed(srv, `[[tool:mcp__${server}__big {"bytes":12000000}]]`);
        assert.equal(r.isError, false, r.content.slice(0, 300));
        assert.ok(r.content.length < 70 * 1024, `${server}: ${r.content.length} characters fed to the model`);
        assert.match(r.content, /\[output truncated: the tool returned 12000000 bytes; only the first 64 KiB are shown\]$/);
      }
    } finally {
      await srv.close();
    }
  });

  it('over delegate.tools.mcpMaxMessageBytes (JSON and SSE answers): reading stops there, an error names the limit; the server is reconnected on the next call', async () => {
    const srv = await serve({ mcpMaxMessageBytes: 8 * 1024 * 1024 });
    try {
      // Reading stops at the limit (a JSON body or one SSE event); a declared content-length is named too.
      for (const server of ['json', 'sse']) {
        const r = await fed(srv, `[[tool:mcp__${server}__big {"bytes":12000000}]]`);
        assert.equal(r.isError, true, r.content.slice(0, 300));
        assert.match(r.content, new RegExp(`^mcp__${server}__big: MCP server "${server}" answered with a message (of 120\\d{5} bytes, )?over the limit of 8388608 bytes \\(delegate\\.tools\\.mcpMaxMessageBytes\\)`));
      }
      for (const server of ['json', 'sse']) {
        const again = await fed(srv, `[[tool:mcp__${server}__echo {"text":"again"}]]`);
        assert.equal(again.isError, false, again.content);
        assert.match(again.content, /^echo: again/);
      }
    } finally {
      await srv.close();
    }
  });
});
