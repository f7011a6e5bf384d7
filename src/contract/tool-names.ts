// Tool names that carry meaning: the prefixes of downstream MCP tools (`mcp__<server>__<tool>`) and of
// delegations to other agents (`agent__<name>`), and which built-in tools read or write files. Declared
// once; everything that builds or reads such a name uses these. A leaf: imports nothing of ours.

/** Prefix of a downstream MCP server's tool: `mcp__<server>__<tool>`. */
export const MCP_TOOL_PREFIX = 'mcp__';
/** Prefix of a delegation to another agent: `agent__<name>`. */
export const DELEGATION_TOOL_PREFIX = 'agent__';

export const isMcpToolName = (name: string): boolean => name.startsWith(MCP_TOOL_PREFIX);
export const isDelegationToolName = (name: string): boolean => name.startsWith(DELEGATION_TOOL_PREFIX);

/** The built-in tools that read files (governed by Read rules) and those that write them (Edit rules). */
export const READ_FILE_TOOLS: readonly string[] = ['read_file', 'list_dir', 'search_files'];
export const WRITE_FILE_TOOLS: readonly string[] = ['write_file', 'edit_file'];
export const isReadFileTool = (name: string): boolean => READ_FILE_TOOLS.includes(name);
export const isWriteFileTool = (name: string): boolean => WRITE_FILE_TOOLS.includes(name);

/** `agent__<name>` for the agent `name`. */
export const delegationToolName = (agent: string): string => `${DELEGATION_TOOL_PREFIX}${agent}`;
/** The agent an `agent__<name>` tool delegates to. */
export const delegationTarget = (tool: string): string => tool.slice(DELEGATION_TOOL_PREFIX.length);
