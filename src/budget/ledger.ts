// Budget ledger: no model call starts unless every budget scope covering it can afford it, and the
// books always balance.
//
// ── Scopes ──────────────────────────────────────────────────────────────────────────────────────
//  server daily       {tokens?, usd?} from config (constructor `server`, or setServerLimits)
//  agent daily        {tokens?, usd?} per agent name (openRun `agentDaily`; the latest openRun wins)
//  run                min(agent run caps, per-call caps): a per-call cap can only LOWER a cap
//  ancestor runs      a child run (parentRunId) gets min(own caps, parent's remaining) as its slice,
//                     and every reservation/charge of a run also counts in every ancestor run, so a
//                     child can never spend more than its parent had left, whatever its siblings do.
// "Daily" is the UTC calendar day of the ledger clock (`now`). Windows reset at 00:00 UTC.
//
// ── Call protocol (orchestrator, main thread) ───────────────────────────────────────────────────
//  openRun({runId, agent, parentRunId?, run?, call?, agentDaily?}) → { limits }   (effective caps)
//  reserve({runId, model, inputTokens, maxOutputTokens, minOutputTokens?})
//      → {ok: true, reservationId, maxOutputTokens, shrunk, tokens, usd, note?}
//      | {ok: false, scope, dimension, limit, spent, reserved, needed, message}
//    Synchronous and all-or-nothing: every covering scope is checked, then the reservation is held in
//    all of them or in none. tokens = inputTokens + maxOutputTokens; usd = input price × inputTokens +
//    output price × maxOutputTokens. If the full max output does not fit but some max output ≥
//    minOutputTokens (default 256) fits everywhere, the largest such is granted with shrunk: true.
//    With outputSlice: holds input + the slice (or what fits of it, ≥ 1) and grants the whole max
//    output to ask the provider for; the stream then extends its hold (extend) as it goes.
//  admit({runId, model, tokens, usd?}) → {ok, reservationId} | refused
//    Holds a run's expected cost (RunHistory) in every scope, all or nothing. The run's reserve and
//    extend draw on this hold first; what is left of it is released by closeRun.
//  extend(reservationId, wantOutputTokens) → {ok, grantedOutputTokens, reservedOutputTokens} | refused
//    Grows a call's output hold by the largest amount ≤ want that fits everywhere (≥ 1 token).
//  commit(reservationId, usage | null, fallback?) → {tokens, usd, parts, basis}
//    Charges input + cache_read + cache_creation + output. A stream cut short (fallback.cut, or no
//    usage): part by part the larger of the reported usage and the input estimate (the reservation's,
//    or fallback.inputEstimate when none was made) + fallback.streamedOutputTokens; with neither
//    usage nor fallback, the whole reservation (the safe upper bound).
//  release(reservationId)          the call never reached the provider; idempotent
//  closeRun(runId) → RunTotals     closes the run and its still-open descendants and releases their
//                                  reservations; a late commit of such a reservation is still charged
//                                  (the tokens were spent), it just no longer holds budget meanwhile
//  runTotals(runId), status({runId?, day?}), setServerLimits(limits), flush(), close()
//
// ── Documented ways a limit can be exceeded (each is recorded, never hidden) ─────────────────────
//  1. Actual usage above the reservation: the input estimate was low, the provider reported more
//     output than was counted while streaming (a stream is cut once its counted output passes its
//     hold, so by at most the chunk that crossed the line), or cache writes (priced 1.25× input for
//     Claude; reservations price input uncached).
//     The actual is charged; the scope shows spent > limit and refuses every later reserve.
//     Likewise a commit that arrives after closeRun released its reservation (budget no longer held).
//  2. Unknown-price models: USD limits cannot be applied; such calls are counted in tokens only
//     (the reservation carries a `note`, status lists "no price known for X: tokens only").
//  3. Several processes sharing a stateDir see each other's COMMITTED spend (each reserve first reads
//     what others appended), not each other's in-flight reservations: a shared daily window can be
//     overshot by at most the other processes' in-flight reservations.
//  4. A call is charged to the UTC day its reservation was made on: it was checked against that
//     day's window, and charging it to the next day would overdraw a window that never approved it.
//
// ── Persistence (stateDir set) ──────────────────────────────────────────────────────────────────
// Each commit appends one JSON line to <stateDir>/budget/ledger-YYYY-MM-DD.jsonl (see ledger-file.ts:
// one write per line on an O_APPEND descriptor, never rewritten, fdatasync every `syncEvery` lines,
// within `syncIntervalMs`, and on flush/close). open() replays today's file to rebuild the server and
// agent daily windows; run caps need no replay (runs do not survive a restart). Corrupt lines are
// skipped with a warning naming file:line. If an append fails the spend is kept in memory (so this
// process still enforces it) and a warning is emitted.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Usage } from '../contract/usage.js';
import { DayFile, LedgerChainError, type ChargeBasis, type LedgerRecord } from './ledger-file.js';
import { RunHistory } from './history.js';
import { Prices, plannedCost, usageCost, type PriceTable, type ResolvedPrice } from './prices.js';

export interface BudgetLimits {
  tokens?: number;
  usd?: number;
}

export interface BudgetLedgerOptions {
  /** Ledger files go to <stateDir>/budget/. undefined = in-memory only. */
  stateDir?: string;
  server?: { daily_tokens?: number; daily_usd?: number };
  /** Merged over DEFAULT_PRICES (USD per million tokens). */
  prices?: PriceTable;
  now?: () => Date;
  warn?: (msg: string) => void;
  /** fdatasync after this many unsynced lines (default 16). */
  syncEvery?: number;
  /** …and at most this long after an unsynced line (default 1000 ms). */
  syncIntervalMs?: number;
  /** Closed root runs (with their trees) kept for runTotals/status; oldest forgotten first (default 1000). */
  keepClosedRuns?: number;
}

export interface OpenRunRequest {
  runId: string;
  agent: string;
  parentRunId?: string;
  /** The agent definition's run caps. */
  run?: BudgetLimits;
  /** Caps passed with this call; can only lower `run`. */
  call?: BudgetLimits;
  /** The agent definition's daily caps (undefined = none). */
  agentDaily?: BudgetLimits;
}

export interface OpenRunResult {
  /** Effective run caps: min(run, call, parent's remaining). */
  limits: BudgetLimits;
  /** Which dimensions are bounded by the parent's remaining budget rather than the run's own caps. */
  limitedByParent: { tokens: boolean; usd: boolean };
}

export interface ReserveRequest {
  runId: string;
  /** "provider/model", e.g. "anthropic/claude-sonnet-4-5". */
  model: string;
  /** Estimated input tokens (already scaled, see estimate.ts). */
  inputTokens: number;
  maxOutputTokens: number;
  /** Smallest max output worth calling with (default 256). */
  minOutputTokens?: number;
  /**
   * Hold only this much of the output (the call then asks `extend` for more while it streams);
   * undefined = hold the whole granted max output.
   */
  outputSlice?: number;
}

export interface AdmitRequest {
  runId: string;
  model: string;
  /** Expected cost of the whole run (see RunHistory). */
  tokens: number;
  /** null/undefined: priced as output tokens of `model` (or not at all when it has no price). */
  usd?: number | null;
}

export type ExtendResult = { ok: true; grantedOutputTokens: number; reservedOutputTokens: number } | ReserveRefused;

export interface CommitFallback {
  /** Output tokens the stream delivered (counted with the tokenizer). */
  streamedOutputTokens: number;
  /** Input estimate for the books when the reservation has none (no budget applied to the call). */
  inputEstimate?: number;
  /**
   * The stream was cut short (killed, aborted, refused an extension): the charge is then the larger
   * of the reported usage and the input estimate plus the output streamed, part by part.
   */
  cut?: boolean;
}

export interface ReserveGranted {
  ok: true;
  reservationId: string;
  /** Max output to ask the provider for: the largest that fits now (≤ the requested max). */
  maxOutputTokens: number;
  /** Output tokens actually held (= maxOutputTokens unless an outputSlice was asked for). */
  reservedOutputTokens: number;
  shrunk: boolean;
  tokens: number;
  usd: number | null;
  note?: string;
}

export interface ReserveRefused {
  ok: false;
  /** 'run run_abc (code-reviewer)', 'run run_p (planner), parent of run_abc', 'agent code-reviewer daily', 'server daily'. */
  scope: string;
  dimension: 'tokens' | 'usd';
  limit: string;
  spent: string;
  reserved: string;
  needed: string;
  message: string;
}

export type ReserveResult = ReserveGranted | ReserveRefused;

export interface Charge {
  tokens: number;
  usd: number | null;
  /** What was charged, part by part (reported usage, or the estimate plus streamed output). */
  parts: { input: number; output: number; cache_read: number; cache_write: number };
  basis: ChargeBasis;
}

export interface ModelTotals {
  calls: number;
  tokens: number;
  /** null when the model has no known price. */
  usd: number | null;
  input: number;
  output: number;
  cache_read: number;
  cache_write: number;
}

export interface RunTotals {
  runId: string;
  agent: string;
  /** The run and all its descendants (what the run's caps apply to). */
  tokens: number;
  /** Priced part only; see unpricedTokens. */
  usd: number;
  unpricedTokens: number;
  calls: number;
  /** The run's own calls, without descendants. */
  self: { tokens: number; usd: number; unpricedTokens: number; calls: number };
  byModel: Record<string, ModelTotals>;
}

export interface Amount {
  tokens: number;
  usd: number;
}

export interface ScopeStatus {
  scope: string;
  limits: BudgetLimits;
  spent: Amount;
  reserved: Amount;
  /** Only for limited dimensions; never negative (an over-run shows as spent > limit). */
  remaining: BudgetLimits;
  /** Open reservations held in this scope. */
  reservations: number;
  calls: number;
  unpricedTokens: number;
}

export interface RunStatus extends ScopeStatus {
  runId: string;
  agent: string;
  parentRunId?: string;
  depth: number;
  open: boolean;
  limitedByParent: { tokens: boolean; usd: boolean };
  self: { spent: Amount; reserved: Amount; calls: number; unpricedTokens: number };
  byModel: Record<string, ModelTotals>;
  children: string[];
}

export interface BudgetStatus {
  day: string;
  server: ScopeStatus;
  agents: Record<string, ScopeStatus>;
  models: Record<string, ModelTotals>;
  /** With `runId`: that run followed by its descendants (pre-order). Otherwise empty. */
  runs: RunStatus[];
  openRuns: number;
  notes: string[];
}

const USD_EPSILON = 1e-9; // float slack for USD sums; far below any price of one token

class Scope {
  spentTokens = 0;
  spentUsd = 0;
  reservedTokens = 0;
  reservedUsd = 0;
  reservations = 0;
  calls = 0;
  unpricedTokens = 0;
  constructor(
    readonly label: string,
    public limits: BudgetLimits,
  ) {}

  hold(tokens: number, usd: number | null): void {
    this.reservedTokens += tokens;
    this.reservedUsd += usd ?? 0;
    this.reservations++;
  }

  unhold(tokens: number, usd: number | null): void {
    this.reservations--;
    this.reservedTokens -= tokens;
    this.reservedUsd -= usd ?? 0;
    // Float subtraction drifts; with nothing held the exact answer is zero.
    if (this.reservations === 0) {
      this.reservedTokens = 0;
      this.reservedUsd = 0;
    }
  }

  charge(tokens: number, usd: number | null): void {
    this.calls++;
    this.spentTokens += tokens;
    if (usd === null) this.unpricedTokens += tokens;
    else this.spentUsd += usd;
  }

  available(dim: 'tokens' | 'usd'): number | undefined {
    const limit = this.limits[dim];
    if (limit === undefined) return undefined;
    return dim === 'tokens' ? limit - this.spentTokens - this.reservedTokens : limit - this.spentUsd - this.reservedUsd;
  }

  status(): ScopeStatus {
    const remaining: BudgetLimits = {};
    for (const dim of ['tokens', 'usd'] as const) {
      const a = this.available(dim);
      if (a !== undefined) remaining[dim] = Math.max(0, dim === 'usd' ? roundUsd(a) : a);
    }
    return {
      scope: this.label,
      limits: { ...this.limits },
      spent: { tokens: this.spentTokens, usd: roundUsd(this.spentUsd) },
      reserved: { tokens: this.reservedTokens, usd: roundUsd(this.reservedUsd) },
      remaining,
      reservations: this.reservations,
      calls: this.calls,
      unpricedTokens: this.unpricedTokens,
    };
  }
}

interface RunState {
  runId: string;
  agent: string;
  parent?: RunState;
  root: RunState;
  depth: number;
  /** Spend and reservations of the whole subtree, against the effective caps. */
  scope: Scope;
  limitedByParent: { tokens: boolean; usd: boolean };
  self: { tokens: number; usd: number; unpricedTokens: number; calls: number };
  byModel: Map<string, ModelTotals>;
  children: RunState[];
  /** The run's own open reservations. */
  reservations: Set<Reservation>;
  /** What the run was admitted on (see admit): its calls draw on this hold before the scopes. */
  admission?: Reservation;
  /** The model of its calls (for the run history). */
  model?: string;
  open: boolean;
}

interface DayState {
  day: string;
  server: Scope;
  agents: Map<string, Scope>;
  models: Map<string, ModelTotals>;
  file?: DayFile;
  /** Reservations (open or orphaned by closeRun) that will still settle into this day. */
  holds: number;
}

interface Reservation {
  id: string;
  run: RunState;
  day: DayState;
  agentScope: Scope;
  model: string;
  price: ResolvedPrice | null;
  inputTokens: number;
  /** Output tokens held (the call's slice plus its extensions; for an admission, all of it). */
  maxOutputTokens: number;
  tokens: number;
  usd: number | null;
  /** 'orphaned': released by closeRun, still chargeable by a late commit. */
  state: 'open' | 'orphaned';
}

interface Check {
  scope: Scope;
  dim: 'tokens' | 'usd';
  /** Scope name as shown to users. */
  name: string;
  /** Extra words after the limit (why a run's limit is what it is). */
  hint: string;
}

export class BudgetLedger {
  private readonly dir: string | undefined;
  private serverLimits: BudgetLimits;
  private readonly prices: Prices;
  private readonly now: () => Date;
  private readonly warn: (msg: string) => void;
  private readonly syncEvery: number;
  private readonly syncIntervalMs: number;
  private readonly keepClosedRuns: number;
  private readonly writer = `${process.pid}-${randomBytes(4).toString('hex')}`;
  private seq = 0;
  private nextReservation = 0;
  private readonly runs = new Map<string, RunState>();
  private readonly closedRoots: RunState[] = [];
  private readonly reservations = new Map<string, Reservation>();
  private readonly agentLimits = new Map<string, BudgetLimits>();
  private readonly days = new Map<string, DayState>();
  /** Recent runs' spend per agent and model (admission on expected cost). */
  readonly history = new RunHistory();
  /** While open() replays the files: each run's spend, in order of its first line. */
  private replaying: Map<string, { agent: string; model: string; tokens: number; usd: number; unpricedTokens: number; calls: number }> | null = null;
  private currentDay = '';
  private syncTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(opts: BudgetLedgerOptions = {}) {
    this.dir = opts.stateDir === undefined ? undefined : path.join(opts.stateDir, 'budget');
    this.serverLimits = checkLimits({ tokens: opts.server?.daily_tokens, usd: opts.server?.daily_usd }, 'server daily');
    this.prices = new Prices(opts.prices);
    this.now = opts.now ?? (() => new Date());
    this.warn = opts.warn ?? ((msg) => process.stderr.write(`delegate-mcp budget: ${msg}\n`));
    this.syncEvery = Math.max(1, opts.syncEvery ?? 16);
    this.syncIntervalMs = Math.max(0, opts.syncIntervalMs ?? 1000);
    this.keepClosedRuns = Math.max(0, opts.keepClosedRuns ?? 1000);
  }

  /** Creates a ledger and replays today's ledger file (files are otherwise read lazily, on first use). */
  static async open(opts: BudgetLedgerOptions = {}): Promise<BudgetLedger> {
    const ledger = new BudgetLedger(opts);
    // An unusable stateDir should stop the server at startup, not warn on every commit later.
    if (ledger.dir !== undefined) await mkdir(ledger.dir, { recursive: true });
    ledger.replaying = new Map();
    const today = ledger.today();
    const broken = today.file?.chainBreak;
    // A ledger whose hash chain is broken was edited: refuse to start rather than trust (forget) spend.
    if (broken) {
      await ledger.close();
      throw new LedgerChainError(broken);
    }
    // Yesterday's runs count for the history too (a server started just after midnight has some).
    if (ledger.dir !== undefined) ledger.tail(ledger.loadDay(utcDay(new Date(Date.parse(`${today.day}T00:00:00Z`) - 86_400_000))));
    const replayed = [...ledger.replaying.values()];
    ledger.replaying = null;
    // Yesterday's lines were read after today's: order by nothing finer than "both days", which is enough for a percentile.
    for (const r of replayed) ledger.history.record(r.agent, r.model, r);
    return ledger;
  }

  /** Config reload: new server daily limits apply from the next reserve. */
  setServerLimits(server: { daily_tokens?: number; daily_usd?: number }): void {
    this.serverLimits = checkLimits({ tokens: server.daily_tokens, usd: server.daily_usd }, 'server daily');
  }

  openRun(r: OpenRunRequest): OpenRunResult {
    if (this.runs.has(r.runId)) throw new Error(`budget: run ${r.runId} was already opened`);
    let parent: RunState | undefined;
    if (r.parentRunId !== undefined) {
      parent = this.runs.get(r.parentRunId);
      if (!parent) throw new Error(`budget: run ${r.runId} names unknown parent run ${r.parentRunId}`);
      if (!parent.open) throw new Error(`budget: run ${r.runId} cannot start under closed parent run ${r.parentRunId}`);
    }
    const own = minLimits(checkLimits(r.run, `run ${r.runId} run caps`), checkLimits(r.call, `run ${r.runId} per-call caps`));
    const limits: BudgetLimits = { ...own };
    const limitedByParent = { tokens: false, usd: false };
    if (parent) {
      for (const dim of ['tokens', 'usd'] as const) {
        const left = remainingOverChain(parent, dim);
        if (left !== undefined && (limits[dim] === undefined || left < limits[dim]!)) {
          limits[dim] = dim === 'usd' ? roundUsd(left) : left;
          limitedByParent[dim] = true;
        }
      }
    }
    this.agentLimits.set(r.agent, checkLimits(r.agentDaily, `agent ${r.agent} daily`));
    this.agentScope(this.today(this.dailyLimited(r.agent)), r.agent); // so status lists the agent's window from the start

    const run: RunState = {
      runId: r.runId,
      agent: r.agent,
      parent,
      root: undefined as unknown as RunState,
      depth: parent ? parent.depth + 1 : 0,
      scope: new Scope(`run ${r.runId} (${r.agent})`, limits),
      limitedByParent,
      self: { tokens: 0, usd: 0, unpricedTokens: 0, calls: 0 },
      byModel: new Map(),
      children: [],
      reservations: new Set(),
      open: true,
    };
    run.root = parent ? parent.root : run;
    parent?.children.push(run);
    this.runs.set(r.runId, run);
    return { limits: { ...limits }, limitedByParent: { ...limitedByParent } };
  }

  reserve(r: ReserveRequest): ReserveResult {
    if (this.closed) throw new Error('budget: ledger is closed');
    const run = this.openRunState(r.runId);
    if (typeof r.model !== 'string' || !r.model.trim()) throw new TypeError('budget: reserve needs a model ("provider/model")');
    const input = Math.ceil(checkCount(r.inputTokens, 'inputTokens'));
    const maxOut = Math.floor(checkCount(r.maxOutputTokens, 'maxOutputTokens'));
    const minOut = Math.min(maxOut, Math.floor(checkCount(r.minOutputTokens ?? 256, 'minOutputTokens')));
    const slice = r.outputSlice === undefined ? undefined : Math.max(1, Math.floor(checkCount(r.outputSlice, 'outputSlice')));
    // Other processes' appends matter only to a daily window with a limit; status() reads them anyway.
    const day = this.today(this.dailyLimited(run.agent));
    const agentScope = this.agentScope(day, run.agent);
    const price = this.prices.lookup(r.model);

    // The run's admission hold counts as available to its own calls (it is then drawn down).
    return this.drawingOnAdmission<ReserveResult>(run, () => {
      const { checks, skippedUsd } = this.checksFor(run, agentScope, day, price);
      const need = (dim: 'tokens' | 'usd', out: number) => (dim === 'tokens' ? input + out : plannedCost(price!, input, out));
      const failing = (out: number) =>
        checks.filter((c) => {
          const avail = c.scope.available(c.dim)!;
          return need(c.dim, out) > avail + (c.dim === 'usd' ? USD_EPSILON : 0);
        });

      if (slice !== undefined) {
        // A sliced call asks the provider for its whole max output (extensions bound what it spends) and
        // holds the slice, or as much of it as fits (at least one token).
        const want = Math.min(slice, maxOut);
        if (failing(want).length > 0) {
          const blockers = failing(Math.min(1, want));
          if (blockers.length > 0) return { result: this.refusal(blockers, { input, maxOut: want, minOut: Math.min(1, want), model: r.model, price, need }) };
        }
        let held = want;
        if (failing(want).length > 0) {
          let lo = Math.min(1, want);
          let hi = want;
          while (hi - lo > 1) {
            const mid = Math.floor((lo + hi) / 2);
            if (failing(mid).length === 0) lo = mid;
            else hi = mid;
          }
          held = lo;
        }
        return this.grant(run, day, agentScope, r.model, price, input, held, maxOut, false, skippedUsd);
      }
      let granted = maxOut;
      if (failing(maxOut).length > 0) {
        const blockers = failing(minOut);
        if (blockers.length > 0) return { result: this.refusal(blockers, { input, maxOut, minOut, model: r.model, price, need }) };
        // Largest output that fits everywhere: fits(lo) holds, fits(hi) does not; need() is monotone.
        let lo = minOut;
        let hi = maxOut;
        while (hi - lo > 1) {
          const mid = Math.floor((lo + hi) / 2);
          if (failing(mid).length === 0) lo = mid;
          else hi = mid;
        }
        granted = lo;
      }

      return this.grant(run, day, agentScope, r.model, price, input, granted, granted, granted < maxOut, skippedUsd);
    });
  }

  /** Holds a granted call reservation in every scope covering it. */
  private grant(
    run: RunState,
    day: DayState,
    agentScope: Scope,
    model: string,
    price: ResolvedPrice | null,
    input: number,
    held: number,
    providerMax: number,
    shrunk: boolean,
    skippedUsd: string[],
  ): { result: ReserveGranted; taken: { tokens: number; usd: number | null } } {
    const tokens = input + held;
    const usd = price ? plannedCost(price, input, held) : null;
    const id = `rsv_${++this.nextReservation}`;
    const res: Reservation = { id, run, day, agentScope, model, price, inputTokens: input, maxOutputTokens: held, tokens, usd, state: 'open' };
    run.model ??= model;
    this.hold(res);
    day.holds++;
    run.reservations.add(res);
    this.reservations.set(id, res);
    const result: ReserveGranted = { ok: true, reservationId: id, maxOutputTokens: providerMax, reservedOutputTokens: held, shrunk, tokens, usd };
    if (skippedUsd.length) {
      result.note = `no price known for ${model}: USD limits of ${skippedUsd.join('; ')} cannot apply to this call, counting tokens only`;
    }
    return { result, taken: { tokens, usd } };
  }

  /**
   * Admits a run on its expected cost: holds `tokens` (and USD) in every scope covering the run, all
   * or nothing. The run's calls draw on this hold first (reserve, extend) and what is left of it is
   * released when the run closes. Refused when it does not fit: the run then makes no model request.
   */
  admit(r: AdmitRequest): { ok: true; reservationId: string } | ReserveRefused {
    if (this.closed) throw new Error('budget: ledger is closed');
    const run = this.openRunState(r.runId);
    if (run.admission) throw new Error(`budget: run ${r.runId} was already admitted`);
    // A run never spends more than its own caps allow: expecting more would refuse it for nothing.
    const tokens = Math.min(Math.ceil(checkCount(r.tokens, 'tokens')), run.scope.limits.tokens ?? Infinity);
    const day = this.today(this.dailyLimited(run.agent));
    const agentScope = this.agentScope(day, run.agent);
    const price = this.prices.lookup(r.model);
    const expectedUsd = r.usd !== undefined && r.usd !== null ? checkCount(r.usd, 'usd') : price ? plannedCost(price, 0, tokens) : null;
    const usd = expectedUsd === null ? null : Math.min(expectedUsd, run.scope.limits.usd ?? Infinity);
    const { checks } = this.checksFor(run, agentScope, day, price);
    const need = (dim: 'tokens' | 'usd') => (dim === 'tokens' ? tokens : (usd ?? 0));
    const blockers = checks.filter((c) => need(c.dim) > c.scope.available(c.dim)! + (c.dim === 'usd' ? USD_EPSILON : 0));
    if (blockers.length) {
      const refused = this.refusal(blockers, { input: 0, maxOut: tokens, minOut: tokens, model: r.model, price, need: (dim) => need(dim) });
      const b = blockers[0];
      const fmt = (n: number) => (b.dim === 'tokens' ? String(n) : fmtUsd(n));
      refused.message = `budget refused: ${b.name} ${dimWord(b.dim)} limit ${refused.limit}${b.hint}: spent ${refused.spent}, reserved ${refused.reserved}, this run is expected to need ${fmt(need(b.dim))} (the 90th percentile of the agent's recent runs on ${r.model})`;
      refused.needed = fmt(need(b.dim));
      return refused;
    }
    const id = `rsv_${++this.nextReservation}`;
    const res: Reservation = { id, run, day, agentScope, model: r.model, price, inputTokens: 0, maxOutputTokens: tokens, tokens, usd, state: 'open' };
    this.hold(res);
    day.holds++;
    run.reservations.add(res);
    this.reservations.set(id, res);
    run.admission = res;
    return { ok: true, reservationId: id };
  }

  /**
   * Grows a call's reservation by up to `wantOutputTokens` of output while its stream runs: the run's
   * admission hold first, then the scopes. Grants the largest extension that fits (at least 1 token),
   * all or nothing across scopes; refused when not even one more token fits.
   */
  extend(reservationId: string, wantOutputTokens: number): ExtendResult {
    const res = this.reservations.get(reservationId);
    if (!res || res.state !== 'open') throw new Error(`budget: extend of unknown or settled reservation ${reservationId}`);
    const want = Math.max(1, Math.floor(checkCount(wantOutputTokens, 'wantOutputTokens')));
    const { run, day, agentScope, price } = res;
    return this.drawingOnAdmission<ExtendResult>(run, () => {
      const { checks } = this.checksFor(run, agentScope, day, price);
      const need = (dim: 'tokens' | 'usd', out: number) => (dim === 'tokens' ? out : plannedCost(price!, 0, out));
      const fits = (out: number) => checks.every((c) => need(c.dim, out) <= c.scope.available(c.dim)! + (c.dim === 'usd' ? USD_EPSILON : 0));
      if (!fits(1)) {
        const blockers = checks.filter((c) => need(c.dim, 1) > c.scope.available(c.dim)! + (c.dim === 'usd' ? USD_EPSILON : 0));
        const refused = this.refusal(blockers, { input: 0, maxOut: want, minOut: 1, model: res.model, price, need });
        refused.message = refused.message.replace(/this call needs .*$/, `this stream has used the ${res.maxOutputTokens} output tokens it holds and cannot extend`);
        return { result: refused };
      }
      let lo = 1;
      let hi = want + 1;
      if (fits(want)) lo = want;
      else
        while (hi - lo > 1) {
          const mid = Math.floor((lo + hi) / 2);
          if (fits(mid)) lo = mid;
          else hi = mid;
        }
      const usd = price ? plannedCost(price, 0, lo) : null;
      this.unhold(res);
      res.maxOutputTokens += lo;
      res.tokens += lo;
      if (res.usd !== null && usd !== null) res.usd += usd;
      this.hold(res);
      return { result: { ok: true as const, grantedOutputTokens: lo, reservedOutputTokens: res.maxOutputTokens }, taken: { tokens: lo, usd } };
    });
  }

  /**
   * `usdOverride`: the USD to charge instead of pricing `usage` at the reservation's model; for usage
   * reported by a re-entry child, whose tree may have used several models.
   */
  commit(reservationId: string, usage: Usage | null, fallback?: CommitFallback, usdOverride?: number | null): Charge {
    const res = this.reservations.get(reservationId);
    if (!res) throw new Error(`budget: commit of unknown or already settled reservation ${reservationId}`);
    let u = usage;
    if (u && !validUsage(u)) {
      this.warn(`reservation ${reservationId} (${res.model}): ignoring malformed usage ${JSON.stringify(u)}`);
      u = null;
    }
    let basis: ChargeBasis;
    let parts: { input: number; output: number; cache_read: number; cache_write: number };
    const streamed = fallback && Number.isFinite(fallback.streamedOutputTokens) ? Math.max(0, Math.ceil(fallback.streamedOutputTokens)) : undefined;
    const estimate = Math.max(res.inputTokens, fallback?.inputEstimate !== undefined && Number.isFinite(fallback.inputEstimate) ? Math.ceil(fallback.inputEstimate) : 0);
    if (u) {
      basis = 'usage';
      parts = { input: u.input_tokens, output: u.output_tokens, cache_read: u.cache_read_input_tokens, cache_write: u.cache_creation_input_tokens };
      // A stream cut short reported only part of its usage (e.g. Anthropic's message_start, 1 output token):
      // charge the larger of the report and what is known to have been sent and received.
      if (fallback?.cut && streamed !== undefined) {
        const reportedInput = parts.input + parts.cache_read + parts.cache_write;
        if (estimate > reportedInput) {
          parts.input += estimate - reportedInput;
          basis = 'streamed';
        }
        if (streamed > parts.output) {
          parts.output = streamed;
          basis = 'streamed';
        }
      }
    } else if (streamed !== undefined) {
      basis = 'streamed';
      parts = { input: estimate, output: streamed, cache_read: 0, cache_write: 0 };
    } else {
      basis = 'reserved';
      parts = { input: res.inputTokens, output: res.maxOutputTokens, cache_read: 0, cache_write: 0 };
    }
    const tokens = parts.input + parts.output + parts.cache_read + parts.cache_write;
    const usd = usdOverride !== undefined
      ? usdOverride
      : res.price
      ? usageCost(res.price, {
          input_tokens: parts.input,
          output_tokens: parts.output,
          cache_read_input_tokens: parts.cache_read,
          cache_creation_input_tokens: parts.cache_write,
        })
      : null;

    this.settle(res);
    const { run, day } = res;
    for (const rs of chain(run)) {
      rs.scope.charge(tokens, usd);
      addModel(rs.byModel, res.model, tokens, usd, parts);
    }
    run.self.calls++;
    run.self.tokens += tokens;
    if (usd === null) run.self.unpricedTokens += tokens;
    else run.self.usd += usd;
    res.agentScope.charge(tokens, usd);
    day.server.charge(tokens, usd);
    addModel(day.models, res.model, tokens, usd, parts);

    if (this.dir !== undefined) {
      const rec: LedgerRecord = {
        ts: this.now().toISOString(),
        day: day.day,
        runId: run.runId,
        ...(run.parent && { parentRunId: run.parent.runId, rootRunId: run.root.runId }),
        agent: run.agent,
        model: res.model,
        tokens,
        usd,
        ...parts,
        basis,
        pid: process.pid,
        writer: this.writer,
        seq: ++this.seq,
      };
      this.append(day, rec);
    }
    return { tokens, usd, parts, basis };
  }

  /** The call never happened (or its cost is accounted elsewhere): give the reservation back. Idempotent. */
  release(reservationId: string): void {
    const res = this.reservations.get(reservationId);
    if (res) this.settle(res);
  }

  closeRun(runId: string): RunTotals {
    const run = this.runs.get(runId);
    if (!run) throw new Error(`budget: closeRun of unknown run ${runId}`);
    if (run.open) {
      const closeTree = (rs: RunState) => {
        for (const child of rs.children) closeTree(child);
        if (!rs.open) return;
        // What is left of the admission hold goes back at once: nothing will ever commit to it.
        if (rs.admission && this.reservations.has(rs.admission.id)) this.settle(rs.admission);
        for (const res of [...rs.reservations]) this.orphan(res);
        this.history.record(rs.agent, rs.model, rs.self);
        rs.open = false;
      };
      closeTree(run);
      if (!run.parent) {
        this.closedRoots.push(run);
        while (this.closedRoots.length > this.keepClosedRuns) this.forgetTree(this.closedRoots.shift()!);
      }
    }
    return totalsOf(run);
  }

  runTotals(runId: string): RunTotals {
    const run = this.runs.get(runId);
    if (!run) throw new Error(`budget: unknown run ${runId}`);
    return totalsOf(run);
  }

  status(q: { runId?: string; day?: string } = {}): BudgetStatus {
    let day = this.today();
    if (q.day !== undefined && q.day !== day.day) {
      if (!/^\d{4}-\d{2}-\d{2}$/.test(q.day)) throw new Error(`budget: day must be YYYY-MM-DD, got "${q.day}"`);
      day = this.loadDay(q.day);
      this.tail(day);
    }
    day.server.limits = this.serverLimits;
    const agents: Record<string, ScopeStatus> = {};
    const names = new Set([...day.agents.keys(), ...[...this.agentLimits].filter(([, l]) => l.tokens !== undefined || l.usd !== undefined).map(([a]) => a)]);
    for (const name of [...names].sort()) agents[name] = this.agentScope(day, name).status();

    const notes: string[] = [];
    const models: Record<string, ModelTotals> = {};
    for (const [m, t] of [...day.models].sort(([a], [b]) => a.localeCompare(b))) {
      models[m] = { ...t };
      if (t.usd === null) notes.push(`no price known for ${m}: tokens only`);
    }
    const overrun = (s: Scope) => {
      for (const dim of ['tokens', 'usd'] as const) {
        const a = s.available(dim);
        if (a !== undefined && a < (dim === 'usd' ? -USD_EPSILON : 0)) {
          const spent = dim === 'tokens' ? String(s.spentTokens) : fmtUsd(s.spentUsd);
          notes.push(`${s.label} ${dimWord(dim)} limit ${fmtLimit(dim, s.limits[dim]!)} exceeded: spent ${spent} (calls used more than they reserved)`);
        }
      }
    };
    overrun(day.server);
    for (const name of Object.keys(agents)) overrun(this.agentScope(day, name));

    const runs: RunStatus[] = [];
    if (q.runId !== undefined) {
      const run = this.runs.get(q.runId);
      if (!run) throw new Error(`budget: unknown run ${q.runId}`);
      const walk = (rs: RunState) => {
        runs.push(runStatus(rs));
        overrun(rs.scope);
        for (const [m, t] of rs.byModel) if (t.usd === null && !models[m]) notes.push(`no price known for ${m}: tokens only`);
        rs.children.forEach(walk);
      };
      walk(run);
    }
    let openRuns = 0;
    for (const rs of this.runs.values()) if (rs.open) openRuns++;
    return { day: day.day, server: day.server.status(), agents, models, runs, openRuns, notes: [...new Set(notes)] };
  }

  /** fdatasync every ledger file with unsynced lines. */
  async flush(): Promise<void> {
    for (const d of this.days.values()) if (d.file) await d.file.sync();
  }

  /** Flushes and closes files. Reserve throws afterwards; a late commit is still recorded (one-shot append). */
  async close(): Promise<void> {
    if (this.syncTimer) clearTimeout(this.syncTimer);
    this.syncTimer = null;
    await this.flush();
    for (const d of this.days.values()) d.file?.close();
    this.closed = true;
  }

  // ── internals ────────────────────────────────────────────────────────────────────────────────

  private openRunState(runId: string): RunState {
    const run = this.runs.get(runId);
    if (!run) throw new Error(`budget: unknown run ${runId} (openRun it first)`);
    if (!run.open) throw new Error(`budget: run ${runId} is closed`);
    return run;
  }

  /** Removes a reservation from every scope it is held in and forgets it. */
  private settle(res: Reservation): void {
    if (res.state === 'open') this.unhold(res);
    res.run.reservations.delete(res);
    this.reservations.delete(res.id);
    res.day.holds--;
  }

  /** closeRun: stop holding budget, but keep the id so a late commit still charges what was spent. */
  private orphan(res: Reservation): void {
    this.unhold(res);
    res.state = 'orphaned';
    res.run.reservations.delete(res);
  }

  private hold(res: Reservation): void {
    for (const rs of chain(res.run)) rs.scope.hold(res.tokens, res.usd);
    res.agentScope.hold(res.tokens, res.usd);
    res.day.server.hold(res.tokens, res.usd);
  }

  /** Every limited scope a call of `run` must fit in (run chain, agent daily, server daily). */
  private checksFor(run: RunState, agentScope: Scope, day: DayState, price: ResolvedPrice | null): { checks: Check[]; skippedUsd: string[] } {
    const checks: Check[] = [];
    const skippedUsd: string[] = [];
    const addChecks = (scope: Scope, name: string, hint: (dim: 'tokens' | 'usd') => string) => {
      if (scope.limits.tokens !== undefined) checks.push({ scope, dim: 'tokens', name, hint: hint('tokens') });
      if (scope.limits.usd !== undefined) {
        if (price) checks.push({ scope, dim: 'usd', name, hint: hint('usd') });
        else skippedUsd.push(name);
      }
    };
    for (const rs of chain(run)) {
      const name = rs === run ? rs.scope.label : `${rs.scope.label}, ${rs === run.parent ? 'parent' : 'ancestor'} of ${run.runId}`;
      const slice = (dim: 'tokens' | 'usd') =>
        rs.limitedByParent[dim] && rs.parent ? ` (its share of parent run ${rs.parent.runId}'s remaining budget)` : '';
      addChecks(rs.scope, name, slice);
    }
    addChecks(agentScope, agentScope.label, () => '');
    addChecks(day.server, day.server.label, () => '');
    return { checks, skippedUsd };
  }

  /**
   * Runs `attempt` with the run's admission hold given back to the scopes (all synchronous, so no
   * other reservation can slip in), then holds the admission again, less what the attempt took.
   */
  private drawingOnAdmission<T>(run: RunState, attempt: () => { result: T; taken?: { tokens: number; usd: number | null } }): T {
    const adm = run.admission?.state === 'open' && this.reservations.has(run.admission.id) ? run.admission : undefined;
    if (adm) this.unhold(adm);
    let taken: { tokens: number; usd: number | null } | undefined;
    try {
      const r = attempt();
      taken = r.taken;
      return r.result;
    } finally {
      if (adm) {
        if (taken) {
          const t = Math.min(adm.tokens, taken.tokens);
          adm.tokens -= t;
          adm.maxOutputTokens = adm.tokens;
          if (adm.usd !== null) adm.usd = Math.max(0, adm.usd - (taken.usd ?? 0));
        }
        this.hold(adm);
      }
    }
  }

  private unhold(res: Reservation): void {
    for (const rs of chain(res.run)) rs.scope.unhold(res.tokens, res.usd);
    res.agentScope.unhold(res.tokens, res.usd);
    res.day.server.unhold(res.tokens, res.usd);
  }

  private forgetTree(rs: RunState): void {
    for (const child of rs.children) this.forgetTree(child);
    this.runs.delete(rs.runId);
  }

  /** Whether a daily window with a limit covers this agent's calls (server-wide or its own). */
  private dailyLimited(agent: string): boolean {
    const a = this.agentLimits.get(agent);
    return hasLimit(this.serverLimits) || (a !== undefined && hasLimit(a));
  }

  /** Today's window: handles UTC rollover and (unless `tail` is false) picks up other processes' appends. */
  private today(tail = true): DayState {
    const day = utcDay(this.now());
    if (day !== this.currentDay) {
      this.currentDay = day;
      this.pruneDays();
    }
    const d = this.loadDay(day);
    if (tail) this.tail(d);
    d.server.limits = this.serverLimits;
    return d;
  }

  private loadDay(day: string): DayState {
    let d = this.days.get(day);
    if (!d) {
      d = { day, server: new Scope('server daily', this.serverLimits), agents: new Map(), models: new Map(), holds: 0 };
      if (this.dir !== undefined) d.file = new DayFile(this.dir, day, this.warn);
      this.days.set(day, d);
    }
    return d;
  }

  /** Applies records other writers appended since the last read (our own are skipped by key). */
  private tail(d: DayState): void {
    if (!d.file || this.closed) return;
    let recs: LedgerRecord[];
    try {
      recs = d.file.readNew();
    } catch (err) {
      this.warn(`cannot read ${d.file.path}: ${(err as Error).message}; other processes' spend may be missing`);
      return;
    }
    for (const rec of recs) {
      if (this.replaying) {
        let r = this.replaying.get(rec.runId);
        if (!r) this.replaying.set(rec.runId, (r = { agent: rec.agent, model: rec.model, tokens: 0, usd: 0, unpricedTokens: 0, calls: 0 }));
        r.calls++;
        r.tokens += rec.tokens;
        if (rec.usd === null) r.unpricedTokens += rec.tokens;
        else r.usd += rec.usd;
      }
      d.server.charge(rec.tokens, rec.usd);
      this.agentScope(d, rec.agent).charge(rec.tokens, rec.usd);
      addModel(d.models, rec.model, rec.tokens, rec.usd, rec);
    }
  }

  private agentScope(d: DayState, agent: string): Scope {
    let s = d.agents.get(agent);
    if (!s) {
      s = new Scope(`agent ${agent} daily`, {});
      d.agents.set(agent, s);
    }
    s.limits = this.agentLimits.get(agent) ?? {};
    return s;
  }

  /** Keeps today and yesterday; older days go once nothing can still settle into them. */
  private pruneDays(): void {
    const keep = new Set([this.currentDay, utcDay(new Date(Date.parse(`${this.currentDay}T00:00:00Z`) - 86_400_000))]);
    for (const [day, d] of this.days) {
      if (keep.has(day) || d.holds > 0) continue;
      try {
        d.file?.close();
      } catch (err) {
        this.warn(`closing ${d.file?.path}: ${(err as Error).message}`);
      }
      this.days.delete(day);
    }
  }

  private append(d: DayState, rec: LedgerRecord): void {
    const file = d.file!;
    try {
      file.append(rec);
      if (this.closed) file.close(); // late commit after close(): one-shot append, nothing left open
    } catch (err) {
      this.warn(`cannot append to ${file.path}: ${(err as Error).message}; this charge (${rec.tokens} tokens, run ${rec.runId}) is kept in memory only`);
      return;
    }
    if (this.closed) return;
    // Group commit: one fdatasync per `syncEvery` lines, or within syncIntervalMs of the first unsynced one.
    if (this.unsyncedLines() >= this.syncEvery) this.syncAll();
    else if (!this.syncTimer) {
      this.syncTimer = setTimeout(() => {
        this.syncTimer = null;
        this.syncAll();
      }, this.syncIntervalMs);
      this.syncTimer.unref();
    }
  }

  /** Lines appended since the last fdatasync, over all open day files. */
  private unsyncedLines(): number {
    let n = 0;
    for (const d of this.days.values()) n += d.file?.unsyncedCount ?? 0;
    return n;
  }

  /** Group commit off the event loop: a blocking fdatasync here stalled every run's bookkeeping. */
  private syncAll(): void {
    for (const d of this.days.values()) {
      d.file?.sync().catch((err: Error) => this.warn(`fdatasync ${d.file?.path}: ${err.message}`));
    }
  }

  private refusal(
    blockers: Check[],
    c: { input: number; maxOut: number; minOut: number; model: string; price: ResolvedPrice | null; need: (dim: 'tokens' | 'usd', out: number) => number },
  ): ReserveRefused {
    const b = blockers[0];
    const s = b.scope;
    const fmt = (n: number) => (b.dim === 'tokens' ? String(n) : fmtUsd(n));
    const limit = fmtLimit(b.dim, s.limits[b.dim]!);
    const spent = fmt(b.dim === 'tokens' ? s.spentTokens : s.spentUsd);
    const reserved = fmt(b.dim === 'tokens' ? s.reservedTokens : s.reservedUsd);
    const at = b.dim === 'usd' ? ` at ${c.price!.key} prices` : '';
    const needed = `${fmt(c.need(b.dim, c.maxOut))} (${c.input} input + ${c.maxOut} max output${at})`;
    let message = `budget refused: ${b.name} ${dimWord(b.dim)} limit ${limit}${b.hint}: spent ${spent}, reserved ${reserved}, this call needs ${needed}`;
    if (c.minOut < c.maxOut) message += `; even with max output shrunk to ${c.minOut} it needs ${fmt(c.need(b.dim, c.minOut))}`;
    if (blockers.length > 1) message += `; also over: ${blockers.slice(1).map((x) => `${x.name} ${dimWord(x.dim)} limit`).join(', ')}`;
    return { ok: false, scope: b.name, dimension: b.dim, limit, spent, reserved, needed, message };
  }
}

// ── helpers ──────────────────────────────────────────────────────────────────────────────────────

/** The run and its ancestors, innermost first. */
function chain(run: RunState): RunState[] {
  const out: RunState[] = [];
  for (let r: RunState | undefined = run; r; r = r.parent) out.push(r);
  return out;
}

/** What a new child of `run` may still spend in `dim`: the least remaining over the run and its ancestors. */
function remainingOverChain(run: RunState, dim: 'tokens' | 'usd'): number | undefined {
  let left: number | undefined;
  for (const rs of chain(run)) {
    const a = rs.scope.available(dim);
    if (a !== undefined) left = Math.max(0, left === undefined ? a : Math.min(left, a));
  }
  return left;
}

function totalsOf(run: RunState): RunTotals {
  return {
    runId: run.runId,
    agent: run.agent,
    tokens: run.scope.spentTokens,
    usd: roundUsd(run.scope.spentUsd),
    unpricedTokens: run.scope.unpricedTokens,
    calls: run.scope.calls,
    self: { ...run.self, usd: roundUsd(run.self.usd) },
    byModel: modelsRecord(run.byModel),
  };
}

function runStatus(rs: RunState): RunStatus {
  let rt = 0;
  let ru = 0;
  for (const res of rs.reservations) {
    rt += res.tokens;
    ru += res.usd ?? 0;
  }
  return {
    ...rs.scope.status(),
    runId: rs.runId,
    agent: rs.agent,
    ...(rs.parent && { parentRunId: rs.parent.runId }),
    depth: rs.depth,
    open: rs.open,
    limitedByParent: { ...rs.limitedByParent },
    self: {
      spent: { tokens: rs.self.tokens, usd: roundUsd(rs.self.usd) },
      reserved: { tokens: rt, usd: roundUsd(ru) },
      calls: rs.self.calls,
      unpricedTokens: rs.self.unpricedTokens,
    },
    byModel: modelsRecord(rs.byModel),
    children: rs.children.map((c) => c.runId),
  };
}

function modelsRecord(m: Map<string, ModelTotals>): Record<string, ModelTotals> {
  const out: Record<string, ModelTotals> = {};
  for (const [k, v] of m) out[k] = { ...v, usd: v.usd === null ? null : roundUsd(v.usd) };
  return out;
}

function addModel(
  m: Map<string, ModelTotals>,
  model: string,
  tokens: number,
  usd: number | null,
  p: { input: number; output: number; cache_read: number; cache_write: number },
): void {
  let t = m.get(model);
  if (!t) {
    t = { calls: 0, tokens: 0, usd: usd === null ? null : 0, input: 0, output: 0, cache_read: 0, cache_write: 0 };
    m.set(model, t);
  }
  t.calls++;
  t.tokens += tokens;
  // A model is priced or not for the whole table; records from another process with other prices
  // may disagree, in which case the priced part is kept.
  if (usd !== null) t.usd = (t.usd ?? 0) + usd;
  t.input += p.input;
  t.output += p.output;
  t.cache_read += p.cache_read;
  t.cache_write += p.cache_write;
}

function minLimits(a: BudgetLimits, b: BudgetLimits): BudgetLimits {
  const out: BudgetLimits = {};
  for (const dim of ['tokens', 'usd'] as const) {
    const x = a[dim];
    const y = b[dim];
    const v = x === undefined ? y : y === undefined ? x : Math.min(x, y);
    if (v !== undefined) out[dim] = v;
  }
  return out;
}

function checkLimits(l: BudgetLimits | undefined, what: string): BudgetLimits {
  const out: BudgetLimits = {};
  for (const dim of ['tokens', 'usd'] as const) {
    const v = l?.[dim];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new RangeError(`budget: ${what} ${dim} limit must be a non-negative number, got ${String(v)}`);
    out[dim] = v;
  }
  return out;
}

function checkCount(v: number, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new RangeError(`budget: ${what} must be a non-negative number, got ${String(v)}`);
  return v;
}

function validUsage(u: Usage): boolean {
  const ok = (n: unknown) => typeof n === 'number' && Number.isFinite(n) && n >= 0;
  return ok(u.input_tokens) && ok(u.output_tokens) && ok(u.cache_read_input_tokens) && ok(u.cache_creation_input_tokens);
}

export function utcDay(d: Date): string {
  return d.toISOString().slice(0, 10);
}

const roundUsd = (n: number) => Math.round(n * 1e9) / 1e9;

function fmtUsd(n: number): string {
  return `$${Number(n.toFixed(6))}`;
}

function fmtLimit(dim: 'tokens' | 'usd', n: number): string {
  return dim === 'tokens' ? String(n) : fmtUsd(n);
}

function dimWord(dim: 'tokens' | 'usd'): string {
  return dim === 'tokens' ? 'token' : 'USD';
}

const hasLimit = (l: BudgetLimits) => l.tokens !== undefined || l.usd !== undefined;
