// The built-in tools an agent can be granted, by name. Downstream MCP tools and agent delegation
// join this table in later stages; the orchestrator only ever looks tools up here.
import type { AgentDefinition } from '../agents/definition.js';
import type { ToolSpec } from '../providers/types.js';
import { fsTools } from './fs-tools.js';
import type { BuiltinTool } from './types.js';

export const builtinTools: Record<string, BuiltinTool> = { ...fsTools };

/** The tools an agent is offered: its grants that this server actually implements. */
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
