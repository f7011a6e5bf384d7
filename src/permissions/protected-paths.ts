// Protected paths: what no agent may reach through a built-in tool, whatever its rules say. Rules decide
// what an agent may ask for; these hold even under `Read(**)` and `Edit(**)`, because each one turns
// access into more than the rules meant to give:
//   - the state dir (budget ledger, audit log, other runs' artifacts): reading leaks other runs and
//     clients, writing erases spend and the audit trail → never read, listed or written;
//   - every agent directory the server loads: a planted file with `tools: Bash` is a new grant, served by
//     hot reload → never written (reading is fine: they are not secret);
//   - mcp.json: it starts commands (mcpServers) and may hold keys, headers and the HTTP token → never read
//     or written (its name may be listed);
//   - `.git/` internals (hooks, config): a later git command runs what was written there → never written;
//   - the code of downstream MCP servers (mcpServers `command`, `args` and `cwd` that name existing paths
//     inside the workspace): the server starts them OUTSIDE any sandbox, so an agent rewriting
//     `scripts/srv.mjs` would have its code run with the server's rights → never written.
// The list is a pure function of the resolved config (`protectedPaths`), so the command sandbox can mount
// the same paths read-only or hide them. `ProtectedGuard` checks resolved paths against it for the file
// tools; the tool gate also refuses such calls before any rule is consulted (the audit records a deny).
import { existsSync, lstatSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { agentSources } from '../config/agent-sources.js';
import type { ResolvedConfig } from '../config/config.js';
import { LEGACY_STATE_DIRNAME } from '../config/state-dir.js';
import type { ProtectedAccess, ProtectedPathCheck } from '../contract/protected-path.js';
import { isWithin } from '../workspace/workspace-path.js';

export type ProtectedKind = 'state' | 'agents' | 'config' | 'git' | 'server';

/** What an agent may do with a protected path: nothing at all, see its name only, or read it. Never write. */
export type ProtectedRead = 'hidden' | 'name-only' | 'readable';

export interface ProtectedPath {
  /** Absolute path as configured (not symlink-resolved; ProtectedGuard resolves it). */
  path: string;
  kind: ProtectedKind;
  read: ProtectedRead;
}

/** How each kind is named in a refusal ("protected: agent directory … cannot be changed by an agent"). */
export const PROTECTED_LABEL: Record<ProtectedKind, string> = {
  state: "the server's state directory",
  agents: 'agent directory',
  config: 'server config',
  git: 'git internals',
  server: 'downstream MCP server code',
};

const READ_OF: Record<ProtectedKind, ProtectedRead> = { state: 'hidden', agents: 'readable', config: 'name-only', git: 'readable', server: 'readable' };

/**
 * Every protected path of a server with this config: the state dir (and the audit dir when configured
 * elsewhere, the old in-workspace `.delegate-mcp` and a configured queue key file), every agent directory it loads (agentSources: the
 * YAML agents dir, `delegate.agentDirs` or the default `.claude/agents` and `.codex/agents`, the user's and
 * the shipped ones), its mcp.json
 * (the file it was started with and `<workspace>/mcp.json`, where a config is found by default), and the
 * workspace's `.git`. Nested `.git` directories are protected from writes too, by ProtectedGuard's
 * segment check; this list names only the top one.
 */
export function protectedPaths(cfg: ResolvedConfig): ProtectedPath[] {
  const out: ProtectedPath[] = [];
  const add = (p: string, kind: ProtectedKind) => {
    const abs = path.resolve(p);
    if (!out.some((o) => o.path === abs)) out.push({ path: abs, kind, read: READ_OF[kind] });
  };
  add(cfg.stateDir, 'state');
  if (cfg.auditDir && !isWithin(path.resolve(cfg.stateDir), path.resolve(cfg.auditDir))) add(cfg.auditDir, 'state');
  add(path.join(cfg.workspace, LEGACY_STATE_DIRNAME), 'state');
  // The queue key (queue mode): hidden like the state dir, where its own queue.key is by default.
  if (cfg.delegate.queue.keyFile) add(cfg.delegate.queue.keyFile, 'state');
  for (const s of agentSources(cfg)) add(s.dir, 'agents');
  if (cfg.configFile) add(cfg.configFile, 'config');
  add(path.join(cfg.workspace, 'mcp.json'), 'config');
  add(path.join(cfg.workspace, '.git'), 'git');
  for (const p of serverCodePaths(cfg)) add(p, 'server');
  return out;
}

/**
 * Existing paths inside the workspace that a configured stdio MCP server's `command`, `args` entries and
 * `cwd` name (relative ones resolved against the server's cwd: its `cwd` relative to the config file's
 * directory, else this process's cwd, which is where the server spawns it). Files, and the `cwd` directory
 * unless it is the workspace root itself (that would make the whole workspace read-only). Only what
 * exists when the config is loaded: an argument such as `--port` names no file. Code those files import
 * (`./lib.mjs` next to the script) is not found this way; README says so.
 */
export function serverCodePaths(cfg: ResolvedConfig): string[] {
  const base = cfg.configFile ? path.dirname(cfg.configFile) : cfg.workspace;
  const ws = realpathLoose(cfg.workspace);
  const out: string[] = [];
  for (const entry of Object.values(cfg.mcpServers)) {
    if (!('command' in entry)) continue;
    const cwd = entry.cwd ? path.resolve(base, entry.cwd) : process.cwd();
    const candidates = [entry.command, ...entry.args].map((a) => ({ p: path.resolve(cwd, a), dirOk: false }));
    if (entry.cwd) candidates.push({ p: cwd, dirOk: true });
    for (const { p, dirOk } of candidates) {
      let real: string;
      try {
        real = realpathSync.native(p);
        const st = statSync(real);
        if (!st.isFile() && !(dirOk && st.isDirectory())) continue;
      } catch {
        continue; // not an existing path: an option, a program on PATH, a URL, …
      }
      if (real === ws || !isWithin(ws, real)) continue;
      out.push(real);
    }
  }
  return out;
}

export interface ProtectedHit {
  kind: ProtectedKind;
  /** The protected path that was hit (as configured). */
  path: string;
  /** For the model: "protected: …". */
  message: string;
}

const GIT_SEGMENT = /(^|[\\/])\.git([\\/]|$)/;
/** macOS and Windows file systems are case-insensitive by default: `.Claude/Agents` is `.claude/agents`. */
const FOLD_CASE = process.platform === 'darwin' || process.platform === 'win32';
const norm = (p: string): string => (FOLD_CASE ? p.toLowerCase() : p);

/**
 * realpath() for paths that may not exist yet: the nearest existing ancestor's realpath plus the rest. A
 * dangling symlink on the way is followed (its target is where the server would look once it exists).
 * Synchronous on purpose: a handful of cheap syscalls per tool call beat as many thread-pool round trips.
 */
function realpathLoose(p: string): string {
  const rest: string[] = [];
  let cur = p;
  for (let hops = 0; ; ) {
    // existsSync first: a thrown ENOENT per missing level costs more than the lookups themselves.
    if (existsSync(cur)) {
      try {
        const real = realpathSync.native(cur);
        return rest.length ? path.join(real, ...rest) : real;
      } catch {
        // gone meanwhile, or not accessible: keep climbing
      }
    }
    let target: string | undefined;
    try {
      if (hops < 40 && lstatSync(cur, { throwIfNoEntry: false })?.isSymbolicLink()) target = readlinkSync(cur);
    } catch {
      // does not exist at all: climb
    }
    if (target !== undefined) {
      hops++;
      cur = path.resolve(realpathLoose(path.dirname(cur)), target);
      continue;
    }
    const up = path.dirname(cur);
    if (up === cur) return p;
    rest.unshift(path.basename(cur));
    cur = up;
  }
}

interface ResolvedEntry extends ProtectedPath {
  /** The path as configured and its realpath (both are matched: a symlink into it or out of it is caught). */
  forms: string[];
}

/**
 * The protected paths of one server, resolved (realpath, nearest existing ancestor for paths that do not
 * exist yet) for checking the real paths the file tools resolve. Resolve it again for each tool call:
 * directories appear and links change while the server runs.
 */
export class ProtectedGuard implements ProtectedPathCheck {
  private constructor(
    private readonly entries: ResolvedEntry[],
    private readonly workspaceReal: string,
  ) {}

  static resolve(list: readonly ProtectedPath[], workspace: string): ProtectedGuard {
    const entries = list.map((e) => ({ ...e, forms: [...new Set([e.path, realpathLoose(e.path)])].map(norm) }));
    return new ProtectedGuard(entries, norm(realpathLoose(workspace)));
  }

  /**
   * null when `access` to `abs` is fine; otherwise which protected path it hits. `abs` is the resolved real
   * path (absolute, normalised); pass the path as requested too (`lexical`) so that either form is caught.
   * A write is also refused on an ancestor of a protected path (a file there would take its place).
   */
  check(access: ProtectedAccess, abs: string, lexical?: string): ProtectedHit | null {
    const a = norm(abs);
    const l = lexical === undefined ? undefined : norm(path.resolve(lexical));
    const write = access === 'write';
    for (const e of this.entries) {
      if (!write && (e.read === 'readable' || (access === 'list' && e.read === 'name-only'))) continue;
      for (const f of e.forms) {
        const hit =
          isWithin(f, a) ||
          (l !== undefined && isWithin(f, l)) ||
          (write && ((isWithin(a, f) && a !== this.workspaceReal) || (l !== undefined && isWithin(l, f) && l !== this.workspaceReal)));
        if (hit) return { kind: e.kind, path: e.path, message: describe(e, access) };
      }
    }
    if (write) {
      // Any .git inside the workspace (nested repositories and submodules too), as file or directory.
      for (const c of l === undefined ? [a] : [a, l]) {
        if (c !== this.workspaceReal && isWithin(this.workspaceReal, c) && GIT_SEGMENT.test(c.slice(this.workspaceReal.length))) {
          const e = { path: path.join(this.workspaceReal, '.git'), kind: 'git' as const, read: 'readable' as const };
          return { kind: 'git', path: e.path, message: describe(e, access) };
        }
      }
    }
    return null;
  }

  /** True when listing tools must not show `abs` at all (state dir, and what is inside it). */
  hidden(abs: string): boolean {
    return this.check('list', abs) !== null;
  }
}

function describe(e: ProtectedPath, access: ProtectedAccess): string {
  const what = `${PROTECTED_LABEL[e.kind]} ${e.path}`;
  if (access === 'write') {
    const why: Record<ProtectedKind, string> = {
      state: 'it holds the budget ledger, the audit log and artifacts',
      agents: 'a file there would define what agents may do',
      config: 'it says which commands and servers the server starts',
      git: 'git runs hooks and config found there',
      server: 'the server runs it outside the sandbox when it starts that MCP server',
    };
    return `protected: ${what} cannot be changed by an agent (${why[e.kind]}), whatever the permission rules say`;
  }
  return `protected: ${what} cannot be read by an agent, whatever the permission rules say`;
}
