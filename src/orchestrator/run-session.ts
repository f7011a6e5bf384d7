// One run, from its request to its result: admission (agent, chain, model, capacity, budget), dispatch
// to a RunExecutor (the piscina pool, or the calling thread), the conversation with its loop (model-call
// gate, stream extensions, tool calls through the tool gate), progress and heartbeats, the deadline,
// cancellation with its hard-kill fallback, and settling the books, the audit trail and the record.
// The orchestrator starts sessions for whoever asks (an MCP call, the CLI, a queue worker's job); the
// loop runs wherever the RunExecutor puts it (piscina threads, or the calling thread) and talks to the
// session only through it.
// The books are the file ledger (every budget answer synchronous: a run is admitted, gated and
// dispatched in the caller's stack, as the embedded hot path needs) or the Redis ledger of queue mode
// (answers are Promises): each budget step takes either, with the same rules, and stays synchronous
// when the answer is.
//
// Long because: the run's state machine (admission, dispatch, loop conversation, cancel/deadline/kill,
// settling) is one piece that reads best whole; its parts that stand alone (result building, audit
// mapping, delegation, model endpoints) live in their own modules.
import type { AgentDefinition } from '../agents/definition.js';
import type { AgentStore } from '../agents/store.js';
import type { AuditLog } from '../audit/audit-log.js';
import { digest } from '../audit/events.js';
import type { Redactor } from '../audit/redact.js';
import type { ResolvedConfig } from '../config/config.js';
import { log } from '../log.js';
import type { ToolCall, ToolSpec } from '../contract/tool.js';
import type { Usage } from '../contract/usage.js';
import { addUsage, emptyUsage } from '../contract/usage-sum.js';
import type { Telemetry } from '../telemetry/index.js';
import { buildSystemPrompt } from './prompt.js';
import type { MainReply, ModelCallEnd, RunOutcome, RunTask, WorkerMessage } from '../contract/worker-protocol.js';
import type { ArtifactStore } from './artifacts.js';
import { after, type Charge, type LedgerStore, type MaybePromise, type RunTotals } from '../budget/index.js';
import { EXTENSION_STEP, type BudgetGate, type CallBudget, type GateDecision, type RunBudget } from './budget-gate.js';
import { lineageOf, recordedLineage, refuseHop, type CallChain } from './chain.js';
import type { Delegations } from './delegation.js';
import type { ModelEndpoints, PreparedRun } from './model-endpoints.js';
import { previewField } from './run-audit.js';
import { ServerBusyError, type ReplyPort, type RunExecutor, type RunLine } from './run-executor.js';
import { unknownAgentMessage, type RunRequest } from './run-request.js';
import { buildResult, treeUsageOf, unpricedNotes } from './run-result.js';
import type { RunRecord, RunRegistry } from './runs.js';
import type { RunResult } from '../contract/run.js';
import type { ToolGate, ToolRun } from './tool-gate.js';

/**
 * Heartbeats keep clients' idle timers from firing while a model is thinking. The README promises one
 * at least every 5 s; a beat is due 4 s after the last progress line, leaving a second for a busy
 * event loop and the transport. (A 1 s poll for "5 s since the last line" gave gaps of 5-6 s.)
 */
export const HEARTBEAT_MS = 4_000;

/** A run's progress line: `lead · turn 2/8 · read_file src/app.ts · 1.9k tokens · $0.0123 · 14s`. */
export function progressLine(agent: string, turn: number, maxTurns: number, what: string, tokens: number, costUsd: number, startedAt: number): string {
  const t = tokens >= 1000 ? `${(tokens / 1000).toFixed(1)}k` : String(tokens);
  const cost = costUsd > 0 ? ` · $${costUsd.toFixed(4)}` : '';
  return `${agent} · turn ${turn}/${maxTurns} · ${what} · ${t} tokens${cost} · ${Math.round((Date.now() - startedAt) / 1000)}s`;
}

type Status = RunResult['status'];
type StopReason = 'cancelled' | 'timeout';

/** What a session uses of the orchestrator that starts it. */
export interface RunHost {
  readonly cfg: ResolvedConfig;
  readonly agents: AgentStore;
  /** Over the file ledger (synchronous answers) or the Redis ledger (Promises): see budget/store.ts. */
  readonly budget: BudgetGate<LedgerStore>;
  readonly tools: ToolGate;
  readonly runs: RunRegistry;
  readonly artifacts: ArtifactStore;
  readonly redactor: Redactor;
  readonly audit?: AuditLog;
  readonly telemetry?: Telemetry;
  readonly pool: RunExecutor;
  readonly delegations: Delegations;
  readonly models: ModelEndpoints;
}

export class RunSession {
  readonly record: RunRecord;
  private readonly agent?: AgentDefinition;
  private readonly usage: Usage = emptyUsage();
  private settle!: (r: RunResult) => void;

  // Set once the run is admitted and dispatched.
  private prepared!: PreparedRun;
  private rb!: RunBudget;
  private line?: RunLine;
  private toolRun?: ToolRun;
  /** Stops running tools on cancel. Made on first use: most runs never call a tool. */
  private toolAbort?: AbortController;
  /** The thread running the loop (the hard-kill fallback needs it). */
  private threadId?: number;
  private cancelled?: StopReason;
  /** A cancel that came while the ledger was still opening the run (Redis ledger): applied at dispatch. */
  private cancelBeforeDispatch?: StopReason;
  /** Commits the ledger has not answered yet (Redis ledger only): the books close after them. */
  private commits?: Promise<void>;
  /** The books are being closed: later reports are not charged again, a second finish is ignored. */
  private closing = false;
  private heartbeat?: NodeJS.Timeout;
  private deadline?: NodeJS.Timeout;
  private graceTimer?: NodeJS.Timeout;
  private onAbort?: () => void;
  // Progress figures and the current model call's start, for its audit and trace records.
  private tokensSoFar = 0;
  private costSoFar = 0;
  private callStartedEstimate: number | null = null;
  private callStartedAt = 0;
  private retries = 0;

  constructor(
    private readonly host: RunHost,
    private readonly req: RunRequest,
    runId: string,
  ) {
    this.agent = req.definition ?? host.agents.get(req.agent);
    const done = new Promise<RunResult>((resolve) => (this.settle = resolve));
    this.record = {
      runId,
      agent: req.agent,
      model: this.agent?.model ?? host.cfg.defaultModel ?? '',
      owner: req.owner ?? 'local',
      status: 'running',
      startedAt: Date.now(),
      lastProgress: 'starting',
      turn: 0,
      usage: this.usage,
      done,
      cancel: (reason = 'cancelled') => this.cancel(reason),
      ...(req.background ? { keep: true } : {}),
    };
  }

  /** Admits the run and dispatches it; a run that cannot start settles at once with an error result. */
  start(): RunRecord {
    const { host, req, record, agent } = this;
    host.runs.add(record);
    const chain = req.chain;
    const { parentRunId, rootRunId, depth } = recordedLineage(req, record.runId);
    // A claimed chain's depth and ancestry still bound what this run may delegate to.
    record.lineage = lineageOf(rootRunId, chain?.depth ?? depth, chain?.ancestry ?? [], req.agent, req.input);
    const claim = chain && req.chainClaimed ? { root_run_id: chain.root_run_id, parent_run_id: chain.parent_run_id, depth: chain.depth, agent: chain.ancestry[chain.ancestry.length - 1].agent } : undefined;
    // Held until the run is dispatched: its start-up events are serialised while the request is out.
    // A name that is no agent gets no audit trail: nothing ran, and the caller is told at once.
    record.audit = !agent ? undefined : host.audit?.forRun(
      { run_id: record.runId, parent_run_id: parentRunId, root_run_id: rootRunId, depth, agent: req.agent },
      {
        held: true,
        first: () => ({
          event: 'run_start',
          caller: req.caller ?? req.owner ?? null,
          input_digest: digest(req.input),
          model: record.model,
          sandbox: host.cfg.delegate.sandbox.mode,
          ...(claim && { claimed_chain: claim }),
          ...previewField(host.audit, 'input_preview', JSON.stringify(req.input), agent.policies.secrets.redact),
        }),
      },
    );
    record.trace = host.telemetry?.startRun({
      runId: record.runId,
      agent: req.agent,
      model: record.model,
      depth,
      rootRunId,
      parentRunId,
      caller: req.caller ?? req.owner ?? null,
      budgetScope: parentRunId === null ? 'root' : `slice of ${parentRunId}`,
      parent: req.trace,
      // Content capture follows the audit previews' rule: redacted, and never for agents with secrets.redact.
      input: agent && !agent.policies.secrets.redact ? () => host.redactor.redactString(JSON.stringify(req.input)) : undefined,
    });
    const refused = this.admit(chain);
    // Over the file ledger the run is admitted and dispatched before start() returns, as ever.
    if (refused instanceof Promise) void refused.then((r) => this.admitted(r));
    else this.admitted(refused);
    return record;
  }

  private admitted(refused: string | undefined): void {
    if (refused !== undefined) return this.finish('error', '', 0, refused);
    this.execute();
    this.record.audit?.release();
  }

  /** Everything that can refuse the run before dispatch; undefined when it may run. */
  private admit(chain: CallChain | undefined): MaybePromise<string | undefined> {
    const { host, req, agent } = this;
    if (!agent) return unknownAgentMessage(req.agent, host.agents.exposed().map((a) => a.name));
    // A chain is enforced on arrival too: depth, cycles, and (below) its budget and rules as ceilings.
    const hop = chain && refuseHop({ rootRunId: chain.root_run_id, depth: chain.depth - 1, ancestry: chain.ancestry }, agent, req.input, host.cfg.delegate.reentry.maxDepth);
    if (hop) return hop;
    const prepared = host.models.prepare(agent, this.record.model, req.input);
    if ('error' in prepared) return prepared.error;
    this.prepared = prepared;
    try {
      host.pool.assertCapacity();
    } catch (err) {
      return (err as Error).message;
    }
    let opened: MaybePromise<RunBudget>;
    try {
      opened = host.budget.openRun({ runId: this.record.runId, agent, modelRef: this.record.model, call: lowerCaps(req.budget, chain?.budget), parentRunId: req.parentBooksElsewhere ? undefined : req.parentRunId });
    } catch (err) {
      return `budget: ${(err as Error).message}`;
    }
    const keep = (rb: RunBudget) => {
      this.rb = rb;
      return undefined;
    };
    return opened instanceof Promise ? opened.then(keep, (err: Error) => `budget: ${err.message}`) : keep(opened);
  }

  /** Opens the run's line, arms its timers, and dispatches it once its tools are known. */
  private execute(): void {
    const { host, req, record } = this;
    const agent = this.agent!;
    // Opened before dispatch: a message may come at once.
    this.line = host.pool.open(record.runId, (msg, port) => this.onLoopMessage(msg, port));
    this.toolRun = host.tools.openRun({
      runId: record.runId,
      agent,
      ask: req.ask,
      callerRules: req.callerRules ?? req.chain?.rules,
      delegation: host.delegations.forRun(record, this.rb, () => this.toolRun!, (what) => this.progress(what)),
    });
    // Only for a caller that follows progress: nothing else reads a heartbeat.
    if (req.onProgress) this.heartbeat = setTimeout(() => this.progress(record.lastProgress.replace(/ \(waiting\)$/, '') + ' (waiting)'), HEARTBEAT_MS);
    const timeoutS = Math.min(host.cfg.delegate.runs.timeoutS, agent.timeoutS ?? Infinity, req.timeoutS && req.timeoutS > 0 ? req.timeoutS : Infinity);
    this.deadline = setTimeout(() => this.cancel('timeout'), timeoutS * 1000);
    this.onAbort = () => this.cancel('cancelled');
    if (req.signal?.aborted) this.onAbort();
    else req.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (this.cancelBeforeDispatch) this.cancel(this.cancelBeforeDispatch);

    // Dispatched now when no downstream server has to be asked for its tools first: the loop starts
    // this run's request while this thread goes on starting the next ones (a fan-out pipelines).
    let outcome: Promise<RunOutcome>;
    try {
      const offered = host.tools.offeredNow(this.toolRun);
      outcome = offered ? this.dispatch(offered) : host.tools.prepare(this.toolRun, this.toolSignal()).then((o) => this.dispatch(o));
    } catch (err) {
      outcome = Promise.reject(err);
    }
    void outcome.then((o) => this.ended(o), (err: Error) => this.failed(err)).finally(() => this.cleanup());
  }

  private dispatch(offered: ToolSpec[]): Promise<RunOutcome> {
    const { host, req, record, rb } = this;
    const agent = this.agent!;
    const tools = [...offered, ...host.delegations.toolsFor(agent, this.toolRun!)];
    // Admission: a run that cannot afford what it is expected to cost makes no model request.
    const admitted = host.budget.admit(rb);
    const onAdmitted = (a: Awaited<typeof admitted>): Promise<RunOutcome> => {
      if (!a.ok) {
        record.audit?.emit({ event: 'budget_refused', scope: a.scope, tokens: a.needed, usd: null, message: a.reason });
        return Promise.resolve({ status: 'error', output: '', turns: 0, usage: emptyUsage(), modelCalls: 0, error: a.reason });
      }
      // With no estimate to wait for, the first turn's gate is passed here, at dispatch, so the first
      // model request starts without a round trip to this thread.
      if (rb.needsEstimate) return this.runLoop(tools, undefined);
      const onGate = (gate: GateDecision): Promise<RunOutcome> =>
        gate.ok
          ? this.runLoop(tools, { maxOutputTokens: gate.maxOutputTokens, reservedOutputTokens: gate.reservedOutputTokens })
          : Promise.resolve({ status: 'error', output: '', turns: 1, usage: emptyUsage(), modelCalls: 0, error: gate.reason });
      const gate = this.openGate(1, null, agent.maxOutputTokens);
      return gate instanceof Promise ? gate.then(onGate) : onGate(gate);
    };
    // A cancel while the ledger answered: no model request is made.
    return admitted instanceof Promise ? admitted.then((a) => (this.cancelled ? this.stoppedBeforeDispatch() : onAdmitted(a))) : onAdmitted(admitted);
  }

  private stoppedBeforeDispatch(): Promise<RunOutcome> {
    return Promise.resolve({ status: 'error', output: '', turns: 0, usage: emptyUsage(), modelCalls: 0, error: 'run stopped before its first model request' });
  }

  /** Hands the run's loop to the executor. */
  private runLoop(tools: ToolSpec[], firstTurnGranted: RunTask['firstTurnGranted']): Promise<RunOutcome> {
    const { host, req, record, rb } = this;
    const agent = this.agent!;
    return host.pool.run({
      runId: record.runId,
      agent: { name: agent.name, maxTurns: agent.maxTurns, maxOutputTokens: agent.maxOutputTokens, temperature: agent.temperature },
      modelRef: record.model,
      modelId: this.prepared.modelId,
      endpoint: this.prepared.endpoint,
      system: buildSystemPrompt(agent, tools, host.cfg.workspace),
      userMessage: this.prepared.userMessage,
      tools,
      estimateTokens: rb.needsEstimate,
      budgeted: rb.limited,
      extensionStep: EXTENSION_STEP,
      tokenScale: host.budget.scaler.factor(record.model),
      // Telemetry counts retries, which the loop reports only as progress events.
      progress: Boolean(req.onProgress) || record.trace !== undefined,
      firstTurnGranted,
      ...(agent.outputSchema && { outputSchema: agent.outputSchema }),
    });
  }

  private toolSignal(): AbortSignal {
    if (!this.toolAbort) {
      this.toolAbort = new AbortController();
      if (this.cancelled) this.toolAbort.abort(this.cancelled);
    }
    return this.toolAbort.signal;
  }

  /** A progress line for the caller (and run_status); every line restarts the wait for the next beat. */
  private progress(what: string): void {
    const { record, req } = this;
    record.lastProgress = what;
    if (!req.onProgress) return;
    this.heartbeat?.refresh(); // re-arms a timer that already fired, too
    req.onProgress(progressLine(this.agent!.name, record.turn, this.agent!.maxTurns, what, this.tokensSoFar, this.costSoFar, record.startedAt));
  }

  /** Cancels cooperatively (the loop aborts its model request, running tools stop); hard kill after the grace period. */
  cancel(reason: StopReason): void {
    const { record, host } = this;
    if (this.cancelled || this.closing || record.status !== 'running') return;
    if (!this.line) {
      this.cancelBeforeDispatch ??= reason;
      return;
    }
    this.cancelled = reason;
    record.audit?.emit({ event: 'cancelled', reason: reason === 'timeout' ? 'run deadline reached' : 'cancelled by the client' });
    this.line.cancel(reason);
    this.toolAbort?.abort(reason);
    const graceMs = host.cfg.delegate.runs.cancelGraceMs;
    this.graceTimer = setTimeout(() => {
      if (record.status !== 'running') return;
      if (this.threadId !== undefined) {
        log.warn(`run ${record.runId} did not stop within ${graceMs} ms; terminating worker thread ${this.threadId}`);
        host.pool.killThread(this.threadId);
      }
      // Never started (still queued, or its worker cannot start): settle it now; if the task runs
      // later, the worker sees the cancel first and returns at once.
      const last = setTimeout(() => {
        if (record.status === 'running') this.finishRun(reason, '', record.turn, reason === 'timeout' ? 'run deadline reached before the run could start' : 'run cancelled');
      }, graceMs);
      last.unref();
    }, graceMs);
    this.graceTimer.unref();
  }

  /**
   * The budget gate: no model call starts unless every scope covering it can afford it. A ledger that
   * cannot answer (Redis lost) refuses the call.
   */
  private openGate(turn: number, estimated: number | null, maxOutputTokens: number): MaybePromise<GateDecision> {
    const { record } = this;
    record.turn = turn;
    this.progress('thinking');
    this.callStartedEstimate = estimated;
    this.callStartedAt = Date.now();
    this.retries = 0;
    const audited = (gate: GateDecision): GateDecision => {
      if (!gate.ok) record.audit?.emit({ event: 'budget_refused', scope: gate.scope ?? 'run', tokens: gate.needed ?? 0, usd: null, message: gate.reason });
      else record.audit?.emit({ event: 'budget_reserve', scope: 'run', tokens: gate.tokens, usd: gate.usd });
      return gate;
    };
    const gate = this.host.budget.beforeCall(this.rb, estimated, maxOutputTokens);
    if (!(gate instanceof Promise)) return audited(gate);
    return gate.then(audited, (err: Error) => audited({ ok: false, reason: `budget: the ledger did not answer: ${err.message}` }));
  }

  /** The loop's report of a finished model call: commit its usage, audit it. */
  private modelCallEnded(end: ModelCallEnd): void {
    if (this.closing) return; // books closed already (the cancel fallback settled the run)
    this.threadId = end.threadId;
    const charge = this.host.budget.afterCall(this.rb, end);
    if (!(charge instanceof Promise)) return this.charged(end, charge);
    const settled = charge.then(
      (c) => this.charged(end, c),
      (err: Error) => {
        // Not charged: the books' closeRun still releases the call's reservation.
        const message = `budget: the ledger did not record a model call's usage: ${err.message}`;
        log.warn(`run ${this.record.runId}: ${message}`);
        this.record.audit?.emit({ event: 'error', message });
        this.charged(end, undefined);
      },
    );
    this.commits = this.commits ? Promise.all([this.commits, settled]).then(() => undefined) : settled;
  }

  /** A model call's audit and trace records and the run's usage, once its charge is known. */
  private charged(end: ModelCallEnd, charge: Charge | undefined): void {
    const { record, usage } = this;
    const provider = this.prepared.endpoint.provider;
    record.audit?.emit({
      event: 'model_call',
      provider,
      model: record.model,
      turn: end.turn,
      estimated_input_tokens: this.callStartedEstimate ?? end.inputEstimate ?? null,
      usage: end.usage,
      latency_ms: end.latencyMs,
      retries: this.retries,
      stop_reason: end.stopReason,
      ...(end.error ? { error: end.error } : {}),
    });
    if (charge) record.audit?.emit({ event: 'budget_commit', scope: 'run', tokens: charge.tokens, usd: charge.usd });
    record.trace?.modelCall({ startedAt: this.callStartedAt, provider, model: this.prepared.modelId, responseModel: end.responseModel, turn: end.turn, usage: end.usage, stopReason: end.stopReason, retries: this.retries, costUsd: charge?.usd ?? null, error: end.error });
    // The run's usage is what it was charged: for a stream cut short that includes what it streamed.
    if (charge) {
      addUsage(usage, charge.usage);
      this.tokensSoFar += charge.tokens;
      if (charge.usd !== null) this.costSoFar += charge.usd;
    } else if (end.usage) {
      addUsage(usage, end.usage);
    }
  }

  /** What the run's loop says: progress events, and requests (gate, stream extension, tool call) to answer. */
  private onLoopMessage(msg: WorkerMessage, port: ReplyPort): void {
    const { record, host, rb } = this;
    if (msg.kind === 'event') {
      if (msg.type === 'stream_start') this.progress('model responding');
      else if (msg.type === 'retry') {
        this.retries++;
        this.progress(`retrying model call (attempt ${msg.attempt}: ${msg.reason})`);
      }
      return;
    }
    msg.ended?.forEach((end) => this.modelCallEnded(end));
    const reply = (r: Omit<MainReply & { ok: true }, 'kind' | 'id' | 'ok'> | { error: string }) =>
      this.line!.reply(
        port,
        'error' in r
          ? ({ kind: 'reply', id: msg.id, ok: false, reason: r.error } satisfies MainReply)
          : ({ kind: 'reply', id: msg.id, ok: true, ...r } satisfies MainReply),
      );
    if (msg.kind === 'model_call_start') {
      this.threadId = msg.threadId;
      const onGate = (gate: GateDecision) => reply(gate.ok ? { maxOutputTokens: gate.maxOutputTokens, reservedOutputTokens: gate.reservedOutputTokens } : { error: gate.reason });
      void after(this.openGate(msg.turn, msg.estimatedInputTokens, msg.maxOutputTokens), onGate);
    } else if (msg.kind === 'extend_output') {
      const onExtended = (ext: Awaited<ReturnType<BudgetGate<LedgerStore>['extend']>>) => {
        if (ext.ok) {
          record.audit?.emit({ event: 'budget_reserve', scope: 'run', tokens: ext.granted, usd: null, message: `stream extension: ${ext.reservedOutputTokens} output tokens held after ${msg.streamedOutputTokens} streamed` });
          reply({ reservedOutputTokens: ext.reservedOutputTokens });
        } else {
          // A refused extension cuts the stream (the loop stops reading on the error reply).
          record.audit?.emit({ event: 'budget_refused', scope: ext.scope ?? 'run', tokens: msg.wantOutputTokens, usd: null, message: ext.reason });
          reply({ error: ext.reason });
        }
      };
      const ext = host.budget.extend(rb, msg.wantOutputTokens);
      if (ext instanceof Promise) void ext.then(onExtended, (err: Error) => onExtended({ ok: false, reason: `budget: the ledger did not answer: ${err.message}` }));
      else onExtended(ext);
    } else if (msg.kind === 'call_tool') {
      this.progress(describeToolCall(msg.call));
      const span = record.trace?.startTool(msg.call.name, msg.call.id);
      // Every call, delegations included, goes through the tool gate: one permission check, one audit path.
      void host.tools.execute(this.toolRun!, msg.call, this.toolSignal(), span).then((o) => {
        span?.end();
        reply({ outcome: o });
      });
    }
  }

  private ended(outcome: RunOutcome): void {
    outcome.callsEnded?.forEach((end) => this.modelCallEnded(end));
    // A run that was cancelled or timed out reports that, even if the loop saw only an aborted request.
    const status = this.cancelled && outcome.status !== 'ok' ? this.cancelled : outcome.status;
    this.finishRun(status, outcome.output, outcome.turns, outcome.error);
  }

  /** The loop's task rejected: its thread died (crash, OOM, kill) or the pool was full. */
  private failed(err: Error): void {
    const { cancelled, record } = this;
    const msg =
      err instanceof ServerBusyError
        ? err.message
        : cancelled
          ? `run ${cancelled === 'timeout' ? 'deadline reached' : 'cancelled'}; worker stopped`
          : `worker failed: ${err.message} (the run was stopped; the server keeps serving)`;
    if (!cancelled) record.audit?.emit({ event: 'error', message: msg });
    this.finishRun(cancelled ?? 'error', '', record.turn, msg);
  }

  private cleanup(): void {
    clearTimeout(this.heartbeat);
    clearTimeout(this.deadline);
    if (this.graceTimer) clearTimeout(this.graceTimer);
    if (this.onAbort) this.req.signal?.removeEventListener('abort', this.onAbort);
    this.line?.close();
  }

  /** Settles the books before the result goes out: nothing the run reserved stays reserved. */
  private finishRun(status: Status, output: string, turns: number, error?: string): void {
    const { record } = this;
    if (record.status !== 'running' || this.closing) return; // settled already (e.g. by the cancel fallback)
    this.closing = true;
    const close = () => this.host.budget.closeRun(this.rb);
    // Over the file ledger the books close (and the run settles) in this call, as ever.
    const totals = this.commits ? this.commits.then(close) : close();
    if (!(totals instanceof Promise)) return this.booksClosed(totals, status, output, turns, error);
    void totals.then(
      (t) => this.booksClosed(t, status, output, turns, error),
      (err: Error) => {
        // The result still goes out; what it cost is unknown (the ledger's run record expires on its own).
        record.costUsd = null;
        record.budgetNotes = [...this.rb.notes, `budget: the ledger did not close the run's books: ${err.message}`];
        this.finish(status, output, turns, error);
      },
    );
  }

  private booksClosed(totals: RunTotals, status: Status, output: string, turns: number, error?: string): void {
    const { record } = this;
    record.costUsd = totals.unpricedTokens > 0 && totals.usd === 0 ? null : totals.usd;
    // The audit records the run's own spend: its children write their own run_end (see audit/events.ts).
    // totals.self still holds what process-hop children reported (their slices are this run's reservations).
    const ownUsd = totals.self.usd - (record.childCostUsd ?? 0);
    record.ownCostUsd = totals.self.unpricedTokens > 0 && ownUsd <= 0 ? null : Math.max(0, ownUsd);
    // What this run and everything it delegated spent (a re-entry parent commits exactly this).
    record.treeUsage = treeUsageOf(totals);
    record.budgetNotes = [...this.rb.notes, ...unpricedNotes(totals)];
    this.finish(status, output, turns, error);
  }

  /** The result, the record's end, the trace's and the audit's run_end; then the caller is answered. */
  private finish(status: Status, output: string, turns: number, error?: string): void {
    const { host, record, agent } = this;
    const result = buildResult(host, record, agent, { status, output, turns, error, usage: this.usage });
    status = result.status;
    error = result.error;
    record.status = status;
    record.endedAt = Date.now();
    record.result = result;
    const redact = agent?.policies.secrets.redact ?? true;
    record.trace?.end({ status, usage: this.usage, costUsd: result.cost_usd, error, output: output && agent && !redact ? () => host.redactor.redactString(output) : undefined });
    record.audit?.emit({
      event: 'run_end',
      status,
      turns,
      usage: { ...this.usage },
      cost_usd: record.ownCostUsd === undefined ? result.cost_usd : record.ownCostUsd,
      duration_ms: result.duration_ms,
      ...(error ? { error } : {}),
      ...(agent && output ? previewField(host.audit, 'output_preview', output, redact) : {}),
    });
    // run_end (with the run's earlier events) is already in the file, so a kill -9 from here on
    // cannot lose it; the group commit's fdatasync covers power loss within commitIntervalMs.
    // The record is kept for run_status/run_result (delegate.runs.keepS): let go of the session
    // (ports, timers, the caller's request context) that its cancel holds.
    record.cancel = () => {};
    this.settle(result);
    // Only runs someone can still ask for stay in memory (background runs, a waiting run_result).
    host.runs.ended(record);
  }
}

function describeToolCall(call: ToolCall): string {
  const a = call.arguments;
  const arg = typeof a.path === 'string' ? a.path : typeof a.pattern === 'string' ? a.pattern : '';
  return arg ? `${call.name} ${arg.slice(0, 60)}` : call.name;
}

/** Per-call caps: the smaller of what the caller asked and what the chain granted. */
function lowerCaps(call: CallBudget | undefined, slice: CallChain['budget'] | undefined): CallBudget | undefined {
  if (!slice || (slice.tokens === undefined && slice.usd === undefined)) return call;
  const min = (a?: number, b?: number) => (a === undefined ? b : b === undefined ? a : Math.min(a, b));
  return { run_tokens: min(call?.run_tokens, slice.tokens), run_usd: min(call?.run_usd, slice.usd) };
}
