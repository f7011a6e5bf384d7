// The budget ledger's vocabulary: what callers pass in and get back (the protocol is described at the
// top of ledger.ts). Shared by the in-process ledger and the Redis-backed one.
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
