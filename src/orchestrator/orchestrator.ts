// The main-thread authority: it holds what every run shares (budget books, tool gate, audit log, run
// records, the pool, delegation, telemetry), starts each run as a RunSession (run-session.ts: its state,
// timers, budget, progress and the conversation with its loop) and tracks it in the run registry until
// shutdown. Workers only ask; this decides.
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import type { AgentStore } from '../agents/store.js';
import { resolveEndpoint, type ResolvedConfig } from '../config/config.js';
import { parseModelRef } from '../config/model-ref.js';
import type { WarmHint } from '../contract/worker-protocol.js';
import type { WireApi } from '../contract/endpoint.js';
import { AuditLog, installShutdownFlush } from '../audit/audit-log.js';
import { Redactor } from '../audit/redact.js';
import { digest } from '../audit/events.js';
import { VERSION } from '../version.js';
import { configSecrets } from '../config/config.js';
import { ArtifactStore } from './artifacts.js';
import type { LedgerStore } from '../budget/index.js';
import { BudgetGate } from './budget-gate.js';
import { CHILD_ENV } from './reentry.js';
import { parentChainKey } from './chain.js';
import { RunPool } from './pool.js';
import type { RunExecutor } from './run-executor.js';
import { Delegations } from './delegation.js';
import { ModelEndpoints } from './model-endpoints.js';
import { auditToolDecision } from './run-audit.js';
import type { RunRequest } from './run-request.js';
import { RunSession, type RunHost } from './run-session.js';
import { RunRegistry, type RunRecord } from './runs.js';
import type { RunResult } from '../contract/run.js';
import { ToolGate } from './tool-gate.js';
import { loadTelemetry, type Telemetry } from '../telemetry/index.js';

export { unknownAgentMessage, type RunRequest } from './run-request.js';
export { HEARTBEAT_MS, progressLine } from './run-session.js';

/** A queue front's side of the orchestrator (see `remote`). */
export interface RemoteRuns {
  /** The run's record when it goes to the queue; undefined when it runs here (unknown agent, built-in drafter). */
  start(req: RunRequest): RunRecord | undefined;
  /** A run this process does not hold (started by another front), if `owner` may see it. */
  find(runId: string, owner: string): Promise<RunRecord | undefined>;
  /** Closed when the orchestrator closes, after its runs' cancels went out. */
  close(): Promise<void>;
}

/** What Orchestrator.create may be given instead of its defaults. */
export interface OrchestratorOptions {
  /**
   * The budget books. Default: the file ledger under the state dir (synchronous, the embedded hot path
   * never waits). A queue worker passes `await openRedisLedger({ url, prefix, server, prices })`: one
   * budget across all nodes. The caller opened it, the caller closes it (Orchestrator.close does not).
   */
  ledger?: LedgerStore;
  /** Where runs' loops execute. Default: the piscina pool (delegate.pool). */
  pool?: RunExecutor;
  /** Queue mode: names this process in every audit event. */
  node?: string;
  /** Queue mode: a queue front holds the run's budget (src/queue/), so these books stay in memory, as a re-entry child's do. */
  booksElsewhere?: boolean;
}

export class Orchestrator implements RunHost {
  /**
   * Set on a queue front (src/queue/front.ts): runs are enqueued for workers instead of run here, and
   * runs this process does not hold are looked up there. Unset (embedded, the default): nothing changes.
   */
  remote?: RemoteRuns;
  readonly runs: RunRegistry;
  readonly artifacts: ArtifactStore;
  /** `agent__<name>` calls: offered tools and the child runs (in-process or over the re-entry hop). */
  readonly delegations: Delegations;
  /** Model endpoints resolved once per provider. */
  readonly models: ModelEndpoints;
  /** Secrets never reach the state dir: audit events and artifacts both pass through this. */
  readonly redactor: Redactor;
  /** Every tool call goes through this: permissions, approvals, built-in and downstream MCP tools. */
  readonly tools: ToolGate;
  /** Where runs' loops execute: the piscina pool, or another RunExecutor (in-process-pool.ts). */
  readonly pool: RunExecutor;
  private uninstallShutdownFlush?: () => void;
  /** OpenTelemetry hooks; undefined (the default) when no OTLP endpoint is configured. */
  telemetry?: Telemetry;

  constructor(
    readonly cfg: ResolvedConfig,
    readonly agents: AgentStore,
    /** Without one, budgets are enforced in memory only (nothing persisted across restarts). */
    readonly budget: BudgetGate<LedgerStore> = BudgetGate.inMemory(cfg),
    /** Without one, nothing is audited (embedding, one-off CLI use). */
    readonly audit?: AuditLog,
    pool?: RunExecutor,
    /** Whether close() closes the budget's ledger (false for a ledger the caller opened and passed in). */
    private readonly ownsLedger = true,
  ) {
    this.tools = ToolGate.fromConfig(cfg);
    this.pool = pool ?? new RunPool(cfg.delegate.pool);
    this.runs = new RunRegistry(cfg.delegate.runs.keepS * 1000);
    this.artifacts = new ArtifactStore(path.join(cfg.stateDir, 'artifacts'), cfg.delegate.artifacts.keep);
    this.artifacts.prune();
    this.redactor = audit?.redactor ?? new Redactor({ secrets: configSecrets(cfg) });
    this.models = new ModelEndpoints(cfg);
    this.delegations = new Delegations(cfg, agents, this.budget, (req) => this.start(req));
    if (audit) this.tools.onDecision = (d) => auditToolDecision(this.runs, d);
  }

  /**
   * The server's orchestrator: the budget ledger persists under the state dir and replays today, unless
   * `opts.ledger` gives another (the Redis ledger of queue mode).
   */
  static async create(cfg: ResolvedConfig, agents: AgentStore, opts: OrchestratorOptions = {}): Promise<Orchestrator> {
    // Out of the environment before anything is started that would inherit it (chain.ts).
    parentChainKey();
    // Threads first: they load on their own while the books and the audit log open.
    const pool = opts.pool ?? new RunPool(cfg.delegate.pool);
    const audit = cfg.auditDir
      ? AuditLog.open({ dir: cfg.auditDir, previews: cfg.delegate.audit.previews, redactor: new Redactor({ secrets: configSecrets(cfg) }), node: opts.node })
      : undefined;
    // A re-entry child keeps its books in memory: its parent commits the usage it reports.
    let budget: BudgetGate<LedgerStore>;
    let telemetry: Telemetry | undefined;
    try {
      telemetry = await loadTelemetry(cfg);
      budget = opts.ledger ? BudgetGate.over(opts.ledger, cfg) : process.env[CHILD_ENV] || opts.booksElsewhere ? BudgetGate.inMemory(cfg) : await BudgetGate.open(cfg);
    } catch (err) {
      // An unusable state dir stops the start: the threads must not keep the process alive.
      audit?.close();
      if (!opts.pool) await pool.close();
      throw err;
    }
    const orchestrator = new Orchestrator(cfg, agents, budget, audit, pool, !opts.ledger);
    orchestrator.telemetry = telemetry;
    // Queued events reach the file even when the process dies of an exception or a signal.
    if (audit) orchestrator.uninstallShutdownFlush = installShutdownFlush(audit);
    return orchestrator;
  }

  /** The audit log's `server_start` record of a serving process (a front, a worker node or the embedded server). */
  auditStart(): void {
    this.audit?.emit({
      event: 'server_start',
      version: VERSION,
      config_digest: digest({ delegate: this.cfg.delegate, mcpServers: Object.keys(this.cfg.mcpServers) }),
      agents_loaded: this.agents.exposed().length,
      agents: this.agents.list().map((a) => a.name),
    });
  }

  /** Warms the pool's workers in the background (`serve` calls it as soon as it has started; idempotent). */
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
    const remote = this.remote?.start(req);
    if (remote) return remote;
    return new RunSession(this, req, req.runId ?? `run_${randomUUID()}`).start();
  }

  /** Runs to completion (the synchronous tool-call path). */
  async run(req: RunRequest): Promise<RunResult> {
    return this.start(req).done;
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
    // After the cancels above went out (a queue front sends them through Redis).
    await this.remote?.close();
    this.runs.close();
    await this.pool.close();
    await this.delegations.close();
    if (this.ownsLedger) await this.budget.close();
    else await this.budget.ledger.flush();
    if (reason) this.audit?.emit({ event: 'server_stop', reason });
    this.audit?.close();
    this.uninstallShutdownFlush?.();
    await this.tools.close();
    await this.telemetry?.shutdown();
  }
}
