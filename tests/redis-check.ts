// Redis for the tests and the queue bench: where it is (REDIS_URL), whether it answers, the visible skip
// (or, under CI=true, the failure) when it does not, and deleting a test's key prefix afterwards.
import { Redis } from 'ioredis';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A connected admin client, or undefined when Redis does not answer a ping. */
export async function connectAdmin(): Promise<Redis | undefined> {
  const r = new Redis(REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, connectTimeout: 1000, retryStrategy: () => null });
  r.on('error', () => {}); // the ping below reports it
  try {
    await r.connect();
    if ((await r.ping()) === 'PONG') return r;
  } catch {
    // not reachable: answered by the undefined below
  }
  r.disconnect();
  return undefined;
}

/** Whether Redis answers a ping. */
export async function redisUp(): Promise<boolean> {
  const r = await connectAdmin();
  r?.disconnect();
  return r !== undefined;
}

/** Redis is missing: fails under CI=true (CI never silently skips), otherwise prints the skip and why. */
export function reportMissingRedis(what: string): void {
  const msg = `Redis is not reachable at ${REDIS_URL}: ${what} skipped (start redis-server or set REDIS_URL)`;
  if (process.env.CI === 'true') throw new Error(`${msg}; CI=true requires them`);
  process.stderr.write(`SKIP ${msg}\n`);
}

/** Deletes every key under `prefix:`; returns how many. */
export async function dropPrefix(admin: Redis, prefix: string): Promise<number> {
  let n = 0;
  let cursor = '0';
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
    cursor = next;
    if (keys.length) n += await admin.del(...keys);
  } while (cursor !== '0');
  return n;
}
