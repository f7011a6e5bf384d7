// OpenTelemetry end to end: a stdio client with a traceparent → agent "lead" → re-entry child process →
// agent "helper" → read_file (one allowed, one denied by a rule) arrives at a local OTLP/HTTP receiver
// as ONE trace parented to the client's span, with the MCP and GenAI span kinds and attributes, plus
// metrics. Nothing is exported without an endpoint; prompt text only when capture is switched on.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { startMockModel, type MockModel, type MockRequestInfo, type MockReply } from './mock-model/server.js';
import { ROOT, agentYaml, mockEnv, startServer, tempDir, writeTree } from './helpers.js';
import { startOtlpReceiver, type FlatSpan, type OtlpReceiver } from './otlp-receiver.js';

const TASK_MARKER = 'PROMPT-MARKER-7f3a';
const FAKE_KEY = 'sk-ant-api03-' + 'Q'.repeat(40);

function planned(req: MockRequestInfo): MockReply {
  const who = /You are "([^"]+)"/.exec(req.system)?.[1] ?? '?';
  if (req.toolResults.length) return { text: `${who} done`, usage: { input_tokens: 120, output_tokens: 7 } };
  if (who === 'lead') return { toolCalls: [{ name: 'agent__helper', arguments: { task: 'read the notes' } }], usage: { input_tokens: 100, output_tokens: 10 } };
  if (who === 'reacher') return { toolCalls: [{ name: 'mcp__echo__meta', arguments: {} }] };
  if (who === 'helper') {
    return {
      toolCalls: [
        { name: 'read_file', arguments: { path: 'notes.txt' } },
        { name: 'read_file', arguments: { path: 'secret.txt' } },
      ],
      usage: { input_tokens: 90, output_tokens: 12 },
    };
  }
  return { text: `${who} answers` };
}

async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('OpenTelemetry traces and metrics across the delegation tree', () => {
  let mock: MockModel;
  let ws: string;
  let agentsDir: string;

  before(async () => {
    mock = await startMockModel();
    mock.setHandler(planned);
    ws = tempDir('dmcp-otel-');
    agentsDir = path.join(ws, 'agents');
    writeTree(agentsDir, {
      'lead.yaml': agentYaml('lead', 'anthropic/claude-sonnet-4-5', 'agents: [helper]'),
      'helper.yaml': `name: helper
description: Reads notes.
model: anthropic/claude-sonnet-4-5
max_turns: 4
permissions:
  allow: ["Read(./**)"]
  deny: ["Read(./secret.txt)"]
`,
      'solo.yaml': agentYaml('solo', 'anthropic/claude-sonnet-4-5'),
      'hushed.yaml': agentYaml('hushed', 'anthropic/claude-sonnet-4-5', 'policies:\n  secrets: {redact: true}'),
      'reacher.yaml': `name: reacher
description: Calls a downstream MCP server.
model: anthropic/claude-sonnet-4-5
permissions:
  allow: ["mcp__echo__meta"]
`,
    });
    writeTree(ws, { 'notes.txt': 'the notes', 'secret.txt': 'top secret' });
  });
  after(async () => {
    await mock.close();
  });

  const serve = (env: Record<string, string>, config: object = {}) => {
    const cfg = path.join(ws, `mcp-${randomBytes(4).toString('hex')}.json`);
    writeFileSync(cfg, JSON.stringify(config));
    return startServer({ args: ['--config', cfg, '--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url, env), cwd: ws });
  };

  it('a 3-level delegation is one trace under the client traceparent, with MCP/GenAI spans, decisions and metrics; no prompt text', async () => {
    const rx = await startOtlpReceiver();
    const traceId = randomBytes(16).toString('hex');
    const clientSpanId = randomBytes(8).toString('hex');
    const srv = await serve({
      OTEL_EXPORTER_OTLP_ENDPOINT: rx.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_SERVICE_NAME: 'otel-e2e',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=test',
      OTEL_BSP_SCHEDULE_DELAY: '50',
      OTEL_METRIC_EXPORT_INTERVAL: '200',
    });
    let runId: string;
    try {
      const res = await srv.client.callTool({
        name: 'lead',
        arguments: { task: `delegate this ${TASK_MARKER} ${FAKE_KEY}` },
        _meta: { traceparent: `00-${traceId}-${clientSpanId}-01`, tracestate: 'vendor=abc' },
      });
      const sc = res.structuredContent as any;
      assert.equal(sc.status, 'ok', JSON.stringify(res.content));
      runId = sc.run_id;
      // Both processes export: wait for the child's helper span and the parent's root spans.
      await until('spans of both processes', () => {
        const names = rx.spans().map((s) => s.name);
        return ['tools/call lead', 'invoke_agent lead', 'tools/call helper', 'invoke_agent helper'].every((n) => names.includes(n));
      });
      await until('metrics', () => rx.metrics().has('delegate_mcp.permission.denials') && rx.metrics().has('mcp.server.operation.duration'));
    } finally {
      await srv.close();
    }
    try {
      const spans = rx.spans();
      const one = (name: string): FlatSpan => {
        const found = spans.filter((s) => s.name === name);
        assert.equal(found.length, 1, `exactly one span "${name}" (spans: ${spans.map((s) => s.name).join(', ')})`);
        return found[0];
      };
      // One trace: every span carries the client's trace id.
      assert.ok(spans.length >= 9, `spans: ${spans.map((s) => s.name).join(', ')}`);
      assert.deepEqual([...new Set(spans.map((s) => s.traceId))], [traceId]);

      const mcpLead = one('tools/call lead');
      assert.equal(mcpLead.parentSpanId, clientSpanId, "the MCP request span's parent is the client's span");
      assert.equal(mcpLead.kind, 2, 'SERVER');
      assert.equal(mcpLead.attributes['mcp.method.name'], 'tools/call');
      assert.equal(mcpLead.attributes['gen_ai.tool.name'], 'lead');
      assert.equal(typeof mcpLead.attributes['mcp.session.id'], 'string');
      assert.match(String(mcpLead.attributes['mcp.protocol.version']), /^\d{4}-\d{2}-\d{2}$/);
      assert.equal(typeof mcpLead.attributes['jsonrpc.request.id'], 'string');
      assert.equal(mcpLead.resource['service.name'], 'otel-e2e');
      assert.equal(mcpLead.resource['deployment.environment'], 'test');

      const lead = one('invoke_agent lead');
      assert.equal(lead.parentSpanId, mcpLead.spanId);
      assert.equal(lead.attributes['gen_ai.operation.name'], 'invoke_agent');
      assert.equal(lead.attributes['gen_ai.agent.name'], 'lead');
      assert.equal(lead.attributes['delegate_mcp.run.id'], runId!);
      assert.equal(lead.attributes['delegate_mcp.run.depth'], 0);
      assert.equal(lead.attributes['delegate_mcp.run.status'], 'ok');
      assert.equal(lead.attributes['delegate_mcp.budget.scope'], 'root');

      const leadChats = spans.filter((s) => s.name === 'chat claude-sonnet-4-5' && s.parentSpanId === lead.spanId);
      assert.equal(leadChats.length, 2, 'two model calls of lead');
      const chat = leadChats.find((s) => s.attributes['delegate_mcp.turn'] === 1)!;
      assert.equal(chat.kind, 3, 'CLIENT');
      assert.equal(chat.attributes['gen_ai.operation.name'], 'chat');
      assert.equal(chat.attributes['gen_ai.provider.name'], 'anthropic');
      assert.equal(chat.attributes['gen_ai.request.model'], 'claude-sonnet-4-5');
      assert.equal(chat.attributes['gen_ai.response.model'], 'claude-sonnet-4-5');
      assert.equal(chat.attributes['gen_ai.usage.input_tokens'], 100);
      assert.equal(chat.attributes['gen_ai.usage.output_tokens'], 10);
      assert.equal(chat.attributes['gen_ai.usage.cache_read.input_tokens'], 0);
      assert.deepEqual(chat.attributes['gen_ai.response.finish_reasons'], ['tool_use']);
      assert.equal(chat.attributes['delegate_mcp.retries'], 0);
      assert.equal(typeof chat.attributes['delegate_mcp.cost_usd'], 'number');

      const hop = one('execute_tool agent__helper');
      assert.equal(hop.parentSpanId, lead.spanId);
      assert.equal(hop.attributes['delegate_mcp.permission.decision'], 'allow');

      // Across the process hop: the child's MCP request span is parented to the delegating tool call.
      const mcpHelper = one('tools/call helper');
      assert.equal(mcpHelper.parentSpanId, hop.spanId);
      const helper = one('invoke_agent helper');
      assert.equal(helper.parentSpanId, mcpHelper.spanId);
      assert.equal(helper.attributes['delegate_mcp.run.depth'], 1);
      assert.equal(helper.attributes['delegate_mcp.run.root_id'], runId!);
      assert.equal(helper.attributes['delegate_mcp.budget.scope'], `slice of ${runId!}`);

      const reads = spans.filter((s) => s.name === 'execute_tool read_file');
      assert.equal(reads.length, 2);
      for (const r of reads) assert.equal(r.parentSpanId, helper.spanId);
      const allowed = reads.find((s) => s.attributes['delegate_mcp.permission.decision'] === 'allow')!;
      const denied = reads.find((s) => s.attributes['delegate_mcp.permission.decision'] === 'deny')!;
      assert.equal(allowed.attributes['delegate_mcp.permission.rule'], 'Read(./**)');
      assert.equal(allowed.status.code ?? 0, 0);
      assert.equal(denied.attributes['delegate_mcp.permission.rule'], 'Read(./secret.txt)');
      assert.equal(denied.status.code, 2, 'a denied call is an error span');
      assert.equal(denied.attributes['error.type'], 'permission_denied');
      assert.equal(denied.events.filter((e) => e.name === 'delegate_mcp.permission.decision').length, 1);

      // Prompt contents are not recorded by default, anywhere.
      for (const r of rx.requests) assert.ok(!r.body.toString('utf8').includes(TASK_MARKER), `${r.path} carries no prompt text`);

      const metrics = rx.metrics();
      for (const name of [
        'gen_ai.client.token.usage',
        'gen_ai.client.operation.duration',
        'mcp.server.operation.duration',
        'delegate_mcp.runs.active',
        'delegate_mcp.budget.spend',
        'delegate_mcp.budget.tokens',
        'delegate_mcp.permission.denials',
      ]) assert.ok(metrics.has(name), `metric ${name} arrives (got ${[...metrics.keys()].join(', ')})`);
      const denials = metrics.get('delegate_mcp.permission.denials')!;
      assert.ok(denials.some((p) => p.attributes['delegate_mcp.permission.rule'] === 'Read(./secret.txt)' && p.value === 1));
      const tokens = metrics.get('gen_ai.client.token.usage')!;
      assert.ok(tokens.some((p) => p.attributes['gen_ai.token.type'] === 'input'));
      assert.ok(tokens.some((p) => p.attributes['gen_ai.token.type'] === 'output'));
    } finally {
      await rx.close();
    }
  });

  it('captures prompt and answer only when asked (delegate.telemetry.captureContent), redacted like the audit log', async () => {
    const rx = await startOtlpReceiver();
    const srv = await serve({ OTEL_BSP_SCHEDULE_DELAY: '50' }, { delegate: { telemetry: { endpoint: rx.url, protocol: 'http/json', captureContent: true, metrics: false } } });
    try {
      const res = await srv.client.callTool({ name: 'solo', arguments: { task: `say hi ${TASK_MARKER} ${FAKE_KEY}` } });
      assert.equal((res.structuredContent as any).status, 'ok');
      const hushed = await srv.client.callTool({ name: 'hushed', arguments: { task: `quiet ${TASK_MARKER}` } });
      assert.equal((hushed.structuredContent as any).status, 'ok');
      await until('the run spans', () => ['invoke_agent solo', 'invoke_agent hushed'].every((n) => rx.spans().some((s) => s.name === n)));
    } finally {
      await srv.close();
    }
    try {
      const run = rx.spans().find((s) => s.name === 'invoke_agent solo')!;
      const input = String(run.attributes['gen_ai.input.messages']);
      assert.ok(input.includes(TASK_MARKER), input);
      assert.ok(!input.includes(FAKE_KEY), 'the API key is redacted');
      assert.match(input, /\[REDACTED/);
      assert.match(String(run.attributes['gen_ai.output.messages']), /solo answers/);
      // Like the audit previews: never for an agent with policies.secrets.redact.
      const quiet = rx.spans().find((s) => s.name === 'invoke_agent hushed')!;
      assert.equal(quiet.attributes['gen_ai.input.messages'], undefined);
      assert.equal(quiet.attributes['gen_ai.output.messages'], undefined);
      assert.equal(rx.requests.filter((r) => r.path === '/v1/metrics').length, 0, 'metrics: false sends no metrics');
    } finally {
      await rx.close();
    }
  });

  it("sends OTLP protobuf by default; the environment's endpoint wins over mcp.json's", async () => {
    const rx = await startOtlpReceiver();
    const srv = await serve(
      { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${rx.url}/v1/traces`, OTEL_BSP_SCHEDULE_DELAY: '50' },
      { delegate: { telemetry: { endpoint: 'http://127.0.0.1:9', metrics: false } } },
    );
    try {
      const res = await srv.client.callTool({ name: 'solo', arguments: { task: 'protobuf please' } });
      assert.equal((res.structuredContent as any).status, 'ok');
      await until('a protobuf export', () => rx.requests.some((r) => r.path === '/v1/traces' && r.body.includes('invoke_agent solo')));
    } finally {
      await srv.close();
    }
    try {
      const traces = rx.requests.filter((r) => r.path === '/v1/traces');
      assert.ok(traces.length >= 1);
      for (const t of traces) assert.equal(t.contentType, 'application/x-protobuf');
      assert.equal(rx.requests.filter((r) => r.path === '/v1/metrics').length, 0, 'only a traces endpoint: no metrics');
    } finally {
      await rx.close();
    }
  });

  it('a downstream MCP server gets the tool call span as traceparent in _meta', async () => {
    const rx = await startOtlpReceiver();
    const fixture = path.join(ROOT, 'tests', 'fixtures', 'mcp-echo-server.mjs');
    const srv = await serve(
      { OTEL_EXPORTER_OTLP_ENDPOINT: rx.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_BSP_SCHEDULE_DELAY: '50' },
      { mcpServers: { echo: { command: process.execPath, args: [fixture] } } },
    );
    let downstreamMeta: any;
    try {
      mock.reset();
      mock.setHandler((req) => {
        if (req.toolResults.length) downstreamMeta = JSON.parse(req.toolResults[0].content);
        return planned(req);
      });
      const res = await srv.client.callTool({ name: 'reacher', arguments: { task: 'reach out' } });
      assert.equal((res.structuredContent as any).status, 'ok', JSON.stringify(res.content));
      await until('the tool span', () => rx.spans().some((s) => s.name === 'execute_tool mcp__echo__meta'));
    } finally {
      mock.setHandler(planned);
      await srv.close();
    }
    try {
      const tool = rx.spans().find((s) => s.name === 'execute_tool mcp__echo__meta')!;
      assert.equal(downstreamMeta?.traceparent, `00-${tool.traceId}-${tool.spanId}-01`);
    } finally {
      await rx.close();
    }
  });

  it('delegate and delegate_parallel calls are traced too, under the client traceparent', async () => {
    const rx = await startOtlpReceiver();
    const traceId = randomBytes(16).toString('hex');
    const srv = await serve({ OTEL_EXPORTER_OTLP_ENDPOINT: rx.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_BSP_SCHEDULE_DELAY: '50', OTEL_METRICS_EXPORTER: 'none' });
    try {
      const _meta = { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` };
      const one = await srv.client.callTool({ name: 'delegate', arguments: { agent: 'solo', task: 'one' }, _meta });
      assert.equal((one.structuredContent as any).status, 'ok', JSON.stringify(one.content));
      const many = await srv.client.callTool({ name: 'delegate_parallel', arguments: { tasks: [{ agent: 'solo', task: 'a' }, { agent: 'solo', task: 'b' }] }, _meta });
      assert.equal((many.structuredContent as any).ok, 2, JSON.stringify(many.content));
      await until('three runs', () => rx.spans().filter((s) => s.name === 'invoke_agent solo').length === 3 && rx.spans().some((s) => s.name === 'tools/call delegate_parallel'));
    } finally {
      await srv.close();
    }
    try {
      const spans = rx.spans();
      const parent = (name: string) => spans.find((s) => s.name === name)!;
      const runs = spans.filter((s) => s.name === 'invoke_agent solo');
      assert.equal(runs.filter((r) => r.parentSpanId === parent('tools/call delegate').spanId).length, 1);
      assert.equal(runs.filter((r) => r.parentSpanId === parent('tools/call delegate_parallel').spanId).length, 2);
      assert.deepEqual([...new Set(spans.map((s) => s.traceId))], [traceId]);
    } finally {
      await rx.close();
    }
  });

  it('a collector that is down costs a warning on stderr, never a call', async () => {
    const gone = await startOtlpReceiver();
    const url = gone.url;
    await gone.close();
    const srv = await serve({ OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_BSP_SCHEDULE_DELAY: '50', OTEL_METRICS_EXPORTER: 'none' });
    try {
      for (let i = 0; i < 3; i++) {
        const res = await srv.client.callTool({ name: 'solo', arguments: { task: `still works ${i}` } });
        assert.equal((res.structuredContent as any).status, 'ok');
      }
      await until('the export warning', () => /telemetry: .+/.test(srv.stderr().replace(/telemetry: OTLP[^\n]*/g, '')));
      assert.equal((srv.stderr().match(/further errors within a minute are not shown/g) ?? []).length, 1, srv.stderr());
    } finally {
      await srv.close();
    }
  });

  it('exports nothing without an endpoint, or with delegate.telemetry.enabled: false', async () => {
    const rx = await startOtlpReceiver();
    // The SDK's own default endpoint is localhost:4318: listen there too when it is free.
    const fallback = await startOtlpReceiver(4318).catch(() => undefined);
    if (!fallback) process.stderr.write('note: port 4318 is busy; the default-endpoint check is left out\n');
    const off = await serve({ OTEL_SERVICE_NAME: 'x', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', DELEGATE_MCP_LOG_LEVEL: 'info' });
    const disabled = await serve(
      { OTEL_EXPORTER_OTLP_ENDPOINT: rx.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_BSP_SCHEDULE_DELAY: '50', DELEGATE_MCP_LOG_LEVEL: 'info' },
      { delegate: { telemetry: { enabled: false } } },
    );
    try {
      for (const srv of [off, disabled]) {
        const res = await srv.client.callTool({ name: 'solo', arguments: { task: 'no telemetry' } });
        assert.equal((res.structuredContent as any).status, 'ok');
      }
      await new Promise((r) => setTimeout(r, 400));
      for (const srv of [off, disabled]) assert.doesNotMatch(srv.stderr(), /telemetry: OTLP/, 'the SDK was not loaded');
    } finally {
      await off.close();
      await disabled.close();
    }
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(rx.requests.length, 0);
    if (fallback) assert.equal(fallback.requests.length, 0);
    await rx.close();
    await fallback?.close();
  });
});
