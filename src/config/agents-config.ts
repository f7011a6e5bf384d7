// mcp.json settings for where agents come from and how they may be made: extra agent directories in
// other formats (Claude Code sub-agents, Codex agents), hot reload, and create_agent. Kept apart from
// config.ts so that file only names them.
import { z } from 'zod';

export const AGENT_FORMATS = ['yaml', 'claude-md', 'codex-toml'] as const;
export type AgentFileFormat = (typeof AGENT_FORMATS)[number];

/** `delegate.agentDirs`: more directories to load agents from, each in one format (paths relative to mcp.json). */
export const AgentDirsSchema = z.array(
  z.strictObject({
    path: z.string().min(1),
    format: z.enum(AGENT_FORMATS),
  }),
);

/**
 * The most a created agent may be granted, in the seed `tools` shape plus `agents` (delegation).
 * Anything a drafted definition asks for beyond it is removed before the agent is registered.
 */
export const CreateAgentCeilingSchema = z.strictObject({
  fs: z
    .strictObject({
      read: z.boolean().default(true),
      /** false, true (anywhere in the workspace), or the only globs a created agent may write. */
      write: z.union([z.boolean(), z.array(z.string().min(1))]).default(false),
    })
    .default({ read: true, write: false }),
  /** Commands (seed `shell.exec` entries, e.g. "npm test", "git log:*") a created agent may be granted. */
  shell: z.strictObject({ exec: z.array(z.string().min(1)).default([]) }).default({ exec: [] }),
  /** Hosts a created agent may fetch from ("*" = any host the draft names). */
  net: z.strictObject({ allow: z.array(z.string().min(1)).default([]) }).default({ allow: [] }),
  /** Downstream MCP servers (mcp.json mcpServers) a created agent may use. */
  mcp: z.array(z.string().min(1)).default([]),
  /** Agents a created agent may delegate to. */
  agents: z.array(z.string().min(1)).default([]),
  /** Whether a created agent may give its commands the network (its `sandbox.network`). */
  sandbox: z.strictObject({ network: z.boolean().default(false) }).default({ network: false }),
});
export type CreateAgentCeiling = z.output<typeof CreateAgentCeilingSchema>;

export const DEFAULT_CEILING: CreateAgentCeiling = CreateAgentCeilingSchema.parse({});

/** `delegate.createAgent`: the create_agent tool and `agents create`. */
export const CreateAgentConfigSchema = z.strictObject({
  /** Offer the create_agent tool (it spends model tokens of the server's key). */
  enabled: z.boolean().default(true),
  /** "<provider>/<model-id>" that drafts definitions; default: the server's default model. */
  model: z.string().optional(),
  /** Whether `save: true` may write the created agent to the agents directory. */
  allowSave: z.boolean().default(false),
  ceiling: CreateAgentCeilingSchema.default(DEFAULT_CEILING),
});
export type CreateAgentConfig = z.output<typeof CreateAgentConfigSchema>;

export const DEFAULT_CREATE_AGENT_CONFIG: CreateAgentConfig = CreateAgentConfigSchema.parse({});
