// The MCP tool surface of one session: one tool per exposed agent plus list_agents, the meta tools, the
// resources. One McpServer instance per connection (the factory is called per session), so one client
// never sees another's runs. It knows no transport: stdio and HTTP (transports/) connect what it builds.
import { randomUUID } from 'node:crypto';
import { LOG_LEVEL_META_KEY, McpServer, type CallToolResult, type LoggingLevel, type ServerContext } from '@modelcontextprotocol/server';
import { z } from 'zod';
import type { RunLauncher } from '../orchestrator/launcher.js';
import type { Orchestrator, RunRequest } from '../orchestrator/orchestrator.js';
import type { RunResult } from '../contract/run.js';
import { VERSION } from '../version.js';
import { approvalAsker, SessionAskingLauncher } from './approval.js';
import { registerMetaTools } from './meta-tools.js';
import { registerCreateAgentTool, syncAgentTools } from './agent-tools.js';
import { parentChainKey, parseChain, RESULT_META_KEY } from '../orchestrator/chain.js';
import { traceToolCall } from '../telemetry/mcp.js';
import { registerResources } from './resources.js';
import { asksWithInputRequired, conversationCall } from './input-required.js';
import { progressReporter, runToolResult } from './tool-results.js';

/** Severity order of MCP log levels (RFC 5424), lowest first. */
const LOG_LEVELS: readonly LoggingLevel[] = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];

export interface ServerDeps {
  /** Settings, agents, run records, books, telemetry. */
  orchestrator: Orchestrator;
  /** What starts this session's runs; the orchestrator itself unless the transport limits them (transports/http-limits.ts). */
  launcher?: RunLauncher;
}

export function createServerFactory(deps: ServerDeps): () => McpServer {
  return () => buildServer(deps, `session_${randomUUID()}`);
}

/** One server instance for one client session; `owner` scopes its runs (the HTTP transport picks it). */
export function buildServer({ orchestrator, launcher = orchestrator }: ServerDeps, owner: string): McpServer {
  const server = new McpServer(
    { name: 'delegate-mcp', version: VERSION },
    {
      capabilities: { tools: { listChanged: true }, logging: {} },
      // Hot reload changes several tools at once: one tools/list_changed per tick, not one per tool.
      debouncedNotificationMethods: ['notifications/tools/list_changed'],
      instructions:
        'Each tool runs an AI agent (a loop of model and tool calls) and returns its final answer. Pass the work in "task" and any background in "context". Calls can take minutes: send a progressToken to get progress.',
    },
  );
  // Workers warm up once the client has its initialize answer (never competing with it).
  server.server.oninitialized = () => setImmediate(() => orchestrator.warm());
  const agents = orchestrator.agents;
  const askTimeoutMs = orchestrator.cfg.delegate.tools.askTimeoutS * 1000;

  // The per-run summary (notifications/message) goes only to clients that asked for logs: with
  // logging/setLevel (2025 eras; tracked here, so the level is per session), or with a level in the
  // request itself (2026-07-28, which the SDK checks). Everyone else has it all in the result, and
  // an unasked-for message costs both ends a wake-up on every call.
  let sessionLogLevel: LoggingLevel | undefined;
  server.server.setRequestHandler('logging/setLevel', async (request) => {
    sessionLogLevel = request.params.level;
    return {};
  });
  const clientLog = (ctx: ServerContext, level: LoggingLevel, data: Record<string, unknown>) => {
    const asked = (ctx.mcpReq.envelope as Record<string, unknown> | undefined)?.[LOG_LEVEL_META_KEY] !== undefined;
    if (!asked && (sessionLogLevel === undefined || LOG_LEVELS.indexOf(level) < LOG_LEVELS.indexOf(sessionLogLevel))) return;
    void ctx.mcpReq.log(level, data, 'delegate-mcp').catch(() => {}); // a log line to a client that went away is nobody's loss
  };

  const runAgent = async (agentName: string, args: Record<string, unknown>, ctx: ServerContext, extra: Partial<RunRequest> = {}): Promise<CallToolResult> => {
    const { budget, ...input } = args;
    // A delegating delegate-mcp sends its call chain in _meta; it can only lower our limits.
    // Its ids are taken only when the parent that started this process signed it (chain.ts).
    const { chain, claimed, error: chainError } = parseChain(ctx.mcpReq._meta as Record<string, unknown> | undefined, parentChainKey());
    if (chainError) return { isError: true, content: [{ type: 'text', text: `refused: ${chainError}` }] };
    const span = traceToolCall(orchestrator.telemetry, server, ctx, agentName, owner);
    const request: RunRequest = {
      trace: span?.context,
      chain,
      ...(claimed && { chainClaimed: true }),
      caller: chain && !claimed ? `agent:${chain.ancestry[chain.ancestry.length - 1].agent}` : undefined,
      agent: agentName,
      input,
      budget: budget as RunRequest['budget'],
      owner,
      ...extra,
    };
    let ended = false;
    const finished = (result: RunResult): CallToolResult => {
      ended = true;
      span?.end(result.status === 'ok' ? undefined : (result.error ?? result.status));
      clientLog(ctx, result.status === 'ok' ? 'info' : 'warning', {
        run_id: result.run_id,
        agent: result.agent,
        status: result.status,
        turns: result.turns,
        tokens: result.usage.input_tokens + result.usage.output_tokens,
        cost_usd: result.cost_usd,
        ...(result.error ? { error: result.error } : {}),
      });
      const toolResult = runToolResult(result);
      if (chain) {
        // The parent's books: this run's id, status and what its whole tree spent.
        const rec = orchestrator.runs.get(result.run_id) ?? orchestrator.runs.endedRun(result.run_id);
        toolResult._meta = { [RESULT_META_KEY]: { run_id: result.run_id, status: result.status, usage: result.usage, tree_usage: rec?.treeUsage ?? result.usage, cost_usd: result.cost_usd } };
      }
      return toolResult;
    };
    if (asksWithInputRequired(server)) {
      // Approvals ride input_required results (input-required.ts): the run outlives each round.
      const out = await conversationCall(ctx, {
        tool: agentName,
        timeoutMs: askTimeoutMs,
        report: progressReporter(ctx),
        start: (c) => launcher.start({ ...request, signal: c.signal, onProgress: c.onProgress, ask: c.ask }).done,
        toResult: finished,
      });
      // A round that ends with a question (or a refused retry) is a complete call of its own (finished() ended the span otherwise).
      if (!ended) span?.end(out.isError ? 'unknown approval request' : undefined);
      // The SDK sends an input_required result as it is (the callback type knows only complete results).
      return out as CallToolResult;
    }
    const report = progressReporter(ctx);
    const result = await launcher.run({ ...request, signal: ctx.mcpReq.signal, onProgress: report, ask: approvalAsker(server, ctx, askTimeoutMs) });
    await report?.sent();
    return finished(result);
  };

  // One tool per exposed agent, kept in step with the store (hot reload, create_agent): agent-tools.ts.
  syncAgentTools(server, agents, runAgent);

  server.registerTool(
    'list_agents',
    {
      description:
        'List the agents this server can run: name, description, model, tools, and any agent files that failed to load (with file:line:col).',
      outputSchema: z.object({
        agents: z.array(
          z.object({
            name: z.string(),
            description: z.string(),
            model: z.string(),
            tools: z.array(z.string()),
            exposed: z.boolean(),
            file: z.string(),
            source: z.enum(['workspace', 'user', 'shipped', 'created']),
          }),
        ),
        errors: z.array(z.string()),
        note: z.string().optional(),
      }),
      annotations: { readOnlyHint: true },
    },
    async () => {
      const list = agents.list().map((a) => ({
        name: a.name,
        description: a.description,
        model: a.model ?? orchestrator.cfg.defaultModel ?? '(no default model configured)',
        tools: a.tools.builtin,
        exposed: a.expose,
        file: a.source.file,
        source: agents.originOf(a.name),
      }));
      const errors = agents.formattedErrors();
      const note = agents.emptyNote();
      const text =
        (note ? `${note}\n` : '') +
        list.map((a) => `${a.name} (${a.model}, ${a.source}): ${a.description.split('\n')[0]}`).join('\n') +
        (errors.length ? `\n\nLoad errors:\n${errors.join('\n')}` : '');
      return { content: [{ type: 'text', text }], structuredContent: { agents: list, errors, ...(note ? { note } : {}) } };
    },
  );
  // delegate & co. start runs outside this file: they ask on the session (approval.ts says why).
  registerMetaTools(server, orchestrator, new SessionAskingLauncher(launcher, approvalAsker(server, undefined, askTimeoutMs)), owner);
  registerCreateAgentTool(server, orchestrator, launcher, owner);
  registerResources(server, orchestrator, owner);
  return server;
}
