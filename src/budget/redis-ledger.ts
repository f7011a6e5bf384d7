// The budget ledger in Redis (queue mode): one set of books for every node. Same scopes, protocol and
// words as BudgetLedger (types.ts): server daily, agent daily, runs whose holds count in every ancestor
// (batches and re-entry slices are runs), per-call caps that only lower; admission holds drawn on
// first. Every step that reads and changes holds is one Lua script (redis-scripts.ts), so N processes ×
// M concurrent runs can never hold or commit past a cap: the overshoot between processes sharing a
// state dir (types.ts, case 3) does not exist here.
//
// Daily windows live in Redis and expire two days after their UTC day; run records a while after their
// last change (runTtlS, refreshed by every step of an open run; closedRunTtlS once closed). Each node
// keeps its own run history (admission percentiles) from the runs it closes.
// ioredis is loaded only when a Redis ledger is opened: the embedded default never loads it.
import { randomBytes } from 'node:crypto';
import type { Redis, RedisOptions } from 'ioredis';
import type { Usage } from '../contract/usage.js';
import { chargeFor, validUsage } from './charge.js';
import { RunHistory } from './history.js';
import { plannedCost, Prices, type PriceTable, type ResolvedPrice } from './prices.js';
import { blockersOf, modelsOf, runFromTotals, runTree, scopeOf, type Reply } from './redis-replies.js';
import { ledgerScript, LEDGER_SCRIPTS, stepsScript } from './redis-scripts.js';
import { StepBatcher } from './redis-steps.js';
import { checkCount, checkLimits, minLimits, type Dim, type Scope } from './scope.js';
import { utcDay } from '../time/utc-day.js';
import { budgetStatus, dimWord, fmtUsd, refusal, totalsOf } from './status.js';
import type { LedgerStore } from './store.js';
import { safeRedisUrl } from '../net/redis-url.js';
import { withTimeout } from '../time/with-timeout.js';
import type {
  AdmitRequest,
  BudgetLimits,
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

export interface RedisLedgerOptions {
  /** redis://[user:pass@]host:port[/db] (rediss:// for TLS). Default: REDIS_URL, else redis://127.0.0.1:6379. */
  url?: string;
  /** Use this connection instead of opening one (not closed by close()). */
  redis?: Redis;
  /** Key prefix shared by every node of one deployment (default "dmcp"); keys are "<prefix>:{budget}:…". */
  prefix?: string;
  server?: { daily_tokens?: number; daily_usd?: number };
  /** Merged over DEFAULT_PRICES (USD per million tokens). Every node should price alike. */
  prices?: PriceTable;
  /** Ledger clock (the UTC day of a reservation); for tests of day rollover. */
  now?: () => Date;
  warn?: (msg: string) => void;
  /** An open run's records expire this long after its last step (default 7 days). */
  runTtlS?: number;
  /** A closed run's records (for totals and status) expire this long after it closed (default 1 day). */
  closedRunTtlS?: number;
  /** A command not answered within this time fails (default 5000 ms): a lost Redis fails calls fast. */
  commandTimeoutMs?: number;
}

const DAY_S = 86_400;
/** An optional number as a script argument ('' = none). */
const n = (v: number | undefined): string => (v === undefined ? '' : String(v));
type Script = keyof typeof LEDGER_SCRIPTS;

/** What a commit needs to know of its reservation (kept by the node that reserved; else read back). */
interface HeldCall {
  model: string;
  inputTokens: number;
  maxOutputTokens: number;
  price: ResolvedPrice | null;
}

/**
 * Opens the Redis ledger: connects (failing at once, with the URL, when Redis does not answer) and
 * loads the scripts. The queue mode's front and workers each open one on the same URL and prefix.
 */
export async function openRedisLedger(opts: RedisLedgerOptions = {}): Promise<RedisLedger> {
  let redis = opts.redis;
  let owned = false;
  if (!redis) {
    const url = opts.url ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
    const { Redis: RedisClient } = await import('ioredis');
    const options: RedisOptions = {
      lazyConnect: true,
      // A lost Redis fails a call at once with the reason instead of queueing it until it returns.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: opts.commandTimeoutMs ?? 5000,
      connectionName: 'delegate-mcp budget',
    };
    redis = new RedisClient(url, options);
    owned = true;
    let lastError: Error | undefined;
    redis.on('error', (err: Error) => (lastError = err)); // reported by the call that fails
    try {
      await withTimeout(redis.connect(), opts.commandTimeoutMs ?? 5000);
      await redis.ping();
    } catch (err) {
      redis.disconnect();
      throw new Error(`budget: cannot reach Redis at ${safeRedisUrl(url)}: ${(lastError ?? (err as Error)).message}`);
    }
  }
  for (const name of Object.keys(LEDGER_SCRIPTS) as Script[]) {
    if (!(name in redis)) redis.defineCommand(name, { numberOfKeys: 1, lua: ledgerScript(name) });
  }
  if (!('budgetSteps' in redis)) redis.defineCommand('budgetSteps', { numberOfKeys: 1, lua: stepsScript() });
  return new RedisLedger(redis, owned, opts);
}

export class RedisLedger implements LedgerStore {
  readonly synchronous = false as const;
  readonly history = new RunHistory();
  /** The key every script works under ("<prefix>:{budget}:"). */
  readonly base: string;
  private serverLimits: BudgetLimits;
  private readonly prices: Prices;
  private readonly now: () => Date;
  private readonly warn: (msg: string) => void;
  private readonly runTtlS: number;
  private readonly closedRunTtlS: number;
  private readonly writer = randomBytes(4).toString('hex');
  private nextReservation = 0;
  private readonly held = new Map<string, HeldCall>();
  private closed = false;

  constructor(
    readonly redis: Redis,
    private readonly ownsConnection: boolean,
    opts: RedisLedgerOptions,
  ) {
    const prefix = opts.prefix ?? 'dmcp';
    if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(prefix)) throw new RangeError(`budget: Redis key prefix: letters, digits, _ . : - (1-64), got ${JSON.stringify(prefix)}`);
    this.base = `${prefix.endsWith(':') ? prefix : `${prefix}:`}{budget}:`;
    this.serverLimits = checkLimits({ tokens: opts.server?.daily_tokens, usd: opts.server?.daily_usd }, 'server daily');
    this.prices = new Prices(opts.prices);
    this.now = opts.now ?? (() => new Date());
    this.warn = opts.warn ?? ((msg) => process.stderr.write(`delegate-mcp budget: ${msg}\n`));
    this.runTtlS = Math.max(60, Math.floor(opts.runTtlS ?? 7 * DAY_S));
    this.closedRunTtlS = Math.max(60, Math.floor(opts.closedRunTtlS ?? DAY_S));
  }

  setServerLimits(server: { daily_tokens?: number; daily_usd?: number }): void {
    this.serverLimits = checkLimits({ tokens: server.daily_tokens, usd: server.daily_usd }, 'server daily');
  }

  async openRun(r: OpenRunRequest): Promise<OpenRunResult> {
    this.assertOpen();
    const own = minLimits(checkLimits(r.run, `run ${r.runId} run caps`), checkLimits(r.call, `run ${r.runId} per-call caps`));
    const daily = checkLimits(r.agentDaily, `agent ${r.agent} daily`);
    const { day, dayExpireAt } = this.today();
    const [lt, lu, lbt, lbu] = (await this.run('budgetOpenRun', r.runId, r.agent, r.parentRunId ?? '', day, dayExpireAt, this.runTtlS, n(own.tokens), n(own.usd), n(daily.tokens), n(daily.usd), `run ${r.runId} (${r.agent})`)) as string[];
    const limits: BudgetLimits = {};
    if (lt !== '') limits.tokens = Number(lt);
    if (lu !== '') limits.usd = Number(lu);
    return { limits, limitedByParent: { tokens: lbt === '1', usd: lbu === '1' } };
  }

  async reserve(r: ReserveRequest): Promise<ReserveResult> {
    this.assertOpen();
    if (typeof r.model !== 'string' || !r.model.trim()) throw new TypeError('budget: reserve needs a model ("provider/model")');
    const input = Math.ceil(checkCount(r.inputTokens, 'inputTokens'));
    const maxOut = Math.floor(checkCount(r.maxOutputTokens, 'maxOutputTokens'));
    const minOut = Math.min(maxOut, Math.floor(checkCount(r.minOutputTokens ?? 256, 'minOutputTokens')));
    const slice = r.outputSlice === undefined ? undefined : Math.max(1, Math.floor(checkCount(r.outputSlice, 'outputSlice')));
    const price = this.prices.lookup(r.model);
    const id = this.reservationId();
    const { day, dayExpireAt } = this.today();
    const reply = (await this.run('budgetReserve', r.runId, id, day, dayExpireAt, r.model, input, maxOut, minOut, n(slice), n(price?.input), n(price?.output), n(this.serverLimits.tokens), n(this.serverLimits.usd), this.runTtlS)) as Reply;
    const need = (dim: Dim, out: number) => (dim === 'tokens' ? input + out : plannedCost(price!, input, out));
    if (reply[0] === 'refused') {
      const shown = slice === undefined ? { maxOut, minOut } : { maxOut: Math.min(slice, maxOut), minOut: Math.min(1, slice, maxOut) };
      return refusal(blockersOf(reply), { input, ...shown, model: r.model, price, need });
    }
    const [, providerMax, heldOut, shrunk, tokens, usd, skipped] = reply as string[];
    this.held.set(id, { model: r.model, inputTokens: input, maxOutputTokens: Number(heldOut), price });
    return {
      ok: true,
      reservationId: id,
      maxOutputTokens: Number(providerMax),
      reservedOutputTokens: Number(heldOut),
      shrunk: shrunk === '1',
      tokens: Number(tokens),
      usd: usd === '' ? null : Number(usd),
      ...(skipped !== '' && { note: `no price known for ${r.model}: USD limits of ${skipped} cannot apply to this call, counting tokens only` }),
    };
  }

  async admit(r: AdmitRequest): Promise<{ ok: true; reservationId: string } | ReserveRefused> {
    this.assertOpen();
    const tokens = Math.ceil(checkCount(r.tokens, 'tokens'));
    const usd = r.usd !== undefined && r.usd !== null ? checkCount(r.usd, 'usd') : undefined;
    const price = this.prices.lookup(r.model);
    const id = this.reservationId();
    const { day, dayExpireAt } = this.today();
    const reply = (await this.run('budgetAdmit', r.runId, id, day, dayExpireAt, r.model, tokens, n(usd), n(price?.input), n(price?.output), n(this.serverLimits.tokens), n(this.serverLimits.usd), this.runTtlS)) as Reply;
    if (reply[0] !== 'refused') return { ok: true, reservationId: id };
    const [needTokens, needUsd] = reply[reply.length - 1] as string[];
    const blockers = blockersOf(reply.slice(0, -1));
    const need = (dim: Dim) => (dim === 'tokens' ? Number(needTokens) : needUsd === '' ? 0 : Number(needUsd));
    const refused = refusal(blockers, { input: 0, maxOut: need('tokens'), minOut: need('tokens'), model: r.model, price, need: (dim) => need(dim) });
    const b = blockers[0];
    const fmt = (x: number) => (b.dim === 'tokens' ? String(x) : fmtUsd(x));
    refused.message = `budget refused: ${b.name} ${dimWord(b.dim)} limit ${refused.limit}${b.hint}: spent ${refused.spent}, reserved ${refused.reserved}, this run is expected to need ${fmt(need(b.dim))} (the 90th percentile of the agent's recent runs on ${r.model})`;
    refused.needed = fmt(need(b.dim));
    return refused;
  }

  async extend(reservationId: string, wantOutputTokens: number): Promise<ExtendResult> {
    const want = Math.max(1, Math.floor(checkCount(wantOutputTokens, 'wantOutputTokens')));
    const reply = (await this.run('budgetExtend', reservationId, want, n(this.serverLimits.tokens), n(this.serverLimits.usd), this.runTtlS)) as Reply;
    const held = this.held.get(reservationId);
    if (reply[0] === 'refused') {
      const price = held?.price ?? null;
      const need = (dim: Dim, out: number) => (dim === 'tokens' ? out : plannedCost(price!, 0, out));
      const refused = refusal(blockersOf(reply), { input: 0, maxOut: want, minOut: 1, model: held?.model ?? '', price, need });
      refused.message = refused.message.replace(/this call needs .*$/, `this stream has used the ${held?.maxOutputTokens ?? 'output'} output tokens it holds and cannot extend`);
      return refused;
    }
    const [, granted, reservedOut] = reply as string[];
    if (held) held.maxOutputTokens = Number(reservedOut);
    return { ok: true, grantedOutputTokens: Number(granted), reservedOutputTokens: Number(reservedOut) };
  }

  /** `keepEnd`: a queue run's slice, remembered as committed a while (settlement()). */
  async commit(reservationId: string, usage: Usage | null, fallback?: CommitFallback, usdOverride?: number | null, keepEnd = false): Promise<Charge> {
    const res = this.held.get(reservationId) ?? (await this.readBack(reservationId));
    let u = usage;
    if (u && !validUsage(u)) {
      this.warn(`reservation ${reservationId} (${res.model}): ignoring malformed usage ${JSON.stringify(u)}`);
      u = null;
    }
    const charge = chargeFor(res, u, fallback, usdOverride);
    // The run's model hash keeps the day file's part names (input, output, cache_read, cache_write): see modelsOf.
    const c = charge.usage;
    await this.run('budgetCommit', reservationId, charge.tokens, n(charge.usd ?? undefined), c.input_tokens, c.output_tokens, c.cache_read_input_tokens, c.cache_creation_input_tokens, this.runTtlS, keepEnd ? this.closedRunTtlS : '');
    this.held.delete(reservationId);
    return charge;
  }

  /**
   * A run's end on a node that did not make its reservation (a queue worker settling the slice its front
   * reserved): the commit, told the reservation's model instead of reading it back, and the run's close go
   * to Redis in the same tick — one budgetSteps script, one round trip. Rejects when the commit
   * fails (a close that fails after it only leaves the run to its records' expiry, which it warns about).
   */
  async commitAndClose(runId: string, reservationId: string, model: string, usage: Usage, usdOverride: number | null): Promise<void> {
    if (!this.held.has(reservationId)) this.held.set(reservationId, { model, inputTokens: 0, maxOutputTokens: 0, price: this.prices.lookup(model) });
    const committed = this.commit(reservationId, usage, undefined, usdOverride, true);
    const closed = this.closeRun(runId).catch((err: Error) => this.warn(`run ${runId}: could not close it in the books: ${err.message}`));
    try {
      await committed;
    } finally {
      this.held.delete(reservationId); // a failed commit leaves nothing held here either
      await closed;
    }
  }

  /**
   * What a run spent when no reservation is left to commit it to: a queue worker's run that was given up
   * as lost (its lock lapsed; its front released the slice) while it went on. Counted on today's books
   * and the run's chain whatever the caps: it was spent, and the next admission must see it.
   */
  async charge(r: { runId: string; agent: string; model: string; usage: Usage; usd: number | null }): Promise<Charge> {
    const c = chargeFor({ inputTokens: 0, maxOutputTokens: 0, price: this.prices.lookup(r.model) }, validUsage(r.usage) ? r.usage : null, undefined, r.usd);
    const { day, dayExpireAt } = this.today();
    const u = c.usage;
    await this.run('budgetCharge', r.runId, r.agent, r.model, day, dayExpireAt, c.tokens, n(c.usd ?? undefined), u.input_tokens, u.output_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens, this.runTtlS);
    return c;
  }

  /**
   * Where a reservation (made on any node) stands: still `held`, or settled — `committed` (what its
   * call or run spent is counted) or `released` (nothing was counted to it) — or `unknown` (never made
   * here, or settled more than a day ago).
   */
  async settlement(reservationId: string): Promise<'held' | 'committed' | 'released' | 'unknown'> {
    this.steps.flush();
    const key = `${this.base}rsv:${reservationId}`;
    const [[, held], [, end]] = ((await this.redis.pipeline().exists(key).get(`${key}:end`).exec()) ?? []) as [Error | null, unknown][];
    if (held === 1) return 'held';
    return end === 'committed' || end === 'released' ? end : 'unknown';
  }

  /**
   * The call never happened (or its cost is accounted elsewhere): give the reservation back. Idempotent.
   * `keepEnd`: a queue run's slice, remembered as released a while (settlement()).
   */
  async release(reservationId: string, keepEnd = false): Promise<void> {
    await this.run('budgetRelease', reservationId, keepEnd ? this.closedRunTtlS : '');
    this.held.delete(reservationId);
  }

  /**
   * A queue run's end on its front: its slice committed with what its worker reported for its whole tree,
   * or released (`spent` null: no report counts), and how it ended remembered as long as a closed run's
   * records (settlement()): the worker that ran it charges the spend itself only when no report was.
   * Rejects "already settled" when the worker settled it first.
   */
  async settleSlice(reservationId: string, spent: { usage: Usage; usd: number | null } | null): Promise<void> {
    if (spent) await this.commit(reservationId, spent.usage, undefined, spent.usd, true);
    else await this.release(reservationId, true);
  }

  /** Closes the run and its still-open descendants (on any node) and releases their holds. */
  async closeRun(runId: string): Promise<RunTotals> {
    const [totals, closedNow] = (await this.run('budgetCloseRun', runId, this.closedRunTtlS)) as [Reply, string[][]];
    for (const [agent, model, xt, xu, xut, xc] of closedNow) {
      this.history.record(agent, model || undefined, { tokens: Number(xt), usd: Number(xu), unpricedTokens: Number(xut), calls: Number(xc) });
    }
    return totalsOf(runFromTotals(totals));
  }

  async runTotals(runId: string): Promise<RunTotals> {
    return totalsOf(runFromTotals((await this.run('budgetRunTotals', runId)) as Reply));
  }

  async status(q: { runId?: string; day?: string } = {}): Promise<BudgetStatus> {
    let day = this.today().day;
    if (q.day !== undefined && q.day !== day) {
      if (!/^\d{4}-\d{2}-\d{2}$/.test(q.day)) throw new Error(`budget: day must be YYYY-MM-DD, got "${q.day}"`);
      day = q.day;
    }
    const [server, agents, models, runs, openRuns] = (await this.run('budgetStatus', day, q.runId ?? '', n(this.serverLimits.tokens), n(this.serverLimits.usd))) as [
      (string | null)[],
      [string, (string | null)[]][],
      string[],
      Reply[],
      string,
    ];
    const agentScopes = agents.map(([name, f]): [string, Scope] => [name, scopeOf(`agent ${name} daily`, f)]).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const dayView = { day, server: scopeOf('server daily', server), models: modelsOf(models) };
    return budgetStatus(dayView, agentScopes, runTree(runs), Math.max(0, Number(openRuns)));
  }

  /** Redis keeps the books: nothing to sync here (durability is Redis's AOF/RDB setting). */
  async flush(): Promise<void> {}

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.steps.flush();
    if (this.ownsConnection) await this.redis.quit().catch(() => this.redis.disconnect()); // gone already: drop the socket
  }

  // ── internals ────────────────────────────────────────────────────────────────────────────────

  private assertOpen(): void {
    if (this.closed) throw new Error('budget: ledger is closed');
  }

  private reservationId(): string {
    return `rsv_${this.writer}_${++this.nextReservation}`;
  }

  /** The ledger clock's UTC day, and when its keys expire (two days after it ends). */
  private today(): { day: string; dayExpireAt: number } {
    const day = utcDay(this.now());
    return { day, dayExpireAt: Date.parse(`${day}T00:00:00Z`) / 1000 + 3 * DAY_S };
  }

  /** Runs a script (the ledger clock goes last); its error replies ("budget: …") become plain Errors with the same message. */
  private async run(name: Script, ...args: (string | number)[]): Promise<unknown> {
    if (name === 'budgetStatus') {
      this.steps.flush(); // a report sees every call made before it
      return this.call(name, args);
    }
    return this.steps.run(name, args);
  }

  /** Calls of one tick go to Redis together (redis-steps.ts). */
  private readonly steps = new StepBatcher((name, args) => this.call(name, args));

  /** One script on Redis, its errors worded for the books (a script's own "budget: …" as it is). */
  private async call(name: Script | 'budgetSteps', args: (string | number)[]): Promise<unknown> {
    const fn = (this.redis as unknown as Record<string, (...a: (string | number)[]) => Promise<unknown>>)[name];
    try {
      return await fn.call(this.redis, this.base, ...args, Math.floor(this.now().getTime() / 1000));
    } catch (err) {
      const msg = (err as Error).message ?? String(err);
      if (msg.startsWith('budget: ')) throw new Error(msg);
      // ioredis's words for "not connected now" (no offline queue: a call fails at once instead of waiting).
      const why = /Stream isn't writeable|Connection is closed/i.test(msg) ? 'not connected to Redis; retry when it is back' : msg;
      throw new Error(`budget: Redis ledger unavailable (${why})`);
    }
  }

  /** A reservation made by another node (or before a restart): what its commit needs, read back. */
  private async readBack(reservationId: string): Promise<HeldCall> {
    this.steps.flush();
    const [model, input, out] = await this.redis.hmget(`${this.base}rsv:${reservationId}`, 'model', 'in', 'out');
    if (model === null) throw new Error(`budget: commit of unknown or already settled reservation ${reservationId}`);
    return { model, inputTokens: Number(input), maxOutputTokens: Number(out), price: this.prices.lookup(model) };
  }
}
