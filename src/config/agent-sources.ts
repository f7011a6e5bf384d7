// The directories a server's agents come from, derived from its config alone. In config/, not agents/:
// the permission layer protects these directories and must not depend on the agent loaders.
import path from 'node:path';
import type { AgentFileFormat } from './agents-config.js';
import type { ResolvedConfig } from './config.js';
import { homeDir, userConfigDir } from './locations.js';
import { SHIPPED_AGENTS_DIR } from '../paths.js';

/** Where an agent directory belongs: the project, the user, or this install. */
export type AgentOrigin = 'workspace' | 'user' | 'shipped';

/** One directory of agent files in one format. */
export interface AgentSource {
  dir: string;
  format: AgentFileFormat;
  /** Scanned by default only when present: a missing directory is not an error. */
  optional?: boolean;
  /** Default 'workspace'. An agent from a later origin with a name already taken is shadowed, not an error. */
  origin?: AgentOrigin;
}

/**
 * Where the server's agents come from, in precedence order (on a name clash the earlier one wins):
 *   1. the workspace: its YAML agents directory (`agents/`, or --agents / delegate.agentsDir), then
 *      `delegate.agentDirs`, or by default `.claude/agents` and `.codex/agents` under the workspace;
 *   2. the user: `$XDG_CONFIG_HOME/delegate-mcp/agents` (on by default), `~/.claude/agents` and
 *      `~/.codex/agents` (off by default; delegate.agentSources);
 *   3. the agents shipped with this install (on by default).
 * The user's and shipped agents come last, so they never shadow a workspace agent. Only a directory
 * that was named (--agents, delegate.agentsDir, delegate.agentDirs) must exist.
 */
export function agentSources(cfg: ResolvedConfig, env: NodeJS.ProcessEnv = process.env): AgentSource[] {
  const out: AgentSource[] = [{ dir: cfg.agentsDir, format: 'yaml', optional: !cfg.agentsDirExplicit, origin: 'workspace' }];
  const base = cfg.configFile ? path.dirname(cfg.configFile) : cfg.workspace;
  const extra: AgentSource[] = cfg.delegate.agentDirs
    ? cfg.delegate.agentDirs.map((d) => ({ dir: path.resolve(base, d.path), format: d.format, origin: 'workspace' as const }))
    : [
        { dir: path.join(cfg.workspace, '.claude', 'agents'), format: 'claude-md', optional: true, origin: 'workspace' },
        { dir: path.join(cfg.workspace, '.codex', 'agents'), format: 'codex-toml', optional: true, origin: 'workspace' },
      ];
  const use = cfg.delegate.agentSources;
  const home = homeDir(env);
  if (use.user) extra.push({ dir: path.join(userConfigDir(env), 'agents'), format: 'yaml', optional: true, origin: 'user' });
  if (use.userClaude) extra.push({ dir: path.join(home, '.claude', 'agents'), format: 'claude-md', optional: true, origin: 'user' });
  if (use.userCodex) extra.push({ dir: path.join(home, '.codex', 'agents'), format: 'codex-toml', optional: true, origin: 'user' });
  if (use.shipped) extra.push({ dir: SHIPPED_AGENTS_DIR, format: 'yaml', optional: true, origin: 'shipped' });
  for (const s of extra) {
    if (!out.some((o) => path.resolve(o.dir) === path.resolve(s.dir))) out.push(s);
  }
  return out;
}
