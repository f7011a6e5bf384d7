// The tool gate: the one checkpoint every tool call of every run goes through, on the main thread.
//
//   offeredTools()  (tool-offer.ts) what the model is offered at all (built-ins the agent is granted + the downstream MCP
//                   tools of the servers it may use), filtered by toolOffered();
//   execute()       for each call the model makes: is it a tool this run was offered (for a delegation
//                   `agent__<name>`: does the agent exist, may this chain reach it) → is its path a
//                   protected path (state dir, agent dirs, mcp.json, .git writes: refused whatever the
//                   rules say; permissions/protected-paths.ts) → checkToolCall()
//                   with the ACTUAL arguments → deny (a tool error naming the rule; the run goes on) /
//                   ask (the run's `ask` callback: once, for the rest of the run, or no) / allow → run
//                   the tool with a context that keeps enforcing the rules inside it (every redirect of
//                   fetch_url, every entry list_dir/search_files show; a delegation runs its child
//                   through the run's DelegationHandler) → the outcome.
// Every decision is reported as a ToolDecisionRecord (for the audit log).
// Nothing the model sends can widen what is allowed: the rules come from the agent file (intersected
// with the caller's rules for delegated runs); the arguments only ever select among them.
// Long because: execute()'s order of checks is the security boundary and reads best whole; what needs
// no run state (what is offered, call summaries) is in tool-offer.ts.
import path from 'node:path';
import type { AgentDefinition } from '../agents/definition.js';
import type { ResolvedConfig } from '../config/config.js';
import { log } from '../log.js';
import {
  checkResolvedAddress,
  checkResolvedPath,
  checkToolCall,
  checkUrl,
  intersect,
  rulesForAgent,
  toolOffered,
  type Decision,
  type RuleSet,
} from '../permissions/index.js';
import { mcpServersFor, offeredTools, summarizeCall, whyNotOffered } from './tool-offer.js';
import { ProtectedGuard, protectedPaths, type ProtectedPath } from '../permissions/protected-paths.js';
import type { ProtectedAccess } from '../contract/protected-path.js';
import type { ToolCall, ToolSpec } from '../contract/tool.js';
import { McpServers } from '../tools/mcp-servers.js';
import { builtinTools } from '../tools/registry.js';
import type { ToolContext } from '../tools/types.js';
import type { ToolOutcome } from '../contract/tool.js';
import { isWithin, resolveInWorkspace, toRel } from '../workspace/workspace-path.js';
import { findBwrap, type SandboxSettings } from '../sandbox/index.js';
import { recoverJournals } from '../sandbox/created.js';
import { sandboxProtectedPaths } from '../sandbox/protected.js';
import type { ToolSpanHandle } from '../telemetry/types.js';
import { READ_FILE_TOOLS, WRITE_FILE_TOOLS, isDelegationToolName } from '../contract/tool-names.js';

/** The user's answer to an approval request: this call only, every call this rule covers in this run, or no. */
export type AskAnswer = 'once' | 'run' | 'deny';

export interface AskQuestion {
  agent: string;
  /** The tool the model called (`run_command`, `mcp__github__create_issue`, …). */
  tool: string;
  /** What the call does, for a human: "run `npm publish`", "write `src/app.ts`". */
  summary: string;
  /** The ask rule that matched. */
  rule: string;
  runId?: string;
  /** Aborts when the run is cancelled: stop asking. */
  signal?: AbortSignal;
}

/** Asks whoever started the run. Rejecting means nobody could answer; the message says why. */
export type AskFn = (q: AskQuestion) => Promise<AskAnswer>;

export interface ToolDecisionRecord {
  runId: string;
  agent: string;
  tool: string;
  /** The arguments as the model sent them (the audit log keeps only a digest). */
  args?: Record<string, unknown>;
  /** What the rules said: allow, ask or deny (`deny` also for calls refused before any rule). */
  decision: Decision['decision'];
  /** For `ask`: how it was settled. */
  approval?: 'once' | 'run' | 'remembered' | 'denied' | 'unanswered';
  rule: string | null;
  reason: string;
  /** From the call reaching the gate to its outcome (approval wait included). */
  durationMs: number;
  outcome: 'ok' | 'error' | 'denied' | 'unknown_tool';
  /** run_command: protected paths the command created, removed after it (each audited as a refusal). */
  removedProtected?: string[];
}

/** What the gate needs from the orchestrator to run `agent__<name>` calls for one run (see delegation.ts). */
export interface DelegationHandler {
  /** Refusals before any rule: an unknown agent, a depth or cycle the chain may not reach. */
  refuse(call: ToolCall): { reason: string; text: string } | undefined;
  /** Runs the child; `refused` when the budget cannot give it a slice (audited as a refusal). */
  run(call: ToolCall, signal: AbortSignal, span?: ToolSpanHandle): Promise<{ outcome: ToolOutcome; refused?: string }>;
}

export interface ToolRunOptions {
  runId: string;
  agent: AgentDefinition;
  ask?: AskFn;
  /** The delegating caller's rules: the run may only do what both allow. */
  callerRules?: RuleSet;
  onDecision?: (r: ToolDecisionRecord) => void;
  /** Runs this run's `agent__<name>` calls; without it they are unknown tools. */
  delegation?: DelegationHandler;
}

/** Per-run state: the effective rules, what was offered, and approvals given "for this run". */
export class ToolRun {
  readonly runId: string;
  readonly agent: AgentDefinition;
  readonly rules: RuleSet;
  readonly ask?: AskFn;
  readonly onDecision?: (r: ToolDecisionRecord) => void;
  readonly delegation?: DelegationHandler;
  /** Downstream servers this run may use (configured ones only). */
  servers: string[] = [];
  /** What the model was offered, by name; set by ToolGate.prepare(). */
  offered = new Map<string, ToolSpec>();
  /** `${rule}\0${tool}` approved for the rest of the run. */
  readonly approved = new Set<string>();

  constructor(o: ToolRunOptions) {
    this.runId = o.runId;
    this.agent = o.agent;
    const own = rulesForAgent(o.agent);
    this.rules = o.callerRules ? intersect(own, o.callerRules) : own;
    this.ask = o.ask;
    this.onDecision = o.onDecision;
    this.delegation = o.delegation;
  }
}

export interface ToolGateOptions {
  /** Realpath of the workspace root. */
  workspaceRoot: string;
  mcp: McpServers;
  /** How long an approval request may wait before the call is denied. */
  askTimeoutMs: number;
  /** run_command's OS sandbox (mode, protected paths); each call adds the run's rules. */
  sandbox: SandboxSettings;
  /** What no tool may reach whatever the rules say (permissions/protected-paths.ts). */
  protectedPaths: readonly ProtectedPath[];
}

/** What each built-in file tool does with its `path` argument, for the protected-path check (list_dir only shows names). */
const PATH_ACCESS: Record<string, ProtectedAccess> = Object.fromEntries([
  ...READ_FILE_TOOLS.map((t): [string, ProtectedAccess] => [t, t === 'list_dir' ? 'list' : 'read']),
  ...WRITE_FILE_TOOLS.map((t): [string, ProtectedAccess] => [t, 'write']),
]);

export class ToolGate {
  /** Server-wide listener (the audit log); runs may add their own. */
  onDecision?: (r: ToolDecisionRecord) => void;

  constructor(private readonly opts: ToolGateOptions) {}

  /** The server's gate: downstream servers from mcp.json (relative `cwd`s are relative to that file). */
  static fromConfig(cfg: ResolvedConfig): ToolGate {
    const t = cfg.delegate.tools;
    const mcp = new McpServers(cfg.mcpServers, {
      callTimeoutMs: t.mcpCallTimeoutS * 1000,
      maxOutputBytes: t.mcpMaxOutputBytes,
      maxMessageBytes: t.mcpMaxMessageBytes,
      baseDir: cfg.configFile ? path.dirname(cfg.configFile) : cfg.workspace,
    });
    const sb = cfg.delegate.sandbox;
    if (sb.mode === 'off') {
      log.warn('delegate.sandbox.mode is "off": run_command runs commands WITHOUT an OS sandbox; an allowed program can read, write and reach anything this server can (recorded in every run\'s audit)');
    } else if (process.platform !== 'linux' || !findBwrap()) {
      log.warn(`run_command will refuse every command: its bubblewrap sandbox is not available here (${process.platform === 'linux' ? 'bwrap not found; apt-get install bubblewrap or dnf install bubblewrap' : `delegate-mcp has none for ${process.platform} yet`}); set delegate.sandbox.mode to "off" to run commands without one`);
    }
    const sandbox: SandboxSettings = { mode: sb.mode, readOnly: [...sb.readOnly], protected: sandboxProtectedPaths(cfg) };
    // Protected paths a command created while an earlier server was stopped or killed mid-command.
    for (const p of recoverJournals(cfg.workspace, cfg.stateDir)) {
      log.warn(`removed ${p}: a sandboxed command created this protected path and its server stopped before removing it`);
    }
    return new ToolGate({ workspaceRoot: cfg.workspace, mcp, askTimeoutMs: t.askTimeoutS * 1000, sandbox, protectedPaths: protectedPaths(cfg) });
  }

  get mcp(): McpServers {
    return this.opts.mcp;
  }

  openRun(o: ToolRunOptions): ToolRun {
    return new ToolRun(o);
  }

  /** What the run's model is offered, when no downstream MCP server has to be listed first (else undefined). */
  offeredNow(run: ToolRun): ToolSpec[] | undefined {
    const servers = mcpServersFor(run.agent, this.opts.mcp.names());
    if (servers.length || run.agent.tools.mcp.length) return undefined; // prepare() lists them (and warns)
    return this.offer(run, servers, []);
  }

  /**
   * What the run's model is offered. Starts (once) the downstream servers the agent may use and lists
   * their tools; a server that cannot start is left out with a warning and retried on its next use.
   */
  async prepare(run: ToolRun, signal?: AbortSignal): Promise<ToolSpec[]> {
    const { agent } = run;
    const configured = this.opts.mcp.names();
    for (const s of agent.tools.mcp) {
      if (!configured.includes(s)) log.warn(`agent ${agent.name}: MCP server "${s}" is not configured in mcp.json mcpServers (configured: ${configured.join(', ') || 'none'})`);
    }
    const servers = mcpServersFor(agent, configured);
    const listed = await Promise.all(
      servers.map((s) =>
        this.opts.mcp.tools(s, signal).catch((err: Error) => {
          if (!signal?.aborted) log.warn(`agent ${agent.name}, run ${run.runId}: ${err.message}; its tools are not offered`);
          return [] as ToolSpec[];
        }),
      ),
    );
    return this.offer(run, servers, listed.flat());
  }

  /** Records on the run what its model is offered: the granted built-ins and these servers' tools. */
  private offer(run: ToolRun, servers: string[], mcpTools: ToolSpec[]): ToolSpec[] {
    run.servers = servers;
    const specs = offeredTools(run.agent, run.rules, mcpTools);
    run.offered = new Map(specs.map((t) => [t.name, t]));
    return specs;
  }

  /** Decides and executes one tool call. Never throws: every failure is a tool error for the model. */
  async execute(run: ToolRun, call: ToolCall, signal: AbortSignal, span?: ToolSpanHandle): Promise<ToolOutcome> {
    const started = Date.now();
    const record = (r: Omit<ToolDecisionRecord, 'runId' | 'agent' | 'tool' | 'durationMs'>, outcome: ToolOutcome): ToolOutcome => {
      const full: ToolDecisionRecord = { runId: run.runId, agent: run.agent.name, tool: call.name, args: call.arguments, durationMs: Date.now() - started, ...r };
      span?.decided(full);
      for (const cb of [this.onDecision, run.onDecision]) {
        try {
          cb?.(full);
        } catch (err) {
          log.warn(`tool decision listener failed: ${(err as Error).message}`);
        }
      }
      if (full.decision !== 'allow') log.debug(`run ${run.runId} ${call.name}: ${full.decision} (${full.reason})`);
      return outcome;
    };
    const fail = (content: string): ToolOutcome => ({ isError: true, content });
    const denied = (d: { decision: Decision['decision']; rule: string | null; reason: string; approval?: ToolDecisionRecord['approval'] }, text: string) =>
      record({ ...d, outcome: 'denied' }, fail(text));

    if (call.parseError) {
      return record(
        { decision: 'deny', rule: null, reason: 'arguments are not valid JSON', outcome: 'error' },
        fail(`${call.name}: arguments are not valid JSON: ${call.parseError}`),
      );
    }
    const args = call.arguments ?? {};

    // 1. Is it a tool this run was offered? A delegation: may this run's chain reach that agent?
    const delegation = isDelegationToolName(call.name) ? run.delegation : undefined;
    if (delegation) {
      const refused = delegation.refuse(call);
      if (refused) return record({ decision: 'deny', rule: null, reason: refused.reason, outcome: 'error' }, fail(refused.text));
    } else {
      const unknown = await this.notOffered(run, call.name, signal);
      if (unknown) return record({ decision: 'deny', rule: null, reason: unknown.reason, outcome: unknown.denied ? 'denied' : 'unknown_tool' }, fail(unknown.text));
    }

    // 2. Protected paths, before any rule: no rule can grant them. Resolved per call (links and folders change).
    const guard = PATH_ACCESS[call.name] ? ProtectedGuard.resolve(this.opts.protectedPaths, this.opts.workspaceRoot) : undefined;
    const hit = guard && (await this.protectedHit(guard, call.name, args));
    if (hit) return denied({ decision: 'deny', rule: null, reason: hit }, `permission denied: ${hit}`);

    // 3. The rules, on the actual arguments.
    const d = await checkToolCall(run.rules, call.name, args, { workspaceRoot: this.opts.workspaceRoot });
    if (d.decision === 'deny') return denied(d, `permission denied: ${d.reason}`);
    let approval: ToolDecisionRecord['approval'];
    const approvedRules = new Set<string>();
    if (d.decision === 'ask') {
      const rule = d.rule ?? '';
      const key = `${rule}\0${call.name}`;
      const summary = summarizeCall(call.name, args);
      if (run.approved.has(key)) approval = 'remembered';
      else {
        const answer = await this.askUser(run, { agent: run.agent.name, tool: call.name, summary, rule, runId: run.runId, signal });
        if (!answer.ok) {
          return denied(
            { ...d, approval: 'unanswered', reason: `approval needed but no client could answer: ${answer.reason}` },
            `permission denied: approval needed but no client could answer (${answer.reason}); rule "${rule}" requires approval to ${summary}`,
          );
        }
        if (answer.answer === 'deny') {
          return denied({ ...d, approval: 'denied', reason: 'the user denied it' }, `permission denied: the user denied the request to ${summary} (rule "${rule}" requires approval)`);
        }
        approval = answer.answer;
        if (answer.answer === 'run') run.approved.add(key);
      }
      approvedRules.add(rule);
    }

    // 4. Run it, with hooks that keep enforcing the rules (and the protected paths) inside the tool.
    if (delegation) {
      let r: { outcome: ToolOutcome; refused?: string };
      try {
        r = await delegation.run(call, signal, span);
      } catch (err) {
        r = { outcome: fail(`${call.name} failed: ${(err as Error).message}`) };
      }
      if (r.refused) return record({ decision: 'deny', rule: null, reason: r.refused, outcome: 'error' }, r.outcome);
      return record({ decision: d.decision, ...(approval && { approval }), rule: d.rule, reason: d.reason, outcome: r.outcome.isError ? 'error' : 'ok' }, r.outcome);
    }
    const ctx: ToolContext = { ...this.context(run, signal, approvedRules), ...(guard && { protect: guard }) };
    let outcome: ToolOutcome;
    const mcp = this.opts.mcp.parse(call.name);
    try {
      if (mcp) outcome = await this.opts.mcp.call(mcp.server, mcp.tool, args, signal, span?.meta());
      else outcome = await builtinTools[call.name].run(args, ctx);
    } catch (err) {
      outcome = fail(`${call.name} failed: ${(err as Error).message}`);
    }
    const removedProtected = outcome.removedProtected;
    return record(
      { decision: d.decision, ...(approval && { approval }), rule: d.rule, reason: d.reason, outcome: outcome.isError ? 'error' : 'ok', ...(removedProtected?.length && { removedProtected }) },
      outcome,
    );
  }

  close(): Promise<void> {
    return this.opts.mcp.close();
  }

  /** The refusal when a built-in file tool's path is protected; undefined otherwise (or when the path does not resolve: the rules refuse it then). */
  private async protectedHit(guard: ProtectedGuard, tool: string, args: Record<string, unknown>): Promise<string | undefined> {
    const access = PATH_ACCESS[tool];
    const requested = args.path ?? (tool === 'list_dir' || tool === 'search_files' ? '.' : undefined);
    if (!access || typeof requested !== 'string') return undefined;
    const r = await resolveInWorkspace(this.opts.workspaceRoot, requested, { forWrite: access === 'write' });
    if (!r.ok) return undefined;
    return guard.check(access, r.abs, path.resolve(this.opts.workspaceRoot, requested))?.message;
  }

  /** null when the run may call `tool`; otherwise the message for the model. */
  private async notOffered(run: ToolRun, tool: string, signal: AbortSignal): Promise<{ text: string; reason: string; denied: boolean } | null> {
    if (run.offered.has(tool)) return null;
    const available = () => [...run.offered.keys()].join(', ') || 'none';
    const agent = run.agent.name;
    const mcp = this.opts.mcp.parse(tool);
    if (mcp && run.servers.includes(mcp.server)) {
      // Its server could not be listed at the start of the run, or was restarted since: look again.
      let specs: ToolSpec[];
      try {
        specs = await this.opts.mcp.tools(mcp.server, signal);
      } catch (err) {
        const reason = (err as Error).message;
        return { text: `${tool}: ${reason}`, reason, denied: false };
      }
      const spec = specs.find((t) => t.name === tool);
      if (spec && toolOffered(run.rules, tool)) {
        run.offered.set(tool, spec);
        return null;
      }
      if (!spec) {
        const reason = `MCP server "${mcp.server}" has no tool "${mcp.tool}"`;
        return { text: `unknown tool "${tool}" for agent ${agent}: ${reason} (available: ${available()})`, reason, denied: false };
      }
    }
    if (builtinTools[tool] || mcp) {
      const reason = whyNotOffered(run.rules, tool);
      return { text: `permission denied: agent ${agent} may not use ${tool}: ${reason} (available: ${available()})`, reason, denied: true };
    }
    return { text: `unknown tool "${tool}" for agent ${agent} (available: ${available()})`, reason: 'unknown tool', denied: false };
  }

  /** Asks, bounded by the ask timeout and the run's cancellation: never hangs the run. */
  private async askUser(run: ToolRun, q: AskQuestion): Promise<{ ok: true; answer: AskAnswer } | { ok: false; reason: string }> {
    if (!run.ask) return { ok: false, reason: 'this run was not started by a client that can be asked' };
    const ms = this.opts.askTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      const answer = await Promise.race([
        run.ask(q),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms);
          onAbort = () => reject(new Error('the run was cancelled while waiting for approval'));
          if (q.signal?.aborted) onAbort();
          else q.signal?.addEventListener('abort', onAbort, { once: true });
        }),
      ]);
      return answer === 'once' || answer === 'run' || answer === 'deny' ? { ok: true, answer } : { ok: false, reason: `unexpected answer ${JSON.stringify(answer)}` };
    } catch (err) {
      return { ok: false, reason: (err as Error).message };
    } finally {
      clearTimeout(timer);
      if (onAbort) q.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** The ToolContext for one call: its hooks apply the run's rules inside the tool. */
  private context(run: ToolRun, signal: AbortSignal, approvedRules: ReadonlySet<string>): ToolContext {
    const root = this.opts.workspaceRoot;
    return {
      workspaceRoot: root,
      signal,
      // run_command: the sandbox's writable directories and network come from the run's rules.
      sandbox: { settings: this.opts.sandbox, rules: run.rules },
      // Every request fetch_url makes (each redirect hop too). An ask rule counts only if this call's
      // approval (or a run-wide one) covered that very rule: a redirect cannot stop to ask.
      checkUrl: (url) => {
        const d = checkUrl(run.rules, url);
        if (d.decision === 'allow') return { ok: true, reason: d.reason };
        if (d.decision === 'ask' && d.rule !== null && (approvedRules.has(d.rule) || run.approved.has(`${d.rule}\0fetch_url`))) {
          return { ok: true, reason: d.reason };
        }
        if (d.decision === 'ask') return { ok: false, reason: `permission denied: ${d.reason}, and a redirect cannot stop to ask; fetch that URL directly` };
        return { ok: false, reason: `permission denied: ${d.reason}` };
      },
      // Non-public addresses only for a host (or address) a rule names exactly, in every layer.
      checkAddress: (url, address) => {
        const d = checkResolvedAddress(run.rules, url, address);
        return { ok: d.decision === 'allow', reason: d.reason };
      },
      // list_dir/search_files were checked on their starting path; each entry is checked here.
      filterPath: (rel, abs, use) => {
        const realRel = isWithin(root, abs) ? toRel(root, abs) : rel;
        const realAbs = isWithin(root, abs) ? abs : path.join(root, rel);
        const d = checkResolvedPath(run.rules, 'Read', { rel: realRel, abs: realAbs, lexicalRel: rel });
        // Names may be listed unless denied; contents are read only where allowed outright.
        return use === 'list' ? d.decision !== 'deny' : d.decision === 'allow';
      },
    };
  }
}
