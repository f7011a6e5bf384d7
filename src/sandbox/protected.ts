// The paths the sandbox protects, from the one list the built-in file tools use too
// (permissions/protected-paths.ts), sorted into how bubblewrap mounts them:
//   dirs    every agent directory the server loads (agentsDir, delegate.agentDirs or the default
//           .claude/agents and .codex/agents): read-only, and created empty when a command could
//           otherwise plant one (an agent file planted there would be served with its own rights);
//   paths   what agents may read but not change (.git: hooks and config run programs for whoever uses
//           git next): read-only when they exist;
//   hidden  what agents may not read (the state dir with the ledger, audit log and other runs' artifacts,
//           the audit dir, an old .delegate-mcp, mcp.json with its keys): replaced by empty ones;
//   noCreate  all of them but the state dirs: where one is missing, a command that creates it has it
//           removed after the call (created.ts); the server's code files (kind "server") are in `paths`.
import type { ResolvedConfig } from '../config/config.js';
import { protectedPaths } from '../permissions/protected-paths.js';
import type { ProtectedPaths } from './mounts.js';

export function sandboxProtectedPaths(cfg: ResolvedConfig): ProtectedPaths {
  const list = protectedPaths(cfg);
  return {
    dirs: list.filter((p) => p.kind === 'agents').map((p) => p.path),
    paths: list.filter((p) => p.kind !== 'agents' && p.read === 'readable').map((p) => p.path),
    hidden: list.filter((p) => p.read !== 'readable').map((p) => p.path),
    noCreate: list.filter((p) => p.kind !== 'state').map((p) => p.path),
  };
}
