// The runs page over HTTP (no browser): /ui loads without the token, its data API needs it (as /mcp
// does), strict CSP on every response, read-only, Host/Origin checks, the live SSE stream, and
// `delegate-mcp ui` serving the same page for the state dir.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { startMockModel, type MockModel, type MockRequestInfo, type MockReply } from './mock-model/server.js';
import { CLI, mockEnv, tempDir, writeTree } from './helpers.js';
import { connectClient, startHttpServer, type HttpServer } from './http-helpers.js';

const TOKEN = 'ui-test-token-0123456789';

function planned(req: MockRequestInfo): MockReply {
  if (req.toolResults.length) return { text: 'done reading' };
  return { toolCalls: [{ name: 'read_file', arguments: { path: 'secret.txt' } }] };
}

function rawGet(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
}

/** Reads an SSE response until an event of this name arrives. */
async function waitForEvent(res: Response, name: string, ms: number): Promise<void> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const deadline = setTimeout(() => void reader.cancel(), ms);
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`stream ended without "${name}": ${buf}`);
      buf += value;
      if (new RegExp(`^event: ${name}$`, 'm').test(buf)) return;
    }
  } finally {
    clearTimeout(deadline);
    void reader.cancel();
  }
}

describe('runs page over HTTP', () => {
  let mock: MockModel;
  let ws: string;
  let cfg: string;
  let srv: HttpServer;
  const auth = { Authorization: `Bearer ${TOKEN}` };

  before(async () => {
    mock = await startMockModel();
    mock.setHandler(planned);
    ws = tempDir('dmcp-ui-');
    writeTree(ws, {
      'agents/reader.yaml': `name: reader
description: Reads files.
model: anthropic/claude-sonnet-4-5
permissions:
  allow: ["Read(./**)"]
  deny: ["Read(./secret.txt)"]
`,
      'secret.txt': 'nope',
    });
    cfg = path.join(ws, 'mcp.json');
    writeFileSync(cfg, JSON.stringify({ delegate: { agentsDir: 'agents' } }));
    srv = await startHttpServer({ args: ['--config', cfg, '--workspace', ws], env: mockEnv(mock.url, { DELEGATE_MCP_TOKEN: TOKEN }), cwd: ws });
  });
  after(async () => {
    await srv.stop();
    await mock.close();
  });

  it('serves the page and its files without a token, each with a strict CSP and no inline code', async () => {
    for (const [p, type] of [['/ui', 'text/html'], ['/ui/app.js', 'text/javascript'], ['/ui/style.css', 'text/css']] as const) {
      const res = await fetch(`${srv.url}${p}`);
      assert.equal(res.status, 200, p);
      assert.ok(res.headers.get('content-type')!.startsWith(type), p);
      const csp = res.headers.get('content-security-policy')!;
      assert.match(csp, /default-src 'self'/);
      assert.match(csp, /script-src 'self';/);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    }
    const html = await (await fetch(`${srv.url}/ui`)).text();
    assert.doesNotMatch(html, /<script>|<script [^>]*>[^<]|\sstyle=|<style|\son[a-z]+=/i, 'no inline script, style or handlers');
    const js = await (await fetch(`${srv.url}/ui/app.js`)).text();
    assert.doesNotMatch(js, /\.innerHTML\s*=|outerHTML|insertAdjacentHTML|document\.write/);
  });

  it('the data API needs the bearer token; the page is read-only; foreign Host and Origin get 403', async () => {
    for (const p of ['/ui/api/runs', '/ui/api/run?id=run_x', '/ui/api/stream']) {
      assert.equal((await fetch(`${srv.url}${p}`)).status, 401, p);
      assert.equal((await fetch(`${srv.url}${p}`, { headers: { Authorization: 'Bearer wrong' } })).status, 401, p);
    }
    const ok = await fetch(`${srv.url}/ui/api/runs`, { headers: auth });
    assert.equal(ok.status, 200);
    assert.ok(Array.isArray(((await ok.json()) as any).runs));
    assert.equal((await fetch(`${srv.url}/ui`, { method: 'POST', headers: auth })).status, 405);
    assert.equal((await fetch(`${srv.url}/ui/api/runs?status=weird`, { headers: auth })).status, 400);
    assert.equal((await rawGet(`${srv.url}/ui`, { host: 'evil.example' })).status, 403);
    assert.equal((await fetch(`${srv.url}/ui/api/runs`, { headers: { ...auth, origin: 'http://evil.example' } })).status, 403);
  });

  it('the stream announces a change while a run goes; the run, its tree, timeline and denial are served', async () => {
    const stream = await fetch(`${srv.url}/ui/api/stream`, { headers: auth });
    assert.equal(stream.status, 200);
    assert.match(stream.headers.get('content-type')!, /^text\/event-stream/);
    const changed = waitForEvent(stream, 'change', 15_000);
    const client = await connectClient(srv.url, 'legacy', TOKEN);
    let runId: string;
    try {
      const res = (await client.callTool({ name: 'reader', arguments: { task: 'read the secret' } })).structuredContent as any;
      assert.equal(res.status, 'ok');
      runId = res.run_id;
    } finally {
      await client.close();
    }
    await changed;
    const list = (await (await fetch(`${srv.url}/ui/api/runs?agent=reader`, { headers: auth })).json()) as any;
    assert.equal(list.runs.length, 1);
    assert.equal(list.runs[0].run_id, runId!);
    assert.deepEqual(list.agents, ['reader']);
    const detail = (await (await fetch(`${srv.url}/ui/api/run?id=${runId!}`, { headers: auth })).json()) as any;
    assert.equal(detail.tree.run_id, runId!);
    assert.equal(detail.denials.length, 1);
    assert.equal(detail.denials[0].rule, 'Read(./secret.txt)');
    assert.ok(detail.timeline.some((e: any) => e.kind === 'model_call'));
    const day = new Date().toISOString().slice(0, 10);
    assert.equal(((await (await fetch(`${srv.url}/ui/api/runs?day=${day}`, { headers: auth })).json()) as any).runs.length, 1);
    assert.equal(((await (await fetch(`${srv.url}/ui/api/runs?day=2001-01-01`, { headers: auth })).json()) as any).runs.length, 0);
  });

  it('delegate-mcp ui serves the same page for the state dir', async () => {
    const child = spawn(process.execPath, [CLI, 'ui', '--port', '0', '--config', cfg, '--workspace', ws], { env: { ...mockEnv(mock.url), DELEGATE_MCP_TOKEN: TOKEN }, cwd: ws, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let err = '';
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`ui did not start: ${err}`)), 10_000);
        child.stderr.on('data', (d: Buffer) => {
          err += d.toString();
          const m = /runs page: (http:\/\/\S+)\/ui/.exec(err);
          if (m) {
            clearTimeout(timer);
            resolve(m[1]);
          }
        });
      });
      assert.match(err, /token: the value of DELEGATE_MCP_TOKEN/);
      assert.equal((await fetch(`${url}/ui`)).status, 200);
      assert.equal((await fetch(`${url}/ui/api/runs`)).status, 401);
      const list = (await (await fetch(`${url}/ui/api/runs`, { headers: auth })).json()) as any;
      assert.equal(list.runs.length, 1);
      assert.equal(list.runs[0].agent, 'reader');
    } finally {
      child.kill('SIGTERM');
    }
  });
});
