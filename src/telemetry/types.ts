// The hooks the server calls when telemetry is on. Call sites hold `Telemetry | undefined` and use `?.`:
// with telemetry off (the default) there is no object, so a run pays one undefined check per hook.
import type { Usage } from '../contract/usage.js';

/** An OpenTelemetry context, opaque to everything outside src/telemetry/. */
export type TraceContext = { readonly __traceContext: unique symbol };

/** W3C trace context as it travels in an MCP request's `params._meta` (SEP-414). */
export type TraceMeta = {
  traceparent?: string;
  tracestate?: string;
};

export interface McpRequestInfo {
  method: string;
  /** The tool (or other target) the request names. */
  target: string;
  sessionId?: string;
  protocolVersion?: string;
  requestId?: string | number;
  /** The request's `_meta`, where a caller's traceparent/tracestate arrives. */
  meta?: Record<string, unknown>;
}

export interface SpanHandle {
  readonly context: TraceContext;
  /** traceparent/tracestate of this span, for the `_meta` of a request made on its behalf. */
  meta(): TraceMeta;
  end(error?: string): void;
}

export interface RunStartInfo {
  runId: string;
  agent: string;
  model: string;
  depth: number;
  rootRunId: string;
  parentRunId: string | null;
  caller: string | null;
  /** The budget scope the run is charged to (`run`, or the parent's run id for a slice). */
  budgetScope: string;
  parent?: TraceContext;
  /** The task, when content capture is on (already redacted). */
  input?: () => string;
}

export interface ModelCallInfo {
  startedAt: number;
  provider: string;
  /** Model id as requested (provider-local). */
  model: string;
  responseModel?: string;
  turn: number;
  usage: Usage | null;
  stopReason: string;
  retries: number;
  costUsd: number | null;
  error?: string;
}

export interface ToolDecisionInfo {
  decision: 'allow' | 'deny' | 'ask';
  approval?: string;
  rule: string | null;
  reason: string;
  outcome: string;
}

export interface ToolSpanHandle extends SpanHandle {
  decided(d: ToolDecisionInfo): void;
}

export interface RunTrace {
  readonly context: TraceContext;
  modelCall(c: ModelCallInfo): void;
  startTool(name: string, callId?: string): ToolSpanHandle;
  end(r: { status: string; usage: Usage; costUsd: number | null; error?: string; output?: () => string }): void;
}

export interface Telemetry {
  readonly captureContent: boolean;
  /** An MCP server span for one request, parented to the caller's traceparent when `_meta` carries one. */
  mcpRequest(info: McpRequestInfo): SpanHandle;
  startRun(info: RunStartInfo): RunTrace;
  shutdown(): Promise<void>;
}
