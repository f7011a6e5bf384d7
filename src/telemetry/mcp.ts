// The MCP server span of one tools/call, from the handler's context (no OpenTelemetry import here).
import type { McpServer, ServerContext } from '@modelcontextprotocol/server';
import type { SpanHandle, Telemetry } from './types.js';

/** Undefined when telemetry is off. `owner` stands in for the session id on transports without one (stdio). */
export function traceToolCall(telemetry: Telemetry | undefined, server: McpServer, ctx: ServerContext, tool: string, owner: string): SpanHandle | undefined {
  return telemetry?.mcpRequest({
    method: 'tools/call',
    target: tool,
    sessionId: ctx.sessionId ?? owner,
    protocolVersion: server.server.getNegotiatedProtocolVersion(),
    requestId: ctx.mcpReq.id,
    meta: ctx.mcpReq._meta as Record<string, unknown> | undefined,
  });
}
