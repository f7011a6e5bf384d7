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
 * `delegate.agentSources`: which agent directories outside the workspace are read. They come after the
 * workspace's own directories, so they never shadow a workspace agent (see agent-sources.ts).
 */
export const AgentSourcesSchema = z.strictObject({
  /** `$XDG_CONFIG_HOME/delegate-mcp/agents` (default `~/.config/delegate-mcp/agents`): the user's own YAML agents. */
  user: z.boolean().default(true),
  /** `~/.claude/agents`: the user's Claude Code sub-agents (off by default: they are written for Claude Code). */
  userClaude: z.boolean().default(false),
  /** `~/.codex/agents`: the user's Codex agents (off by default). */
  userCodex: z.boolean().default(false),
  /** The agents shipped with this install (the package's own `agents/`). */
  shipped: z.boolean().default(true),
});
export type AgentSourcesConfig = z.output<typeof AgentSourcesSchema>;

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
