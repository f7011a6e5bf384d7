// Long because: openRun, reserve, admit, extend, commit and closeRun change the same holds together and
// synchronously (all or nothing across scopes); apart they would hand the ledger's private maps around.
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
// ── Where things are ────────────────────────────────────────────────────────────────────────────
//  types.ts      vocabulary, call protocol     scope.ts    scope arithmetic, the run tree, checks
//  charge.ts     what a finished call costs    status.ts   refusal messages, totals, status report
//  day-books.ts  daily windows: replay, tail, append; persistence (ledger-file.ts: the day file)
// This file holds the runs and their reservations.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Usage } from '../contract/usage.js';
import { chargeFor, validUsage } from './charge.js';
import { DayBooks } from './day-books.js';
import { RunHistory } from './history.js';
import { LedgerChainError, recordParts, type LedgerRecord } from './ledger-file.js';
import { Prices, plannedCost, type ResolvedPrice } from './prices.js';
import {
  addModel,
  chain,
  checkCount,
  checkLimits,
  checksFor,
  hasLimit,
  holdAll,
  largestFitting,
  minLimits,
  overLimit,
  remainingOverChain,
  roundUsd,
  Scope,
  unholdAll,
  type DayState,
  type Reservation,
  type RunState,
} from './scope.js';
import { budgetStatus, dimWord, fmtUsd, refusal, totalsOf } from './status.js';
import type { LedgerStore } from './store.js';
import type {
  AdmitRequest,
  BudgetLedgerOptions,
  BudgetLimits,
  BudgetStatus,
  Charge,
  CommitFallback,
  ExtendResult,
  OpenRunRequest,
  OpenRunResult,
  ReserveGranted,
  ReserveRefused,
  ReserveRequest,
  ReserveResult,
  RunTotals,
} from './types.js';

export * from './types.js';

export class BudgetLedger implements LedgerStore {
  readonly synchronous = true as const;
  private readonly dir: string | undefined;
  private serverLimits: BudgetLimits;
  private readonly prices: Prices;
  private readonly now: () => Date;
  private readonly warn: (msg: string) => void;
  private readonly keepClosedRuns: number;
  private readonly writer = `${process.pid}-${randomBytes(4).toString('hex')}`;
  private seq = 0;
  private nextReservation = 0;
  private readonly runs = new Map<string, RunState>();
  private readonly closedRoots: RunState[] = [];
  private readonly reservations = new Map<string, Reservation>();
  private readonly agentLimits = new Map<string, BudgetLimits>();
  private readonly books: DayBooks;
  /** Recent runs' spend per agent and model (admission on expected cost). */
  readonly history = new RunHistory();
  private closed = false;

  constructor(opts: BudgetLedgerOptions = {}) {
    this.dir = opts.stateDir === undefined ? undefined : path.join(opts.stateDir, 'budget');
    this.serverLimits = checkLimits({ tokens: opts.server?.daily_tokens, usd: opts.server?.daily_usd }, 'server daily');
    this.prices = new Prices(opts.prices);
    this.now = opts.now ?? (() => new Date());
    this.warn = opts.warn ?? ((msg) => process.stderr.write(`delegate-mcp budget: ${msg}\n`));
    this.keepClosedRuns = Math.max(0, opts.keepClosedRuns ?? 1000);
    this.books = new DayBooks({
      dir: this.dir,
      now: this.now,
      warn: this.warn,
      sync: { syncEvery: Math.max(1, opts.syncEvery ?? 16), syncIntervalMs: Math.max(0, opts.syncIntervalMs ?? 1000) },
      serverLimits: () => this.serverLimits,
      agentLimits: (agent) => this.agentLimits.get(agent) ?? {},
    });
  }

  /** Creates a ledger and replays today's ledger file (files are otherwise read lazily, on first use). */
  static async open(opts: BudgetLedgerOptions = {}): Promise<BudgetLedger> {
    const ledger = new BudgetLedger(opts);
    // An unusable stateDir should stop the server at startup, not warn on every commit later.
    if (ledger.dir !== undefined) await mkdir(ledger.dir, { recursive: true });
    const { today, runs: replayed } = ledger.books.replay();
    const broken = today.file?.chainBreak;
    // A ledger whose hash chain is broken was edited: refuse to start rather than trust (forget) spend.
    if (broken) {
      await ledger.close();
      throw new LedgerChainError(broken);
    }
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
    this.books.agentScope(this.today(this.dailyLimited(r.agent)), r.agent); // so status lists the agent's window from the start

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
    const agentScope = this.books.agentScope(day, run.agent);
    const price = this.prices.lookup(r.model);

    // The run's admission hold counts as available to its own calls (it is then drawn down).
    return this.drawingOnAdmission<ReserveResult>(run, () => {
      const { checks, skippedUsd } = checksFor(run, agentScope, day, price);
      const need = (dim: 'tokens' | 'usd', out: number) => (dim === 'tokens' ? input + out : plannedCost(price!, input, out));
      const failing = (out: number) =>
        checks.filter((c) => overLimit(c, need(c.dim, out)));

      if (slice !== undefined) {
        // A sliced call asks the provider for its whole max output (extensions bound what it spends) and
        // holds the slice, or as much of it as fits (at least one token).
        const want = Math.min(slice, maxOut);
        if (failing(want).length > 0) {
          const blockers = failing(Math.min(1, want));
          if (blockers.length > 0) return { result: refusal(blockers, { input, maxOut: want, minOut: Math.min(1, want), model: r.model, price, need }) };
        }
        const held = failing(want).length > 0 ? largestFitting(Math.min(1, want), want, (out) => failing(out).length === 0) : want;
        return this.grant(run, day, agentScope, r.model, price, input, held, maxOut, false, skippedUsd);
      }
      let granted = maxOut;
      if (failing(maxOut).length > 0) {
        const blockers = failing(minOut);
        if (blockers.length > 0) return { result: refusal(blockers, { input, maxOut, minOut, model: r.model, price, need }) };
        granted = largestFitting(minOut, maxOut, (out) => failing(out).length === 0);
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
    holdAll(res);
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
    const agentScope = this.books.agentScope(day, run.agent);
    const price = this.prices.lookup(r.model);
    const expectedUsd = r.usd !== undefined && r.usd !== null ? checkCount(r.usd, 'usd') : price ? plannedCost(price, 0, tokens) : null;
    const usd = expectedUsd === null ? null : Math.min(expectedUsd, run.scope.limits.usd ?? Infinity);
    const { checks } = checksFor(run, agentScope, day, price);
    const need = (dim: 'tokens' | 'usd') => (dim === 'tokens' ? tokens : (usd ?? 0));
    const blockers = checks.filter((c) => overLimit(c, need(c.dim)));
    if (blockers.length) {
      const refused = refusal(blockers, { input: 0, maxOut: tokens, minOut: tokens, model: r.model, price, need: (dim) => need(dim) });
      const b = blockers[0];
      const fmt = (n: number) => (b.dim === 'tokens' ? String(n) : fmtUsd(n));
      refused.message = `budget refused: ${b.name} ${dimWord(b.dim)} limit ${refused.limit}${b.hint}: spent ${refused.spent}, reserved ${refused.reserved}, this run is expected to need ${fmt(need(b.dim))} (the 90th percentile of the agent's recent runs on ${r.model})`;
      refused.needed = fmt(need(b.dim));
      return refused;
    }
    const id = `rsv_${++this.nextReservation}`;
    const res: Reservation = { id, run, day, agentScope, model: r.model, price, inputTokens: 0, maxOutputTokens: tokens, tokens, usd, state: 'open' };
    holdAll(res);
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
      const { checks } = checksFor(run, agentScope, day, price);
      const need = (dim: 'tokens' | 'usd', out: number) => (dim === 'tokens' ? out : plannedCost(price!, 0, out));
      const fits = (out: number) => checks.every((c) => !overLimit(c, need(c.dim, out)));
      if (!fits(1)) {
        const blockers = checks.filter((c) => overLimit(c, need(c.dim, 1)));
        const refused = refusal(blockers, { input: 0, maxOut: want, minOut: 1, model: res.model, price, need });
        refused.message = refused.message.replace(/this call needs .*$/, `this stream has used the ${res.maxOutputTokens} output tokens it holds and cannot extend`);
        return { result: refused };
      }
      const lo = fits(want) ? want : largestFitting(1, want, fits);
      const usd = price ? plannedCost(price, 0, lo) : null;
      unholdAll(res);
      res.maxOutputTokens += lo;
      res.tokens += lo;
      if (res.usd !== null && usd !== null) res.usd += usd;
      holdAll(res);
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
    const charge = chargeFor(res, u, fallback, usdOverride);
    const { tokens, usd, usage: charged, basis } = charge;
    this.settle(res);
    const { run, day } = res;
    for (const rs of chain(run)) {
      rs.scope.charge(tokens, usd);
      addModel(rs.byModel, res.model, tokens, usd, charged);
    }
    run.self.calls++;
    run.self.tokens += tokens;
    if (usd === null) run.self.unpricedTokens += tokens;
    else run.self.usd += usd;
    res.agentScope.charge(tokens, usd);
    day.server.charge(tokens, usd);
    addModel(day.models, res.model, tokens, usd, charged);

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
        ...recordParts(charged),
        basis,
        pid: process.pid,
        writer: this.writer,
        seq: ++this.seq,
      };
      this.books.append(day, rec);
    }
    return charge;
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
      day = this.books.loadDay(q.day);
      this.books.tail(day);
    }
    day.server.limits = this.serverLimits;
    const names = new Set([...day.agents.keys(), ...[...this.agentLimits].filter(([, l]) => hasLimit(l)).map(([a]) => a)]);
    const agentScopes = [...names].sort().map((name): [string, Scope] => [name, this.books.agentScope(day, name)]);
    let run: RunState | undefined;
    if (q.runId !== undefined) {
      run = this.runs.get(q.runId);
      if (!run) throw new Error(`budget: unknown run ${q.runId}`);
    }
    let openRuns = 0;
    for (const rs of this.runs.values()) if (rs.open) openRuns++;
    return budgetStatus(day, agentScopes, run, openRuns);
  }

  /** fdatasync every ledger file with unsynced lines. */
  async flush(): Promise<void> {
    await this.books.flush();
  }

  /** Flushes and closes files. Reserve throws afterwards; a late commit is still recorded (one-shot append). */
  async close(): Promise<void> {
    await this.books.close();
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
    if (res.state === 'open') unholdAll(res);
    res.run.reservations.delete(res);
    this.reservations.delete(res.id);
    res.day.holds--;
  }

  /** closeRun: stop holding budget, but keep the id so a late commit still charges what was spent. */
  private orphan(res: Reservation): void {
    unholdAll(res);
    res.state = 'orphaned';
    res.run.reservations.delete(res);
  }

  /**
   * Runs `attempt` with the run's admission hold given back to the scopes (all synchronous, so no
   * other reservation can slip in), then holds the admission again, less what the attempt took.
   */
  private drawingOnAdmission<T>(run: RunState, attempt: () => { result: T; taken?: { tokens: number; usd: number | null } }): T {
    const adm = run.admission?.state === 'open' && this.reservations.has(run.admission.id) ? run.admission : undefined;
    if (adm) unholdAll(adm);
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
        holdAll(adm);
      }
    }
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

  private today(tail = true): DayState {
    return this.books.today(tail);
  }

}
