// Per-session run slots for the HTTP transport. Every session (a 2025-era Streamable HTTP session, a
// legacy SSE connection, or one 2026-07-28 request) starts its runs through a SlottedLauncher, which
// counts the runs it has going. The HTTP layer answers 429 to a further run-starting call once a
// session is at its limit; calls that slipped in at the same moment, and the tasks of one
// delegate_parallel batch, wait for a free slot instead of exceeding it. Background runs
// (`delegate` with background: true) cannot wait: at the limit they fail at once with the reason.
import type { RunResult } from '../contract/run.js';
import { emptyUsage } from '../contract/usage-sum.js';
import type { RunLauncher } from '../orchestrator/launcher.js';
import type { RunRequest } from '../orchestrator/orchestrator.js';
import type { RunRecord } from '../orchestrator/runs.js';
import { randomUUID } from 'node:crypto';

export class RunSlots {
  private live = new Map<string, number>();
  private waiting = new Map<string, (() => void)[]>();

  constructor(readonly maxPerSession: number) {}

  /** Runs the session `owner` has going now. */
  count(owner: string): number {
    return this.live.get(owner) ?? 0;
  }

  /** Sessions with at least one run going, and the total of their runs. */
  totals(): { sessions: number; runs: number } {
    let runs = 0;
    for (const n of this.live.values()) runs += n;
    return { sessions: this.live.size, runs };
  }

  /** Takes a slot (SlottedLauncher checks the limit first). */
  take(owner: string): void {
    this.live.set(owner, this.count(owner) + 1);
  }

  /** Gives a slot back; the session's longest waiter (if any) takes it. */
  give(owner: string): void {
    const n = this.count(owner) - 1;
    if (n > 0) this.live.set(owner, n);
    else this.live.delete(owner);
    const q = this.waiting.get(owner);
    const next = q?.shift();
    if (q && !q.length) this.waiting.delete(owner);
    next?.();
  }

  /** Resolves once `owner` has a free slot (taken for the caller), or at once when `signal` aborts (not taken). */
  acquire(owner: string, signal?: AbortSignal): Promise<boolean> {
    if (this.count(owner) < this.maxPerSession) {
      this.take(owner);
      return Promise.resolve(true);
    }
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const q = this.waiting.get(owner) ?? [];
      const grant = () => {
        signal?.removeEventListener('abort', onAbort);
        this.take(owner);
        resolve(true);
      };
      const onAbort = () => {
        const i = q.indexOf(grant);
        if (i >= 0) q.splice(i, 1);
        resolve(false);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      q.push(grant);
      this.waiting.set(owner, q);
    });
  }
}

/** One session's launcher: run() and start() count against the session's slots in `slots`. */
export class SlottedLauncher implements RunLauncher {
  constructor(
    private readonly slots: RunSlots,
    private readonly inner: RunLauncher,
    private readonly owner: string,
  ) {}

  /** Waits for a free slot (a run of a delegate_parallel batch, or a call that slipped past the 429 check). */
  async run(req: RunRequest): Promise<RunResult> {
    const { slots, owner } = this;
    if (slots.count(owner) >= slots.maxPerSession) req.onProgress?.(`waiting: this session already has ${slots.maxPerSession} runs going`);
    const took = await slots.acquire(owner, req.signal);
    // Cancelled while waiting: the orchestrator records it as a run cancelled before it began.
    if (!took) return this.inner.run(req);
    try {
      return await this.inner.run(req);
    } finally {
      slots.give(owner);
    }
  }

  /** A background run cannot wait: at the limit it is refused at once, with the reason. */
  start(req: RunRequest): RunRecord {
    const { slots, owner } = this;
    if (slots.count(owner) >= slots.maxPerSession) return refusedRecord(req, owner, slots.maxPerSession);
    slots.take(owner);
    const rec = this.inner.start(req);
    void rec.done.finally(() => slots.give(owner));
    return rec;
  }
}

/** A run that never started because its session is at its limit (not registered: nothing to poll). */
function refusedRecord(req: RunRequest, owner: string, max: number): RunRecord {
  const now = Date.now();
  const result: RunResult = {
    run_id: `run_${randomUUID()}`,
    agent: req.agent,
    status: 'error',
    output: '',
    turns: 0,
    usage: emptyUsage(),
    model: '',
    duration_ms: 0,
    cost_usd: null,
    error: `this session already has ${max} runs going (delegate.http.maxRunsPerSession); wait for one to end or cancel one with run_cancel`,
  };
  return {
    runId: result.run_id,
    agent: req.agent,
    model: '',
    owner,
    status: 'error',
    startedAt: now,
    endedAt: now,
    lastProgress: 'refused',
    turn: 0,
    usage: emptyUsage(),
    result,
    done: Promise.resolve(result),
    cancel: () => {},
  };
}
