// The piscina pool's construction, and its early start: `serve` starts the threads from the CLI's
// entry (src/main.ts) before the rest of the CLI has loaded, so that a worker loads its bundle (the
// provider SDKs) while the main thread loads its own, instead of after it. This module stays small
// (piscina and paths only): it runs before everything else.
import { Piscina } from 'piscina';
import { WORKER_ENTRY } from '../paths.js';

/** delegate.pool as the config resolves it (see config.ts). */
export interface PoolOptions {
  minThreads: number;
  maxThreads: number;
  concurrentTasksPerWorker: number;
  maxQueue: number;
  maxOldGenerationSizeMb: number;
}

/**
 * config.ts's defaults for delegate.pool (a test ties the two): the early start cannot read the
 * config yet, so it starts the pool a config without a `pool` section gets.
 */
export const DEFAULT_POOL_OPTIONS: Readonly<PoolOptions> = { minThreads: 1, maxThreads: 2, concurrentTasksPerWorker: 64, maxQueue: 256, maxOldGenerationSizeMb: 512 };

/** A started pool, and its workers' messages (`onMessage` gets those sent before it was set too). */
export interface StartedPool {
  pool: Piscina;
  onMessage(listener: (msg: unknown) => void): void;
}

export function startPool(opts: PoolOptions): StartedPool {
  const pool = new Piscina({
    filename: WORKER_ENTRY,
    minThreads: Math.min(opts.minThreads, opts.maxThreads),
    maxThreads: opts.maxThreads,
    concurrentTasksPerWorker: opts.concurrentTasksPerWorker,
    maxQueue: opts.maxQueue,
    idleTimeout: 60_000,
    // piscina's default ('sync') parks an idle worker in Atomics.wait: its event loop stops, so it
    // never sees the model server close idle keep-alive sockets, and the next fan-out reuses dead
    // ones and waits out the SDK's retry backoff (measured: 32 calls after 6.5 s idle took 1.46 s
    // instead of 1.07 s). With 'disabled' the loop keeps turning; per call it measured no slower.
    atomics: 'disabled',
    // Nothing reads piscina's run/wait-time histograms; recording costs every task a few samples.
    recordTiming: false,
    resourceLimits: { maxOldGenerationSizeMb: opts.maxOldGenerationSizeMb },
  });
  // A worker that dies is replaced by piscina; its tasks reject individually. Nothing to do here but
  // keep the event from becoming an unhandled 'error'.
  pool.on('error', () => {});
  // A worker announces itself once it has loaded, which an early pool may do before anyone listens.
  let early: unknown[] | undefined = [];
  let listener: ((msg: unknown) => void) | undefined;
  pool.on('message', (msg: unknown) => (listener ? listener(msg) : early?.push(msg)));
  return {
    pool,
    onMessage(l) {
      listener = l;
      const held = early ?? [];
      early = undefined;
      for (const msg of held) l(msg);
    },
  };
}

let earlyPool: { opts: PoolOptions; started: StartedPool } | undefined;

/** Starts the default pool now, for the RunPool `serve` creates once its config is read. */
export function startPoolEarly(): void {
  earlyPool ??= { opts: { ...DEFAULT_POOL_OPTIONS }, started: startPool(DEFAULT_POOL_OPTIONS) };
}

/** The early pool when it was started with these options; one started with others is closed. */
export function takeEarlyPool(opts: PoolOptions): StartedPool | undefined {
  const early = earlyPool;
  earlyPool = undefined;
  if (!early) return undefined;
  const keys = Object.keys(DEFAULT_POOL_OPTIONS) as (keyof PoolOptions)[];
  if (keys.every((k) => early.opts[k] === opts[k])) return early.started;
  // Its threads never ran anything: closing them cannot lose work.
  void early.started.pool.close({ force: true });
  return undefined;
}
