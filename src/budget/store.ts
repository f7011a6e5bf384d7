// The one ledger interface, with two implementations:
// - BudgetLedger (ledger.ts): in process, files under the state dir. Synchronous: every answer is a
//   plain value, so the embedded hot path (a reserve and a commit per model call) never waits a tick.
// - RedisLedger (redis-ledger.ts): queue mode, one budget across all nodes. Every answer is a Promise.
// Callers written against LedgerStore handle both with `after` (below), which stays synchronous when
// the answer is.
import type { Usage } from '../contract/usage.js';
import type { RunHistory } from './history.js';
import type {
  AdmitRequest,
  BudgetStatus,
  Charge,
  CommitFallback,
  ExtendResult,
  OpenRunRequest,
  OpenRunResult,
  ReserveRefused,
  ReserveRequest,
  ReserveResult,
  RunTotals,
} from './types.js';

export type MaybePromise<T> = T | Promise<T>;

/** The answer of books known to answer at once (the file ledger); a Promise here is a wiring mistake. */
export function answered<T>(v: MaybePromise<T>): T {
  if (v instanceof Promise) throw new Error('these books were expected to answer at once (the file ledger), not with a Promise');
  return v;
}

export interface LedgerStore {
  /** true: every method answers synchronously (BudgetLedger); false: with Promises (RedisLedger). */
  readonly synchronous: boolean;
  /** Recent runs' spend per agent and model (admission on expected cost). */
  readonly history: RunHistory;
  setServerLimits(server: { daily_tokens?: number; daily_usd?: number }): void;
  openRun(r: OpenRunRequest): MaybePromise<OpenRunResult>;
  admit(r: AdmitRequest): MaybePromise<{ ok: true; reservationId: string } | ReserveRefused>;
  reserve(r: ReserveRequest): MaybePromise<ReserveResult>;
  extend(reservationId: string, wantOutputTokens: number): MaybePromise<ExtendResult>;
  commit(reservationId: string, usage: Usage | null, fallback?: CommitFallback, usdOverride?: number | null): MaybePromise<Charge>;
  release(reservationId: string): MaybePromise<void>;
  closeRun(runId: string): MaybePromise<RunTotals>;
  runTotals(runId: string): MaybePromise<RunTotals>;
  status(q?: { runId?: string; day?: string }): MaybePromise<BudgetStatus>;
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** `f` applied to `v`: at once when `v` is a value, after it settles when it is a Promise. */
export function after<T, U>(v: MaybePromise<T>, f: (t: T) => U): MaybePromise<U> {
  return v instanceof Promise ? v.then(f) : f(v);
}

/** A LedgerStore's answer type: the value itself for a synchronous store, else a Promise of it. */
export type Answer<L extends LedgerStore, T> = L extends { readonly synchronous: true }
  ? T
  : L extends { readonly synchronous: false }
    ? Promise<T>
    : MaybePromise<T>;
