// The OpenTelemetry side, loaded only when telemetry is on (see index.ts). Spans are made on the main
// thread from what the orchestrator already learns: a worker reports each model call's timing and usage
// on its next message to the main thread, so workers stay thin (no SDK, no exporter per thread) and
// every span of a run shares the context held in one place.
//
// Conventions followed (pinned): OpenTelemetry semantic conventions 1.38.0 — GenAI spans and metrics
// (`invoke_agent`, `chat`, `execute_tool`, gen_ai.client.*) and MCP (`{mcp.method.name} {target}`,
// mcp.server.operation.duration). By default the pre-1.37 `gen_ai.system` is emitted next to
// `gen_ai.provider.name` for older backends; OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental
// emits only the latest names. Project attributes are under `delegate_mcp.*`.
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Counter,
  type Histogram,
  type Span,
  type Tracer,
  type UpDownCounter,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator, setGlobalErrorHandler } from '@opentelemetry/core';
import { detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { OTLPTraceExporter as ProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { OTLPTraceExporter as JsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPMetricExporter as ProtoMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { OTLPMetricExporter as JsonMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { log } from '../log.js';
import type { TelemetrySettings } from '../config/telemetry-config.js';
import type {
  McpRequestInfo,
  ModelCallInfo,
  RunStartInfo,
  RunTrace,
  SpanHandle,
  Telemetry,
  ToolDecisionInfo,
  ToolSpanHandle,
  TraceContext,
  TraceMeta,
} from './types.js';
import { isDelegationToolName, isMcpToolName } from '../contract/tool-names.js';
import { errorMessage } from '../describe-cause.js';
import { inputTokens } from '../contract/usage-sum.js';

export const SEMCONV_VERSION = '1.38.0';
const SCHEMA_URL = `https://opentelemetry.io/schemas/${SEMCONV_VERSION}`;

const propagator = new W3CTraceContextPropagator();
const metaGetter = {
  keys: (carrier: Record<string, unknown>) => Object.keys(carrier),
  get: (carrier: Record<string, unknown>, key: string) => (typeof carrier[key] === 'string' ? (carrier[key] as string) : undefined),
};
const metaSetter = { set: (carrier: TraceMeta, key: string, value: string) => ((carrier as Record<string, string>)[key] = value) };

const asCtx = (c: Context) => c as unknown as TraceContext;
const fromCtx = (c: TraceContext | undefined) => (c as unknown as Context | undefined) ?? ROOT_CONTEXT;

/** Our provider names → gen_ai.provider.name values of the conventions. */
function providerName(provider: string): string {
  if (provider === 'openai-chat' || provider === 'openai') return 'openai';
  if (provider === 'anthropic') return 'anthropic';
  return provider;
}

// Semconv input tokens include cached ones; our `input_tokens` does not (contract/usage.ts): inputTokens().

const intEnv = (name: string): number | undefined => {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : undefined;
};

interface Instruments {
  tokenUsage: Histogram;
  opDuration: Histogram;
  mcpDuration: Histogram;
  runsActive: UpDownCounter;
  spendUsd: Counter;
  spendTokens: Counter;
  denials: Counter;
}

export class OtelTelemetry implements Telemetry {
  readonly captureContent: boolean;
  private readonly tracer: Tracer;
  private readonly tracerProvider?: TracerProvider;
  private readonly meterProvider?: MeterProvider;
  private readonly m?: Instruments;
  private readonly legacyAttrs: boolean;

  constructor(private readonly s: TelemetrySettings, version: string) {
    this.captureContent = s.captureContent;
    this.legacyAttrs = !s.latestGenAi;
    // The SDK reports export failures (collector down, 4xx) here; say so on stderr, at most once a minute.
    let lastWarned = 0;
    setGlobalErrorHandler((err) => {
      if (Date.now() - lastWarned < 60_000) return;
      lastWarned = Date.now();
      log.warn(`telemetry: ${errorMessage(err)} (further errors within a minute are not shown)`);
    });
    // Defaults < mcp.json < OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES.
    const resource = resourceFromAttributes({ 'service.name': s.serviceName ?? 'delegate-mcp', 'service.version': version, ...s.resourceAttributes }).merge(
      detectResources({ detectors: [envDetector] }),
    );
    // mcp.json's endpoint unless the environment names one for the signal (the exporters read those themselves).
    const envEndpoint = (signal: string) => process.env[`OTEL_EXPORTER_OTLP_${signal.toUpperCase()}_ENDPOINT`] || process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
    const url = (signal: string) => (s.endpoint && !envEndpoint(signal) ? `${s.endpoint.replace(/\/+$/, '')}/v1/${signal}` : undefined);
    const common = { ...(s.headers && { headers: s.headers }) };
    if (s.traces) {
      const exporterOpts = { ...common, ...(url('traces') && { url: url('traces') }) };
      const exporter = s.protocol === 'http/json' ? new JsonTraceExporter(exporterOpts) : new ProtoTraceExporter(exporterOpts);
      this.tracerProvider = new TracerProvider({
        resource,
        spanProcessors: [new BatchSpanProcessor({ exporter, scheduledDelayMillis: intEnv('OTEL_BSP_SCHEDULE_DELAY') })],
      });
    }
    this.tracer = (this.tracerProvider ?? trace.getTracerProvider()).getTracer('delegate-mcp', version, { schemaUrl: SCHEMA_URL });
    if (s.metrics) {
      const exporterOpts = { ...common, ...(url('metrics') && { url: url('metrics') }) };
      const exporter = s.protocol === 'http/json' ? new JsonMetricExporter(exporterOpts) : new ProtoMetricExporter(exporterOpts);
      this.meterProvider = new MeterProvider({
        resource,
        readers: [new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: intEnv('OTEL_METRIC_EXPORT_INTERVAL') ?? 60_000 })],
      });
      const meter = this.meterProvider.getMeter('delegate-mcp', version, { schemaUrl: SCHEMA_URL });
      const secondsBuckets = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
      this.m = {
        tokenUsage: meter.createHistogram('gen_ai.client.token.usage', {
          unit: '{token}',
          description: 'Number of input and output tokens used',
          advice: { explicitBucketBoundaries: [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864] },
        }),
        opDuration: meter.createHistogram('gen_ai.client.operation.duration', { unit: 's', description: 'GenAI operation duration', advice: { explicitBucketBoundaries: secondsBuckets } }),
        mcpDuration: meter.createHistogram('mcp.server.operation.duration', { unit: 's', description: 'MCP request duration as seen by the server', advice: { explicitBucketBoundaries: secondsBuckets } }),
        runsActive: meter.createUpDownCounter('delegate_mcp.runs.active', { unit: '{run}', description: 'Agent runs in progress' }),
        spendUsd: meter.createCounter('delegate_mcp.budget.spend', { unit: 'USD', description: 'Model spend in USD, per agent' }),
        spendTokens: meter.createCounter('delegate_mcp.budget.tokens', { unit: '{token}', description: 'Model tokens charged, per agent' }),
        denials: meter.createCounter('delegate_mcp.permission.denials', { unit: '{denial}', description: 'Tool calls denied, per rule' }),
      };
    }
    log.info(`telemetry: OTLP ${s.protocol} ${[s.traces && 'traces', s.metrics && 'metrics'].filter(Boolean).join(' and ')} to ${s.endpoint ?? 'the OTEL_EXPORTER_OTLP_* endpoint'}`);
  }

  private handle(span: Span, ctx: Context): SpanHandle {
    return {
      context: asCtx(ctx),
      meta: () => {
        const m: TraceMeta = {};
        propagator.inject(ctx, m, metaSetter);
        return m;
      },
      end: (error?: string) => {
        if (error !== undefined) fail(span, error);
        span.end();
      },
    };
  }

  mcpRequest(info: McpRequestInfo): SpanHandle {
    const parent = info.meta ? propagator.extract(ROOT_CONTEXT, info.meta, metaGetter) : ROOT_CONTEXT;
    const attributes: Attributes = { 'mcp.method.name': info.method, 'gen_ai.tool.name': info.target, 'gen_ai.operation.name': 'execute_tool' };
    if (info.sessionId) attributes['mcp.session.id'] = info.sessionId;
    if (info.protocolVersion) attributes['mcp.protocol.version'] = info.protocolVersion;
    if (info.requestId !== undefined) attributes['jsonrpc.request.id'] = String(info.requestId);
    const started = performance.now();
    const span = this.tracer.startSpan(`${info.method} ${info.target}`, { kind: SpanKind.SERVER, attributes }, parent);
    const h = this.handle(span, trace.setSpan(parent, span));
    const end = h.end;
    return {
      ...h,
      end: (error?: string) => {
        this.m?.mcpDuration.record((performance.now() - started) / 1000, {
          'mcp.method.name': info.method,
          'gen_ai.tool.name': info.target,
          ...(error !== undefined && { 'error.type': 'tool_error' }),
        });
        end(error);
      },
    };
  }

  startRun(info: RunStartInfo): RunTrace {
    const parent = fromCtx(info.parent);
    const provider = providerName(info.model.split('/')[0] ?? '');
    const span = this.tracer.startSpan(
      `invoke_agent ${info.agent}`,
      {
        kind: SpanKind.INTERNAL,
        attributes: {
          'gen_ai.operation.name': 'invoke_agent',
          'gen_ai.agent.name': info.agent,
          'gen_ai.agent.id': info.agent,
          'gen_ai.conversation.id': info.runId,
          'gen_ai.provider.name': provider,
          ...(this.legacyAttrs && { 'gen_ai.system': provider }),
          'gen_ai.request.model': info.model.slice(info.model.indexOf('/') + 1),
          'delegate_mcp.run.id': info.runId,
          'delegate_mcp.run.root_id': info.rootRunId,
          ...(info.parentRunId && { 'delegate_mcp.run.parent_id': info.parentRunId }),
          'delegate_mcp.run.depth': info.depth,
          'delegate_mcp.budget.scope': info.budgetScope,
          ...(info.caller && { 'delegate_mcp.caller': info.caller }),
          ...(this.captureContent && info.input && { 'gen_ai.input.messages': JSON.stringify([{ role: 'user', parts: [{ type: 'text', content: info.input() }] }]) }),
        },
      },
      parent,
    );
    const ctx = trace.setSpan(parent, span);
    const agentAttr = { 'gen_ai.agent.name': info.agent };
    this.m?.runsActive.add(1, agentAttr);
    let ended = false;
    return {
      context: asCtx(ctx),
      modelCall: (c) => this.modelCall(ctx, info.agent, c),
      startTool: (name, callId) => this.startTool(ctx, info.agent, name, callId),
      end: (r) => {
        if (ended) return;
        ended = true;
        this.m?.runsActive.add(-1, agentAttr);
        span.setAttributes({
          'delegate_mcp.run.status': r.status,
          'gen_ai.usage.input_tokens': inputTokens(r.usage),
          'gen_ai.usage.output_tokens': r.usage.output_tokens,
          ...(r.costUsd !== null && { 'delegate_mcp.cost_usd': r.costUsd }),
        });
        if (this.captureContent && r.output) {
          span.setAttribute('gen_ai.output.messages', JSON.stringify([{ role: 'assistant', parts: [{ type: 'text', content: r.output() }] }]));
        }
        if (r.status !== 'ok') fail(span, r.error ?? r.status, r.status);
        span.end();
      },
    };
  }

  private modelCall(parent: Context, agent: string, c: ModelCallInfo): void {
    const provider = providerName(c.provider);
    const attrs: Attributes = {
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': provider,
      ...(this.legacyAttrs && { 'gen_ai.system': provider }),
      'gen_ai.request.model': c.model,
    };
    const span = this.tracer.startSpan(`chat ${c.model}`, { kind: SpanKind.CLIENT, startTime: c.startedAt, attributes: attrs }, parent);
    span.setAttributes({
      'gen_ai.response.finish_reasons': [c.stopReason],
      'delegate_mcp.turn': c.turn,
      'delegate_mcp.retries': c.retries,
      'gen_ai.agent.name': agent,
      ...(c.responseModel && { 'gen_ai.response.model': c.responseModel }),
      ...(c.costUsd !== null && { 'delegate_mcp.cost_usd': c.costUsd }),
    });
    if (c.usage) {
      span.setAttributes({
        'gen_ai.usage.input_tokens': inputTokens(c.usage),
        'gen_ai.usage.output_tokens': c.usage.output_tokens,
        'gen_ai.usage.cache_read.input_tokens': c.usage.cache_read_input_tokens,
        'gen_ai.usage.cache_creation.input_tokens': c.usage.cache_creation_input_tokens,
      });
    }
    const errorType = c.error !== undefined ? (c.stopReason === 'error' ? 'model_error' : 'error') : undefined;
    if (c.error !== undefined) fail(span, c.error, errorType);
    const endTime = Date.now();
    span.end(endTime);
    if (this.m) {
      const mAttrs = { ...attrs, ...(errorType && { 'error.type': errorType }) };
      this.m.opDuration.record(Math.max(0, endTime - c.startedAt) / 1000, mAttrs);
      if (c.usage) {
        this.m.tokenUsage.record(inputTokens(c.usage), { ...attrs, 'gen_ai.token.type': 'input' });
        this.m.tokenUsage.record(c.usage.output_tokens, { ...attrs, 'gen_ai.token.type': 'output' });
        this.m.spendTokens.add(inputTokens(c.usage) + c.usage.output_tokens, { 'gen_ai.agent.name': agent });
      }
      if (c.costUsd) this.m.spendUsd.add(c.costUsd, { 'gen_ai.agent.name': agent });
    }
  }

  private startTool(parent: Context, agent: string, name: string, callId?: string): ToolSpanHandle {
    const span = this.tracer.startSpan(
      `execute_tool ${name}`,
      {
        kind: SpanKind.INTERNAL,
        attributes: {
          'gen_ai.operation.name': 'execute_tool',
          'gen_ai.tool.name': name,
          'gen_ai.tool.type': isMcpToolName(name) || isDelegationToolName(name) ? 'extension' : 'function',
          ...(callId && { 'gen_ai.tool.call.id': callId }),
        },
      },
      parent,
    );
    const h = this.handle(span, trace.setSpan(parent, span));
    return {
      ...h,
      decided: (d: ToolDecisionInfo) => {
        const attrs: Attributes = {
          'delegate_mcp.permission.decision': d.decision,
          'delegate_mcp.permission.reason': d.reason,
          ...(d.rule !== null && { 'delegate_mcp.permission.rule': d.rule }),
          ...(d.approval && { 'delegate_mcp.permission.approval': d.approval }),
        };
        span.setAttributes(attrs);
        span.setAttribute('delegate_mcp.tool.outcome', d.outcome);
        span.addEvent('delegate_mcp.permission.decision', attrs);
        const refused = d.decision === 'deny' || d.approval === 'denied' || d.approval === 'unanswered';
        if (refused) this.m?.denials.add(1, { 'gen_ai.agent.name': agent, 'gen_ai.tool.name': name, 'delegate_mcp.permission.rule': d.rule ?? '(none)' });
        if (d.outcome !== 'ok') fail(span, refused ? `permission denied: ${d.reason}` : `tool ${d.outcome}`, refused ? 'permission_denied' : 'tool_error');
      },
    };
  }

  async shutdown(): Promise<void> {
    await Promise.all([
      this.tracerProvider?.shutdown().catch((err: Error) => log.warn(`telemetry: exporting spans failed: ${err.message}`)),
      this.meterProvider?.shutdown().catch((err: Error) => log.warn(`telemetry: exporting metrics failed: ${err.message}`)),
    ]);
  }
}

function fail(span: Span, message: string, type = 'error'): void {
  span.setStatus({ code: SpanStatusCode.ERROR, message });
  span.setAttribute('error.type', type);
}
