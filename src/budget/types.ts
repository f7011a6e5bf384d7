// The budget ledger's vocabulary and protocol: what callers pass in and get back, and what each call
// promises. Scopes are described at the top of ledger.ts.
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
//  commit(reservationId, usage | null, fallback?) → {tokens, usd, usage, basis}   (usage: what was charged)
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
import type { Usage } from '../contract/usage.js';
import type { ChargeBasis } from './ledger-file.js';
import type { PriceTable } from './prices.js';

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
  usage: Usage;
  basis: ChargeBasis;
}

export interface ModelTotals {
  calls: number;
  tokens: number;
  /** null when the model has no known price. */
  usd: number | null;
  /** The calls' tokens part by part (the sum of what each was charged). */
  usage: Usage;
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
