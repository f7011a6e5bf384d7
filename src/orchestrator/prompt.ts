// Builds the system prompt and the first user message from an agent definition and its tool input.
import type { AgentDefinition } from '../agents/definition.js';
import type { ToolSpec } from '../contract/tool.js';

export function buildSystemPrompt(agent: AgentDefinition, tools: ToolSpec[], workspace: string): string {
  const parts: string[] = [];
  parts.push(`You are "${agent.name}", an agent run by delegate-mcp on behalf of another program or person.`);
  if (agent.goal) parts.push(`Goal: ${agent.goal.trim()}`);
  if (agent.instructions) parts.push(agent.instructions.trim());
  if (agent.successCriteria.length) {
    parts.push('Your answer is successful when:\n' + agent.successCriteria.map((c) => `- ${c}`).join('\n'));
  }
  if (tools.length) {
    parts.push(
      'Tools you may use (paths are relative to the workspace root):\n' +
        tools.map((t) => `- ${t.name}: ${t.description.split('\n')[0]}`).join('\n'),
    );
  } else {
    parts.push('You have no tools in this run: answer from the task and context given.');
  }
  if (agent.artifacts.length) {
    parts.push(
      'Deliverables expected from this run: ' +
        agent.artifacts.map((a) => a.name + (a.description ? ` (${a.description})` : '')).join(', ') +
        '. Put the full content of each in your final answer, wrapped as <artifact name="NAME">…</artifact>.',
    );
  }
  parts.push(`Workspace root: ${workspace}`);
  parts.push('When you are done, reply with your final answer only (no tool call). Be precise and complete; the caller sees only that answer.');
  return parts.join('\n\n');
}

/** The user message: `task` plus `context` for the default schema, or every input field for custom schemas. */
export function buildUserMessage(input: Record<string, unknown>): string {
  const { task, context, ...rest } = input;
  const parts: string[] = [];
  if (typeof task === 'string') parts.push(task);
  if (typeof context === 'string' && context.trim()) parts.push(`Context:\n${context}`);
  const others = Object.entries(rest).filter(([k]) => k !== 'budget' && k !== 'timeout_s');
  if (others.length || typeof task !== 'string') {
    parts.push('Input:\n' + JSON.stringify(typeof task === 'string' ? Object.fromEntries(others) : input, null, 2));
  }
  return parts.join('\n\n');
}
