// The ledger's daily windows and their files: one DayState per UTC day (server and agent scopes, per-model
// totals), replayed from <stateDir>/budget/ledger-YYYY-MM-DD.jsonl at start and tailed before a limited
// reserve (other processes' commits), appended to on every commit, group-committed by the day file.
//
// Persistence (stateDir set): each commit appends one JSON line (ledger-file.ts: one write per line on an
// O_APPEND descriptor, never rewritten, fdatasync every `syncEvery` lines, within `syncIntervalMs`, and
// on flush/close). open() replays today's file to rebuild the server and agent daily windows; run caps
// need no replay (runs do not survive a restart). Corrupt lines are skipped with a warning naming
// file:line. If an append fails the spend is kept in memory (so this process still enforces it) and a
// warning is emitted.
import { DayFile, usageOfRecord, type DayFileSync, type LedgerRecord } from './ledger-file.js';
import { addModel, Scope, type DayState } from './scope.js';
import { DAY_MS, utcDay } from '../time/utc-day.js';
import type { BudgetLimits } from './types.js';

/** A run's spend as replayed from the files (for the run history). */
export interface ReplayedRun {
  agent: string;
  model: string;
  tokens: number;
  usd: number;
  unpricedTokens: number;
  calls: number;
}

export interface DayBooksOptions {
  /** Directory of the day files; undefined = in memory only. */
  dir: string | undefined;
  now: () => Date;
  warn: (msg: string) => void;
  sync: DayFileSync;
  serverLimits: () => BudgetLimits;
  agentLimits: (agent: string) => BudgetLimits;
}

export class DayBooks {
  private readonly days = new Map<string, DayState>();
  private currentDay = '';
  /** While replay() reads the files: each run's spend, in order of its first line. */
  private replaying: Map<string, ReplayedRun> | null = null;
  private closed = false;

  constructor(private readonly o: DayBooksOptions) {}

  get persistent(): boolean {
    return this.o.dir !== undefined;
  }

  /**
   * Reads today's and yesterday's files (a server started just after midnight has a history too).
   * Returns today's window and the runs the files record.
   */
  replay(): { today: DayState; runs: ReplayedRun[] } {
    this.replaying = new Map();
    try {
      const today = this.today();
      if (today.file?.chainBreak) return { today, runs: [] };
      if (this.persistent) this.tail(this.loadDay(utcDay(new Date(Date.parse(`${today.day}T00:00:00Z`) - DAY_MS))));
      // Yesterday's lines were read after today's: order by nothing finer than "both days", which is enough for a percentile.
      return { today, runs: [...this.replaying.values()] };
    } finally {
      this.replaying = null;
    }
  }

  /** Today's window: handles UTC rollover and (unless `tail` is false) picks up other processes' appends. */
  today(tail = true): DayState {
    const day = utcDay(this.o.now());
    if (day !== this.currentDay) {
      this.currentDay = day;
      this.pruneDays();
    }
    const d = this.loadDay(day);
    if (tail) this.tail(d);
    d.server.limits = this.o.serverLimits();
    return d;
  }

  loadDay(day: string): DayState {
    let d = this.days.get(day);
    if (!d) {
      d = { day, server: new Scope('server daily', this.o.serverLimits()), agents: new Map(), models: new Map(), holds: 0 };
      if (this.o.dir !== undefined) d.file = new DayFile(this.o.dir, day, this.o.warn, this.o.sync);
      this.days.set(day, d);
    }
    return d;
  }

  /** Applies records other writers appended since the last read (our own are skipped by key). */
  tail(d: DayState): void {
    if (!d.file || this.closed) return;
    let recs: LedgerRecord[];
    try {
      recs = d.file.readNew();
    } catch (err) {
      this.o.warn(`cannot read ${d.file.path}: ${(err as Error).message}; other processes' spend may be missing`);
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
      addModel(d.models, rec.model, rec.tokens, rec.usd, usageOfRecord(rec));
    }
  }

  /** The agent's daily scope in `d`, with the agent's current limits. */
  agentScope(d: DayState, agent: string): Scope {
    let s = d.agents.get(agent);
    if (!s) {
      s = new Scope(`agent ${agent} daily`, {});
      d.agents.set(agent, s);
    }
    s.limits = this.o.agentLimits(agent);
    return s;
  }

  /** Records a commit in the day's file. A failed append is warned about; the spend stays in memory. */
  append(d: DayState, rec: LedgerRecord): void {
    const file = d.file!;
    try {
      file.append(rec);
      if (this.closed) file.close(); // late commit after close(): one-shot append, nothing left open
    } catch (err) {
      this.o.warn(`cannot append to ${file.path}: ${(err as Error).message}; this charge (${rec.tokens} tokens, run ${rec.runId}) is kept in memory only`);
    }
  }

  /** fdatasync every day file with unsynced lines. */
  async flush(): Promise<void> {
    for (const d of this.days.values()) if (d.file) await d.file.sync();
  }

  /** Flushes and closes the files; a later append is a one-shot (opened, written, synced, closed). */
  async close(): Promise<void> {
    await this.flush();
    for (const d of this.days.values()) d.file?.close();
    this.closed = true;
  }

  /** Keeps today and yesterday; older days go once nothing can still settle into them. */
  private pruneDays(): void {
    const keep = new Set([this.currentDay, utcDay(new Date(Date.parse(`${this.currentDay}T00:00:00Z`) - DAY_MS))]);
    for (const [day, d] of this.days) {
      if (keep.has(day) || d.holds > 0) continue;
      try {
        d.file?.close();
      } catch (err) {
        this.o.warn(`closing ${d.file?.path}: ${(err as Error).message}`);
      }
      this.days.delete(day);
    }
  }
}
