// A downstream MCP server reached over Streamable HTTP (a `url` entry in mcp.json): the downstream is
// another delegate-mcp serving --http, whose model-free `list_agents` tool the upstream agent calls.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { startMockModel, type MockModel } from './mock-model/server.js';
import { mockEnv, startServer, tempDir, writeTree, type ServerHandle } from './helpers.js';
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
