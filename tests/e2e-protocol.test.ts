// Protocol promises (issue #17) through the real built server and real MCP clients: answer-first
// structuredContent, output schemas without type arrays, notes on an unknown cost, the progress
// heartbeat on every transport.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { startMockModel, type MockModel } from './mock-model/server.js';
import { CLI, ROOT, agentYaml, mockEnv, readAuditEvents, startServer, tempDir, writeTree } from './helpers.js';
import { INIT, connectClient, rawPost, startHttpServer } from './http-helpers.js';

const execFileP = promisify(execFile);

/** Every `type` keyword in a JSON Schema that is an array (["number","null"]) or the null type. */
function typeArrays(schema: unknown, at = '$'): string[] {
  if (Array.isArray(schema)) return schema.flatMap((s, i) => typeArrays(s, `${at}[${i}]`));
  if (typeof schema !== 'object' || schema === null) return [];
  const out: string[] = [];
  for (const [k, v] of Object.entries(schema)) {
    if (k === 'type' && (Array.isArray(v) || v === 'null')) out.push(`${at}.type = ${JSON.stringify(v)}`);
    out.push(...typeArrays(v, `${at}.${k}`));
  }
  return out;
}

describe('protocol: what clients and their models see', () => {
  let mock: MockModel;
  let ws: string;
  let agentsDir: string;

  before(async () => {
    mock = await startMockModel();
    ws = tempDir('dmcp-proto-');
    agentsDir = path.join(ws, 'agents');
    // claude-test-1 has no known price: its cost is unknown.
    writeTree(agentsDir, { 'answerer.yaml': agentYaml('answerer', 'anthropic/claude-test-1') });
  });
  after(async () => {
    await mock.close();
  });

  for (const era of ['legacy', 'modern'] as const) {
    it(`an agent result leads with the answer; unknown cost is left out with a note; no output schema has a type array (${era})`, async () => {
      const srv = await startServer({ args: ['--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws, era });
      try {
        const { tools } = await srv.client.listTools();
        const withOutput = tools.filter((t) => t.outputSchema);
        assert.ok(withOutput.length >= 3, `tools with an outputSchema: ${withOutput.map((t) => t.name)}`);
        for (const t of withOutput) assert.deepEqual(typeArrays(t.outputSchema), [], `${t.name} outputSchema`);
        const answerer = tools.find((t) => t.name === 'answerer')!;
        assert.deepEqual(Object.keys((answerer.outputSchema as any).properties).slice(0, 2), ['output', 'status']);

        const res = await srv.client.callTool({ name: 'answerer', arguments: { task: 'say hello' } });
        assert.equal(res.isError, undefined, JSON.stringify(res.content));
        const sc = res.structuredContent as any;
        assert.equal(sc.status, 'ok');
        const json = JSON.stringify(sc);
        assert.ok(json.startsWith('{"output":'), json.slice(0, 80));
        const at = json.indexOf('mock answer to:');
        assert.ok(at >= 0 && at < 40, `answer at ${at}: ${json.slice(0, 80)}`);
        assert.deepEqual(Object.keys(sc).slice(0, 2), ['output', 'status']);
        assert.equal('cost_usd' in sc, false, 'an unknown cost is left out, not null');
        assert.ok(
          (sc.notes as string[]).some((n) => n.startsWith('cost unknown: no price known for anthropic/claude-test-1')),
          JSON.stringify(sc.notes),
        );
      } finally {
        await srv.close();
      }
    });
  }

  for (const transport of ['stdio', 'http'] as const) {
    it(`progress comes at least every 5 s while the model is silent (${transport})`, async () => {
      mock.setHandler(() => ({ text: 'slow answer', delayMs: 11_500 }));
      const env = mockEnv(mock.url);
      const args = ['--agents', agentsDir, '--workspace', ws];
      const http = transport === 'http' ? await startHttpServer({ args, env, cwd: ws }) : undefined;
      const stdio = transport === 'stdio' ? await startServer({ args, env, cwd: ws }) : undefined;
      const client = http ? await connectClient(http.url, 'legacy') : stdio!.client;
      try {
        const stamps: number[] = [];
        const t0 = performance.now();
        const res = await client.callTool(
          { name: 'answerer', arguments: { task: 'take your time' } },
          { onprogress: () => stamps.push(performance.now()), resetTimeoutOnProgress: true },
        );
        const end = performance.now();
        assert.equal((res.structuredContent as any).status, 'ok');
        assert.ok(stamps.length >= 3, `progress notifications: ${stamps.length}`);
        const gaps = [...stamps, end].map((s, i, all) => s - (i ? all[i - 1] : t0));
        assert.ok(Math.max(...gaps) <= 5000, `gaps ${gaps.map((g) => g.toFixed(0))}`);
      } finally {
        mock.reset();
        if (http) {
          await client.close().catch(() => {});
          await http.stop();
        }
        await stdio?.close();
      }
    });
  }
});

/** A raw stdio conversation with the built server: write lines, read the JSON-RPC replies. */
function rawStdio(args: string[], env: Record<string, string>, cwd: string) {
  const child = spawn(process.execPath, [CLI, 'serve', ...args], { env, cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  const replies: any[] = [];
  let buf = '';
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      replies.push(JSON.parse(buf.slice(0, nl)));
      buf = buf.slice(nl + 1);
    }
  });
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, sig) => resolve(code ?? sig ?? -1)));
  return {
    child,
    replies,
    exited,
    stderr: () => stderr,
    write: (line: string) => child.stdin!.write(line.endsWith('\n') ? line : line + '\n'),
    /** Waits for the n-th reply (1-based) to arrive. */
    async reply(n: number, timeoutMs = 10_000): Promise<any> {
      const t0 = Date.now();
      while (replies.length < n) {
        if (Date.now() - t0 > timeoutMs) throw new Error(`no reply #${n} after ${timeoutMs} ms (got ${JSON.stringify(replies)}); stderr:\n${stderr}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      return replies[n - 1];
    },
  };
}

describe('protocol: stdio never dies of input, and drains on SIGTERM', () => {
  let mock: MockModel;
  let ws: string;
  let agentsDir: string;
  let stateDir: string;
  let cfg: string;

  before(async () => {
    mock = await startMockModel();
    ws = tempDir('dmcp-stdio-');
    agentsDir = path.join(ws, 'agents');
    stateDir = path.join(ws, 'state');
    cfg = path.join(ws, 'mcp.json');
    writeTree(agentsDir, { 'answerer.yaml': agentYaml('answerer', 'anthropic/claude-test-1') });
    writeFileSync(cfg, JSON.stringify({ delegate: { stateDir, stdio: { shutdownGraceS: 1 } } }));
  });
  after(async () => {
    await mock.close();
  });

  it('answers a garbage line with -32700 and an invalid JSON-RPC object with -32600, and keeps serving', async () => {
    const srv = rawStdio(['--config', cfg, '--agents', agentsDir, '--workspace', ws], mockEnv(mock.url), ws);
    try {
      srv.write('this is not json');
      const parse = await srv.reply(1);
      assert.equal(parse.error.code, -32700);
      assert.equal(parse.id, null);
      assert.match(parse.error.message, /not valid JSON/);
      srv.write('{"jsonrpc":"2.0","id":7,"method":42}');
      const invalid = await srv.reply(2);
      assert.equal(invalid.error.code, -32600);
      assert.equal(invalid.id, 7);
      srv.write('{"hello":"world"}');
      const noRpc = await srv.reply(3);
      assert.equal(noRpc.error.code, -32600);
      assert.equal(noRpc.id, null);
      srv.write('[{"jsonrpc":"2.0","id":8,"method":"ping"}]');
      const batch = await srv.reply(4);
      assert.equal(batch.error.code, -32600);
      assert.match(batch.error.message, /batches are not supported/);
      // Still alive: a normal opening and a call work.
      srv.write(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }));
      const init = await srv.reply(5);
      assert.equal(init.id, 1);
      assert.equal(init.result.serverInfo.name, 'delegate-mcp');
      srv.write('{"jsonrpc":"2.0","method":"notifications/initialized"}');
      srv.write(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'answerer', arguments: { task: 'still there?' } } }));
      const call = await srv.reply(6);
      assert.equal(call.id, 2);
      assert.equal(call.result.structuredContent.status, 'ok');
      assert.equal(srv.replies.length, 6);
    } finally {
      srv.child.kill('SIGKILL');
      await srv.exited;
    }
  });

  it('refuses an 11 MiB message with an error naming the limit while a run in flight completes', async () => {
    mock.setHandler((req) => (req.lastUserText.includes('slow') ? { text: 'slow answer', delayMs: 1500 } : { text: `quick: ${req.lastUserText.slice(0, 20)}` }));
    const srv = await startServer({ args: ['--config', cfg, '--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
    try {
      const inFlight = srv.client.callTool({ name: 'answerer', arguments: { task: 'slow one' } });
      while (mock.inFlight < 1) await new Promise((r) => setTimeout(r, 10));
      const huge = 'x'.repeat(11 * 1024 * 1024);
      await assert.rejects(srv.client.callTool({ name: 'answerer', arguments: { task: huge } }), (err: Error) => {
        assert.match(err.message, /over the limit of 10485760 bytes \(delegate\.stdio\.maxMessageBytes\)/);
        return true;
      });
      const first = await inFlight;
      assert.equal((first.structuredContent as any).status, 'ok');
      assert.equal((first.structuredContent as any).output, 'slow answer');
      const next = await srv.client.callTool({ name: 'answerer', arguments: { task: 'after' } });
      assert.equal((next.structuredContent as any).status, 'ok');
      assert.equal(srv.transport.pid !== null && isAlive(srv.transport.pid), true);
    } finally {
      mock.reset();
      await srv.close();
    }
  });

  it('SIGTERM with 8 runs going: new calls refused, every caller gets its cancelled result, run_end for each, exit 0', async () => {
    mock.setHandler(() => ({ text: 'too late', delayMs: 60_000 }));
    const srv = await startServer({ args: ['--config', cfg, '--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
    const proc = (srv.transport as any)._process as ChildProcess;
    const exited = new Promise<number | string>((resolve) => proc.on('exit', (code, sig) => resolve(code ?? sig ?? -1)));
    try {
      const calls = Array.from({ length: 8 }, (_, i) => srv.client.callTool({ name: 'delegate', arguments: { agent: 'answerer', task: `long ${i}` } }));
      const t0 = Date.now();
      while (mock.inFlight < 8 && Date.now() - t0 < 15_000) await new Promise((r) => setTimeout(r, 20));
      assert.equal(mock.inFlight, 8);
      proc.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 200));
      await assert.rejects(srv.client.callTool({ name: 'delegate', arguments: { agent: 'answerer', task: 'too late' } }), /shutting down \(SIGTERM\)/);
      const results = await Promise.all(calls);
      assert.equal(results.length, 8);
      const runIds = new Set<string>();
      for (const r of results) {
        assert.equal(r.isError, true);
        assert.equal((r.structuredContent as any).status, 'cancelled');
        runIds.add((r.structuredContent as any).run_id);
      }
      assert.equal(runIds.size, 8);
      assert.equal(await exited, 0);
      const ends = readAuditEvents(stateDir).filter((e) => e.event === 'run_end' && runIds.has(e.run_id));
      assert.equal(ends.length, 8);
      for (const e of ends) assert.equal(e.status, 'cancelled');
    } finally {
      mock.reset();
      await srv.close();
      proc.kill('SIGKILL');
    }
  });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('protocol: downstream MCP servers (cause of a failure, results of any size)', () => {
  const FIXTURE = path.join(ROOT, 'tests', 'fixtures', 'mcp-echo-server.mjs');
  let mock: MockModel;
  let ws: string;
  let agentsDir: string;
  let closedPort: number;

  before(async () => {
    mock = await startMockModel();
    ws = tempDir('dmcp-down-');
    agentsDir = path.join(ws, 'agents');
    writeTree(agentsDir, {
      'user.yaml': 'name: user\ndescription: Uses downstream MCP servers.\nmodel: anthropic/claude-test-1\nmax_turns: 4\ntools:\n  mcp: [echo, gone]\n',
    });
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    closedPort = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
  });
  after(async () => {
    await mock.close();
  });

  const serve = (tools: Record<string, unknown> = {}) => {
    const cfg = path.join(ws, `mcp-${Object.keys(tools).length}.json`);
    writeFileSync(
      cfg,
      JSON.stringify({
        mcpServers: { echo: { command: process.execPath, args: [FIXTURE] }, gone: { url: `http://127.0.0.1:${closedPort}/mcp` } },
        delegate: { stateDir: path.join(ws, 'state'), tools },
      }),
    );
    return startServer({ args: ['--config', cfg, '--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
  };

  /** Runs `user` on a directive; returns the tool result the model was fed. */
  const fedResult = async (srv: Awaited<ReturnType<typeof serve>>, directive: string) => {
    const before = mock.requests.length;
    const res = await srv.client.callTool({ name: 'user', arguments: { task: directive } });
    assert.equal((res.structuredContent as any)?.status, 'ok', JSON.stringify(res.content));
    const fed = mock.requests.slice(before)[1]?.toolResults ?? [];
    assert.equal(fed.length, 1);
    return fed[0];
  };

  it('a 12 MB downstream result is read and cut to the cap with a note; an unreachable server is reported with its real cause', async () => {
    const srv = await serve();
    try {
      const r = await fedResult(srv, '[[tool:mcp__echo__big {"bytes":12000000}]]');
      assert.equal(r.isError, false, r.content.slice(0, 300));
      assert.ok(r.content.length < 70 * 1024, `${r.content.length} characters fed to the model`);
      assert.match(r.content, /\[output truncated: the tool returned 12000000 bytes; only the first 64 KiB are shown\]$/);
      // The unreachable server was tried when the run started: the log names the cause, not "fetch failed".
      assert.match(srv.stderr(), new RegExp(`MCP server "gone" could not be reached \\(http://127\\.0\\.0\\.1:${closedPort}/mcp\\): connect ECONNREFUSED`));
      assert.doesNotMatch(srv.stderr(), /fetch failed/);
      const after = await fedResult(srv, '[[tool:mcp__echo__echo {"text":"still here"}]]');
      assert.match(after.content, /^echo: still here/);
    } finally {
      await srv.close();
    }
  });

  it('a downstream message over delegate.tools.mcpMaxMessageBytes is an error naming the limit, and the server restarts', async () => {
    const srv = await serve({ mcpMaxMessageBytes: 1024 * 1024 });
    try {
      const r = await fedResult(srv, '[[tool:mcp__echo__big {"bytes":2000000}]]');
      assert.equal(r.isError, true);
      assert.match(r.content, /answered with a message over the limit of 1048576 bytes \(delegate\.tools\.mcpMaxMessageBytes\)/);
      const after = await fedResult(srv, '[[tool:mcp__echo__echo {"text":"again"}]]');
      assert.match(after.content, /^echo: again/);
    } finally {
      await srv.close();
    }
  });
});

describe('protocol: HTTP drain', () => {
  let mock: MockModel;
  before(async () => {
    mock = await startMockModel();
  });
  after(async () => {
    await mock.close();
  });

  it('during the grace period new requests get 503 with retry-after (not ECONNREFUSED); the running call gets its cancelled result; exit 0', async () => {
    const ws = tempDir('dmcp-drain-');
    const stateDir = path.join(ws, 'state');
    writeTree(path.join(ws, 'agents'), { 'answerer.yaml': agentYaml('answerer', 'anthropic/claude-test-1') });
    writeFileSync(path.join(ws, 'mcp.json'), JSON.stringify({ delegate: { stateDir, http: { shutdownGraceS: 3 } } }));
    mock.setHandler(() => ({ text: 'never', delayMs: 60_000 }));
    const srv = await startHttpServer({ args: ['--config', path.join(ws, 'mcp.json'), '--agents', path.join(ws, 'agents'), '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
    const client = await connectClient(srv.url, 'legacy');
    try {
      const call = client.callTool({ name: 'delegate', arguments: { agent: 'answerer', task: 'long' } });
      while (mock.inFlight < 1) await new Promise((r) => setTimeout(r, 20));
      srv.child.kill('SIGTERM');
      // The signal is handled asynchronously: /healthz answers 200 until the drain begins.
      let health = await fetch(`${srv.url}/healthz`);
      for (const t0 = Date.now(); health.status === 200 && Date.now() - t0 < 5000; health = await fetch(`${srv.url}/healthz`)) await new Promise((r) => setTimeout(r, 20));
      assert.equal(health.status, 503);
      const init = await rawPost(srv.url, INIT);
      assert.equal(init.status, 503);
      assert.equal(init.headers.get('retry-after'), '5');
      assert.match(((await init.json()) as any).error.message, /shutting down/);
      const r = await call;
      assert.equal((r.structuredContent as any).status, 'cancelled');
      assert.equal(await srv.exited, 0);
      const end = readAuditEvents(stateDir).find((e) => e.event === 'run_end' && e.run_id === (r.structuredContent as any).run_id);
      assert.equal(end?.status, 'cancelled');
    } finally {
      mock.reset();
      await client.close().catch(() => {});
      await srv.stop();
    }
  });
});

describe('protocol: structured output (output_schema)', () => {
  const SCHEMA_YAML = `output_schema:
  type: object
  properties:
    verdict: {type: string, enum: [pass, fail]}
    score: {type: number}
  required: [verdict, score]
  additionalProperties: false
`;
  const SCHEMA = {
    type: 'object',
    properties: { verdict: { type: 'string', enum: ['pass', 'fail'] }, score: { type: 'number' } },
    required: ['verdict', 'score'],
    additionalProperties: false,
  };
  let mock: MockModel;
  let ws: string;
  let srv: Awaited<ReturnType<typeof startServer>>;
  const agents = [
    ['judge-anthropic', 'anthropic/claude-test-1', 'anthropic'],
    ['judge-responses', 'openai/gpt-test-1', 'openai-responses'],
    ['judge-chat', 'openai-chat/llama-test', 'openai-chat'],
  ] as const;

  before(async () => {
    mock = await startMockModel();
    ws = tempDir('dmcp-structured-');
    writeTree(path.join(ws, 'agents'), Object.fromEntries(agents.map(([name, model]) => [`${name}.yaml`, agentYaml(name, model, SCHEMA_YAML)])));
    srv = await startServer({ args: ['--agents', path.join(ws, 'agents'), '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
  });
  after(async () => {
    await srv?.close();
    await mock.close();
  });

  it('the agent tool advertises its output_schema as structuredContent.output', async () => {
    const { tools } = await srv.client.listTools();
    for (const [name] of agents) {
      const t = tools.find((x) => x.name === name)!;
      assert.deepEqual((t.outputSchema as any).properties.output, SCHEMA, name);
      assert.deepEqual(typeArrays(t.outputSchema), []);
    }
  });

  for (const [name, , api] of agents) {
    it(`${api}: the schema goes to the API natively; a valid answer is structuredContent.output`, async () => {
      const before = mock.requests.length;
      const res = await srv.client.callTool({ name, arguments: { task: 'judge it [[json {"verdict":"pass","score":0.9}]]' } });
      assert.equal(res.isError, undefined, JSON.stringify(res.content));
      const sc = res.structuredContent as any;
      assert.equal(sc.status, 'ok');
      assert.deepEqual(sc.output, { verdict: 'pass', score: 0.9 });
      assert.equal(sc.turns, 1);
      assert.ok(JSON.stringify(sc).startsWith('{"output":{"verdict":"pass"'));
      const sent = mock.requests.slice(before);
      assert.equal(sent.length, 1);
      assert.equal(sent[0].api, api);
      assert.deepEqual(sent[0].responseFormat?.schema, SCHEMA);
      if (api !== 'anthropic') {
        assert.equal(sent[0].responseFormat?.strict, true);
        assert.equal(sent[0].responseFormat?.name, name);
      }
    });

    it(`${api}: an answer that violates the schema gets one repair turn naming the violation`, async () => {
      const before = mock.requests.length;
      const res = await srv.client.callTool({ name, arguments: { task: 'judge [[json {"verdict":"maybe","score":1}]] [[repair {"verdict":"fail","score":0.1}]]' } });
      assert.equal(res.isError, undefined, JSON.stringify(res.content));
      const sc = res.structuredContent as any;
      assert.equal(sc.status, 'ok');
      assert.deepEqual(sc.output, { verdict: 'fail', score: 0.1 });
      assert.equal(sc.turns, 2);
      const sent = mock.requests.slice(before);
      assert.equal(sent.length, 2);
      assert.match(sent[1].lastUserText, /does not match the required JSON Schema: at \/verdict: must be equal to one of the allowed values/);
    });

    it(`${api}: an answer still wrong after the repair turn is an isError naming the first violation`, async () => {
      const before = mock.requests.length;
      const res = await srv.client.callTool({ name, arguments: { task: 'judge [[json {"verdict":"pass"}]]' } });
      assert.equal(res.isError, true);
      const text = (res.content as any[])[0].text as string;
      assert.match(text, /the answer does not match the agent's output_schema: at \(root\): must have the property "score" \(also after a repair turn\)/);
      assert.equal(mock.requests.length - before, 2);
    });
  }

  it('agents validate rejects an invalid output_schema naming file and line', async () => {
    const dir = tempDir('dmcp-badschema-');
    writeTree(dir, {
      'bad.yaml': 'name: bad\ndescription: an agent with a broken output schema\noutput_schema:\n  type: object\n  properties:\n    n:\n      type: numbr\n',
    });
    await assert.rejects(execFileP(process.execPath, [CLI, 'agents', 'validate', dir]), (err: any) => {
      assert.equal(err.code, 1);
      assert.match(err.stderr, /bad\.yaml:7:\d+: output_schema\.properties\.n\.type: not a valid JSON Schema/);
      return true;
    });
  });
});

describe('protocol: create_agent drafts through the orchestrator', () => {
  const DRAFT_MARKER = 'You design agent definitions for delegate-mcp';
  const DRAFT = JSON.stringify({ name: 'summariser', description: 'Summarises a text for a busy reader.', instructions: 'Summarise the text in three lines.' });
  let mock: MockModel;
  let ws: string;

  before(async () => {
    mock = await startMockModel();
    ws = tempDir('dmcp-create-');
    writeTree(path.join(ws, 'agents'), { 'answerer.yaml': agentYaml('answerer', 'anthropic/claude-test-1') });
  });
  after(async () => {
    await mock.close();
  });

  const serve = (name: string, delegate: Record<string, unknown> = {}) => {
    const cfg = path.join(ws, `${name}.json`);
    const stateDir = path.join(ws, `state-${name}`);
    writeFileSync(cfg, JSON.stringify({ delegate: { stateDir, defaultModel: 'anthropic/claude-test-1', ...delegate } }));
    return startServer({ args: ['--config', cfg, '--agents', path.join(ws, 'agents'), '--workspace', ws], env: mockEnv(mock.url), cwd: ws }).then((srv) => ({ srv, stateDir }));
  };

  it('the drafting is a run: progress, committed to the budget books (budget_status), audited', async () => {
    mock.setHandler((req) => (req.system.includes(DRAFT_MARKER) ? { text: DRAFT, usage: { input_tokens: 300, output_tokens: 40 } } : { text: 'other' }));
    const { srv, stateDir } = await serve('books');
    try {
      const progress: string[] = [];
      const res = await srv.client.callTool({ name: 'create_agent', arguments: { description: 'an agent that summarises texts' } }, { onprogress: (p) => progress.push(p.message ?? '') });
      assert.equal(res.isError, undefined, JSON.stringify(res.content));
      assert.equal((res.structuredContent as any).name, 'summariser');
      assert.ok(progress.some((m) => m.startsWith('create_agent · turn 1/1')), progress.join('\n'));
      const books = (await srv.client.callTool({ name: 'budget_status', arguments: {} })).structuredContent as any;
      assert.equal(books.agents.create_agent?.spent.tokens, 340, JSON.stringify(books.agents));
      const events = readAuditEvents(stateDir);
      const start = events.find((e) => e.event === 'run_start' && e.agent === 'create_agent');
      assert.ok(start, 'run_start of the drafting run');
      const ofRun = events.filter((e) => e.run_id === start.run_id).map((e) => e.event);
      assert.deepEqual(ofRun.filter((e) => ['budget_reserve', 'model_call', 'budget_commit', 'run_end'].includes(e)), ['budget_reserve', 'model_call', 'budget_commit', 'run_end']);
      assert.equal(events.find((e) => e.run_id === start.run_id && e.event === 'run_end').status, 'ok');
    } finally {
      mock.reset();
      await srv.close();
    }
  });

  it('is refused before any model call when the daily budget is spent, and by the per-call budget argument', async () => {
    const { srv } = await serve('spent', { budget: { daily_tokens: 1 } });
    try {
      const before = mock.requests.length;
      const res = await srv.client.callTool({ name: 'create_agent', arguments: { description: 'an agent that summarises texts' } });
      assert.equal(res.isError, true);
      assert.match((res.content as any[])[0].text, /drafting run run_\S+ error: .*server daily token limit/);
      assert.equal(mock.requests.length, before, 'no model call was made');
    } finally {
      await srv.close();
    }
    const { srv: srv2 } = await serve('percall');
    try {
      const before = mock.requests.length;
      const res = await srv2.client.callTool({ name: 'create_agent', arguments: { description: 'an agent that summarises texts', budget: { run_tokens: 5 } } });
      assert.equal(res.isError, true);
      assert.match((res.content as any[])[0].text, /drafting run run_\S+ error: .*token limit/);
      assert.equal(mock.requests.length, before, 'no model call was made');
    } finally {
      await srv2.close();
    }
  });

  it('cancelling the call cancels the drafting run (its model request is aborted, run_end cancelled)', async () => {
    mock.setHandler(() => ({ text: DRAFT, delayMs: 60_000 }));
    const { srv, stateDir } = await serve('cancel');
    try {
      const ac = new AbortController();
      const call = srv.client.callTool({ name: 'create_agent', arguments: { description: 'slow' } }, { signal: ac.signal });
      while (mock.inFlight < 1) await new Promise((r) => setTimeout(r, 20));
      ac.abort('stop');
      await assert.rejects(call);
      const drafting = () => {
        const events = readAuditEvents(stateDir);
        const start = events.find((e) => e.event === 'run_start' && e.agent === 'create_agent');
        return events.find((e) => e.event === 'run_end' && e.run_id === start?.run_id);
      };
      for (const t0 = Date.now(); !drafting() && Date.now() - t0 < 5000; ) await new Promise((r) => setTimeout(r, 50));
      assert.equal(drafting()?.status, 'cancelled');
      assert.equal(mock.closedEarly, 1);
    } finally {
      mock.reset();
      await srv.close();
    }
  });
});

describe('protocol: approvals for 2026-07-28 clients (input_required)', () => {
  let mock: MockModel;
  let ws: string;

  before(async () => {
    mock = await startMockModel();
    ws = tempDir('dmcp-mrtr-');
    writeTree(ws, { 'src/app.ts': 'export const x = 1; // MARKER-MRTR\n', 'src/other.ts': 'export const y = 2; // MARKER-OTHER\n' });
    writeTree(path.join(ws, 'agents'), {
      'asker.yaml': 'name: asker\ndescription: Reads files, with approval.\nmodel: anthropic/claude-test-1\nmax_turns: 4\npermissions:\n  ask: ["Read(src/**)"]\n',
    });
  });
  after(async () => {
    await mock.close();
  });

  /** A 2026-07-28 SDK client over stdio; with `elicit`, it declares elicitation and answers with it. */
  async function modernClient(elicit?: (params: any) => Promise<any>) {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI, 'serve', '--agents', path.join(ws, 'agents'), '--workspace', ws],
      env: mockEnv(mock.url),
      cwd: ws,
      stderr: 'pipe',
    });
    const client = new Client(
      { name: 'mrtr-tests', version: '1.0.0' },
      { versionNegotiation: { mode: { pin: '2026-07-28' } }, ...(elicit && { capabilities: { elicitation: { form: {} } } }) },
    );
    if (elicit) client.setRequestHandler('elicitation/create', async (req: any) => elicit(req.params));
    await client.connect(transport);
    return client;
  }

  const readTask = { task: 'read it [[tool:read_file {"path":"src/app.ts"}]]' };
  const fedToModel = (before: number) => mock.requests.slice(before)[1]?.toolResults ?? [];

  it('approve: the run waits for the client\'s answer and continues with the call allowed', async () => {
    const asked: any[] = [];
    const client = await modernClient(async (p) => (asked.push(p), { action: 'accept', content: { decision: 'allow_once' } }));
    try {
      const before = mock.requests.length;
      const res = await client.callTool({ name: 'asker', arguments: readTask });
      assert.equal((res.structuredContent as any)?.status, 'ok', JSON.stringify(res.content));
      assert.equal(asked.length, 1);
      assert.match(asked[0].message, /^agent asker wants to read `src\/app\.ts`\. Rule "Read\(src\/\*\*\)" requires your approval/);
      const fed = fedToModel(before);
      assert.equal(fed.length, 1);
      assert.equal(fed[0].isError, false, fed[0].content);
      assert.match(fed[0].content, /MARKER-MRTR/);
    } finally {
      await client.close();
    }
  });

  it('deny: the call is refused to the model with the reason; the run still ends', async () => {
    const client = await modernClient(async () => ({ action: 'accept', content: { decision: 'deny' } }));
    try {
      const before = mock.requests.length;
      const res = await client.callTool({ name: 'asker', arguments: readTask });
      assert.equal((res.structuredContent as any)?.status, 'ok', JSON.stringify(res.content));
      const fed = fedToModel(before);
      assert.equal(fed.length, 1);
      assert.equal(fed[0].isError, true);
      assert.match(fed[0].content, /^permission denied: .*denied/);
      assert.doesNotMatch(fed[0].content, /MARKER-MRTR/);
    } finally {
      await client.close();
    }
  });

  /** Every tool result fed to the model since `before` (runs may interleave). */
  const allFed = (before: number) => mock.requests.slice(before).flatMap((r) => r.toolResults ?? []);

  it('delegate: the run asks through input_required like an agent tool, and continues on the answer', async () => {
    const asked: any[] = [];
    const client = await modernClient(async (p) => (asked.push(p), { action: 'accept', content: { decision: 'allow_once' } }));
    try {
      const before = mock.requests.length;
      const res = await client.callTool({ name: 'delegate', arguments: { agent: 'asker', ...readTask } });
      assert.equal((res.structuredContent as any)?.status, 'ok', JSON.stringify(res.content));
      assert.equal(asked.length, 1);
      assert.match(asked[0].message, /^agent asker wants to read `src\/app\.ts`/);
      const fed = fedToModel(before);
      assert.equal(fed.length, 1);
      assert.equal(fed[0].isError, false, fed[0].content);
      assert.match(fed[0].content, /MARKER-MRTR/);
    } finally {
      await client.close();
    }
  });

  it('delegate_parallel: each task\'s question reaches the client; each answer settles its own task', async () => {
    const asked: string[] = [];
    const client = await modernClient(async (p) => {
      asked.push(p.message);
      return { action: 'accept', content: { decision: /src\/app\.ts/.test(p.message) ? 'allow_once' : 'deny' } };
    });
    try {
      const before = mock.requests.length;
      const res: any = await client.callTool({
        name: 'delegate_parallel',
        arguments: {
          tasks: [
            { agent: 'asker', task: 'read it [[tool:read_file {"path":"src/app.ts"}]]' },
            { agent: 'asker', task: 'read it [[tool:read_file {"path":"src/other.ts"}]]' },
          ],
        },
      });
      assert.equal(res.structuredContent?.ok, 2, JSON.stringify(res.content));
      assert.equal(asked.length, 2);
      assert.deepEqual(asked.map((m) => /`(src\/\w+\.ts)`/.exec(m)?.[1]).sort(), ['src/app.ts', 'src/other.ts']);
      const fed = allFed(before);
      assert.equal(fed.length, 2);
      const allowed = fed.filter((f: any) => !f.isError);
      const denied = fed.filter((f: any) => f.isError);
      assert.equal(allowed.length, 1);
      assert.match(allowed[0].content, /MARKER-MRTR/);
      assert.equal(denied.length, 1);
      assert.match(denied[0].content, /^permission denied: .*denied/);
      assert.doesNotMatch(denied[0].content, /MARKER-OTHER/);
    } finally {
      await client.close();
    }
  });

  it('a background delegate cannot ask (its call has returned): denied with that reason, seen in run_result', async () => {
    const asked: any[] = [];
    const client = await modernClient(async (p) => (asked.push(p), { action: 'accept', content: { decision: 'allow_once' } }));
    try {
      const before = mock.requests.length;
      const started: any = await client.callTool({ name: 'delegate', arguments: { agent: 'asker', ...readTask, background: true } });
      assert.equal(started.structuredContent?.status, 'running', JSON.stringify(started.content));
      const res: any = await client.callTool({ name: 'run_result', arguments: { run_id: started.structuredContent.run_id, wait_s: 30 } });
      assert.equal(res.structuredContent?.status, 'ok', JSON.stringify(res.content));
      assert.equal(asked.length, 0);
      const fed = fedToModel(before);
      assert.equal(fed.length, 1);
      assert.equal(fed[0].isError, true);
      assert.match(fed[0].content, /^permission denied: approval needed but no client could answer \(a background run cannot ask on an MCP 2026-07-28 connection: its call has returned/);
    } finally {
      await client.close();
    }
  });

  it('a 2026-07-28 client without elicitation is denied at once, with the reason', async () => {
    const client = await modernClient();
    try {
      const before = mock.requests.length;
      const res = await client.callTool({ name: 'asker', arguments: readTask });
      assert.equal((res.structuredContent as any)?.status, 'ok', JSON.stringify(res.content));
      const fed = fedToModel(before);
      assert.equal(fed.length, 1);
      assert.match(fed[0].content, /^permission denied: approval needed but no client could answer \(the client did not declare the elicitation capability\)/);
    } finally {
      await client.close();
    }
  });
});

/** Reads SSE events from a fetch response until `until` says stop; returns them (id, parsed data). */
async function readSse(res: Response, until: (ev: { id?: string; data?: any }) => boolean, timeoutMs = 15_000): Promise<{ id?: string; data?: any }[]> {
  const reader = res.body!.getReader();
  const events: { id?: string; data?: any }[] = [];
  let buf = '';
  const t0 = Date.now();
  for (;;) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`no matching SSE event within ${timeoutMs} ms: ${JSON.stringify(events)}`);
    const { value, done } = await reader.read();
    if (done) return events;
    buf += new TextDecoder().decode(value);
    let sep: number;
    while ((sep = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, sep);
      buf = buf.slice(sep + 2);
      const ev: { id?: string; data?: any } = {};
      for (const line of block.split('\n')) {
        if (line.startsWith('id: ')) ev.id = line.slice(4);
        else if (line.startsWith('data: ') && line.length > 6) ev.data = JSON.parse(line.slice(6));
      }
      events.push(ev);
      if (until(ev)) {
        await reader.cancel().catch(() => {});
        return events;
      }
    }
  }
}

describe('protocol: resumable 2025-era Streamable HTTP streams', () => {
  let mock: MockModel;
  before(async () => {
    mock = await startMockModel();
  });
  after(async () => {
    await mock.close();
  });

  const serve = async (http: Record<string, unknown>) => {
    const ws = tempDir('dmcp-resume-');
    const stateDir = path.join(ws, 'state');
    writeTree(path.join(ws, 'agents'), { 'answerer.yaml': agentYaml('answerer', 'anthropic/claude-test-1') });
    writeFileSync(path.join(ws, 'mcp.json'), JSON.stringify({ delegate: { stateDir, http } }));
    const srv = await startHttpServer({ args: ['--config', path.join(ws, 'mcp.json'), '--agents', path.join(ws, 'agents'), '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
    return { srv, stateDir };
  };

  /** initialize + initialized over raw HTTP; then a tools/call whose stream is dropped after its first event. */
  const startAndDrop = async (url: string) => {
    const init = await rawPost(url, INIT);
    const sid = init.headers.get('mcp-session-id')!;
    await readSse(init, (e) => e.data?.id === 0);
    const h = { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
    await rawPost(url, { jsonrpc: '2.0', method: 'notifications/initialized' }, h);
    const ac = new AbortController();
    const call = await rawPost(url, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'answerer', arguments: { task: 'slow one' } } }, h, ac.signal);
    const [first] = await readSse(call, (e) => e.id !== undefined);
    ac.abort(); // the client's connection drops
    return { h, lastEventId: first.id! };
  };

  it('a client whose response stream drops resumes it with Last-Event-ID and still gets its result', async () => {
    mock.setHandler(() => ({ text: 'worth the wait', delayMs: 3000 }));
    const { srv } = await serve({ resumeGraceS: 30 });
    try {
      const { h, lastEventId } = await startAndDrop(srv.url);
      await new Promise((r) => setTimeout(r, 1000));
      const resumed = await fetch(`${srv.url}/mcp`, { headers: { ...h, accept: 'text/event-stream', 'last-event-id': lastEventId } });
      assert.equal(resumed.status, 200);
      const events = await readSse(resumed, (e) => e.data?.id === 1);
      const result = events.find((e) => e.data?.id === 1)!.data.result;
      assert.equal(result.structuredContent.status, 'ok');
      assert.equal(result.structuredContent.output, 'worth the wait');
      assert.equal(mock.closedEarly, 0, 'the model request was not aborted');
    } finally {
      mock.reset();
      await srv.stop();
    }
  });

  it('during the resume grace, DELETE of the session and an explicit notifications/cancelled still cancel at once', async () => {
    mock.setHandler(() => ({ text: 'never read', delayMs: 20_000 }));
    const { srv } = await serve({ resumeGraceS: 30 });
    try {
      const a = await startAndDrop(srv.url);
      for (const t0 = Date.now(); mock.inFlight < 1 && Date.now() - t0 < 5000; ) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(mock.closedEarly, 0, 'a drop alone does not cancel');
      const del = await fetch(`${srv.url}/mcp`, { method: 'DELETE', headers: a.h });
      assert.equal(del.status, 200);
      for (const t0 = Date.now(); mock.closedEarly < 1 && Date.now() - t0 < 3000; ) await new Promise((r) => setTimeout(r, 20));
      assert.equal(mock.closedEarly, 1, 'DELETE cancelled the run');
      const b = await startAndDrop(srv.url);
      for (const t0 = Date.now(); mock.inFlight < 1 && Date.now() - t0 < 5000; ) await new Promise((r) => setTimeout(r, 20));
      await rawPost(srv.url, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 1, reason: 'user pressed stop' } }, b.h);
      for (const t0 = Date.now(); mock.closedEarly < 2 && Date.now() - t0 < 3000; ) await new Promise((r) => setTimeout(r, 20));
      assert.equal(mock.closedEarly, 2, 'notifications/cancelled cancelled the run');
    } finally {
      mock.reset();
      await srv.stop();
    }
  });

  it('a dropped stream that is not resumed within delegate.http.resumeGraceS cancels its run', async () => {
    mock.setHandler(() => ({ text: 'never read', delayMs: 20_000 }));
    const { srv, stateDir } = await serve({ resumeGraceS: 1 });
    try {
      await startAndDrop(srv.url);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(mock.closedEarly, 0, 'still running within the grace');
      const t0 = Date.now();
      while (mock.closedEarly === 0 && Date.now() - t0 < 8000) await new Promise((r) => setTimeout(r, 50));
      assert.equal(mock.closedEarly, 1, 'the model request was aborted after the grace');
      let end: any;
      for (const t1 = Date.now(); !end && Date.now() - t1 < 5000; await new Promise((r) => setTimeout(r, 50))) {
        end = readAuditEvents(stateDir).find((e) => e.event === 'run_end');
      }
      assert.equal(end?.status, 'cancelled');
    } finally {
      mock.reset();
      await srv.stop();
    }
  });
});

// Agent tools' schemas are compiled (ajv) on first use or after tools/list, not while initialize waits;
// a user's schema is still compiled when the tool is registered, so a broken one is refused there.
describe('protocol: agent tool schemas', () => {
  let mock: MockModel;
  let ws: string;
  let srv: Awaited<ReturnType<typeof startServer>>;

  before(async () => {
    mock = await startMockModel();
    ws = tempDir('dmcp-schemas-');
    writeTree(path.join(ws, 'agents'), {
      'plain.yaml': agentYaml('plain', 'anthropic/claude-test-1'),
      // A valid object schema whose $ref points nowhere: ajv cannot compile it.
      'broken.yaml': agentYaml('broken', 'anthropic/claude-test-1', 'input_schema:\n  type: object\n  properties:\n    a:\n      $ref: "#/$defs/missing"\n'),
      'typed.yaml': agentYaml('typed', 'anthropic/claude-test-1', 'input_schema:\n  type: object\n  properties:\n    task: {type: string}\n    level: {type: integer, minimum: 1}\n  required: [task]\n'),
    });
    srv = await startServer({ args: ['--agents', path.join(ws, 'agents'), '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
  });
  after(async () => {
    await srv?.close();
    await mock.close();
  });

  it('an agent whose input_schema cannot be compiled is not offered, and the session serves the others', async () => {
    const names = (await srv.client.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes('plain') && names.includes('typed'), names.join(','));
    assert.ok(!names.includes('broken'), names.join(','));
    assert.match(srv.stderr(), /agent "broken" \(.*broken\.yaml\) is not offered: /);
  });

  it('arguments are validated against the advertised input schema (default and user-written)', async () => {
    mock.setHandler(() => ({ text: 'fine' }));
    const missing = await srv.client.callTool({ name: 'plain', arguments: { context: 'no task' } });
    assert.equal(missing.isError, true);
    assert.match(JSON.stringify(missing.content), /Input validation error: Invalid arguments for tool plain: .*task/);
    const low = await srv.client.callTool({ name: 'typed', arguments: { task: 'x', level: 0 } });
    assert.equal(low.isError, true);
    assert.match(JSON.stringify(low.content), /Input validation error: Invalid arguments for tool typed: .*must be >= 1/);
    const ok = await srv.client.callTool({ name: 'plain', arguments: { task: 'x' } });
    assert.equal(ok.isError, undefined, JSON.stringify(ok.content));
    assert.equal((ok.structuredContent as { status?: string }).status, 'ok');
  });
});
