// The zod schema for agent YAML files: the single source of truth for what an agent file may contain.
// Both spellings are accepted by one schema: the seed format (name, goal, tools{mcp, fs, net, shell},
// policies, success_criteria, artifacts) and its extensions (description, instructions, model, max_turns,
// budget, permissions, input_schema, output_schema, agents, expose). Every object is strict, so an
// unknown key is an error (the loader turns it into a "did you mean" hint using `objectKeysAt`).
// `normalise` turns a validated file into the internal `AgentDefinition`; nothing downstream sees raw files.
import { schemaProblem } from './json-schema.js';
import { z } from 'zod';
import type { AgentDefinition, ArtifactSpec } from './definition.js';
import type { JsonSchema } from '../contract/json-schema.js';
import { parseRule } from '../permissions/rules.js';

/** Tool names some MCP clients accept unchanged (others rewrite every other character). */
export const AGENT_NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;

/** Built-in tools, in the canonical order used for `AgentDefinition.tools.builtin`. */
export const BUILTIN_TOOL_NAMES = [
  'read_file',
  'list_dir',
  'search_files',
  'write_file',
  'edit_file',
  'run_command',
  'fetch_url',
] as const;
export type BuiltinToolName = (typeof BUILTIN_TOOL_NAMES)[number];

export const FS_READ_TOOLS: readonly BuiltinToolName[] = ['read_file', 'list_dir', 'search_files'];
export const FS_WRITE_TOOLS: readonly BuiltinToolName[] = ['write_file', 'edit_file'];

export function isBuiltinToolName(name: string): name is BuiltinToolName {
  return (BUILTIN_TOOL_NAMES as readonly string[]).includes(name);
}

export const DEFAULT_MAX_TURNS = 8;
export const DEFAULT_MAX_OUTPUT_TOKENS = 4096;

/** The input schema an agent gets when its file declares none: a required `task` and an optional `context`. */
export function defaultInputSchema(): JsonSchema {
  return {
    type: 'object',
    properties: {
      task: { type: 'string', description: 'What the agent should do: the request, in full sentences.' },
      context: {
        type: 'string',
        description: 'Optional background: relevant files, constraints, prior findings, what has been tried.',
      },
    },
    required: ['task'],
  };
}

const nonEmpty = z.string().trim().min(1);

const agentName = z.string().regex(AGENT_NAME_RE, {
  error: (iss) =>
    `invalid name ${JSON.stringify(iss.input)}: use 1-64 characters from A-Z, a-z, 0-9, "_" and "-" ` +
    '(MCP clients rewrite or reject other characters in tool names)',
});

const positiveInt = z.number().int().positive();

/**
 * A JSON Schema for a tool's input or output. Deliberately open (JSON Schema has many keywords), but the
 * top level must be `type: object` because MCP tool inputs are objects.
 */
const objectJsonSchema = z
  .looseObject({
    type: z.literal('object'),
    properties: z.record(z.string(), z.record(z.string(), z.unknown())).optional(),
    required: z.array(z.string()).optional(),
  })
  .superRefine((s, ctx) => {
    if (!s.properties || !s.required) return;
    s.required.forEach((key, i) => {
      if (!(key in s.properties!)) {
        ctx.addIssue({
          code: 'custom',
          path: ['required', i],
          message: `"${key}" is listed as required but is not defined in properties`,
        });
      }
    });
  });

/** output_schema: an object schema that ajv accepts (a broken one is a load error at its line). */
const outputJsonSchema = objectJsonSchema.superRefine((s, ctx) => {
  const problem = schemaProblem(s as Record<string, unknown>);
  if (problem) ctx.addIssue({ code: 'custom', path: problem.path, message: problem.message });
});

const artifact = z.union([
  nonEmpty,
  z.strictObject({
    name: nonEmpty,
    description: z.string().optional(),
  }),
]);

const toolsSchema = z.strictObject({
  /** Downstream MCP server names; entries that are built-in tool names grant that built-in instead. */
  mcp: z.array(nonEmpty).optional(),
  fs: z
    .strictObject({
      read: z.boolean().optional(),
      /** true, false, or a list of path globs the agent may write. */
      write: z.union([z.boolean(), z.array(nonEmpty)]).optional(),
    })
    .optional(),
  net: z.strictObject({ allow: z.array(nonEmpty).optional() }).optional(),
  shell: z.strictObject({ exec: z.array(nonEmpty).optional() }).optional(),
});

const policiesSchema = z.strictObject({
  context: z
    .strictObject({
      max_tokens: positiveInt.optional(),
      retention: z.string().optional(),
    })
    .optional(),
  secrets: z.strictObject({ redact: z.boolean().optional() }).optional(),
});

/** The OS sandbox run_command uses for this agent (src/sandbox/). */
const sandboxSchema = z.strictObject({
  /** Commands may use the network (off by default: their own network namespace has no interfaces). */
  network: z.boolean().default(false),
});

const budgetSchema = z.strictObject({
  run_tokens: positiveInt.optional(),
  run_usd: z.number().positive().optional(),
  daily_tokens: positiveInt.optional(),
  daily_usd: z.number().positive().optional(),
});

// A rule that does not parse is an error at load time (file:line:col), not a silent no-op at run time.
const permissionRule = nonEmpty.superRefine((s, ctx) => {
  const p = parseRule(s);
  if (!p.ok) ctx.addIssue({ code: 'custom', message: p.error });
});

const permissionsSchema = z.strictObject({
  deny: z.array(permissionRule).optional(),
  ask: z.array(permissionRule).optional(),
  allow: z.array(permissionRule).optional(),
});

export const AgentFileSchema = z
  .strictObject({
    name: agentName,
    description: nonEmpty.optional(),
    goal: nonEmpty.optional(),
    instructions: z.string().optional(),
    model: z
      .string()
      .regex(/^[^/\s]+\/\S+$/, {
        error: (iss) =>
          `expected "<provider>/<model-id>" (e.g. "anthropic/claude-sonnet-5-5"), got ${JSON.stringify(iss.input)}`,
      })
      .optional(),
    max_turns: z.number().int().min(1).max(200).default(DEFAULT_MAX_TURNS),
    max_output_tokens: z.number().int().min(1).max(200_000).default(DEFAULT_MAX_OUTPUT_TOKENS),
    temperature: z.number().min(0).max(2).optional(),
    timeout_s: z.number().positive().optional(),
    input_schema: objectJsonSchema.optional(),
    expose: z.boolean().default(true),
    success_criteria: z.array(nonEmpty).optional(),
    artifacts: z.array(artifact).optional(),
    tools: toolsSchema.optional(),
    policies: policiesSchema.optional(),
    budget: budgetSchema.optional(),
    permissions: permissionsSchema.optional(),
    sandbox: sandboxSchema.optional(),
    agents: z.array(agentName).optional(),
    /** May this agent be re-entered by a delegation chain it is already part of (never with the same task). */
    allow_reentry: z.boolean().default(false),
    /**
     * Queue mode: a run whose worker was lost is tried again, up to `attempts` tries in all. Opt-in only,
     * and only for an agent its author declares idempotent (runs have side effects; none is retried blindly).
     */
    retry: z.strictObject({ attempts: z.number().int().min(1).max(5), only: z.literal('idempotent') }).optional(),
    output_schema: outputJsonSchema.optional(),
  })
  .superRefine(
    (file, ctx) => {
      if (file.description === undefined && file.goal === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['description'],
          message: 'either "description" or "goal" is required (it becomes the tool description MCP clients see)',
        });
      }
    },
    // Run even when other fields are invalid, so one pass reports most problems (zod still skips it
    // after an aborting issue such as a non-integer where an integer is expected).
    { when: (payload) => typeof payload.value === 'object' && payload.value !== null && !Array.isArray(payload.value) },
  );

/** A validated agent file (snake_case, as written), with schema defaults applied. */
export type AgentFile = z.output<typeof AgentFileSchema>;

/** Validated file → internal definition. `file` is recorded as the definition's source. */
export function normalise(raw: AgentFile, file: string): AgentDefinition {
  const tools = raw.tools ?? {};
  const granted = new Set<BuiltinToolName>();
  const mcp: string[] = [];
  for (const entry of tools.mcp ?? []) {
    if (isBuiltinToolName(entry)) granted.add(entry);
    else if (!mcp.includes(entry)) mcp.push(entry);
  }
  const fsRead = tools.fs?.read ?? false;
  // An empty glob list grants nothing, so it is the same as false.
  const rawWrite = tools.fs?.write ?? false;
  const fsWrite: boolean | string[] = Array.isArray(rawWrite) ? (rawWrite.length > 0 ? [...rawWrite] : false) : rawWrite;
  const netAllow = [...(tools.net?.allow ?? [])];
  const shellExec = [...(tools.shell?.exec ?? [])];
  if (fsRead) FS_READ_TOOLS.forEach((t) => granted.add(t));
  if (fsWrite !== false) FS_WRITE_TOOLS.forEach((t) => granted.add(t));
  if (netAllow.length > 0) granted.add('fetch_url');
  if (shellExec.length > 0) granted.add('run_command');

  const artifacts: ArtifactSpec[] = (raw.artifacts ?? []).map((a) =>
    typeof a === 'string' ? { name: a } : a.description !== undefined ? { name: a.name, description: a.description } : { name: a.name },
  );

  const context = raw.policies?.context;
  const budget = raw.budget;
  // The schema guarantees one of the two is present.
  const description = raw.description ?? raw.goal ?? '';

  return {
    name: raw.name,
    description,
    ...(raw.goal !== undefined && { goal: raw.goal }),
    ...(raw.instructions !== undefined && { instructions: raw.instructions }),
    ...(raw.model !== undefined && { model: raw.model }),
    maxTurns: raw.max_turns,
    maxOutputTokens: raw.max_output_tokens,
    ...(raw.temperature !== undefined && { temperature: raw.temperature }),
    ...(raw.timeout_s !== undefined && { timeoutS: raw.timeout_s }),
    inputSchema: (raw.input_schema as JsonSchema | undefined) ?? defaultInputSchema(),
    expose: raw.expose,
    successCriteria: [...(raw.success_criteria ?? [])],
    artifacts,
    tools: {
      builtin: BUILTIN_TOOL_NAMES.filter((t) => granted.has(t)),
      mcp,
      fs: { read: fsRead, write: fsWrite },
      net: { allow: netAllow },
      shell: { exec: shellExec },
    },
    policies: {
      context: {
        ...(context?.max_tokens !== undefined && { maxTokens: context.max_tokens }),
        ...(context?.retention !== undefined && { retention: context.retention }),
      },
      secrets: { redact: raw.policies?.secrets?.redact ?? false },
    },
    budget: {
      ...(budget?.run_tokens !== undefined && { runTokens: budget.run_tokens }),
      ...(budget?.run_usd !== undefined && { runUsd: budget.run_usd }),
      ...(budget?.daily_tokens !== undefined && { dailyTokens: budget.daily_tokens }),
      ...(budget?.daily_usd !== undefined && { dailyUsd: budget.daily_usd }),
    },
    permissions: {
      deny: [...(raw.permissions?.deny ?? [])],
      ask: [...(raw.permissions?.ask ?? [])],
      allow: [...(raw.permissions?.allow ?? [])],
    },
    sandbox: { network: raw.sandbox?.network ?? false },
    agents: [...new Set(raw.agents ?? [])],
    allowReentry: raw.allow_reentry,
    ...(raw.retry && { retry: { attempts: raw.retry.attempts } }),
    ...(raw.output_schema !== undefined && { outputSchema: raw.output_schema as JsonSchema }),
    source: { file, format: 'yaml' },
  };
}
