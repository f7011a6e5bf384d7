// The built-in tools an agent can be granted, by name. WHETHER a call may run is decided by the tool
// gate (src/orchestrator/tool-gate.ts) with the permission engine; these only do the work. Downstream
// MCP tools live in mcp-servers.ts and are named mcp__<server>__<tool>.
import type { AgentDefinition } from '../agents/definition.js';
import type { ToolSpec } from '../providers/types.js';
import { netTools } from './fetch-url.js';
import { fsTools } from './fs-tools.js';
import { commandTools } from './run-command.js';
import type { BuiltinTool } from './types.js';
import { writeTools } from './write-tools.js';

export const builtinTools: Record<string, BuiltinTool> = { ...fsTools, ...writeTools, ...commandTools, ...netTools };

/** The built-in tools an agent is granted that this server implements (before permission rules). */
export function toolsForAgent(agent: AgentDefinition): { specs: ToolSpec[]; missing: string[] } {
  const specs: ToolSpec[] = [];
  const missing: string[] = [];
  for (const name of agent.tools.builtin) {
    const tool = builtinTools[name];
    if (tool) specs.push(tool.spec);
    else missing.push(name);
  }
  return { specs, missing };
}
