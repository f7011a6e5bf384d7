// The built-in tools an agent can be granted, by name. WHETHER a call may run is decided by the tool
// gate (src/orchestrator/tool-gate.ts) with the permission engine; these only do the work. Downstream
// MCP tools live in mcp-servers.ts and are named mcp__<server>__<tool>.
import { netTools } from './fetch-url.js';
import { fsTools } from './fs-tools.js';
import { commandTools } from './run-command.js';
import type { BuiltinTool } from './types.js';
import { writeTools } from './write-tools.js';

export const builtinTools: Record<string, BuiltinTool> = { ...fsTools, ...writeTools, ...commandTools, ...netTools };
