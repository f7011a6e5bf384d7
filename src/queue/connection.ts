// Queue mode's link to Redis: where it is (flag, env, mcp.json), the key prefix, this node's id, and a
// connection that fails at start with a message naming the URL. Loaded only in queue mode: BullMQ and
// ioredis never load in the embedded default (its cold start does not change).
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { ResolvedConfig } from '../config/config.js';
import { ConfigError } from '../config/config-error.js';
import { safeRedisUrl } from '../net/redis-url.js';
import { withTimeout } from '../time/with-timeout.js';
import { log, throttledWarn } from '../log.js';
import { loadQueueKey, type QueueKey } from './signing.js';

export const QUEUE_URL_ENV = 'DELEGATE_MCP_QUEUE_URL';
export const QUEUE_PREFIX_ENV = 'DELEGATE_MCP_QUEUE_PREFIX';

/** The one BullMQ queue every run goes through. */
export const RUN_QUEUE = 'runs';

export interface QueueSettings {
  url: string;
  prefix: string;
  maxWaiting: number;
  /** BullMQ lock duration: a worker that stops renewing is found stalled after about this long. */
  lockMs: number;
  /** This process's name in audit events, job records and `queue status`. */
  nodeId: string;
  /** The key every message on the queue is signed with (signing.ts). */
  key: QueueKey;
  /** Where this process's connections, queues and workers report trouble with Redis (one line per outage). */
  link: RedisLink;
}

/** The queue URL from --queue, else DELEGATE_MCP_QUEUE_URL, else delegate.queue.url; undefined: embedded mode. */
export function queueUrl(cfg: ResolvedConfig, flag?: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const url = flag ?? env[QUEUE_URL_ENV] ?? cfg.delegate.queue.url;
  if (url === undefined || url === '') return undefined;
  if (!/^rediss?:\/\/[^\s/]+(\/\d{1,2})?$/.test(url)) {
    const from = flag !== undefined ? '--queue' : env[QUEUE_URL_ENV] !== undefined ? QUEUE_URL_ENV : 'delegate.queue.url in mcp.json';
    throw new ConfigError(`${from}: expected redis://HOST:PORT/DB (or rediss://), got ${JSON.stringify(url)}`);
  }
  return url;
}

/** The key prefix: DELEGATE_MCP_QUEUE_PREFIX, else delegate.queue.prefix. */
export function queuePrefix(cfg: ResolvedConfig, env: NodeJS.ProcessEnv = process.env): string {
  const prefix = env[QUEUE_PREFIX_ENV] ?? cfg.delegate.queue.prefix;
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(prefix)) throw new ConfigError(`${QUEUE_PREFIX_ENV}: letters, digits, _ . : - (1-64), got ${JSON.stringify(prefix)}`);
  return prefix;
}

export function queueSettings(cfg: ResolvedConfig, url: string, role: 'front' | 'worker', env: NodeJS.ProcessEnv = process.env): QueueSettings {
  return {
    url,
    prefix: queuePrefix(cfg, env),
    maxWaiting: cfg.delegate.queue.maxWaiting,
    lockMs: cfg.delegate.queue.lostAfterS * 1000,
    nodeId: `${role}-${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`,
    key: loadQueueKey(cfg, env),
    link: new RedisLink(url, `queue ${role}`),
  };
}

/** An error of the link to Redis itself (down, refused, cut), as ioredis and BullMQ report it. */
function linkError(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  return /^E(CONNREFUSED|CONNRESET|TIMEDOUT|PIPE|HOSTUNREACH|NETUNREACH|NOTFOUND|AI_AGAIN)$/.test(code) || /Connection is closed|Stream isn't writeable|Reached the max retries per request/i.test(err.message);
}

/**
 * A node's word on its link to Redis. Each of its connections (several: commands, blocking takes,
 * subscriptions) and BullMQ's queues and workers report errors here: Redis lost is said once, with the
 * reason, and its return once, instead of a line per connection and reconnect attempt (tens a second);
 * and no connection is left without an 'error' listener (ioredis prints each unheard error with its stack).
 */
export class RedisLink {
  private lostAt?: number;
  private readonly otherError = throttledWarn();

  constructor(
    private readonly url: string,
    private readonly who: string,
  ) {}

  /** `conn`, reporting here (a connection made with duplicate() has no listener of its own). */
  watch<T extends Redis>(conn: T): T {
    conn.on('error', this.error);
    conn.on('ready', this.ready);
    return conn;
  }

  /** An error of a connection, queue, worker or event reader of this node. */
  readonly error = (err: Error): void => {
    if (!linkError(err)) return this.otherError(`${this.who}: ${err.message}`);
    if (this.lostAt !== undefined) return;
    this.lostAt = Date.now();
    log.warn(`${this.who}: lost Redis at ${safeRedisUrl(this.url)} (${err.message}); reconnecting (new calls fail fast meanwhile; running runs go on and report when it is back)`);
  };

  private readonly ready = (): void => {
    if (this.lostAt === undefined) return;
    log.warn(`${this.who}: Redis at ${safeRedisUrl(this.url)} is back after ${((Date.now() - this.lostAt) / 1000).toFixed(1)} s`);
    this.lostAt = undefined;
  };
}


type Redis = import('ioredis').Redis;

/**
 * Wait before each reconnect attempt: 50 ms more each time, at most 500 ms. ioredis's own caps at 2 s,
 * so a node (and its runs' reports) would find Redis back up to 2 s after it is. Duplicates inherit it.
 */
const reconnectDelay = (attempt: number): number => Math.min(attempt * 50, 500);

/** What to check, by what went wrong: the credentials, TLS on both ends, or the server and the URL. */
function connectHint(url: string, why: string): string {
  if (/WRONGPASS|NOAUTH|NOPERM|invalid password|invalid username/i.test(why)) return 'check the user and password in the URL: redis://USER:PASSWORD@HOST:PORT/DB';
  if (url.startsWith('rediss://') && /no answer/.test(why)) return 'rediss:// speaks TLS: does this server have TLS on? Without it, use redis://';
  return `is redis-server running? set --queue, ${QUEUE_URL_ENV} or delegate.queue.url`;
}

/**
 * A connection for BullMQ (maxRetriesPerRequest null, as BullMQ requires for blocking commands) that is
 * known to answer: a Redis that is down or refuses us stops the start with one line naming the URL.
 */
export async function connectRedis(url: string, purpose: string): Promise<Redis> {
  const { Redis } = await import('ioredis');
  const conn = new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, lazyConnect: true, connectionName: `delegate-mcp ${purpose}`, retryStrategy: reconnectDelay });
  // ioredis reports connection errors as events; the start-up check below reports the first one.
  let lastError: Error | undefined;
  conn.on('error', (err: Error) => (lastError = err));
  try {
    await withTimeout(conn.connect(), 5000, 'no answer within 5 s');
    await withTimeout(conn.ping(), 5000, 'no answer to PING within 5 s');
  } catch (err) {
    conn.disconnect();
    const why = (lastError ?? (err as Error)).message;
    throw new ConfigError(`queue: cannot reach Redis at ${safeRedisUrl(url)}: ${why} (${connectHint(url, why)})`);
  }
  await checkDatabase(conn, url);
  return conn;
}

/**
 * The URL's database exists. ioredis reports a failed SELECT as an event and goes on in database 0, so
 * `redis://host/20` on a server with 16 would silently share database 0 with whatever else is there.
 */
async function checkDatabase(conn: Redis, url: string): Promise<void> {
  const db = /\/(\d{1,2})$/.exec(url)?.[1];
  if (db === undefined) return;
  try {
    await withTimeout(conn.select(Number(db)), 5000, 'no answer to SELECT within 5 s');
  } catch (err) {
    conn.disconnect();
    throw new ConfigError(`queue: Redis at ${safeRedisUrl(url)} has no database ${db} (${(err as Error).message}); use one it has (0 to its \`databases\` setting − 1, 0–15 by default)`);
  }
}

/** What a Redis server keeps across its own restart: RDB snapshots (`save`), the append-only file, or neither. */
export interface RedisPersistence {
  snapshots: boolean;
  appendOnly: boolean;
}

/**
 * Whether Redis keeps its data across a restart. undefined: not known (CONFIG refused, as on managed
 * services, which keep data their own way).
 */
export async function redisPersistence(conn: Redis): Promise<RedisPersistence | undefined> {
  try {
    // One setting per CONFIG GET: Redis before 7 takes one pattern at a time.
    const replies = (await withTimeout(conn.pipeline().config('GET', 'save').config('GET', 'appendonly').exec(), 5000, 'no answer within 5 s')) ?? [];
    const value = (i: number) => {
      const [err, pair] = replies[i] ?? [new Error('no reply')];
      if (err || !Array.isArray(pair) || pair.length < 2) throw err ?? new Error('no such setting');
      return String(pair[1]);
    };
    return { snapshots: value(0).trim() !== '', appendOnly: value(1) === 'yes' };
  } catch {
    return undefined; // refused or renamed: nothing to say
  }
}

/** What to say when Redis keeps nothing on disk (undefined: it does, or it is not known). */
export function persistenceWarning(url: string, p: RedisPersistence | undefined): string | undefined {
  if (!p || p.snapshots || p.appendOnly) return undefined;
  return `Redis at ${safeRedisUrl(url)} keeps nothing on disk (save "" and appendonly no): if it restarts, the queued and running runs are lost (their callers are told) and the shared budget books start again from 0 (the day's spend, the daily caps' use); run it with appendonly yes, or a save schedule, to keep them`;
}

/** Warns once at a node's start when Redis keeps nothing on disk. */
export async function warnIfVolatile(conn: Redis, url: string): Promise<void> {
  const warning = persistenceWarning(url, await redisPersistence(conn));
  if (warning) log.warn(`queue: ${warning}`);
}

/** The shared books' connection: fails a call at once when Redis is away (no offline queue), as the ledger's own. */
export async function connectBooks(url: string): Promise<import('ioredis').Redis> {
  const { Redis } = await import('ioredis');
  const books = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 5000,
    connectionName: 'delegate-mcp budget',
    retryStrategy: reconnectDelay,
    // Not auto-pipelined: the ledger batches a tick's calls itself (redis-steps.ts), and a burst's first
    // batch must reach Redis at once, not when the tick that is still starting the rest ends.
  });
  let lastError: Error | undefined;
  books.on('error', (err: Error) => (lastError = err)); // reported by the call that fails
  try {
    await books.connect();
    await books.ping();
  } catch (err) {
    books.disconnect();
    throw new ConfigError(`queue: cannot reach Redis at ${safeRedisUrl(url)} for the shared budget books: ${(lastError ?? (err as Error)).message}`);
  }
  await checkDatabase(books, url);
  return books;
}
