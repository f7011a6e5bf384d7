// The main-thread authority. It resolves the agent and its model, starts the run on the pool, answers
// the worker's questions (model-call gate, tool calls), executes tools, turns worker events into
// progress, and owns cancellation and deadlines. Workers only ask; this decides.
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import type { MessagePort } from 'node:worker_threads';
import type { AgentDefinition } from '../agents/definition.js';
import type { AgentStore } from '../agents/store.js';
import { resolveEndpoint, type ResolvedConfig } from '../config/config.js';
import { log } from '../log.js';
import { parseModelRef } from '../config/model-ref.js';
import { suggest } from '../file-errors/positions.js';
import type { RuleSet } from '../permissions/index.js';
import type { WarmHint } from '../contract/worker-protocol.js';
import type { WireApi, ProviderEndpoint } from '../contract/endpoint.js';
import type { ToolCall, ToolSpec } from '../contract/tool.js';
import type { Usage } from '../contract/usage.js';
import { emptyUsage } from '../contract/usage-sum.js';
import type { ToolOutcome } from '../contract/tool.js';
import { buildSystemPrompt, buildUserMessage } from './prompt.js';
import type { MainReply, ModelCallEnd, RunOutcome, RunTask, WorkerMessage } from '../contract/worker-protocol.js';
import { AuditLog, installShutdownFlush } from '../audit/audit-log.js';
import { digest } from '../audit/events.js';
import { Redactor } from '../audit/redact.js';
import { configSecrets } from '../config/config.js';
import { ArtifactStore, extractArtifacts } from './artifacts.js';
import { BudgetGate, EXTENSION_STEP, type CallBudget, type RunBudget } from './budget-gate.js';
import type { RunTotals } from '../budget/ledger.js';
import { parseAnswer } from '../agents/json-schema.js';
import { RESULT_META_KEY, lineageOf, refuseHop, type CallChain } from './chain.js';
import { CHILD_ENV, ChildHub } from './reentry.js';
import { checkToolCall } from '../permissions/index.js';
import { RunPool, ServerBusyError } from './pool.js';
import { RunRegistry, type RunRecord } from './runs.js';
import type { RunResult } from '../contract/run.js';
import { ToolGate, type AskFn, type ToolDecisionRecord, type ToolRun } from './tool-gate.js';
import { loadTelemetry, type Telemetry } from '../telemetry/index.js';
import type { ToolSpanHandle, TraceContext } from '../telemetry/types.js';

export interface RunRequest {
  agent: string;
  input: Record<string, unknown>;
  /** The client session that owns the run (background runs are visible only to it). */
  owner?: string;
  /** Caller-requested deadline; can only lower the agent's and the server's. */
  timeoutS?: number;
  /** Aborts the run (client cancellation or disconnect). */
  signal?: AbortSignal;
  /** Short human progress lines ("turn 2/8 · read_file src/app.ts · 1.9k tokens"). */
  onProgress?: (message: string) => void;
  /** Caller caps; they can only lower the agent's own (a model-supplied argument never raises one). */
  budget?: CallBudget;
  /** A background run: its record is kept for runs.keepS after it ends (others are dropped when they end). */
  background?: boolean;
  /** The run (or fan-out batch) this one is delegated from: its budget is a slice of the parent's. */
  parentRunId?: string;
  /** Root of the delegation tree and this run's depth in it (for the audit trail). */
  rootRunId?: string;
  depth?: number;
  /** Who asked, for the audit log: an MCP client, "cli", or "agent:<name>". */
  caller?: string;
  /** The call chain this run arrives with (from a delegating agent, in-process or over the re-entry hop). */
  chain?: CallChain;
  /** Asks the client to approve a call an `ask` rule covers; without it such calls are denied. */
  ask?: AskFn;
  /** The delegating caller's permission rules: the run may only do what both allow. */
  callerRules?: RuleSet;
  /** The trace this run belongs to (the MCP request's span, or the delegating tool call's), when telemetry is on. */
  trace?: TraceContext;
  /** A built-in agent that is not in the store (create_agent's drafter); `agent` is its name. */
  definition?: AgentDefinition;
}

/** `unknown agent "code-reviewr" (did you mean "code-reviewer"?; available: …)`. */
export function unknownAgentMessage(name: string, available: readonly string[]): string {
  const hint = suggest(name, available);
  return `unknown agent "${name}"${hint ? ` (did you mean "${hint}"?)` : ''}; available: ${available.join(', ') || 'none'}`;
}

/**
 * Heartbeats keep clients' idle timers from firing while a model is thinking. The README promises one
 * at least every 5 s; a beat is due 4 s after the last progress line, leaving a second for a busy
 * event loop and the transport. (A 1 s poll for "5 s since the last line" gave gaps of 5-6 s.)
 */
export const HEARTBEAT_MS = 4_000;

export class Orchestrator {
  readonly runs: RunRegistry;
  readonly artifacts: ArtifactStore;
  /** The warm child delegate-mcp that delegations run in (process re-entry). */
  private hub?: ChildHub;
  /** Secrets never reach the state dir: audit events and artifacts both pass through this. */
  readonly redactor: Redactor;
  /** Every tool call goes through this: permissions, approvals, built-in and downstream MCP tools. */
  readonly tools: ToolGate;
  private pool: RunPool;
  private uninstallShutdownFlush?: () => void;
  private readonly endpoints = new Map<string, ProviderEndpoint>();
  /** OpenTelemetry hooks; undefined (the default) when no OTLP endpoint is configured. */
  telemetry?: Telemetry;

  constructor(
    readonly cfg: ResolvedConfig,
    readonly agents: AgentStore,
    /** Without one, budgets are enforced in memory only (nothing persisted across restarts). */
    readonly budget: BudgetGate = BudgetGate.inMemory(cfg),
    /** Without one, nothing is audited (embedding, one-off CLI use). */
    readonly audit?: AuditLog,
    pool?: RunPool,
  ) {
    this.tools = ToolGate.fromConfig(cfg);
    this.pool = pool ?? new RunPool(cfg.delegate.pool);
    this.runs = new RunRegistry(cfg.delegate.runs.keepS * 1000);
    this.artifacts = new ArtifactStore(path.join(cfg.stateDir, 'artifacts'), cfg.delegate.artifacts.keep);
    this.artifacts.prune();
    this.redactor = audit?.redactor ?? new Redactor({ secrets: configSecrets(cfg) });
    if (audit) this.tools.onDecision = (d) => this.auditToolDecision(d);
  }

  /** The server's orchestrator: the budget ledger persists under the state dir and replays today. */
  static async create(cfg: ResolvedConfig, agents: AgentStore): Promise<Orchestrator> {
    // Threads first: they load on their own while the books and the audit log open.
    const pool = new RunPool(cfg.delegate.pool);
    const audit = cfg.auditDir
      ? AuditLog.open({ dir: cfg.auditDir, previews: cfg.delegate.audit.previews, redactor: new Redactor({ secrets: configSecrets(cfg) }) })
      : undefined;
    // A re-entry child keeps its books in memory: its parent commits the usage it reports.
    let budget: BudgetGate;
    let telemetry: Telemetry | undefined;
    try {
      telemetry = await loadTelemetry(cfg);
      budget = process.env[CHILD_ENV] ? BudgetGate.inMemory(cfg) : await BudgetGate.open(cfg);
    } catch (err) {
      // An unusable state dir stops the start: the threads must not keep the process alive.
      audit?.close();
      await pool.close();
      throw err;
    }
    const orchestrator = new Orchestrator(cfg, agents, budget, audit, pool);
    orchestrator.telemetry = telemetry;
    // Queued events reach the file even when the process dies of an exception or a signal.
    if (audit) orchestrator.uninstallShutdownFlush = installShutdownFlush(audit);
    return orchestrator;
  }

  /** Warms the pool's workers in the background (call once `initialize` is answered; idempotent). */
  warm(): void {
    this.pool.warm(this.warmHint());
  }

  /**
   * What a new worker should warm: the wire APIs the agents' models use, and the tokenizer only when a
   * server-wide budget makes every run need it. An agent's own caps or context limit load it on that
   * agent's first call instead: its tables cost ~20 MB per worker thread (~100 MB at the peak of loading),
   * and the shipped agents' context limits would otherwise load it in every server.
   */
  private warmHint(): WarmHint {
    const wireApis = new Set<WireApi>();
    const tokenizer = this.budget.limitedAnywhere();
    for (const agent of this.agents.list()) {
      const ref = agent.model ?? this.cfg.defaultModel;
      if (!ref) continue;
      try {
        const endpoint = resolveEndpoint(this.cfg, parseModelRef(ref).provider);
        wireApis.add(endpoint.wireApi);
      } catch {
        // A model this config cannot reach: the run will say so; nothing to warm for it.
      }
    }
    return { wireApis: [...wireApis], tokenizer };
  }

  /** Starts a run and returns its record at once; `record.done` settles with the result (never rejects). */
  start(req: RunRequest): RunRecord {
    const runId = `run_${randomUUID()}`;
    const startedAt = Date.now();
    const agent = req.definition ?? this.agents.get(req.agent);
    const modelRef = agent?.model ?? this.cfg.defaultModel ?? '';
    const usage = emptyUsage();
    let settle!: (r: RunResult) => void;
    const done = new Promise<RunResult>((resolve) => (settle = resolve));
    let cancelImpl: (reason: 'cancelled' | 'timeout') => void = () => {};
    const record: RunRecord = {
      runId,
      agent: req.agent,
      model: modelRef,
      owner: req.owner ?? 'local',
      status: 'running',
      startedAt,
      lastProgress: 'starting',
      turn: 0,
      usage,
      done,
      cancel: (reason = 'cancelled') => cancelImpl(reason),
      ...(req.background ? { keep: true } : {}),
    };
    const finish = (status: RunResult['status'], output: string, turns: number, error?: string) => {
      const result: RunResult = {
        run_id: runId,
        agent: req.agent,
        status,
        output,
        turns,
        usage: { ...usage },
        model: modelRef,
        duration_ms: Date.now() - startedAt,
        cost_usd: record.costUsd ?? null,
        ...(record.budgetNotes?.length ? { notes: record.budgetNotes } : {}),
        ...(error ? { error } : {}),
      };
      if (status === 'ok' && agent?.outputSchema) {
        try {
          result.structured = parseAnswer(output);
        } catch (err) {
          // The worker checked it; a failure here is a bug, reported rather than hidden.
          status = result.status = 'error';
          error = result.error = `the answer could not be read as JSON: ${(err as Error).message}`;
        }
      }
      if (status === 'ok' && agent?.artifacts.length) {
        try {
          const items = extractArtifacts(agent.artifacts, output).map((a) => ({ ...a, content: this.redactor.redactString(a.content) }));
          const refs = this.artifacts.write(runId, record.owner, items);
          if (refs.length) result.artifacts = refs;
          for (const a of refs) record.audit?.emit({ event: 'artifact', name: a.name, path: a.uri, bytes: a.bytes });
        } catch (err) {
          log.warn(`run ${runId}: could not write artifacts: ${(err as Error).message}`);
        }
      }
      record.status = status;
      record.endedAt = Date.now();
      record.result = result;
      record.trace?.end({ status, usage, costUsd: result.cost_usd, error, output: output && agent && !agent.policies.secrets.redact ? () => this.redactor.redactString(output) : undefined });
      record.audit?.emit({
        event: 'run_end',
        status,
        turns,
        usage: { ...usage },
        cost_usd: record.ownCostUsd === undefined ? result.cost_usd : record.ownCostUsd,
        duration_ms: result.duration_ms,
        ...(error ? { error } : {}),
        ...(this.audit && agent && output ? previewField('output_preview', this.audit.previewText(output, agent.policies.secrets.redact)) : {}),
      });
      // run_end (with the run's earlier events) is already in the file, so a kill -9 from here on
      // cannot lose it; the group commit's fdatasync covers power loss within commitIntervalMs.
      // The record is kept for run_status/run_result (delegate.runs.keepS): let go of the run's
      // machinery (ports, timers, the caller's request context) that the cancel closure holds.
      cancelImpl = () => {};
      settle(result);
      // Only runs someone can still ask for stay in memory (background runs, a waiting run_result).
      this.runs.ended(record);
    };
    this.runs.add(record);

    const chain = req.chain;
    const depth = chain ? chain.depth : req.parentRunId ? (req.depth ?? 1) : 0;
    record.lineage = lineageOf(chain?.root_run_id ?? req.rootRunId ?? req.parentRunId ?? runId, depth, chain?.ancestry ?? [], req.agent, req.input);
    // Held until the run is dispatched: its start-up events are serialised while the request is out.
    // A name that is no agent gets no audit trail: nothing ran, and the caller is told at once.
    record.audit = !agent ? undefined : this.audit?.forRun(
      {
        run_id: runId,
        parent_run_id: chain?.parent_run_id ?? req.parentRunId ?? null,
        root_run_id: record.lineage.rootRunId,
        depth,
        agent: req.agent,
      },
      {
        held: true,
        first: () => ({
          event: 'run_start',
          caller: req.caller ?? req.owner ?? null,
          input_digest: digest(req.input),
          model: modelRef,
          sandbox: this.cfg.delegate.sandbox.mode,
          ...(this.audit && agent ? previewField('input_preview', this.audit.previewText(JSON.stringify(req.input), agent.policies.secrets.redact)) : {}),
        }),
      },
    );
    record.trace = this.telemetry?.startRun({
      runId,
      agent: req.agent,
      model: modelRef,
      depth,
      rootRunId: record.lineage.rootRunId,
      parentRunId: chain?.parent_run_id ?? req.parentRunId ?? null,
      caller: req.caller ?? req.owner ?? null,
      budgetScope: depth === 0 ? 'root' : `slice of ${chain?.parent_run_id ?? req.parentRunId}`,
      parent: req.trace,
      // Content capture follows the audit previews' rule: redacted, and never for agents with secrets.redact.
      input: agent && !agent.policies.secrets.redact ? () => this.redactor.redactString(JSON.stringify(req.input)) : undefined,
    });
    // A chain is enforced on arrival too: depth, cycles, and (below) its budget and rules as ceilings.
    const refused = chain && agent ? refuseHop({ rootRunId: chain.root_run_id, depth: chain.depth - 1, ancestry: chain.ancestry }, agent, req.input, this.cfg.delegate.reentry.maxDepth) : undefined;
    const prepared = refused
      ? { error: refused }
      : agent
        ? this.prepare(agent, modelRef, req.input)
        : { error: this.unknownAgent(req.agent) };
    if ('error' in prepared) {
      finish('error', '', 0, prepared.error);
      return record;
    }
    try {
      this.pool.assertCapacity();
    } catch (err) {
      finish('error', '', 0, (err as Error).message);
      return record;
    }
    let rb: RunBudget;
    try {
      rb = this.budget.openRun({ runId, agent: agent!, modelRef, call: lowerCaps(req.budget, chain?.budget), parentRunId: req.parentRunId });
    } catch (err) {
      finish('error', '', 0, `budget: ${(err as Error).message}`);
      return record;
    }
    cancelImpl = this.execute(agent!, prepared, req, record, usage, rb, finish);
    record.audit?.release();
    return record;
  }

  /** Runs to completion (the synchronous tool-call path). */
  async run(req: RunRequest): Promise<RunResult> {
    return this.start(req).done;
  }

  private unknownAgent(name: string): string {
    return unknownAgentMessage(name, this.agents.exposed().map((a) => a.name));
  }

  /** Everything that can fail before a worker is involved: model, endpoint, key, tools. */
  private prepare(
    agent: AgentDefinition,
    modelRef: string,
    input: Record<string, unknown>,
  ): { error: string } | { endpoint: ProviderEndpoint; modelId: string; userMessage: string } {
    if (!modelRef) {
      return {
        error: `agent ${agent.name} has no model and no default is configured (set "model: anthropic/<id>" in ${agent.source.file}, delegate.defaultModel in mcp.json, or DELEGATE_MCP_MODEL)`,
      };
    }
    let endpoint: ProviderEndpoint;
    let modelId: string;
    try {
      const ref = parseModelRef(modelRef);
      modelId = ref.model;
      endpoint = this.endpoints.get(ref.provider) ?? resolveEndpoint(this.cfg, ref.provider);
      this.endpoints.set(ref.provider, endpoint); // the config (and its keys) is fixed for the process
    } catch (err) {
      return { error: `agent ${agent.name} uses model "${modelRef}": ${(err as Error).message}` };
    }
    if (!endpoint.apiKey) {
      return {
        error: `agent ${agent.name} uses ${modelRef}, but ${endpoint.apiKeyEnv ?? 'no API key'} is not set (set it in the server's environment or configure delegate.providers.${endpoint.provider} in mcp.json)`,
      };
    }
    // The offered tools (and the system prompt naming them) come from the tool gate in execute():
    // listing a downstream MCP server's tools may have to start it first.
    return { endpoint, modelId, userMessage: buildUserMessage(input) };
  }

  private execute(
    agent: AgentDefinition,
    prepared: Exclude<ReturnType<Orchestrator['prepare']>, { error: string }>,
    req: RunRequest,
    record: RunRecord,
    usage: Usage,
    rb: RunBudget,
    finish: (status: RunResult['status'], output: string, turns: number, error?: string) => void,
  ): (reason: 'cancelled' | 'timeout') => void {
    // This run's line on its worker's control channel (opened before dispatch: a message may come at once).
    const line = this.pool.open(record.runId, (msg, port) => onWorkerMessage(msg, port));
    // Settle the books before the result goes out: nothing the run reserved stays reserved.
    const finishRun: typeof finish = (status, output, turns, error) => {
      if (record.status !== 'running') return; // settled already (e.g. by the cancel fallback below)
      const totals = this.budget.closeRun(rb);
      record.costUsd = totals.unpricedTokens > 0 && totals.usd === 0 ? null : totals.usd;
      // The audit records the run's own spend: its children write their own run_end (see audit/events.ts).
      // totals.self still holds what process-hop children reported (their slices are this run's reservations).
      const ownUsd = totals.self.usd - (record.childCostUsd ?? 0);
      record.ownCostUsd = totals.self.unpricedTokens > 0 && ownUsd <= 0 ? null : Math.max(0, ownUsd);
      // What this run and everything it delegated spent (a re-entry parent commits exactly this).
      const tree = emptyUsage();
      for (const m of Object.values(totals.byModel)) {
        tree.input_tokens += m.input;
        tree.output_tokens += m.output;
        tree.cache_read_input_tokens += m.cache_read;
        tree.cache_creation_input_tokens += m.cache_write;
      }
      record.treeUsage = tree;
      record.budgetNotes = [...rb.notes, ...unpricedNotes(totals)];
      finish(status, output, turns, error);
    };
    // Stops running tools on cancel. Made on first use: most runs never call a tool.
    let toolAbort: AbortController | undefined;
    const toolSignal = (): AbortSignal => {
      if (!toolAbort) {
        toolAbort = new AbortController();
        if (cancelled) toolAbort.abort(cancelled);
      }
      return toolAbort.signal;
    };
    const toolRun = this.tools.openRun({ runId: record.runId, agent, ask: req.ask, callerRules: req.callerRules ?? req.chain?.rules });
    let threadId: number | undefined;
    let cancelled: 'cancelled' | 'timeout' | undefined;
    let graceTimer: NodeJS.Timeout | undefined;
    let tokensSoFar = 0;
    let costSoFar = 0;
    let callStartedEstimate: number | null = null;
    let callStartedAt = 0;
    let retries = 0;
    const maxTurns = agent.maxTurns;

    const progress = (what: string) => {
      record.lastProgress = what;
      if (!req.onProgress) return;
      // Every line restarts the wait for the next beat (refresh re-arms a timer that already fired).
      heartbeat?.refresh();
      const tokens = tokensSoFar >= 1000 ? `${(tokensSoFar / 1000).toFixed(1)}k` : String(tokensSoFar);
      const cost = costSoFar > 0 ? ` · $${costSoFar.toFixed(4)}` : '';
      req.onProgress(`${agent.name} · turn ${record.turn}/${maxTurns} · ${what} · ${tokens} tokens${cost} · ${Math.round((Date.now() - record.startedAt) / 1000)}s`);
    };
    // Only for a caller that follows progress: nothing else reads a heartbeat.
    const heartbeat: NodeJS.Timeout | undefined = req.onProgress
      ? setTimeout(() => progress(record.lastProgress.replace(/ \(waiting\)$/, '') + ' (waiting)'), HEARTBEAT_MS)
      : undefined;

    const cancel = (reason: 'cancelled' | 'timeout') => {
      if (cancelled || record.status !== 'running') return;
      cancelled = reason;
      record.audit?.emit({ event: 'cancelled', reason: reason === 'timeout' ? 'run deadline reached' : 'cancelled by the client' });
      line.cancel(reason);
      toolAbort?.abort(reason);
      // Hard kill only if the cooperative cancel did not end the run in time.
      graceTimer = setTimeout(() => {
        if (record.status !== 'running') return;
        if (threadId !== undefined) {
          log.warn(`run ${record.runId} did not stop within ${this.cfg.delegate.runs.cancelGraceMs} ms; terminating worker thread ${threadId}`);
          this.pool.killThread(threadId);
        }
        // Never started (still queued, or its worker cannot start): settle it now; if the task runs
        // later, the worker sees the cancel first and returns at once.
        const last = setTimeout(() => {
          if (record.status === 'running') finishRun(reason, '', record.turn, reason === 'timeout' ? 'run deadline reached before the run could start' : 'run cancelled');
        }, this.cfg.delegate.runs.cancelGraceMs);
        last.unref();
      }, this.cfg.delegate.runs.cancelGraceMs);
      graceTimer.unref();
    };

    const timeoutS = Math.min(
      this.cfg.delegate.runs.timeoutS,
      agent.timeoutS ?? Infinity,
      req.timeoutS && req.timeoutS > 0 ? req.timeoutS : Infinity,
    );
    const deadline = setTimeout(() => cancel('timeout'), timeoutS * 1000);
    const onAbort = () => cancel('cancelled');
    if (req.signal?.aborted) onAbort();
    else req.signal?.addEventListener('abort', onAbort, { once: true });

    // The budget gate: no model call starts unless every scope covering it can afford it.
    const openGate = (turn: number, estimated: number | null, maxOutputTokens: number) => {
      record.turn = turn;
      progress('thinking');
      const gate = this.budget.beforeCall(rb, estimated, maxOutputTokens);
      callStartedEstimate = estimated;
      callStartedAt = Date.now();
      retries = 0;
      if (!gate.ok) record.audit?.emit({ event: 'budget_refused', scope: gate.scope ?? 'run', tokens: gate.needed ?? 0, usd: null, message: gate.reason });
      else record.audit?.emit({ event: 'budget_reserve', scope: 'run', tokens: gate.tokens, usd: gate.usd });
      return gate;
    };

    // The worker's report of a finished model call: commit its usage, audit it.
    const modelCallEnded = (end: ModelCallEnd) => {
      if (record.status !== 'running') return; // books closed already (the cancel fallback settled the run)
      threadId = end.threadId;
      const charge = this.budget.afterCall(rb, end);
      record.audit?.emit({
        event: 'model_call',
        provider: prepared.endpoint.provider,
        model: record.model,
        turn: end.turn,
        estimated_input_tokens: callStartedEstimate ?? end.inputEstimate ?? null,
        usage: end.usage,
        latency_ms: end.latencyMs,
        retries,
        stop_reason: end.stopReason,
        ...(end.error ? { error: end.error } : {}),
      });
      if (charge) record.audit?.emit({ event: 'budget_commit', scope: 'run', tokens: charge.tokens, usd: charge.usd });
      record.trace?.modelCall({ startedAt: callStartedAt, provider: prepared.endpoint.provider, model: prepared.modelId, responseModel: end.responseModel, turn: end.turn, usage: end.usage, stopReason: end.stopReason, retries, costUsd: charge?.usd ?? null, error: end.error });
      // The run's usage is what it was charged: for a stream cut short that includes what it streamed.
      if (charge) {
        usage.input_tokens += charge.parts.input;
        usage.output_tokens += charge.parts.output;
        usage.cache_read_input_tokens += charge.parts.cache_read;
        usage.cache_creation_input_tokens += charge.parts.cache_write;
      } else if (end.usage) {
        for (const k of Object.keys(usage) as (keyof Usage)[]) usage[k] += end.usage[k];
      }
      if (charge) {
        tokensSoFar += charge.tokens;
        if (charge.usd !== null) costSoFar += charge.usd;
      }
    };

    const onWorkerMessage = (msg: WorkerMessage, port: MessagePort) => {
      if (msg.kind === 'event') {
        if (msg.type === 'stream_start') progress('model responding');
        else if (msg.type === 'retry') {
          retries++;
          progress(`retrying model call (attempt ${msg.attempt}: ${msg.reason})`);
        }
        return;
      }
      msg.ended?.forEach(modelCallEnded);
      const reply = (r: Omit<MainReply & { ok: true }, 'kind' | 'id' | 'ok'> | { error: string }) =>
        line.reply(
          port,
          'error' in r
            ? ({ kind: 'reply', id: msg.id, ok: false, reason: r.error } satisfies MainReply)
            : ({ kind: 'reply', id: msg.id, ok: true, ...r } satisfies MainReply),
        );
      if (msg.kind === 'model_call_start') {
        threadId = msg.threadId;
        const gate = openGate(msg.turn, msg.estimatedInputTokens, msg.maxOutputTokens);
        reply(gate.ok ? { maxOutputTokens: gate.maxOutputTokens, reservedOutputTokens: gate.reservedOutputTokens } : { error: gate.reason });
      } else if (msg.kind === 'extend_output') {
        const ext = this.budget.extend(rb, msg.wantOutputTokens);
        if (ext.ok) {
          record.audit?.emit({ event: 'budget_reserve', scope: 'run', tokens: ext.granted, usd: null, message: `stream extension: ${ext.reservedOutputTokens} output tokens held after ${msg.streamedOutputTokens} streamed` });
          reply({ reservedOutputTokens: ext.reservedOutputTokens });
        } else {
          record.audit?.emit({ event: 'budget_refused', scope: ext.scope ?? 'run', tokens: msg.wantOutputTokens, usd: null, message: ext.reason });
          reply({ error: ext.reason });
        }
      } else if (msg.kind === 'call_tool') {
        progress(describeToolCall(msg.call));
        const span = record.trace?.startTool(msg.call.name, msg.call.id);
        const outcome = msg.call.name.startsWith(DELEGATION_PREFIX)
          ? this.delegate(record, rb, toolRun, msg.call, toolSignal(), progress, span)
          : this.tools.execute(toolRun, msg.call, toolSignal(), span);
        void outcome.then((o) => {
          span?.end();
          reply({ outcome: o });
        });
      }
    };

    const dispatch = (offered: ToolSpec[]): Promise<RunOutcome> => {
      const tools = [...offered, ...this.delegationTools(agent, toolRun)];
      // With no estimate to wait for, the first turn's gate is passed here, at dispatch, so the
      // first model request starts without a round trip to this thread.
      let firstTurnGranted: RunTask['firstTurnGranted'];
      // Admission: a run that cannot afford what it is expected to cost makes no model request.
      const admitted = this.budget.admit(rb);
      if (!admitted.ok) {
        record.audit?.emit({ event: 'budget_refused', scope: admitted.scope, tokens: admitted.needed, usd: null, message: admitted.reason });
        return Promise.resolve({ status: 'error', output: '', turns: 0, usage: emptyUsage(), modelCalls: 0, error: admitted.reason });
      }
      if (!rb.needsEstimate) {
        const gate = openGate(1, null, agent.maxOutputTokens);
        if (!gate.ok) return Promise.resolve({ status: 'error', output: '', turns: 1, usage: emptyUsage(), modelCalls: 0, error: gate.reason });
        firstTurnGranted = { maxOutputTokens: gate.maxOutputTokens, reservedOutputTokens: gate.reservedOutputTokens };
      }
      return this.pool.run({
        runId: record.runId,
        agent: { name: agent.name, maxTurns: agent.maxTurns, maxOutputTokens: agent.maxOutputTokens, temperature: agent.temperature },
        modelRef: record.model,
        modelId: prepared.modelId,
        endpoint: prepared.endpoint,
        system: buildSystemPrompt(agent, tools, this.cfg.workspace),
        userMessage: prepared.userMessage,
        tools,
        estimateTokens: rb.needsEstimate,
        budgeted: rb.limited,
        extensionStep: EXTENSION_STEP,
        tokenScale: this.budget.scaler.factor(record.model),
        // Telemetry counts retries, which the worker reports only as progress events.
        progress: Boolean(req.onProgress) || record.trace !== undefined,
        firstTurnGranted,
        ...(agent.outputSchema && { outputSchema: agent.outputSchema }),
      });
    };
    // Dispatched now when no downstream server has to be asked for its tools first: the worker starts
    // this run's request while this thread goes on starting the next ones (a fan-out pipelines).
    let outcome: Promise<RunOutcome>;
    try {
      const offered = this.tools.offeredNow(toolRun);
      outcome = offered ? dispatch(offered) : this.tools.prepare(toolRun, toolSignal()).then(dispatch);
    } catch (err) {
      outcome = Promise.reject(err);
    }
    void outcome
      .then(
        (outcome: RunOutcome) => {
          outcome.callsEnded?.forEach(modelCallEnded);
          // A run that was cancelled or timed out reports that, even if the worker saw only an aborted request.
          const status = cancelled && outcome.status !== 'ok' ? cancelled : outcome.status;
          finishRun(status, outcome.output, outcome.turns, outcome.error);
        },
        (err: Error) => {
          const msg =
            err instanceof ServerBusyError
              ? err.message
              : cancelled
                ? `run ${cancelled === 'timeout' ? 'deadline reached' : 'cancelled'}; worker stopped`
                : `worker failed: ${err.message} (the run was stopped; the server keeps serving)`;
          if (!cancelled) record.audit?.emit({ event: 'error', message: msg });
          finishRun(cancelled ?? 'error', '', record.turn, msg);
        },
      )
      .finally(() => {
        clearTimeout(heartbeat);
        clearTimeout(deadline);
        if (graceTimer) clearTimeout(graceTimer);
        req.signal?.removeEventListener('abort', onAbort);
        line.close();
      });
    return cancel;
  }



  /** One `agent__<name>` tool per agent this one may delegate to (listed in `agents:` or allowed by Agent(name)). */
  private delegationTools(agent: AgentDefinition, toolRun: ToolRun): ToolSpec[] {
    const names = new Set(agent.agents);
    for (const layer of toolRun.rules.layers) for (const r of [...layer.allow, ...layer.ask]) {
      const m = /^Agent\(([A-Za-z0-9_-]+)\)$/.exec(r.trim());
      if (m) names.add(m[1]);
    }
    const specs: ToolSpec[] = [];
    for (const name of names) {
      const target = this.agents.get(name);
      if (!target || (target.name === agent.name && !target.allowReentry)) continue;
      specs.push({
        name: `${DELEGATION_PREFIX}${name}`,
        description: `Delegate to the agent "${name}": ${target.description}`.slice(0, 1024),
        inputSchema: target.inputSchema,
      });
    }
    return specs;
  }

  /**
   * Runs `agent__<name>` for a parent run: permission check, depth and cycle checks, a budget slice
   * reserved in the parent's scopes, then the child run — over the re-entry hop (a child delegate-mcp
   * process, the default) or in-process — with progress forwarded and cancellation passed down.
   */
  private async delegate(
    parent: RunRecord,
    rb: RunBudget,
    toolRun: ToolRun,
    call: ToolCall,
    signal: AbortSignal,
    progress: (what: string) => void,
    span?: ToolSpanHandle,
  ): Promise<ToolOutcome> {
    const name = call.name.slice(DELEGATION_PREFIX.length);
    const target = this.agents.get(name);
    const started = Date.now();
    const decided = (decision: 'allow' | 'deny', reason: string, rule: string | null, outcome: 'ok' | 'error') => {
      parent.audit?.emit({ event: 'tool_call', tool: call.name, args_digest: digest(call.arguments), decision, rule, duration_ms: Date.now() - started, outcome });
      if (decision === 'deny') parent.audit?.emit({ event: 'permission_denied', tool: call.name, rule, reason });
      span?.decided({ decision, rule, reason, outcome });
    };
    if (!target) {
      decided('deny', 'unknown agent', null, 'error');
      return { isError: true, content: unknownAgentMessage(name, this.agents.list().map((a) => a.name)) };
    }
    // Depth and cycles first: they name the whole chain, which says more than a missing rule would.
    const lineage = parent.lineage!;
    const refused = refuseHop(lineage, target, call.arguments, this.cfg.delegate.reentry.maxDepth);
    if (refused) {
      decided('deny', refused, null, 'error');
      return { isError: true, content: refused };
    }
    const perm = await checkToolCall(toolRun.rules, call.name, call.arguments, { workspaceRoot: this.cfg.workspace });
    if (perm.decision !== 'allow') {
      decided('deny', perm.reason, perm.rule, 'error');
      return { isError: true, content: `permission denied: ${perm.reason}` };
    }
    // An agent made with create_agent and not saved exists only in this process: a re-entry child
    // would not know it, so it runs here (same checks, same ledger, the chain's limits as ever).
    const mode = target.source.format === 'dynamic' ? 'in-process' : this.cfg.delegate.reentry.mode;
    const input = call.arguments;
    const onProgress = (m: string) => progress(`→ ${name}: ${m}`);

    if (mode === 'in-process') {
      // Same process, same ledger: the child's budget scope is a child of the parent's run scope.
      const child = this.start({
        agent: name,
        input,
        owner: parent.owner,
        signal,
        onProgress,
        parentRunId: parent.runId,
        caller: `agent:${parent.agent}`,
        chain: { v: 1, root_run_id: lineage.rootRunId, parent_run_id: parent.runId, depth: lineage.depth + 1, ancestry: lineage.ancestry, budget: {}, rules: toolRun.rules },
        trace: span?.context,
      });
      parent.audit?.emit({ event: 'delegation', child_run_id: child.runId, child_agent: name, hop: 'in-process' });
      const r = await child.done;
      decided('allow', 'delegation', null, r.status === 'ok' ? 'ok' : 'error');
      return delegationOutcome(r.run_id, name, r.status, r.output, r.error);
    }

    // Process hop: reserve the child's slice here; commit what it reports for its whole tree.
    const childModel = target.model ?? this.cfg.defaultModel ?? 'unknown/unknown';
    const slice = this.budget.reserveSlice(rb, childModel, target.budget.runTokens);
    if (!slice.ok) {
      parent.audit?.emit({ event: 'budget_refused', scope: 'run', tokens: 0, usd: null, message: slice.reason });
      decided('deny', slice.reason, null, 'error');
      return { isError: true, content: `delegation to ${name} refused: ${slice.reason}` };
    }
    const chain: CallChain = {
      v: 1,
      root_run_id: lineage.rootRunId,
      parent_run_id: parent.runId,
      depth: lineage.depth + 1,
      ancestry: lineage.ancestry,
      budget: slice.tokens !== undefined ? { tokens: slice.tokens } : {},
      rules: toolRun.rules,
    };
    this.hub ??= new ChildHub(this.cfg);
    let childRunId = '';
    try {
      const res = await this.hub.call(name, input, chain, { signal, onProgress, timeoutMs: this.cfg.delegate.runs.timeoutS * 1000, meta: span?.meta() });
      const meta = (res._meta?.[RESULT_META_KEY] ?? {}) as { run_id?: string; usage?: Usage; tree_usage?: Usage; cost_usd?: number | null; status?: string };
      childRunId = meta.run_id ?? '';
      const charge = this.budget.commitSlice(slice.reservationId, meta.tree_usage ?? meta.usage ?? null, meta.cost_usd ?? null);
      parent.childCostUsd = (parent.childCostUsd ?? 0) + (charge.usd ?? 0);
      parent.audit?.emit({ event: 'delegation', child_run_id: childRunId, child_agent: name, hop: 'process' });
      parent.audit?.emit({ event: 'budget_commit', scope: 'run', tokens: charge.tokens, usd: charge.usd, message: `re-entry child ${childRunId} (${name})` });
      const text = res.content.map((c) => (c.type === 'text' ? c.text : `[${c.type}]`)).join('\n');
      decided('allow', 'delegation', null, res.isError ? 'error' : 'ok');
      return { isError: Boolean(res.isError), content: text };
    } catch (err) {
      // The child never reported: nothing is known to be spent beyond what it streamed; release the slice.
      this.budget.ledger.release(slice.reservationId);
      decided('allow', 'delegation', null, 'error');
      const why = signal.aborted ? 'cancelled' : (err as Error).message;
      return { isError: true, content: `delegation to ${name} failed: ${why}` };
    }
  }

  /** tool_call (every decision) and permission_denied (refusals) into the run's audit trail. */
  private auditToolDecision(d: ToolDecisionRecord): void {
    const ra = this.runs.get(d.runId)?.audit;
    if (!ra) return;
    const decision =
      d.decision === 'ask' ? (d.approval === 'denied' || d.approval === 'unanswered' ? 'ask_denied' : 'ask_approved') : d.decision === 'allow' ? 'allow' : 'deny';
    ra.emit({
      event: 'tool_call',
      tool: d.tool,
      args_digest: digest(d.args ?? {}),
      decision,
      rule: d.rule,
      duration_ms: d.durationMs,
      outcome: d.outcome === 'ok' ? 'ok' : 'error',
    });
    if (decision === 'deny' || decision === 'ask_denied') ra.emit({ event: 'permission_denied', tool: d.tool, rule: d.rule, reason: d.reason });
    for (const p of d.removedProtected ?? []) {
      ra.emit({ event: 'permission_denied', tool: d.tool, rule: null, reason: `sandbox: a command created the protected path ${p}; removed after the command` });
    }
  }

  /** Waits until no run is running, or `ms` has passed (a shutdown's grace period). */
  async waitForRuns(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      const running = this.runs.list().filter((r) => r.status === 'running');
      const left = deadline - Date.now();
      if (!running.length || left <= 0) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(running.map((r) => r.done)), new Promise((r) => (timer = setTimeout(r, left)))]);
      clearTimeout(timer);
    }
  }

  /** Cancels what still runs (their run_end reaches the audit log), then closes pool, books and log. */
  async close(reason?: string): Promise<void> {
    const running = this.runs.list().filter((r) => r.status === 'running');
    for (const r of running) r.cancel('cancelled');
    const grace = new Promise((res) => setTimeout(res, this.cfg.delegate.runs.cancelGraceMs).unref());
    await Promise.race([Promise.all(running.map((r) => r.done)), grace]);
    this.runs.close();
    await this.pool.close();
    await this.hub?.close();
    await this.budget.close();
    if (reason) this.audit?.emit({ event: 'server_stop', reason });
    this.audit?.close();
    this.uninstallShutdownFlush?.();
    await this.tools.close();
    await this.telemetry?.shutdown();
  }
}

/** The README promises a note whenever a result's cost is unknown or only partly known. */
function unpricedNotes(totals: RunTotals): string[] {
  if (totals.unpricedTokens <= 0) return [];
  const models = Object.entries(totals.byModel).filter(([, m]) => m.usd === null).map(([name]) => name);
  const which = models.length ? models.join(', ') : 'its model';
  return [
    totals.usd === 0
      ? `cost unknown: no price known for ${which} (${totals.unpricedTokens} tokens counted; add a price under delegate.prices in mcp.json)`
      : `cost is a lower bound: no price known for ${which} (${totals.unpricedTokens} tokens not priced; add a price under delegate.prices in mcp.json)`,
  ];
}

function describeToolCall(call: ToolCall): string {
  const a = call.arguments;
  const arg = typeof a.path === 'string' ? a.path : typeof a.pattern === 'string' ? a.pattern : '';
  return arg ? `${call.name} ${arg.slice(0, 60)}` : call.name;
}

function previewField<K extends string>(key: K, text: string | undefined): Partial<Record<K, string>> {
  return text === undefined ? {} : ({ [key]: text } as Record<K, string>);
}

const DELEGATION_PREFIX = 'agent__';

/** Per-call caps: the smaller of what the caller asked and what the chain granted. */
function lowerCaps(call: CallBudget | undefined, slice: CallChain['budget'] | undefined): CallBudget | undefined {
  if (!slice || (slice.tokens === undefined && slice.usd === undefined)) return call;
  const min = (a?: number, b?: number) => (a === undefined ? b : b === undefined ? a : Math.min(a, b));
  return { run_tokens: min(call?.run_tokens, slice.tokens), run_usd: min(call?.run_usd, slice.usd) };
}

function delegationOutcome(runId: string, agent: string, status: string, output: string, error?: string): ToolOutcome {
  return status === 'ok'
    ? { isError: false, content: output }
    : { isError: true, content: `run ${runId} (${agent}) ${status}: ${error ?? ''}${output ? `\n\nLast partial answer:\n${output}` : ''}` };
}
