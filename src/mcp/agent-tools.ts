// The per-agent MCP tools of one session, kept in step with the live agent store: at session start every
// exposed agent is registered; on each store 'change' (hot reload, create_agent) new agents are
// registered, changed ones updated (description, input schema, annotations) and removed ones removed.
// The SDK sends notifications/tools/list_changed for each of those once the session is connected
// (coalesced per tick by the server's debouncedNotificationMethods). Also: the create_agent tool.
import path from 'node:path';
import { fromJsonSchema, type CallToolResult, type McpServer, type RegisteredTool, type ServerContext, type StandardSchemaWithJSON } from '@modelcontextprotocol/server';
import { z } from 'zod';
import { createAgent, CreateAgentError } from '../agents/create.js';
import { draftThroughOrchestrator } from '../orchestrator/draft-agent.js';
import type { AgentDefinition } from '../agents/definition.js';
import { AGENT_NAME_RE, defaultInputSchema } from '../agents/schema.js';
import type { AgentStore } from '../agents/store.js';
import { log } from '../log.js';
import type { RunLauncher } from '../orchestrator/launcher.js';
import { SHIPPED_AGENTS_DIR } from '../paths.js';
import type { Orchestrator } from '../orchestrator/orchestrator.js';
import { CallBudgetSchema, progressReporter, runResultJsonSchema } from './tool-results.js';

export type RunAgentFn = (agent: string, input: Record<string, unknown>, ctx: ServerContext) => Promise<CallToolResult>;

/** Tools every session has besides the agents: an agent may not take these names. */
export const RESERVED_TOOL_NAMES = [
  'list_agents',
  'create_agent',
  'delegate',
  'delegate_parallel',
  'budget_status',
  'run_status',
  'run_result',
  'run_cancel',
];

const READ_ONLY_TOOLS = new Set(['read_file', 'list_dir', 'search_files']);

let callBudgetJson: Record<string, unknown> | undefined;

/** Adds the optional `budget` argument to an agent's input schema (unless the author used that name). */
function withBudgetArgument(schema: Record<string, unknown>): Record<string, unknown> {
  const props = (schema.properties ?? {}) as Record<string, unknown>;
  if ('budget' in props) return schema;
  // Computed on first use: the CLI loads this module for RESERVED_TOOL_NAMES without serving tools.
  callBudgetJson ??= z.toJSONSchema(CallBudgetSchema) as Record<string, unknown>;
  return { ...schema, properties: { ...props, budget: callBudgetJson } };
}

type ToolSchema = StandardSchemaWithJSON<Record<string, unknown>>;

/**
 * An agent tool's input or output schema, as `fromJsonSchema` makes it. `fromJsonSchema` compiles it (ajv)
 * at once, and tools are registered while `initialize` waits: ~20-80 ms of main-thread CPU per session,
 * most of it the first ajv instance and the shared run-result schema. A schema made only of the server's
 * own parts (the default input, the run result without an output_schema, the shipped agents' schemas)
 * cannot fail to compile, so it is compiled on its first validation, or in idle time once a client has
 * listed the tools (prepareSoon). A schema with a user's part is compiled now, as before: a broken one
 * keeps its agent from being offered. Either way it validates with the same validator and advertises
 * the same JSON Schema. Kept per schema across sessions (HTTP serves one session per client): compiled
 * once per process.
 */
function toolSchema(schema: Record<string, unknown>, authored: boolean): ToolSchema {
  const key = JSON.stringify(schema);
  const known = toolSchemas.get(key);
  if (known) return known;
  let compiled: ToolSchema | undefined;
  const compile = () => (compiled ??= fromJsonSchema<Record<string, unknown>>(schema as any));
  if (authored) compile(); // throws for a schema ajv cannot compile: the caller does not offer the agent
  const listed = () => {
    if (!compiled) prepareSoon(compile);
    return schema;
  };
  const deferred: ToolSchema = {
    '~standard': {
      version: 1,
      vendor: 'mcp',
      jsonSchema: { input: listed, output: listed },
      validate: (value) => compile()['~standard'].validate(value),
    },
  };
  if (toolSchemas.size >= 256) toolSchemas.clear(); // agents are few; this bounds a reload loop
  toolSchemas.set(key, deferred);
  return deferred;
}

const toolSchemas = new Map<string, ToolSchema>();
const DEFAULT_INPUT = JSON.stringify(defaultInputSchema());
const toPrepare = new Set<() => unknown>();

/**
 * Compiles listed schemas shortly after a tools/list answer has gone out, one per turn of the event loop.
 * Not at once: a client that calls right after listing (a script, a fan-out) would find the main thread
 * busy compiling other agents' schemas; such a call compiles only its own, on first use. A client whose
 * model reads the list first finds them all compiled.
 */
function prepareSoon(compile: () => unknown): void {
  if (toPrepare.size === 0) setTimeout(prepareNext, PREPARE_AFTER_MS).unref();
  toPrepare.add(compile);
}

const PREPARE_AFTER_MS = 100;

function prepareNext(): void {
  const [next] = toPrepare;
  if (!next) return;
  toPrepare.delete(next);
  try {
    next();
  } catch (err) {
    // Not expected (see toolSchema); a call to the tool then gets the same error as its result.
    log.error(`compiling a tool schema failed: ${(err as Error).message}`);
  }
  if (toPrepare.size) setImmediate(prepareNext);
}

function toolConfig(agent: AgentDefinition) {
  const inputJson = withBudgetArgument(agent.inputSchema);
  const annotations = {
    readOnlyHint: agent.tools.builtin.every((t) => READ_ONLY_TOOLS.has(t)) && agent.tools.mcp.length === 0,
    openWorldHint: true,
  };
  const outputJson = runResultJsonSchema(agent.outputSchema);
  const shipped = agent.source.file.startsWith(SHIPPED_AGENTS_DIR + path.sep);
  return {
    description: agent.description,
    inputSchema: toolSchema(inputJson, !shipped && JSON.stringify(agent.inputSchema) !== DEFAULT_INPUT),
    outputSchema: toolSchema(outputJson, !shipped && agent.outputSchema !== undefined),
    annotations,
    /** What a client sees of the tool: when it changes, the tool is updated. */
    key: JSON.stringify([agent.description, inputJson, annotations, agent.outputSchema ?? null]),
  };
}

/**
 * Registers the store's exposed agents on `server` and keeps them in step with the store until the
 * session closes (or the returned function is called).
 */
export function syncAgentTools(server: McpServer, store: AgentStore, runAgent: RunAgentFn): () => void {
  const registered = new Map<string, { tool: RegisteredTool; key: string }>();
  const refused = new Set<string>();

  const sync = () => {
    const wanted = new Map(store.exposed().map((a) => [a.name, a]));
    for (const [name, r] of registered) {
      if (wanted.has(name)) continue;
      r.tool.remove();
      registered.delete(name);
    }
    for (const agent of wanted.values()) {
      const r = registered.get(agent.name);
      let c: ReturnType<typeof toolConfig>;
      try {
        c = toolConfig(agent);
      } catch (err) {
        // A user's input_schema or output_schema the SDK's validator cannot compile: that agent is not
        // offered (it used to fail the whole session's initialize with an internal error).
        if (!refused.has(agent.name)) log.error(`agent "${agent.name}" (${agent.source.file}) is not offered: ${(err as Error).message}`);
        refused.add(agent.name);
        r?.tool.remove();
        registered.delete(agent.name);
        continue;
      }
      if (r) {
        if (r.key !== c.key) {
          r.tool.update({ description: c.description, paramsSchema: c.inputSchema, outputSchema: c.outputSchema, annotations: c.annotations });
          r.key = c.key;
        }
        continue;
      }
      if (RESERVED_TOOL_NAMES.includes(agent.name)) {
        if (!refused.has(agent.name)) log.error(`agent "${agent.name}" (${agent.source.file}) is not offered: the name belongs to a built-in tool`);
        refused.add(agent.name);
        continue;
      }
      try {
        const name = agent.name;
        const tool = server.registerTool(
          name,
          { description: c.description, inputSchema: c.inputSchema, outputSchema: c.outputSchema, annotations: c.annotations },
          // By name: the run uses the store's definition at call time, so updates need no new callback.
          async (args: Record<string, unknown>, ctx: ServerContext) => runAgent(name, args, ctx),
        );
        registered.set(name, { tool, key: c.key });
      } catch (err) {
        if (!refused.has(agent.name)) log.error(`agent "${agent.name}" (${agent.source.file}) is not offered: ${(err as Error).message}`);
        refused.add(agent.name);
      }
    }
  };

  sync();
  let connectedOnce = false;
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    store.off('change', onChange);
  };
  function onChange(): void {
    // A session that went away without our close hook running (a transport that replaced onclose).
    if (server.isConnected()) connectedOnce = true;
    else if (connectedOnce) return stop();
    try {
      sync();
    } catch (err) {
      log.error(`updating the agent tools of a session failed: ${(err as Error).message}`);
    }
  }
  store.on('change', onChange);
  // Unsubscribe when the session's server closes (chained: the transport entry may set its own).
  const inner = server.server;
  const previous = inner.onclose;
  inner.onclose = () => {
    stop();
    previous?.();
  };
  return stop;
}

const CreateAgentOutput = z.object({
  name: z.string(),
  tool_name: z.string(),
  yaml: z.string(),
  file: z.string(),
  saved: z.boolean(),
  save_refused: z.string().optional(),
  clamped: z.array(z.string()),
  attempts: z.number(),
  model: z.string(),
});

/** create_agent: a model drafts a definition from a description; the agent is served at once. */
export function registerCreateAgentTool(server: McpServer, orchestrator: Orchestrator, launcher: RunLauncher, owner: string): void {
  const cc = orchestrator.cfg.delegate.createAgent;
  if (cc && !cc.enabled) return;
  server.registerTool(
    'create_agent',
    {
      description:
        'Create a new agent from a plain-language description. A model drafts its definition (name, description, instructions, tools); its permissions are reduced to what this server allows created agents (by default: reading workspace files only), and it becomes a new tool at once (clients get tools/list_changed). Returns the definition as YAML and the new tool\'s name. With save: true it is also written to the agents directory, if the server allows that.',
      inputSchema: z.object({
        description: z.string().min(1).describe('what the agent should do, for whom, and what a good answer looks like'),
        name: z.string().regex(AGENT_NAME_RE).optional().describe('tool name for the agent ([A-Za-z0-9_-], 1-64); default: chosen by the model'),
        save: z.boolean().optional().describe('also write it to the agents directory (only when the server allows it)'),
        budget: CallBudgetSchema.optional(),
      }),
      outputSchema: CreateAgentOutput,
      annotations: { readOnlyHint: false, openWorldHint: true },
    },
    async (args, ctx) => {
      const report = progressReporter(ctx);
      const onProgress = report && ((m: string) => void report(m));
      try {
        const out = await createAgent(
          orchestrator.cfg,
          orchestrator.agents,
          { description: args.description, name: args.name, save: args.save, onProgress },
          RESERVED_TOOL_NAMES,
          // Drafting is a run like any other: budget, audit, progress, cancel.
          (modelRef) => draftThroughOrchestrator(launcher, modelRef, { owner, signal: ctx.mcpReq.signal, onProgress, budget: args.budget }),
        );
        log.info(`create_agent: created "${out.name}" (${out.savedTo ?? 'in memory'})${out.clamped.length ? `; removed ${out.clamped.join(', ')}` : ''}`);
        const structured = {
          name: out.name,
          tool_name: out.toolName,
          yaml: out.yaml,
          file: out.definition.source.file,
          saved: out.savedTo !== undefined,
          ...(out.saveRefused && { save_refused: out.saveRefused }),
          clamped: out.clamped,
          attempts: out.attempts,
          model: out.model,
        };
        const notes = [
          `Created agent "${out.name}": call the tool "${out.toolName}".`,
          out.savedTo ? `Saved to ${out.savedTo}.` : '',
          out.saveRefused ? out.saveRefused : '',
          out.clamped.length ? `Removed by the server's permission ceiling: ${out.clamped.join('; ')}.` : '',
        ].filter(Boolean);
        return { content: [{ type: 'text', text: `${notes.join('\n')}\n\n${out.yaml}` }], structuredContent: structured };
      } catch (err) {
        const msg = err instanceof CreateAgentError ? err.message : `create_agent failed: ${(err as Error).message}`;
        if (!(err instanceof CreateAgentError)) {
          // One line like every other server error; the stack only at debug level (DELEGATE_MCP_LOG_LEVEL=debug).
          log.error(msg);
          if (err instanceof Error && err.stack) log.debug(err.stack);
        }
        return { isError: true, content: [{ type: 'text', text: msg }] };
      }
    },
  );
}
