// The paths the sandbox protects, from the server's config. ONE place builds these lists; the built-in
// file tools have their own list of protected paths (src/permissions/) — when both exist, this should
// take its list from there.
//   dirs    every agent directory the server loads (agentsDir, delegate.agentDirs or the default
//           .claude/agents and .codex/agents): read-only, and created empty when a command could
//           otherwise plant one (an agent file planted there would be served with its own rights);
//   paths   .git (hooks and config run programs for whoever uses git next) and the default mcp.json
//           of the workspace: read-only when they exist;
//   hidden  the state dir (ledger, audit log, other runs' artifacts), the audit dir and the config
//           file in use (it may hold API keys): replaced by empty ones.
import path from 'node:path';
import { agentSources } from '../agents/formats.js';
import type { ResolvedConfig } from '../config/config.js';
import type { ProtectedPaths } from './mounts.js';

export function sandboxProtectedPaths(cfg: ResolvedConfig): ProtectedPaths {
  const ws = cfg.workspace;
  return {
    dirs: agentSources(cfg).map((s) => path.resolve(s.dir)),
    paths: [path.join(ws, '.git'), path.join(ws, 'mcp.json')],
    hidden: [cfg.stateDir, ...(cfg.auditDir ? [cfg.auditDir] : []), ...(cfg.configFile ? [cfg.configFile] : [])].map((p) => path.resolve(p)),
  };
}
