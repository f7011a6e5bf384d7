// fetch_url's address checks run through the permission engine's checkResolvedAddress on the real
// path: a deny rule naming an address stops a name that resolves to it, even when a rule allows the
// name; an allowed name reaches its (loopback) address; an IP literal in a refused range never connects.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { startMockModel, type MockModel, type MockToolResult } from './mock-model/server.js';
import { mockEnv, startServer, tempDir, writeTree, type ServerHandle } from './helpers.js';

describe('fetch_url address checks (checkResolvedAddress)', () => {
  let mock: MockModel;
  let srv: ServerHandle;
  let web: http.Server;
  let port: number;
  let hits = 0;

  before(async () => {
    mock = await startMockModel();
    web = http.createServer((_req, res) => {
      hits++;
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('LOCAL-WEB-OK');
    });
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    port = (web.address() as AddressInfo).port;
    const ws = tempDir('dmcp-addr-');
    const agentsDir = path.join(ws, 'agents');
    const agent = (name: string, deny: string) => `name: ${name}
description: Test agent that fetches localhost.
model: anthropic/claude-test-1
max_turns: 4
permissions:
  allow: ["WebFetch(domain:localhost)", "WebFetch(domain:*)"]
  deny: [${deny}]
`;
    writeTree(agentsDir, {
      'open.yaml': agent('open', ''),
      'guarded.yaml': agent('guarded', '"WebFetch(domain:127.0.0.1)", "WebFetch(domain:[::1])"'),
    });
    srv = await startServer({ args: ['--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
  });
  after(async () => {
    await srv?.close();
    await mock.close();
    await new Promise((r) => web.close(r));
  });

  async function fetchAs(agent: string, url: string): Promise<MockToolResult> {
    const before = mock.requests.length;
    await srv.client.callTool({ name: agent, arguments: { task: `[[tool:fetch_url ${JSON.stringify({ url })}]]` } });
    const reqs = mock.requests.slice(before);
    assert.ok(reqs.length >= 2, `expected a second model request, got ${reqs.length}`);
    return reqs[1].toolResults[0];
  }

  it('a name allowed exactly reaches its loopback address', async () => {
    const r = await fetchAs('open', `http://localhost:${port}/`);
    assert.equal(r.isError, false, r.content);
    assert.match(r.content, /LOCAL-WEB-OK/);
  });

  it('a deny rule naming the resolved address refuses the name, before connecting', async () => {
    const before = hits;
    const r = await fetchAs('guarded', `http://localhost:${port}/`);
    assert.equal(r.isError, true);
    assert.match(r.content, /refused http:\/\/localhost:\d+\/: localhost resolved to (127\.0\.0\.1|::1), denied by rule "WebFetch\(domain:(127\.0\.0\.1|\[::1\])\)"/);
    assert.equal(hits, before);
  });

  it('IP literals in refused ranges (Teredo, NAT64 local-use, discard, documentation, 6to4 of a private IPv4) never connect', async () => {
    const before = hits;
    const urls = ['http://[2001::1]/', 'http://[64:ff9b:1::7f00:1]/', 'http://[100::1]/', 'http://192.0.2.1/', 'http://[2002:7f00:1::1]/', 'http://[::127.0.0.1]/'];
    for (const url of urls) {
      const r = await fetchAs('open', url);
      assert.equal(r.isError, true, url);
      assert.match(r.content, /private, loopback, link-local or reserved address \(/, url);
    }
    assert.equal(urls.length, 6);
    assert.equal(hits, before);
  });
});
