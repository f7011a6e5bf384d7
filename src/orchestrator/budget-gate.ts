// The budget checkpoint before and after every model call. It sits on the main thread (the only
// authority): a worker reports its prompt estimate and asks; this reserves in every covering scope
// (run, ancestor runs, agent daily, server daily) or refuses, then commits the reported usage.
//
// The gate works over either ledger (budget/store.ts). Over the in-process BudgetLedger (the embedded
// default) every method answers synchronously, as before; over the RedisLedger (queue mode) every
// method answers with a Promise: `BudgetGate<RedisLedger>`'s types say so, and callers await.
import type { AgentDefinition } from '../agents/definition.js';
import { after, BudgetLedger, TokenScaler, type Answer, type BudgetLimits, type Charge, type LedgerStore, type MaybePromise, type RunTotals } from '../budget/index.js';
import type { ResolvedConfig } from '../config/config.js';
import { log } from '../log.js';
import type { Usage } from '../contract/usage.js';
import { emptyUsage, inputTokens } from '../contract/usage-sum.js';
import type { ModelCallEnd } from '../contract/worker-protocol.js';

/**
 * Output tokens a budgeted call holds at first (once its run has a history) and each extension adds.
 * It is also the bound on overspending a cap: see README "Budgets".
 */
export const EXTENSION_STEP = 256;

/** Caps a caller may pass with a call; they can only lower the agent's own. */
export interface CallBudget {
  run_tokens?: number;
  run_usd?: number;
}

/** What the gate remembers about one run between its model calls. */
export interface RunBudget {
  runId: string;
  agent: string;
  modelRef: string;
  contextMax?: number;
  /** Whether estimates matter: some limit covers this run (or a context limit applies). */
  needsEstimate: boolean;
  /** Some token or USD limit covers this run: its streams are watched and extended. */
  limited: boolean;
  /** Admitted on its expected cost (the run has a history): its calls hold slices, not their max output. */
  admitted: boolean;
  calls: number;
  reservation?: { id: string; rawEstimate: number | null; scaledEstimate: number };
  notes: string[];
}

export type GateDecision =
  | { ok: true; maxOutputTokens: number; reservedOutputTokens: number; tokens: number; usd: number | null }
  | { ok: false; reason: string; scope?: string; needed?: number };

export class BudgetGate<L extends LedgerStore = BudgetLedger> {
  readonly scaler = new TokenScaler();

  constructor(
    readonly ledger: L,
    private readonly serverLimited: boolean,
  ) {}

  /** A gate over a given ledger (e.g. openRedisLedger's), with the config's server caps. */
  static over<L extends LedgerStore>(ledger: L, cfg: ResolvedConfig): BudgetGate<L> {
    const server = cfg.delegate.budget;
    ledger.setServerLimits(server);
    return new BudgetGate(ledger, server.daily_tokens !== undefined || server.daily_usd !== undefined);
  }

  /** `f` of the ledger's answer, synchronously when the ledger is (see budget/store.ts). */
  private onAnswer<T, U>(v: MaybePromise<T>, f: (t: T) => U): Answer<L, U> {
    return after(v, f) as Answer<L, U>;
  }

  /** A value in the ledger's answer type. */
  private value<T>(v: T): Answer<L, T> {
    return (this.ledger.synchronous ? v : Promise.resolve(v)) as Answer<L, T>;
  }

  /** Opens the persistent ledger under the state dir and replays today's spending. */
  static async open(cfg: ResolvedConfig): Promise<BudgetGate<BudgetLedger>> {
    const server = cfg.delegate.budget;
    const ledger = await BudgetLedger.open({
      stateDir: cfg.stateDir,
      server,
      prices: cfg.delegate.prices,
      warn: (m) => log.warn(m),
    });
    return new BudgetGate(ledger, server.daily_tokens !== undefined || server.daily_usd !== undefined);
  }

  /** An in-memory gate (no persistence), for embedding and for tools that never persist. */
  static inMemory(cfg: ResolvedConfig): BudgetGate<BudgetLedger> {
    const server = cfg.delegate.budget;
    const ledger = new BudgetLedger({ server, prices: cfg.delegate.prices, warn: (m) => log.warn(m) });
    return new BudgetGate(ledger, server.daily_tokens !== undefined || server.daily_usd !== undefined);
  }

  openRun(r: { runId: string; agent: AgentDefinition; modelRef: string; call?: CallBudget; parentRunId?: string }): Answer<L, RunBudget> {
    const b = r.agent.budget;
    const run: BudgetLimits = { tokens: b.runTokens, usd: b.runUsd };
    const call: BudgetLimits = { tokens: r.call?.run_tokens, usd: r.call?.run_usd };
    const agentDaily: BudgetLimits = { tokens: b.dailyTokens, usd: b.dailyUsd };
    return this.onAnswer(this.ledger.openRun({ runId: r.runId, agent: r.agent.name, parentRunId: r.parentRunId, run, call, agentDaily }), ({ limits }) => {
      const contextMax = r.agent.policies.context.maxTokens;
      // `limits` already includes the parent's remaining slice, so an unlimited batch costs no estimates.
      const limited = this.serverLimited || [limits, agentDaily].some((l) => l.tokens !== undefined || l.usd !== undefined);
      return {
        runId: r.runId,
        agent: r.agent.name,
        modelRef: r.modelRef,
        contextMax,
        needsEstimate: limited || contextMax !== undefined,
        limited,
        admitted: false,
        calls: 0,
        notes: [],
      };
    });
  }

  /**
   * Admission before the run is dispatched: with a history of this agent on this model, the run holds
   * its expected cost (the 90th percentile of recent runs' spend) and is refused when that does not
   * fit; without one, its first call's reservation (prompt estimate + whole max output) is the check.
   */
  admit(rb: RunBudget): Answer<L, { ok: true } | { ok: false; reason: string; scope: string; needed: number }> {
    if (!rb.limited) return this.value({ ok: true as const });
    const expected = this.ledger.history.expected(rb.agent, rb.modelRef);
    if (!expected) return this.value({ ok: true as const });
    return this.onAnswer(this.ledger.admit({ runId: rb.runId, model: rb.modelRef, tokens: expected.tokens, usd: expected.usd }), (r) => {
      if (!r.ok) return { ok: false as const, reason: r.message, scope: r.scope, needed: Number.parseFloat(r.needed.replace(/^\$/, '')) || 0 };
      rb.admitted = true;
      return { ok: true as const };
    });
  }

  /** A stream is about to pass the output its call holds: grow the reservation by up to `want` tokens. */
  extend(rb: RunBudget, want: number): Answer<L, { ok: true; granted: number; reservedOutputTokens: number } | { ok: false; reason: string; scope?: string }> {
    const res = rb.reservation;
    if (!res) return this.value({ ok: false as const, reason: 'budget: no model call is reserved for this run' });
    return this.onAnswer(this.ledger.extend(res.id, want), (r) => {
      if (!r.ok) return { ok: false as const, reason: r.message, scope: r.scope };
      return { ok: true as const, granted: r.grantedOutputTokens, reservedOutputTokens: r.reservedOutputTokens };
    });
  }

  /** Whether a server-wide cap applies (every run then needs estimates). */
  limitedAnywhere(): boolean {
    return this.serverLimited;
  }

  /** Parent scope for a fan-out batch: its tasks draw slices of it. */
  openBatch(runId: string, label: string, call?: CallBudget): Answer<L, void> {
    return this.onAnswer(this.ledger.openRun({ runId, agent: label, run: {}, call: { tokens: call?.run_tokens, usd: call?.run_usd } }), () => undefined);
  }

  beforeCall(rb: RunBudget, estimatedInputTokens: number | null, maxOutputTokens: number): Answer<L, GateDecision> {
    rb.calls++;
    const scaled = estimatedInputTokens === null ? 0 : this.scaler.scale(rb.modelRef, estimatedInputTokens);
    if (rb.contextMax !== undefined && scaled > rb.contextMax) {
      return this.value<GateDecision>({
        ok: false,
        reason: `context limit: agent ${rb.agent} policies.context.max_tokens is ${rb.contextMax}, and this call's prompt is about ${scaled} tokens`,
      });
    }
    // A run admitted on its history (or past its first call) holds a slice of output and extends it as it
    // streams; a first call without history holds its whole max output (the worst case is its admission).
    const outputSlice = rb.limited && (rb.admitted || rb.calls > 1) ? EXTENSION_STEP : undefined;
    return this.onAnswer(this.ledger.reserve({ runId: rb.runId, model: rb.modelRef, inputTokens: scaled, maxOutputTokens, outputSlice }), (r): GateDecision => {
      if (!r.ok) return { ok: false, reason: r.message, scope: r.scope, needed: Number.parseFloat(r.needed) || 0 };
      rb.reservation = { id: r.reservationId, rawEstimate: estimatedInputTokens, scaledEstimate: scaled };
      if (r.shrunk) rb.notes.push(`max output shrunk from ${maxOutputTokens} to ${r.maxOutputTokens} tokens to fit the budget`);
      if (r.note && !rb.notes.includes(r.note)) rb.notes.push(r.note);
      return { ok: true, maxOutputTokens: r.maxOutputTokens, reservedOutputTokens: r.reservedOutputTokens, tokens: r.tokens, usd: r.usd };
    });
  }

  /**
   * Commits a finished call: the provider's final usage when the stream ended normally; for a stream cut
   * short, the larger of what was reported and the input estimate plus the output streamed.
   */
  afterCall(rb: RunBudget, end: ModelCallEnd): Answer<L, Charge | undefined> {
    const res = rb.reservation;
    if (!res) return this.value<Charge | undefined>(undefined);
    rb.reservation = undefined;
    const usage = end.usage;
    if (usage && !end.cut && res.rawEstimate !== null) {
      this.scaler.learn(rb.modelRef, res.rawEstimate, inputTokens(usage));
    }
    const inputEstimate = end.inputEstimate !== undefined ? this.scaler.scale(rb.modelRef, end.inputEstimate) : undefined;
    // Output tokens come from the worker's tokenizer; ~4 characters a token only if it sent no count.
    const streamedOutputTokens = end.streamedOutputTokens ?? Math.ceil(end.streamedOutputChars / 4);
    return this.onAnswer(this.ledger.commit(res.id, usage, { streamedOutputTokens, inputEstimate, cut: end.cut === true || usage === null }), (c): Charge | undefined => c);
  }

  /**
   * Reserves, in the parent run's scopes, the slice a re-entry child may spend: min(the child's own cap,
   * what every scope covering the parent has left). Returns the slice to send in the chain (undefined
   * dimensions = no limit applies) and the reservation the child's reported usage is committed to.
   */
  reserveSlice(rb: Pick<RunBudget, 'runId'>, childModel: string, childCapTokens?: number): Answer<L, { ok: true; reservationId: string; tokens?: number } | { ok: false; reason: string }> {
    const UNLIMITED = 1e12;
    const want = childCapTokens ?? UNLIMITED;
    return this.onAnswer(this.ledger.reserve({ runId: rb.runId, model: childModel, inputTokens: 0, maxOutputTokens: want, minOutputTokens: 1 }), (r) => {
      if (!r.ok) return { ok: false as const, reason: r.message };
      return { ok: true as const, reservationId: r.reservationId, ...(r.maxOutputTokens < UNLIMITED ? { tokens: r.maxOutputTokens } : {}) };
    });
  }

  /** Commits what a re-entry child reported for its whole tree (its USD, not re-priced here). */
  commitSlice(reservationId: string, usage: Usage | null, usd: number | null): Answer<L, { tokens: number; usd: number | null }> {
    const charged = this.ledger.commit(reservationId, usage ?? emptyUsage(), undefined, usd);
    return this.onAnswer(charged, (c): { tokens: number; usd: number | null } => c);
  }

  closeRun(rb: RunBudget): Answer<L, RunTotals> {
    const res = rb.reservation;
    rb.reservation = undefined;
    const released = res ? this.ledger.release(res.id) : undefined;
    return this.onAnswer(released, () => this.ledger.closeRun(rb.runId)) as Answer<L, RunTotals>;
  }

  closeBatch(runId: string): Answer<L, RunTotals> {
    return this.onAnswer(this.ledger.closeRun(runId), (t) => t);
  }

  async close(): Promise<void> {
    await this.ledger.close();
  }
}
