// What a run's model is offered, and how a tool call is described to a human: the tool gate's
// (tool-gate.ts) helpers that need no run state.
import type { AgentDefinition } from '../agents/definition.js';
import { MCP_TOOL_PREFIX, READ_FILE_TOOLS, WRITE_FILE_TOOLS, isMcpToolName } from '../contract/tool-names.js';
import { checkMcpTool, parseRule, toolOffered, type RuleSet } from '../permissions/index.js';
import { describeArgv } from '../permissions/command.js';
import { compileNameGlob } from '../glob.js';
import type { ToolSpec } from '../contract/tool.js';
import { builtinTools } from '../tools/registry.js';

/** Which built-ins a rule kind grants, for agents written with `permissions:` only. */
const TOOLS_OF_KIND: Record<string, readonly string[]> = { Read: READ_FILE_TOOLS, Edit: WRITE_FILE_TOOLS, Bash: ['run_command'], WebFetch: ['fetch_url'] };

/**
 * Built-in tools the agent is granted: its seed/builtin grants plus every tool whose kind one of its own
 * `permissions` allow/ask rules names (so a Claude-Code-style agent needs no seed `tools`). The result
 * is still filtered by toolOffered(), which also applies the caller's layers and bare denies.
 */
function grantedBuiltins(agent: AgentDefinition): string[] {
  const names = new Set(agent.tools.builtin);
  for (const s of [...agent.permissions.allow, ...agent.permissions.ask]) {
    const p = parseRule(s);
    if (p.ok) for (const t of TOOLS_OF_KIND[p.rule.kind] ?? []) names.add(t);
  }
  return Object.keys(builtinTools).filter((n) => names.has(n));
}

/** Downstream servers the agent may use: `tools.mcp`, or any allow/ask rule `mcp__<server glob>…`. */
export function mcpServersFor(agent: AgentDefinition, configured: readonly string[]): string[] {
  const globs: RegExp[] = [];
  for (const s of [...agent.permissions.allow, ...agent.permissions.ask]) {
    const p = parseRule(s);
    if (!p.ok || p.rule.kind !== 'mcp') continue;
    const rest = p.rule.source.slice(MCP_TOOL_PREFIX.length);
    const sep = rest.indexOf('__');
    globs.push(compileNameGlob(sep < 0 ? rest : rest.slice(0, sep)));
  }
  return configured.filter((s) => agent.tools.mcp.includes(s) || globs.some((g) => g.test(s)));
}

/** The ToolSpecs the model is offered: granted built-ins and the given MCP tools, each allowed by toolOffered. */
export function offeredTools(agent: AgentDefinition, rules: RuleSet, mcpTools: readonly ToolSpec[]): ToolSpec[] {
  const specs = grantedBuiltins(agent)
    .filter((n) => toolOffered(rules, n))
    .map((n) => builtinTools[n].spec);
  for (const t of mcpTools) if (toolOffered(rules, t.name)) specs.push(t);
  return specs;
}

/** Why a tool that exists is not offered, naming the rule when one rules it out. */
export function whyNotOffered(rules: RuleSet, tool: string): string {
  if (isMcpToolName(tool)) return checkMcpTool(rules, tool).reason;
  const kind = Object.keys(TOOLS_OF_KIND).find((k) => TOOLS_OF_KIND[k].includes(tool)) ?? tool;
  const label = (l: RuleSet['layers'][number]) => (l.label ? ` [${l.label}]` : '');
  for (const layer of rules.layers) {
    // A bare deny rules out the whole kind (a path that may not be read may not be edited either).
    const bare = layer.deny.find((r) => r.trim() === kind || (kind === 'Edit' && r.trim() === 'Read'));
    if (bare) return `denied by rule "${bare}"${label(layer)}`;
  }
  const lacking = rules.layers.find(
    (l) => ![...l.allow, ...l.ask].some((r) => {
      const p = parseRule(r);
      return p.ok && p.rule.kind === kind;
    }),
  );
  return `no allow or ask rule grants ${kind}${lacking ? label(lacking) : ''}`;
}

/** A short human description of what a call does, for approval prompts and logs. */
export function summarizeCall(tool: string, args: Record<string, unknown>): string {
  const s = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));
  const short = (t: string) => (t.length > 200 ? `${t.slice(0, 200)}…` : t);
  switch (tool) {
    case 'run_command':
      return Array.isArray(args.argv) && args.argv.every((a) => typeof a === 'string')
        ? `run \`${short(describeArgv(args.argv as string[]))}\``
        : `run ${short(s(args.argv))}`;
    case 'write_file':
      return `write \`${short(s(args.path))}\``;
    case 'edit_file':
      return `edit \`${short(s(args.path))}\``;
    case 'read_file':
      return `read \`${short(s(args.path))}\``;
    case 'list_dir':
      return `list \`${short(s(args.path ?? '.'))}\``;
    case 'search_files':
      return `search \`${short(s(args.path ?? '.'))}\` for /${short(s(args.pattern))}/`;
    case 'fetch_url':
      return `fetch \`${short(s(args.url))}\``;
    default:
      return `call \`${tool}\` with ${short(JSON.stringify(args ?? {}))}`;
  }
}
