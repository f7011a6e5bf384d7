// How a run looks to an MCP client: the result schema every run-starting tool advertises, the tool
// result of a finished run, the per-call budget argument, and progress notifications. Shared by the
// agent tools, the meta tools and delegate_parallel (a leaf: it imports nothing else of mcp/).
import { createHash } from 'node:crypto';
import type { CallToolResult, ServerContext } from '@modelcontextprotocol/server';
import { z } from 'zod';
import { RunResult } from '../contract/run.js';

/**
 * What an agent tool returns as structuredContent. Answer first: LLM clients (Claude Code) hand their
 * model only this object, serialised, so `output` and `status` lead and the bookkeeping (ids, usage,
 * cost) follows, small. No field is nullable: a JSON Schema `type` array (["number","null"]) makes
 * some clients warn, so an unknown cost is left out and `notes` say why. A view of contract/run.ts's
 * RunResult: each field is the contract's own.
 */
export const RunResultSchema = z.object({
  output: RunResult.shape.output,
  status: RunResult.shape.status,
  agent: RunResult.shape.agent,
  run_id: RunResult.shape.run_id,
  model: RunResult.shape.model,
  turns: RunResult.shape.turns,
  duration_ms: RunResult.shape.duration_ms,
  usage: RunResult.shape.usage,
  cost_usd: RunResult.shape.cost_usd.unwrap().optional(),
  notes: RunResult.shape.notes,
  artifacts: RunResult.shape.artifacts,
});

/**
 * The outputSchema of an agent's tool: RunResultSchema, with `output` being the agent's own
 * output_schema when it has one (the parsed answer), a string otherwise. Its `$id` is made from its
 * content, so agents with the same schema (all those without an output_schema) share one: the MCP
 * client SDK compiles every tool's output schema (Ajv) before its first tools/call, and compiles an
 * `$id` it already knows only once (with six agents that was ~25 ms of the first call on a loaded
 * 2-core machine); the server's own validator does the same.
 */
export function runResultJsonSchema(outputSchema?: Record<string, unknown>): Record<string, unknown> {
  const base = z.toJSONSchema(RunResultSchema) as Record<string, unknown> & { properties: Record<string, unknown> };
  let schema: Record<string, unknown> = base;
  if (outputSchema) {
    const { $schema: _dialect, ...output } = outputSchema;
    schema = { ...base, properties: { ...base.properties, output } };
  }
  const digest = createHash('sha256').update(JSON.stringify(schema)).digest('hex').slice(0, 32);
  return { ...schema, $id: `urn:delegate-mcp:agent-run-result:${digest}` };
}

/** A run result in the advertised order (answer first); `error` only on failed runs. */
export function answerFirst(r: RunResult): Omit<z.infer<typeof RunResultSchema>, 'output'> & { output: unknown; error?: string } {
  return {
    output: r.structured !== undefined ? r.structured : r.output,
    status: r.status,
    ...(r.error !== undefined ? { error: r.error } : {}),
    agent: r.agent,
    run_id: r.run_id,
    model: r.model,
    turns: r.turns,
    duration_ms: r.duration_ms,
    usage: r.usage,
    ...(r.cost_usd !== null ? { cost_usd: r.cost_usd } : {}),
    ...(r.notes?.length ? { notes: r.notes } : {}),
    ...(r.artifacts?.length ? { artifacts: r.artifacts } : {}),
  };
}

/** The per-call budget argument every agent tool accepts: it can only lower the agent's caps. */
export const CallBudgetSchema = z
  .object({
    run_tokens: z.number().positive().optional().describe('cap on tokens for this run (can only lower the agent\'s own cap)'),
    run_usd: z.number().positive().optional().describe('cap on USD for this run (can only lower the agent\'s own cap)'),
  })
  .describe('optional budget for this call; it can lower the agent\'s limits, never raise them');

/** One task: the arguments of `delegate` and of each `delegate_parallel` task. */
export const TaskSchema = z.object({
  agent: z.string().describe('name of an exposed agent (see list_agents)'),
  task: z.string().describe('what the agent should do'),
  context: z.string().optional().describe('background the agent needs'),
});

/** Tool result for a finished run: structured on success, isError (with run id and cause) otherwise. */
export function runToolResult(r: RunResult): CallToolResult {
  if (r.status === 'ok') {
    return { content: [{ type: 'text', text: r.output }], structuredContent: answerFirst(r) };
  }
  const partial = r.output ? `\n\nLast partial answer:\n${r.output}` : '';
  return {
    isError: true,
    content: [{ type: 'text', text: `run ${r.run_id} (${r.agent}) ${r.status}: ${r.error ?? 'no answer'}${partial}` }],
  };
}

/** Sends one progress line; `sent()` resolves once every line sent so far is out. */
export interface ProgressReport {
  (message: string): Promise<void>;
  sent(): Promise<void>;
}

/**
 * Progress notifications need a token from the client; progress must increase per token. A caller awaits
 * `sent()` before its result goes out: a line still on its way after the result is dropped by the client
 * (a fast run's only lines were lost that way over legacy SSE).
 */
export function progressReporter(ctx: ServerContext): ProgressReport | undefined {
  const token = ctx.mcpReq._meta?.progressToken;
  if (token === undefined) return undefined;
  let n = 0;
  let last: Promise<void> = Promise.resolve();
  const report = (message: string) => {
    n++;
    last = ctx.mcpReq
      .notify({ method: 'notifications/progress', params: { progressToken: token, progress: n, message } })
      .catch(() => {}); // progress is best effort: a client that went away needs none
    return last;
  };
  return Object.assign(report, { sent: () => last });
}

/** Error results of meta tools still carry the structured run record, for programs driving them. */
export function withStructured(res: CallToolResult, r: RunResult): CallToolResult {
  return res.isError ? { ...res, structuredContent: answerFirst(r) } : res;
}
