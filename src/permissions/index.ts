// Long because: it is the one place a rule set and a call become a decision; every kind of check (paths,
// commands, URLs, addresses, MCP tools, agents) goes through the same layer evaluation here, and scattering
// them would hide the one deny → ask → allow order. The pieces it evaluates live beside it (rules.ts,
// command.ts, dangerous-forms.ts, url.ts, address.ts).
// The permission checkpoint: every tool call an agent makes is decided here, with the real arguments,
// on the main thread, before the tool runs. Nothing the model says can widen it: rules come only from
// agent files (and the caller's rules, for delegated runs).
//
// API
//   type Decision = { decision: 'allow' | 'ask' | 'deny'; rule: string | null; reason: string }
//   interface RuleLayer { label?: string; deny: string[]; ask: string[]; allow: string[] }
//   interface RuleSet { layers: RuleLayer[] }      plain JSON; a call must be allowed by EVERY layer
//   rulesForAgent(agent): RuleSet                  explicit permissions + translated seed tools (one layer)
//   translateSeedTools(agent.tools): string[]      seed grants → allow rules (seed.ts)
//   intersect(a, b): RuleSet                       layers of both: allowed only if both allow
//   checkToolCall(rs, tool, args, {workspaceRoot}): Promise<Decision>
//       read_file/list_dir/search_files (args.path; list_dir/search_files default "."), write_file/edit_file
//       (args.path), run_command (args.argv), fetch_url (args.url), mcp__<server>__<tool>, agent__<name>
//   checkResolvedPath(rs, 'Read'|'Edit', {rel, abs, …}): Decision   sync; for entries found while recursing
//   checkCommand(rs, argv) / checkUrl(rs, url) / checkMcpTool(rs, name) / checkAgent(rs, name): Decision
//   checkResolvedAddress(rs, url, address): Decision   fetch tool: every address it connects to (DNS rebinding)
//   isPrivateAddress(ip): boolean
//   toolOffered(rs, tool): boolean                 offer the tool to the model at all?
//   parseRule(s), validateRules(rules): {index, message}[]
//
// Evaluation, per layer: deny rules, then ask rules, then allow rules; the first match wins; nothing
// matching is a deny. Across layers: deny if any layer denies, else ask if any asks, else allow. A
// denial names its rule, or says why ("no allow rule matches Read(src/x.ts)", a resolver reason, …).
// Refusals that come before rules (path outside the workspace, shell metacharacters, bad URL) have
// `rule: null`.
//
// A layer containing an invalid *deny* rule denies everything (an unreadable deny must not fail open);
// invalid allow/ask rules grant nothing. The agent loader reports both via validateRules.
//
// Paths: the target is resolved with resolveInWorkspace (outside, or through a symlink that leads out →
// denied before any rule). Allow rules match the real path; deny/ask rules also match the path as
// requested. Edit additionally obeys Read denies, and writing inside .git/ needs a rule naming .git.
// list_dir/search_files are decided on their starting path only: the tools must pass every entry they
// descend into through checkResolvedPath, or `Read(**)` + deny `Read(**/.env*)` still lists/greps .env.
// Long because: it is the one checkpoint: a decision function per kind of target (paths, commands,
// URLs, MCP tools, agents) over one rule-set type, kept together so the deny > ask > allow precedence
// reads in one place.
import net from 'node:net';
import path from 'node:path';
import type { SeedTools } from './seed.js';
import { resolveInWorkspace } from '../workspace/workspace-path.js';
import { argvProblem, coverage, describeArgv, matchCommand } from './command.js';
import { dangerousForm } from './dangerous-forms.js';
import { globCovers } from '../glob.js';
import { parseRule, type PathKind, type Rule } from './rules.js';
import { translateSeedTools } from './seed.js';
import { hostMatches, parseFetchUrl } from './url.js';
import { isPrivateAddress } from '../net/address.js';
import { delegationTarget, isDelegationToolName, isMcpToolName, isReadFileTool, isWriteFileTool } from '../contract/tool-names.js';

export { parseRule, validateRules, type Rule, type PathKind } from './rules.js';
export { translateSeedTools } from './seed.js';
export { classifyAddress, isPrivateAddress } from '../net/address.js';

export type Decision = { decision: 'allow' | 'ask' | 'deny'; rule: string | null; reason: string };

export interface RuleLayer {
  /** Whose rules these are ("agent researcher"); shown in reasons. */
  label?: string;
  deny: string[];
  ask: string[];
  allow: string[];
  /** May this layer's run give its commands the network (run_command's sandbox)? Absent means no. */
  network?: boolean;
}

/** A call is allowed only if every layer allows it. Plain JSON: it crosses process boundaries. */
export interface RuleSet {
  layers: RuleLayer[];
}

interface Compiled {
  label?: string;
  deny: Rule[];
  ask: Rule[];
  allow: Rule[];
  /** Set when a deny rule does not parse: the layer then denies everything. */
  broken: string | null;
}

function compile(layer: RuleLayer): Compiled {
  const out: Compiled = { label: layer.label, deny: [], ask: [], allow: [], broken: null };
  for (const list of ['deny', 'ask', 'allow'] as const) {
    for (const s of layer[list] ?? []) {
      const p = parseRule(s);
      if (p.ok) out[list].push(p.rule);
      else if (list === 'deny' && out.broken === null) out.broken = `${p.error} (an invalid deny rule denies everything)`;
    }
  }
  return out;
}

const deny = (rule: string | null, reason: string): Decision => ({ decision: 'deny', rule, reason });

type Pred = (r: Rule) => boolean;

/** One layer: deny, then ask, then allow; first match wins; unmatched is denied with `why()`. */
function decideLayer(c: Compiled, preds: { deny: Pred; ask: Pred; allow: Pred }, why: () => string): Decision {
  const d = c.deny.find(preds.deny);
  if (d) return deny(d.source, `denied by rule "${d.source}"`);
  const a = c.ask.find(preds.ask);
  if (a) return { decision: 'ask', rule: a.source, reason: `rule "${a.source}" requires approval` };
  const w = c.allow.find(preds.allow);
  if (w) return { decision: 'allow', rule: w.source, reason: `allowed by rule "${w.source}"` };
  return deny(null, why());
}

/** Evaluate every layer and combine: any deny → deny; any ask → ask; else allow. */
function evaluate(rs: RuleSet, perLayer: (c: Compiled) => Decision): Decision {
  if (!rs || !Array.isArray(rs.layers) || rs.layers.length === 0) return deny(null, 'no permission rules apply');
  const results = rs.layers.map((layer) => {
    const c = compile(layer);
    const d = c.broken !== null ? deny(null, c.broken) : perLayer(c);
    return c.label ? { ...d, reason: `${d.reason} [${c.label}]` } : d;
  });
  const denied = results.find((d) => d.decision === 'deny');
  if (denied) return denied;
  const asked = results.find((d) => d.decision === 'ask');
  if (asked) return asked;
  return { decision: 'allow', rule: results[0].rule, reason: results.map((d) => d.reason).join('; ') };
}

// ---- Rule sets ----

/**
 * The part of an agent definition its rules come from (agents/definition.ts declares these fields with
 * these types, so the permission layer needs nothing from the agent loaders).
 */
export interface AgentGrants {
  name: string;
  tools: SeedTools;
  permissions: { deny: string[]; ask: string[]; allow: string[] };
  /** run_command's OS sandbox: whether commands may use the network (default false). */
  sandbox: { network: boolean };
  agents: string[];
}

/** An agent's own rules: explicit `permissions` first, then seed-format grants, then its `agents` list. */
export function rulesForAgent(agent: AgentGrants): RuleSet {
  // Per definition object: a reloaded agent is a new object, so the cache never goes stale.
  let rules = agentRules.get(agent);
  if (!rules) agentRules.set(agent, (rules = compileAgentRules(agent)));
  return rules;
}

const agentRules = new WeakMap<AgentGrants, RuleSet>();

function compileAgentRules(agent: AgentGrants): RuleSet {
  return {
    layers: [
      {
        label: `agent ${agent.name}`,
        deny: [...agent.permissions.deny],
        ask: [...agent.permissions.ask],
        allow: [
          ...agent.permissions.allow,
          ...translateSeedTools(agent.tools),
          // `agents:` lists the sub-agents this agent may delegate to.
          ...agent.agents.map((n) => `Agent(${n})`),
        ],
        // Definitions built in code (tests, older callers) may lack the field: no network then.
        network: agent.sandbox?.network === true,
      },
    ],
  };
}

/**
 * Rules for `child` running on behalf of `caller`: allowed only where both allow (a composite, not a
 * rewrite of globs, so it is exact). The child can only narrow; it never gains what the caller lacks.
 */
export function intersect(child: RuleSet, caller: RuleSet): RuleSet {
  const layers: RuleLayer[] = [];
  const seen = new Set<string>();
  for (const l of [...child.layers, ...caller.layers]) {
    const key = JSON.stringify([l.label ?? '', l.deny, l.ask, l.allow, l.network === true]);
    if (seen.has(key)) continue;
    seen.add(key);
    layers.push({
      ...(l.label !== undefined && { label: l.label }),
      deny: [...l.deny],
      ask: [...l.ask],
      allow: [...l.allow],
      ...(l.network === true && { network: true }),
    });
  }
  return { layers };
}

// ---- Paths ----

export interface PathTarget {
  /** Real path relative to the workspace root ("." for the root), `/`-separated. */
  rel: string;
  /** Real absolute path. */
  abs: string;
  /** The path as requested, normalised but not symlink-resolved, relative to the root (when inside). */
  lexicalRel?: string;
  /** The workspace root as configured, if it differs from its realpath (for absolute globs). */
  workspaceRoot?: string;
}

const GIT_SEGMENT = /(^|\/)\.git(\/|$)/;

/**
 * Decide a path that is already resolved inside the workspace. Allow rules see only the real path;
 * deny and ask rules also see the path as requested (a symlinked `.env` is still `.env` to a deny
 * rule) — this can only make the answer stricter. For Edit, Read deny rules apply too: a path that may
 * not be read may not be edited (edits reveal contents through match failures and diffs).
 */
export function checkResolvedPath(rs: RuleSet, access: PathKind, t: PathTarget): Decision {
  const realRels = [t.rel];
  const realAbss = [t.abs];
  if (t.workspaceRoot) realAbss.push(path.posix.join(t.workspaceRoot, t.rel));
  const strictRels = t.lexicalRel !== undefined && t.lexicalRel !== t.rel ? [...realRels, t.lexicalRel] : realRels;
  const strictAbss = [...realAbss];
  if (t.lexicalRel !== undefined && t.lexicalRel !== t.rel) {
    const rootReal = t.rel === '.' ? t.abs : t.abs.slice(0, t.abs.length - t.rel.length - 1);
    strictAbss.push(path.posix.join(rootReal, t.lexicalRel));
  }
  const covers = (r: Rule, rels: string[], abss: string[]): boolean =>
    (r.kind === 'Read' || r.kind === 'Edit') && (r.glob === null || globCovers(r.glob, rels, abss));
  // Writing into .git/ (hooks, config) turns any later git command into arbitrary code, so Edit there
  // needs a rule that names .git itself; `Edit(**)` is not enough.
  const intoGit = access === 'Edit' && strictRels.some((r) => GIT_SEGMENT.test(r));
  const grants = (r: Rule): boolean => !intoGit || (r.kind === 'Edit' && r.glob !== null && GIT_SEGMENT.test(r.glob.source));
  return evaluate(rs, (c) => {
    const d = decideLayer(
      c,
      {
        deny: (r) => (r.kind === access || r.kind === 'Read') && covers(r, strictRels, strictAbss),
        ask: (r) => r.kind === access && covers(r, strictRels, strictAbss) && grants(r),
        allow: (r) => r.kind === access && covers(r, realRels, realAbss) && grants(r),
      },
      () =>
        intoGit
          ? `writing inside .git/ is allowed only by a rule that names .git explicitly; no such rule matches ${access}(${t.rel})`
          : `no allow rule matches ${access}(${t.rel})`,
    );
    if (access === 'Edit' && d.decision === 'deny' && d.rule?.startsWith('Read')) {
      return { ...d, reason: `${d.reason} (a path that may not be read may not be edited either)` };
    }
    return d;
  });
}

async function checkPathCall(
  rs: RuleSet,
  access: PathKind,
  requested: unknown,
  workspaceRoot: string,
  forWrite: boolean,
): Promise<Decision> {
  if (typeof requested !== 'string') return deny(null, 'path must be a string');
  const r = await resolveInWorkspace(workspaceRoot, requested, { forWrite });
  if (!r.ok) return deny(null, r.reason);
  // The requested path, lexically (no symlinks followed), relative to the root, if it is inside.
  const rootReal = r.rel === '.' ? r.abs : r.abs.slice(0, r.abs.length - r.rel.length - 1);
  let lexicalRel: string | undefined;
  for (const root of new Set([rootReal, path.resolve(workspaceRoot)])) {
    const rel = path.relative(root, path.resolve(root, requested));
    if (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel)) {
      lexicalRel = rel === '' ? '.' : rel.split(path.sep).join('/');
      break;
    }
  }
  return checkResolvedPath(rs, access, {
    rel: r.rel,
    abs: r.abs,
    ...(lexicalRel !== undefined && { lexicalRel }),
    ...(path.resolve(workspaceRoot) !== rootReal && { workspaceRoot: path.resolve(workspaceRoot) }),
  });
}

// ---- Commands ----

/** Decide a run_command argv (see command.ts for the syntax and the refusals). */
export function checkCommand(rs: RuleSet, argv: unknown): Decision {
  const problem = argvProblem(argv);
  if (problem) return deny(null, problem);
  const args = argv as string[];
  const call = `Bash(${describeArgv(args)})`;
  const danger = dangerousForm(args);
  const isPath = args[0].includes('/');
  // The highest argv index a rule must spell out literally for an allow/ask to count.
  const need = Math.max(danger?.index ?? -1, isPath ? 0 : -1);
  const grants = (r: Rule): boolean =>
    r.kind === 'Bash' && (r.command === null ? need < 0 : matchCommand(r.command, args) && coverage(r.command, args) >= need);
  return evaluate(rs, (c) =>
    decideLayer(
      c,
      { deny: (r) => r.kind === 'Bash' && (r.command === null || matchCommand(r.command, args)), ask: grants, allow: grants },
      () => {
        const near = [...c.ask, ...c.allow].find((r) => r.kind === 'Bash' && (r.command === null || matchCommand(r.command, args)));
        const nearText = near ? `rule "${near.source}" matches but does not spell it out` : `no allow rule matches ${call}`;
        if (danger) {
          return `${danger.what} is refused unless a rule names that form (e.g. exactly ${call}); ${nearText}`;
        }
        if (isPath) return `argv[0] ${JSON.stringify(args[0])} is a path: allowed only by a rule naming that exact path; ${nearText}`;
        return `no allow rule matches ${call}`;
      },
    ),
  );
}

// ---- URLs ----

/** Decide a URL for fetch_url. Call again for every redirect target. */
export function checkUrl(rs: RuleSet, url: string): Decision {
  const t = parseFetchUrl(url);
  if (!t.ok) return deny(null, t.reason);
  const { host, sensitive } = t;
  const shown = net.isIPv6(host) ? `[${host}]` : host;
  // Sensitive hosts (private IPs, localhost) only by a rule naming exactly that host.
  const grants = (r: Rule): boolean =>
    r.kind === 'WebFetch' && (sensitive ? r.host.type === 'exact' && r.host.host === host : hostMatches(r.host, host));
  return evaluate(rs, (c) =>
    decideLayer(
      c,
      { deny: (r) => r.kind === 'WebFetch' && hostMatches(r.host, host), ask: grants, allow: grants },
      () =>
        sensitive
          ? `${sensitive}: allowed only by a rule naming it exactly (WebFetch(domain:${shown})); no such allow rule`
          : `no allow rule matches WebFetch(domain:${shown})`,
    ),
  );
}

/**
 * For the fetch tool, per address it is about to connect to (after DNS, on every redirect): a
 * non-public address is allowed only if a rule names the URL's host (or that address) exactly. An exact
 * ask rule counts as allow here: checkUrl has already asked. Deny rules naming the address apply.
 */
export function checkResolvedAddress(rs: RuleSet, url: string, address: string): Decision {
  const t = parseFetchUrl(url);
  if (!t.ok) return deny(null, t.reason);
  let addr = address.trim().replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '').toLowerCase();
  if (net.isIPv6(addr)) addr = new URL(`http://[${addr}]/`).hostname.slice(1, -1); // canonical form, as rules are
  const priv = isPrivateAddress(addr);
  const named = (r: Rule): boolean => r.kind === 'WebFetch' && r.host.type === 'exact' && (r.host.host === t.host || r.host.host === addr);
  return evaluate(rs, (c) => {
    const d = c.deny.find((r) => r.kind === 'WebFetch' && r.host.type === 'exact' && r.host.host === addr);
    if (d) return deny(d.source, `${t.host} resolved to ${addr}, denied by rule "${d.source}"`);
    if (!priv) return { decision: 'allow', rule: null, reason: `${addr} is a public address` };
    const g = [...c.ask, ...c.allow].find(named);
    if (g) return { decision: 'allow', rule: g.source, reason: `${t.host} → ${addr} allowed by rule "${g.source}"` };
    return deny(
      null,
      `${t.host} resolved to ${addr}, a private, loopback, link-local or reserved address; only a rule naming the host exactly (WebFetch(domain:${net.isIPv6(t.host) ? `[${t.host}]` : t.host})) allows that`,
    );
  });
}

// ---- MCP tools and agents ----

export function checkMcpTool(rs: RuleSet, toolName: string): Decision {
  const m = (r: Rule): boolean => r.kind === 'mcp' && r.name.test(toolName);
  return evaluate(rs, (c) => decideLayer(c, { deny: m, ask: m, allow: m }, () => `no allow rule matches ${toolName}`));
}

export function checkAgent(rs: RuleSet, name: string): Decision {
  const m = (r: Rule): boolean => r.kind === 'Agent' && (r.name === null || r.name.test(name));
  return evaluate(rs, (c) => decideLayer(c, { deny: m, ask: m, allow: m }, () => `no allow rule matches Agent(${name})`));
}

// ---- Entry points ----

export async function checkToolCall(
  rs: RuleSet,
  tool: string,
  args: Record<string, unknown>,
  ctx: { workspaceRoot: string },
): Promise<Decision> {
  const a = args ?? {};
  if (isReadFileTool(tool)) {
    if (tool === 'read_file' && a.path === undefined) return deny(null, 'read_file needs a "path" argument');
    return checkPathCall(rs, 'Read', a.path ?? '.', ctx.workspaceRoot, false);
  }
  if (isWriteFileTool(tool)) {
    if (a.path === undefined) return deny(null, `${tool} needs a "path" argument`);
    return checkPathCall(rs, 'Edit', a.path, ctx.workspaceRoot, true);
  }
  if (tool === 'run_command') return checkCommand(rs, a.argv);
  if (tool === 'fetch_url') return typeof a.url === 'string' ? checkUrl(rs, a.url) : deny(null, 'url must be a string');
  if (isMcpToolName(tool)) return checkMcpTool(rs, tool);
  if (isDelegationToolName(tool)) return checkAgent(rs, delegationTarget(tool));
  return deny(null, `unknown tool "${tool}"`);
}

const isBare = (r: Rule): boolean =>
  r.kind === 'Read' || r.kind === 'Edit'
    ? r.glob === null
    : r.kind === 'Bash'
      ? r.command === null
      : r.kind === 'WebFetch'
        ? r.host.type === 'any'
        : r.kind === 'Agent'
          ? r.name === null
          : false;

/**
 * Should the model be offered this tool at all? True when, in every layer, some allow/ask rule of the
 * tool's kind exists and no bare deny (`Read`, `Bash`, …) rules the whole kind out. MCP tools and
 * agents are decided exactly by name. A true here does not mean any particular call will be allowed.
 */
export function toolOffered(rs: RuleSet, tool: string): boolean {
  if (isMcpToolName(tool)) return checkMcpTool(rs, tool).decision !== 'deny';
  if (isDelegationToolName(tool)) return checkAgent(rs, delegationTarget(tool)).decision !== 'deny';
  const kind = isReadFileTool(tool)
    ? 'Read'
    : isWriteFileTool(tool)
      ? 'Edit'
      : tool === 'run_command'
        ? 'Bash'
        : tool === 'fetch_url'
          ? 'WebFetch'
          : null;
  if (kind === null || !rs || !Array.isArray(rs.layers) || rs.layers.length === 0) return false;
  return rs.layers.every((layer) => {
    const c = compile(layer);
    if (c.broken !== null) return false;
    if (c.deny.some((r) => isBare(r) && (r.kind === kind || (kind === 'Edit' && r.kind === 'Read')))) return false;
    return [...c.ask, ...c.allow].some((r) => r.kind === kind);
  });
}
