// A RunExecutor that runs each run's loop (worker/run-loop.ts, the same loop a piscina worker runs) in
// the calling thread, with the provider adapter it is given. For embedding and for tests that drive a
// whole run — session, budget gate, tool gate, audit — without threads or processes. Messages between the
// run's loop and its session go through a macrotask each way, as they do between threads.
// Each run gets its own "thread" id: killThread(id) ends that run's loop as a dying worker would (its
// task rejects), which is what the session's hard-kill fallback and crash handling see.
import type { ProviderEndpoint } from '../contract/endpoint.js';
import type { ProviderAdapter } from '../providers/types.js';
import { RunChannel } from '../worker/run-channel.js';
import { runLoop } from '../worker/run-loop.js';
import type { ControlDown, ControlUp, RunOutcome, RunTask, WorkerMessage } from '../contract/worker-protocol.js';
import type { ReplyPort, RunExecutor, RunLine } from './run-executor.js';

interface LoopThread {
  runId: string;
  channel: RunChannel;
  fail(err: Error): void;
}

export class InProcessPool implements RunExecutor {
  private readonly lines = new Map<string, (msg: WorkerMessage, port: ReplyPort) => void>();
  private readonly channels = new Map<string, RunChannel>();
  /** Cancels that came before their run's task (a session may cancel a run still being prepared). */
  private readonly cancels = new Map<string, 'cancelled' | 'timeout'>();
  private readonly threads = new Map<number, LoopThread>();
  private nextThreadId = 1;
  private closed = false;

  constructor(private readonly adapterFor: (endpoint: ProviderEndpoint, task: RunTask) => ProviderAdapter) {}

  open(runId: string, onMessage: (msg: WorkerMessage, port: ReplyPort) => void): RunLine {
    this.lines.set(runId, onMessage);
    return {
      reply: (port, msg) => port.postMessage({ ...msg, runId } as ControlDown),
      cancel: (reason) => {
        this.cancels.set(runId, reason);
        const channel = this.channels.get(runId);
        if (channel) setImmediate(() => channel.receive({ kind: 'cancel', reason, runId }));
      },
      close: () => {
        this.lines.delete(runId);
        this.cancels.delete(runId);
      },
    };
  }

  /** No queue and no thread limit: a run starts as soon as it is dispatched. */
  assertCapacity(): void {}

  run(task: RunTask): Promise<RunOutcome> {
    if (this.closed) return Promise.reject(new Error('the in-process pool is closed'));
    const threadId = this.nextThreadId++;
    const runId = task.runId;
    const channel = new RunChannel(runId, threadId, (msg: ControlUp) => setImmediate(() => this.lines.get(msg.runId)?.(msg, port)), () => {
      if (this.channels.get(runId) === channel) this.channels.delete(runId);
    });
    const port: ReplyPort = { postMessage: (msg) => setImmediate(() => channel.receive(msg as ControlDown)) };
    this.channels.set(runId, channel);
    const early = this.cancels.get(runId);
    if (early) channel.receive({ kind: 'cancel', reason: early, runId });
    return new Promise<RunOutcome>((resolve, reject) => {
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        this.threads.delete(threadId);
        // Like a terminated worker: the loop stops here; whatever it still awaits is abandoned.
        channel.abort.abort('terminated');
        channel.release();
        reject(err);
      };
      this.threads.set(threadId, { runId, channel, fail });
      runLoop(task, channel, (endpoint) => this.adapterFor(endpoint, task)).then(
        (outcome) => {
          if (settled) return;
          settled = true;
          this.threads.delete(threadId);
          resolve(outcome);
        },
        (err: Error) => fail(err),
      );
    });
  }

  killThread(threadId: number): boolean {
    const thread = this.threads.get(threadId);
    if (!thread) return false;
    thread.fail(new Error('Terminating worker thread'));
    return true;
  }

  /** Ends a run's loop as a crashing worker thread would (a throw outside the loop, an OOM, process.exit). */
  crash(runId: string, err: Error): boolean {
    const thread = [...this.threads.values()].find((t) => t.runId === runId);
    thread?.fail(err);
    return thread !== undefined;
  }

  /** Nothing to warm: the adapter is given and nothing loads per thread. */
  warm(): void {}

  async close(): Promise<void> {
    this.closed = true;
    for (const t of [...this.threads.values()]) t.fail(new Error('the in-process pool was closed'));
  }
}
