// Delegation in queue mode: an `agent__<name>` call of a running agent becomes a job, carrying the call
// chain (depth, ancestry for the cycle guard, budget slice, narrowed rules) that the worker taking it
// enforces on arrival, exactly as a re-entry child enforces `_meta`. The answer has the shape the
// orchestrator expects from its re-entry hub: an MCP tool result with the child's run id, usage and cost
// in `_meta`, which the parent commits to the slice it reserved. No child process is needed.
import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { CallToolResult } from '@modelcontextprotocol/client';
import { RESULT_META_KEY, type CallChain } from '../orchestrator/chain.js';
import type { ReentryHub } from '../orchestrator/delegation.js';
import type { JobOutcome, JobWatch } from './job-watch.js';
import { isWorkerLost, keys, workerLostMessage, type RunJob } from './jobs.js';
import { cancelMessage } from './signing.js';
import type { QueueSettings } from './connection.js';

export class QueueReentryHub implements ReentryHub {
  private watch?: Promise<JobWatch>;
  constructor(
    private readonly queue: Queue,
    private readonly openWatch: () => Promise<JobWatch>,
    private readonly conn: Redis,
    private readonly settings: QueueSettings,
    private readonly keepS: number,
  ) {}

  async call(
    agent: string,
    args: Record<string, unknown>,
    chain: CallChain,
    opts: { signal: AbortSignal; onProgress?: (message: string) => void; timeoutMs: number },
  ): Promise<CallToolResult> {
    const runId = `run_${randomUUID()}`;
    const { budget, ...input } = args;
    const caps = budget && typeof budget === 'object' ? (budget as RunJob['budget']) : undefined;
    const job: RunJob = {
      v: 1,
      runId,
      agent,
      input,
      owner: `agent:${chain.parent_run_id}`,
      ...(caps && { budget: caps }),
      caller: `agent:${chain.ancestry[chain.ancestry.length - 1].agent}`,
      chain,
      progress: Boolean(opts.onProgress),
      from: this.settings.nodeId,
      listens: true,
    };
    // A failed open is tried again by the next delegation.
    this.watch ??= this.openWatch().catch((err: Error) => {
      this.watch = undefined;
      throw err;
    });
    const waiting = (await this.watch).wait(runId, (p) => opts.onProgress?.(p.line));
    let added: Promise<unknown> | undefined;
    let endedBeforeStart!: (o: JobOutcome) => void;
    const notStarted = new Promise<JobOutcome>((resolve) => (endedBeforeStart = resolve));
    // As a front's: still waiting, the job is taken off the queue; taken, every worker is told (the one
    // holding it aborts the run, or remembers the cancel if its run has not started yet).
    const cancel = (reason: 'cancelled' | 'timeout') =>
      void (async () => {
        await added?.catch(() => {}); // not added: the delegation failed already
        await this.conn.set(keys.cancelled(this.settings.prefix, runId), reason, 'EX', this.keepS);
        if (added && (await this.queue.remove(runId)) === 1) endedBeforeStart({ kind: 'failed', reason: `run ${reason === 'timeout' ? 'deadline reached' : 'cancelled'} before a worker took it` });
        else await this.conn.publish(keys.cancelChannel(this.settings.prefix), cancelMessage(this.settings, runId, reason));
      })().catch(() => {}); // Redis away: the child's own deadline ends it
    const onAbort = () => cancel('cancelled');
    opts.signal.addEventListener('abort', onAbort, { once: true });
    const deadline = setTimeout(() => cancel('timeout'), opts.timeoutMs);
    try {
      // Signed by this worker (signing.ts); no worker starts it after the delegation's deadline.
      const data = this.settings.key.seal('job', this.settings.prefix, runId, job, Date.now() + opts.timeoutMs);
      added = this.queue.add(agent, data, { jobId: runId, removeOnComplete: { age: this.keepS }, removeOnFail: { age: this.keepS } });
      await added;
      const out = await Promise.race([waiting.done, notStarted]);
      // Thrown: the parent then releases the slice it reserved (nothing is known to be spent).
      if (out.kind === 'failed') throw new Error(isWorkerLost(out.reason) ? workerLostMessage(out.reason, false) : out.reason);
      const r = out.value.result;
      const text = r.status === 'ok' ? r.output : `run ${r.run_id} (${r.agent}) ${r.status}: ${r.error ?? 'no answer'}${r.output ? `\n\nLast partial answer:\n${r.output}` : ''}`;
      return {
        content: [{ type: 'text', text }],
        ...(r.status !== 'ok' && { isError: true }),
        _meta: { [RESULT_META_KEY]: { run_id: r.run_id, status: r.status, usage: r.usage, tree_usage: out.value.treeUsage, cost_usd: r.cost_usd } },
      };
    } finally {
      waiting.stop();
      clearTimeout(deadline);
      opts.signal.removeEventListener('abort', onAbort);
    }
  }

  async close(): Promise<void> {
    // The queue belongs to the worker node, which closes it and (closeWatch) the watch of its delegations.
  }

  /** Lets go of what a delegation's watch opened. */
  async closeWatch(): Promise<void> {
    const watch = await this.watch?.catch(() => undefined); // never opened (Redis was down): nothing to close
    await watch?.close();
  }
}
