// `serve --http` end to end: the real built server on a free port, the real SDK clients in all three
// flavours (2025-era Streamable HTTP with a session, 2026-07-28, legacy HTTP+SSE), the mock model.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import path from 'node:path';
import type { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { Client as McpClient } from '@modelcontextprotocol/client';
import { defaultHandler, startMockModel, type MockModel, type MockReply } from './mock-model/server.js';
import { CLI, agentYaml, mockEnv, tempDir, writeTree, readAuditEvents, stateDirOf } from './helpers.js';
import { INIT, connectClient, rawPost, startHttpServer, type Flavour, type HttpServer } from './http-helpers.js';

const TOKEN = 'test-token-0123456789abcdef';
const auth = { Authorization: `Bearer ${TOKEN}` };

const readEvents = readAuditEvents;

async function until(cond: () => boolean, ms = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** fetch() will not send a Host header of our choosing; node:http will. */
function rawRequest(url: string, headers: Record<string, string>, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}/mcp`, { method: 'POST', headers }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const textOf = (r: { content?: unknown }) => ((r.content as { text?: string }[] | undefined)?.[0]?.text ?? '') as string;

/** A workspace with one agent and a config file; returns paths. */
function workspace(delegate: Record<string, unknown> = {}) {
  const ws = tempDir('dmcp-http-');
  const agentsDir = path.join(ws, 'agents');
  writeTree(agentsDir, {
    'worker.yaml': agentYaml('worker', 'anthropic/claude-sonnet-4-5'),
    'asker.yaml': `name: asker
description: Test agent whose echo commands need approval.
model: anthropic/claude-sonnet-4-5
max_turns: 4
permissions:
  ask: ["Bash(echo:*)"]
`,
  });
  const cfg = path.join(ws, 'mcp.json');
  writeFileSync(cfg, JSON.stringify({ delegate }));
  return { ws, agentsDir, cfg, stateDir: stateDirOf(ws), args: ['--config', cfg, '--agents', agentsDir, '--workspace', ws] };
}

describe('HTTP transport', () => {
  let mock: MockModel;
  let srv: HttpServer;
  let main: ReturnType<typeof workspace>;

  before(async () => {
    mock = await startMockModel();
    // A short resume grace: the drop test below waits it out (a 2025-era drop may be resumed first).
    main = workspace({ http: { resumeGraceS: 2 } });
    srv = await startHttpServer({ args: main.args, env: mockEnv(mock.url, { DELEGATE_MCP_TOKEN: TOKEN }), cwd: main.ws });
  });
  after(async () => {
    await srv?.stop();
    await mock.close();
  });

  it('a 2025-era client, a 2026-07-28 client and a legacy SSE client each list tools, call an agent and get progress', async () => {
    // A model that answers in 50 ms, not at once: the SDK client runs a progress notification's handler a
    // microtask after it parsed it, but forgets the call's progress handler as soon as it parses the
    // result, so a line that arrives in the same read as the result is dropped on the client (seen once
    // under load with a 0 ms model over legacy SSE). The server sends its lines first either way.
    mock.setHandler((req) => ({ ...(defaultHandler(req) as MockReply), delayMs: 50 }));
    try {
      await listCallProgress();
    } finally {
      mock.setHandler(undefined);
    }
  });

  async function listCallProgress(): Promise<void> {
    for (const flavour of ['legacy', 'modern', 'sse'] as Flavour[]) {
      const client = await connectClient(srv.url, flavour, TOKEN);
      try {
        assert.equal(client.getProtocolEra(), flavour === 'modern' ? 'modern' : 'legacy');
        const tools = await client.listTools();
        assert.ok(tools.tools.some((t) => t.name === 'worker') && tools.tools.some((t) => t.name === 'list_agents'), flavour);
        const progress: string[] = [];
        const r = await client.callTool({ name: 'worker', arguments: { task: `hello over ${flavour}` } }, { onprogress: (p) => progress.push(p.message ?? '') });
        assert.equal(textOf(r), `mock answer to: hello over ${flavour}`);
        assert.equal((r.structuredContent as any).status, 'ok');
        assert.ok(progress.some((m) => m.startsWith('worker · turn 1/4')), `${flavour} progress: ${progress.join(' | ')}`);
      } finally {
        await client.close();
      }
    }
  }

  it('a 2026-07-28 client (no sessions) follows its background run by run id; a session client cannot', async () => {
    const modern = await connectClient(srv.url, 'modern', TOKEN);
    const legacy = await connectClient(srv.url, 'legacy', TOKEN);
    try {
      const started = await modern.callTool({ name: 'delegate', arguments: { agent: 'worker', task: 'in the background', background: true } });
      const runId = (started.structuredContent as any).run_id;
      const other = await legacy.callTool({ name: 'run_status', arguments: { run_id: runId } });
      assert.equal(other.isError, true, 'a session-bound client cannot read it');
      const r = await modern.callTool({ name: 'run_result', arguments: { run_id: runId, wait_s: 10 } });
      assert.equal((r.structuredContent as any).status, 'ok');
      assert.equal((r.structuredContent as any).output, 'mock answer to: in the background');
    } finally {
      await modern.close();
      await legacy.close();
    }
  });

  it('answers 401 / 403 / 413 / 404 / 405 with clear bodies, and /healthz without a token', async () => {
    const none = await rawPost(srv.url, INIT);
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="delegate-mcp"');
    assert.match(await none.text(), /bearer token required/);
    const wrong = await rawPost(srv.url, INIT, { Authorization: 'Bearer wrong-token' });
    assert.equal(wrong.status, 401);
    assert.match(wrong.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
    const sse401 = await fetch(`${srv.url}/sse`);
    assert.equal(sse401.status, 401);

    const origin = await rawPost(srv.url, INIT, { ...auth, Origin: 'https://evil.example' });
    assert.equal(origin.status, 403);
    assert.match(await origin.text(), /Invalid Origin/);
    // DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host header.
    const rebind = await rawRequest(srv.url, { ...auth, host: 'evil.example', 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, JSON.stringify(INIT));
    assert.equal(rebind.status, 403);
    assert.match(rebind.body, /Invalid Host/);
    assert.equal((await rawPost(srv.url, INIT, { ...auth, Origin: 'http://localhost:3000' })).status, 200);

    const big = await rawPost(srv.url, 'x'.repeat(5 * 1024 * 1024), auth);
    assert.equal(big.status, 413);
    assert.match(await big.text(), /maxBodyBytes/);

    const unknown = await rawPost(srv.url, { jsonrpc: '2.0', id: 7, method: 'tools/list' }, { ...auth, 'mcp-session-id': 'no-such-session' });
    assert.equal(unknown.status, 404);
    assert.deepEqual((await unknown.json()).error.code, -32001);
    const noSession = await rawPost(srv.url, { jsonrpc: '2.0', id: 8, method: 'tools/list' }, auth);
    assert.equal(noSession.status, 400);
    const unknownSse = await fetch(`${srv.url}/messages?sessionId=nope`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{}' });
    assert.equal(unknownSse.status, 404);
    assert.equal((await fetch(`${srv.url}/mcp`, { method: 'PUT', headers: auth })).status, 405);
    assert.equal((await fetch(`${srv.url}/elsewhere`, { headers: auth })).status, 404);

    const health = await fetch(`${srv.url}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { ok: true });
    assert.ok(!srv.stderr().includes(TOKEN), 'the token never reaches the log');
  });

  it('approvals reach the client over HTTP sessions: in the call (2025 session, SSE) and on the session (background run)', async () => {
    for (const flavour of ['legacy', 'sse'] as Flavour[]) {
      const asked: string[] = [];
      const client = await connectClient(srv.url, flavour, TOKEN, async (p) => {
        asked.push(p.message);
        return { action: 'accept', content: { decision: 'allow_once' } };
      });
      try {
        const task = (word: string) => `[[tool:run_command {"argv":["echo","${word}"]}]]`;
        const r = await client.callTool({ name: 'asker', arguments: { task: task(`in-call-${flavour}`) } });
        assert.match(textOf(r), new RegExp(`^done: exit code 0[\\s\\S]*in-call-${flavour}`), textOf(r));
        // A background run outlives its call: it asks on the session (the GET stream / the SSE stream).
        const bg = await client.callTool({ name: 'delegate', arguments: { agent: 'asker', task: task(`background-${flavour}`), background: true } });
        const runId = (bg.structuredContent as any).run_id;
        const res = await client.callTool({ name: 'run_result', arguments: { run_id: runId, wait_s: 10 } });
        assert.match(textOf(res), new RegExp(`background-${flavour}`), textOf(res));
        assert.equal(asked.length, 2, flavour);
        assert.match(asked[0], /^agent asker wants to run `echo in-call-/);
      } finally {
        await client.close();
      }
    }
  });

  it('sessions are isolated: one client cannot see, read or cancel another client\'s runs', async () => {
    mock.setHandler((req) => (req.lastUserText.includes('slow') ? { text: 'slow done', delayMs: 1500 } : { text: `answer ${req.lastUserText}` }));
    const a = await connectClient(srv.url, 'legacy', TOKEN);
    const b = await connectClient(srv.url, 'legacy', TOKEN);
    const c = await connectClient(srv.url, 'sse', TOKEN);
    try {
      const started = await a.callTool({ name: 'delegate', arguments: { agent: 'worker', task: 'slow job', background: true } });
      const runId = (started.structuredContent as any).run_id as string;
      assert.match(runId, /^run_/);
      for (const other of [b, c]) {
        for (const tool of ['run_status', 'run_result', 'run_cancel']) {
          const r = await other.callTool({ name: tool, arguments: { run_id: runId } });
          assert.equal(r.isError, true, `${tool} from another session`);
          assert.match(textOf(r), /unknown run/);
        }
      }
      const res = await a.callTool({ name: 'run_result', arguments: { run_id: runId, wait_s: 10 } });
      assert.equal(textOf(res), 'slow done');
    } finally {
      mock.setHandler(undefined);
      await Promise.all([a.close(), b.close(), c.close()]);
    }
  });

  // 15–42 s on the 2-core test machine depending on its load (about 80–200 calls/s).
  it('32 clients × 100 calls: no errors, and no client ever receives another\'s result or progress', { timeout: 150_000 }, async () => {
    mock.reset();
    const CLIENTS = 32;
    const CALLS = 100;
    const flavourOf = (c: number): Flavour => (c % 4 === 3 ? 'sse' : c % 4 === 2 ? 'modern' : 'legacy');
    const clients = await Promise.all(Array.from({ length: CLIENTS }, (_, c) => connectClient(srv.url, flavourOf(c), TOKEN)));
    // The SDK client dispatches a notification a microtask later than a response, so a progress line sent
    // just before the result can reach it after the call settled: it then reports "unknown token" through
    // onerror, with the notification. Those must still be this client's own; anything else is a problem.
    const protocolErrors: string[] = [];
    const late = clients.map(() => new Set<string>());
    clients.forEach((client, c) => {
      client.onerror = (e) => {
        const m = /progress notification for an unknown token: (.*)$/s.exec(e.message);
        const markers = m ? (m[1].match(/c\d+-i\d+/g) ?? []) : [];
        if (m && markers.every((x) => x.startsWith(`c${c}-`))) markers.forEach((x) => late[c].add(x));
        else protocolErrors.push(e.message);
      };
    });
    const problems: string[] = [];
    const missing: string[] = [];
    let progressSeen = 0;
    const t0 = performance.now();
    try {
      await Promise.all(
        clients.map(async (client, c) => {
          for (let i = 0; i < CALLS; i++) {
            const marker = `c${c}-i${i}`;
            const progress: string[] = [];
            try {
              // The model reads a (missing) file named after the marker: the read_file progress line and the
              // final answer ("done: … m/<marker>.txt not found …") both carry it.
              const r = await client.callTool(
                { name: 'worker', arguments: { task: `${marker} [[tool:read_file {"path":"m/${marker}.txt"}]]` } },
                { onprogress: (p) => progress.push(p.message ?? '') },
              );
              const found = textOf(r).match(/c\d+-i\d+/g) ?? [];
              if (r.isError || !found.length || found.some((m) => m !== marker)) problems.push(`${marker}: result ${textOf(r).slice(0, 200)}`);
              let own = 0;
              for (const p of progress) {
                const ms = p.match(/c\d+-i\d+/g) ?? [];
                if (ms.some((m) => m !== marker)) problems.push(`${marker}: foreign progress ${p}`);
                if (ms.length) own++;
              }
              if (own === 0) missing.push(marker);
              progressSeen += progress.length;
            } catch (err) {
              problems.push(`${marker}: ${(err as Error).message}`);
            }
          }
        }),
      );
    } finally {
      await Promise.all(clients.map((c) => c.close().catch(() => {})));
    }
    const seconds = (performance.now() - t0) / 1000;
    const lateCount = late.reduce((n, s) => n + s.size, 0);
    process.stderr.write(
      `# http stress: ${CLIENTS * CALLS} calls in ${seconds.toFixed(1)} s (${Math.round((CLIENTS * CALLS) / seconds)}/s), ` +
        `${progressSeen} progress notifications (+${lateCount} after their result), ${mock.requests.length} model requests\n`,
    );
    // Every call saw its own read_file progress line: during the call, or just after its result.
    for (const marker of missing) {
      const c = Number(/^c(\d+)/.exec(marker)![1]);
      if (!late[c].has(marker)) problems.push(`${marker}: no progress line naming its own file`);
    }
    assert.deepEqual(problems.slice(0, 10), []);
    assert.deepEqual(protocolErrors.slice(0, 10), []);
    assert.equal(mock.requests.length, CLIENTS * CALLS * 2);
  });

  it('a client that drops the connection mid-run cancels its run (2025 session after resumeGraceS, 2026-07-28, SSE)', async () => {
    mock.reset();
    mock.setHandler(() => ({ text: 'too late', delayMs: 20_000 }));
    try {
      // 2025-era session, raw: the client vanishes (aborted fetch) without sending notifications/cancelled
      // and never resumes: the run is cancelled once delegate.http.resumeGraceS (2 s here) has passed.
      const init = await rawPost(srv.url, INIT, auth);
      const sid = init.headers.get('mcp-session-id')!;
      await init.text();
      await rawPost(srv.url, { jsonrpc: '2.0', method: 'notifications/initialized' }, { ...auth, 'mcp-session-id': sid });
      const abort = new AbortController();
      const call = rawPost(srv.url, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'worker', arguments: { task: 'drop me' } } }, { ...auth, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' }, abort.signal);
      await until(() => mock.inFlight === 1, 10_000, 'the model request');
      abort.abort();
      await call.then((r) => r.body?.cancel()).catch(() => {});
      await until(() => mock.closedEarly === 1, 10_000, 'the 2025-era run to be cancelled');

      // 2026-07-28: closing the request's stream is how the era cancels.
      const modern = await connectClient(srv.url, 'modern', TOKEN);
      const abort2 = new AbortController();
      const p2 = modern.callTool({ name: 'worker', arguments: { task: 'drop me too' } }, { signal: abort2.signal, onprogress: () => {} }).catch((e: Error) => e);
      await until(() => mock.inFlight === 1, 10_000, 'the second model request');
      abort2.abort();
      assert.ok((await p2) instanceof Error);
      await until(() => mock.closedEarly === 2, 10_000, 'the 2026-era run to be cancelled');
      await modern.close();

      // Legacy SSE: the event stream is the session; closing it aborts what runs in it.
      const sse = await connectClient(srv.url, 'sse', TOKEN);
      const p3 = sse.callTool({ name: 'worker', arguments: { task: 'drop me three' } }).catch((e: Error) => e);
      await until(() => mock.inFlight === 1, 10_000, 'the third model request');
      await sse.close();
      await p3;
      await until(() => mock.closedEarly === 3, 10_000, 'the SSE run to be cancelled');
      await until(() => readEvents(main.stateDir).filter((e) => e.event === 'run_end' && e.status === 'cancelled').length >= 3, 5000, 'three cancelled run_end records');
    } finally {
      mock.setHandler(undefined);
    }
  });
});

describe('HTTP limits, shutdown and startup rules', () => {
  let mock: MockModel;

  before(async () => {
    mock = await startMockModel();
  });
  after(async () => {
    await mock.close();
  });

  it('429 with retry-after beyond maxSessions and maxRunsPerSession; fan-out waits for a slot instead', async () => {
    const w = workspace({ http: { maxSessions: 3, maxRunsPerSession: 2 } });
    const srv = await startHttpServer({ args: w.args, env: mockEnv(mock.url), cwd: w.ws });
    const clients: Client[] = [];
    try {
      clients.push(await connectClient(srv.url, 'legacy'), await connectClient(srv.url, 'sse'), await connectClient(srv.url, 'legacy'));
      const full = await rawPost(srv.url, INIT);
      assert.equal(full.status, 429);
      assert.equal(full.headers.get('retry-after'), '30');
      assert.match(await full.text(), /maxSessions/);
      assert.equal((await fetch(`${srv.url}/sse`)).status, 429);
      // Closing the SSE stream frees its slot.
      await clients.splice(1, 1)[0].close();
      for (let tries = 0; ; tries++) {
        const next = await connectClient(srv.url, 'legacy').catch((e: Error) => e);
        if (!(next instanceof Error)) {
          clients.push(next);
          break;
        }
        if (tries > 50) throw next;
        await new Promise((r) => setTimeout(r, 20));
      }

      const [a] = clients;
      mock.setHandler((req) => (req.lastUserText.includes('slow') ? { text: 'slow done', delayMs: 1500 } : { text: `fast ${req.lastUserText}` }));
      for (let i = 0; i < 2; i++) {
        const r = await a.callTool({ name: 'delegate', arguments: { agent: 'worker', task: `slow ${i}`, background: true } });
        assert.equal(r.isError, undefined, textOf(r));
      }
      await assert.rejects(a.callTool({ name: 'worker', arguments: { task: 'one more' } }), (err: Error) => /429|Too many runs/.test(err.message));
      // Tools that start no run still answer; another session is not affected.
      assert.equal((await a.callTool({ name: 'list_agents', arguments: {} })).isError, undefined);
      assert.equal(textOf(await clients[1].callTool({ name: 'worker', arguments: { task: 'other session' } })), 'fast other session');

      // Five fan-out tasks in a session allowed two runs: they all finish, never more than two at once.
      await until(() => mock.inFlight === 0, 10_000, 'the background runs to end');
      mock.reset();
      mock.setHandler(() => ({ text: 'fan', delayMs: 200 }));
      const fan = await clients[1].callTool({ name: 'delegate_parallel', arguments: { tasks: Array.from({ length: 5 }, (_, i) => ({ agent: 'worker', task: `t${i}` })) } });
      assert.equal((fan.structuredContent as any).ok, 5, textOf(fan));
      assert.ok(mock.maxInFlight <= 2, `max in flight ${mock.maxInFlight}`);
    } finally {
      mock.setHandler(undefined);
      await Promise.all(clients.map((c) => c.close().catch(() => {})));
      await srv.stop();
    }
  });

  it('SIGTERM: stops accepting, cancels what outlives the grace period, flushes the audit log, exits 0', async () => {
    const w = workspace({ http: { shutdownGraceS: 1 } });
    const srv = await startHttpServer({ args: w.args, env: mockEnv(mock.url), cwd: w.ws });
    mock.reset();
    mock.setHandler(() => ({ text: 'never', delayMs: 30_000 }));
    const client = await connectClient(srv.url, 'legacy');
    try {
      const call = client.callTool({ name: 'worker', arguments: { task: 'long' } }).catch((e: Error) => e);
      await until(() => mock.inFlight === 1, 10_000, 'the model request');
      const t0 = performance.now();
      srv.child.kill('SIGTERM');
      const code = await srv.exited;
      const took = performance.now() - t0;
      assert.equal(code, 0, srv.stderr());
      // grace 1 s + cooperative cancel (well under cancelGraceMs) + closing.
      assert.ok(took < 4000, `exited after ${Math.round(took)} ms`);
      const r = await call;
      assert.ok(r instanceof Error || /cancelled/.test(textOf(r)), 'the client got the cancellation or lost the connection');
      const events = readEvents(w.stateDir);
      const end = events.find((e) => e.event === 'run_end');
      assert.equal(end?.status, 'cancelled');
      assert.equal(events.at(-1)?.event, 'server_stop');
      assert.equal(events.at(-1)?.reason, 'SIGTERM');
      assert.equal(mock.closedEarly, 1, 'the model request was aborted');
    } finally {
      mock.setHandler(undefined);
      await client.close().catch(() => {});
      await srv.stop();
    }
  });

  it('SIGTERM: a run that ends within the grace period finishes and its client gets the answer', async () => {
    const w = workspace({ http: { shutdownGraceS: 10 } });
    const srv = await startHttpServer({ args: w.args, env: mockEnv(mock.url), cwd: w.ws });
    mock.reset();
    mock.setHandler(() => ({ text: 'finished in time', delayMs: 1200 }));
    const client = await connectClient(srv.url, 'modern');
    try {
      const call = client.callTool({ name: 'worker', arguments: { task: 'short' } });
      await until(() => mock.inFlight === 1, 10_000, 'the model request');
      srv.child.kill('SIGTERM');
      await until(() => /shutting down/.test(srv.stderr()) || srv.child.exitCode !== null, 5000, 'shutdown to begin');
      // New work is refused while draining.
      const late = await fetch(`${srv.url}/healthz`).then((r) => r.status, () => 'refused');
      assert.ok(late === 503 || late === 'refused', `late request: ${late}`);
      assert.equal(textOf(await call), 'finished in time');
      assert.equal(await srv.exited, 0);
      const events = readEvents(w.stateDir);
      assert.equal(events.find((e) => e.event === 'run_end')?.status, 'ok');
      assert.equal(events.at(-1)?.event, 'server_stop');
    } finally {
      mock.setHandler(undefined);
      await client.close().catch(() => {});
      await srv.stop();
    }
  });

  it('refuses to bind beyond loopback without a token, naming the reason', async () => {
    const w = workspace();
    const srv = startHttpServer({ args: [...w.args, '--host', '0.0.0.0'], env: mockEnv(mock.url), cwd: w.ws });
    await assert.rejects(srv, /exited \(2\)[\s\S]*refusing to listen on 0\.0\.0\.0 without a bearer token/);
    const ok = await startHttpServer({ args: [...w.args, '--host', '0.0.0.0'], env: mockEnv(mock.url, { DELEGATE_MCP_TOKEN: TOKEN }), cwd: w.ws });
    try {
      const port = new URL(ok.url).port;
      assert.equal((await rawPost(`http://127.0.0.1:${port}`, INIT)).status, 401);
      assert.equal((await rawPost(`http://127.0.0.1:${port}`, INIT, auth)).status, 200);
    } finally {
      await ok.stop();
    }
  });

  it('--http keeps serving when stdin closes; --http --stdio serves both at once', async () => {
    const w = workspace();
    const http = await startHttpServer({ args: w.args, env: mockEnv(mock.url), cwd: w.ws, stdin: 'pipe' });
    try {
      http.child.stdin!.end();
      await new Promise((r) => setTimeout(r, 300));
      assert.equal((await fetch(`${http.url}/healthz`)).status, 200);
    } finally {
      await http.stop();
    }

    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI, 'serve', '--http', '--stdio', '--port', '0', ...w.args],
      env: mockEnv(mock.url),
      cwd: w.ws,
      stderr: 'pipe',
    });
    let stderr = '';
    transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const stdioClient = new McpClient({ name: 'stdio', version: '1' });
    await stdioClient.connect(transport);
    try {
      await until(() => /listening on http/.test(stderr), 10_000, 'the HTTP listener');
      const url = /listening on (http:\/\/\S+)/.exec(stderr)![1];
      const httpClient = await connectClient(url, 'legacy');
      const [viaStdio, viaHttp] = await Promise.all([
        stdioClient.callTool({ name: 'worker', arguments: { task: 'via stdio' } }),
        httpClient.callTool({ name: 'worker', arguments: { task: 'via http' } }),
      ]);
      assert.equal(textOf(viaStdio), 'mock answer to: via stdio');
      assert.equal(textOf(viaHttp), 'mock answer to: via http');
      await httpClient.close();
    } finally {
      await stdioClient.close();
    }
  });
});
