// Seed-format capabilities (`tools: {mcp, fs, net, shell}`, normalised into AgentDefinition.tools) → rules.
// Every seed grant becomes an *allow* rule; seed format has no denies.
//
//   fs.read: true                 → Read(**)
//   fs.write: true                → Edit(**)
//   fs.write: [globs]             → Edit(<glob>) each (workspace-relative, glob.ts syntax)
//   net.allow: [hosts]            → WebFetch(domain:<host>) each (`*.example.com` for subdomains)
//   shell.exec: ["npm test", …]   → Bash(<entry>) each: exact argv, unless it ends in ` *` or `:*` (prefix)
//   mcp: [server]                 → mcp__<server>__*
//   builtin read tools            → Read(**)   (read_file, list_dir, search_files)
//   builtin write tools           → Edit(**)   unless fs.write is a glob list: then the globs are the grant
//                                                 (the normaliser adds write_file/edit_file for a glob list,
//                                                 and widening that to ** would defeat the list).
//   builtin run_command/fetch_url → nothing by themselves: the normaliser adds them whenever shell.exec /
//                                   net.allow is non-empty, so mapping them to bare Bash/WebFetch would
//                                   turn "these commands/hosts" into "anything". Grants come from the lists
//                                   (or from explicit Bash(...)/WebFetch(...) permissions rules).
import { isReadFileTool, isWriteFileTool, MCP_TOOL_PREFIX } from '../contract/tool-names.js';

/** An agent's built-in tool grants and seed-format capabilities, normalised (AgentDefinition.tools). */
export interface SeedTools {
  /** Built-in tool names this agent may use (read_file, list_dir, search_files, …). */
  builtin: string[];
  /** Downstream MCP server names (from mcp.json mcpServers) this agent may use. */
  mcp: string[];
  fs: { read: boolean; write: boolean | string[] };
  net: { allow: string[] };
  shell: { exec: string[] };
}


export function translateSeedTools(tools: SeedTools): string[] {
  const out: string[] = [];
  const add = (r: string): void => {
    if (!out.includes(r)) out.push(r);
  };
  if (tools.fs.read || tools.builtin.some(isReadFileTool)) add('Read(**)');
  if (Array.isArray(tools.fs.write)) {
    for (const g of tools.fs.write) add(`Edit(${g})`);
  } else if (tools.fs.write || tools.builtin.some(isWriteFileTool)) {
    add('Edit(**)');
  }
  for (const h of tools.net.allow) add(`WebFetch(domain:${h})`);
  for (const c of tools.shell.exec) add(`Bash(${c})`);
  for (const server of tools.mcp) add(`${MCP_TOOL_PREFIX}${server}__*`);
  return out;
}
