// One run's side of its conversation with the orchestrator: requests and replies, one-way events, the
// cancel command. The transport is given: a worker thread sends on its control channel (agent-loop.ts);
// the in-process pool (orchestrator/in-process-pool.ts) hands messages straight to the run's session.
import type { ControlDown, ControlUp, MainReply, ModelCallEnd, WorkerEvent, WorkerRequest } from '../contract/worker-protocol.js';

export type DistributiveOmit<T, K extends keyof any> = T extends unknown ? Omit<T, K> : never;

export class RunChannel {
  private nextId = 1;
  private pending = new Map<number, (reply: MainReply) => void>();
  /** Model-call reports waiting for the next message to the main thread (see ModelCallEnd). */
  private ended: ModelCallEnd[] = [];
  readonly abort = new AbortController();
  cancelReason: 'cancelled' | 'timeout' | undefined;

  constructor(
    readonly runId: string,
    /** The thread the run's loop runs on (reported with every model call: the hard-kill fallback needs it). */
    readonly threadId: number,
    private readonly post: (msg: ControlUp) => void,
    /** Called once the run is over (its host forgets it: late replies and cancels are dropped). */
    private readonly onRelease: () => void = () => {},
  ) {}

  receive(msg: ControlDown): void {
    if (msg.kind === 'cancel') {
      this.cancelReason ??= msg.reason;
      this.abort.abort(msg.reason);
      // Unblock anything waiting on the main thread; it will not answer a cancelled run.
      for (const [id, resolve] of this.pending) resolve({ kind: 'reply', id, ok: false, reason: msg.reason });
      this.pending.clear();
    } else {
      this.pending.get(msg.id)?.(msg);
      this.pending.delete(msg.id);
    }
  }

  private send(msg: DistributiveOmit<ControlUp, 'runId'>): void {
    this.post({ ...msg, runId: this.runId } as ControlUp);
  }

  ask(req: DistributiveOmit<WorkerRequest, 'id'>): Promise<MainReply> {
    if (this.abort.signal.aborted) return Promise.resolve({ kind: 'reply', id: 0, ok: false, reason: this.cancelReason ?? 'cancelled' });
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.send((this.ended.length ? { ...req, id, ended: this.takeEnded() } : { ...req, id }) as WorkerRequest);
    });
  }

  emit(event: DistributiveOmit<WorkerEvent, 'kind'>): void {
    this.send({ kind: 'event', ...event } as WorkerEvent);
  }

  /** Queued, not posted: it goes with the next request or the run's outcome (one wake-up fewer each). */
  modelCallEnded(end: Omit<ModelCallEnd, 'threadId'>): void {
    this.ended.push({ threadId: this.threadId, ...end });
  }

  takeEnded(): ModelCallEnd[] {
    const e = this.ended;
    this.ended = [];
    return e;
  }

  /** The run is over: late replies and cancels for it are dropped. */
  release(): void {
    this.onRelease();
  }
}
