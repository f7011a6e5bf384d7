// The Redis ledger's calls of one tick, sent together: a burst of runs opening, reserving and settling
// (a delegate_parallel batch, the results one read of a front's event stream brings) goes to Redis in
// order as budgetSteps scripts (redis-scripts.ts) — one command and one reply per MAX_STEPS calls
// instead of one each. A call alone in its tick goes as its own script.
import { STEP_ERROR, type StepScript } from './redis-scripts.js';

/** At most this many calls in one budgetSteps script (Redis runs a script whole: others wait meanwhile). */
const MAX_STEPS = 64;
/**
 * A tick that makes this many calls sends them without waiting for its end: a front starting a large
 * batch (128 runs take it ~30 ms) has Redis answer the first runs' steps meanwhile, so their jobs go out
 * while it is still starting the rest, instead of all of them after the last one.
 */
const SEND_EARLY_AT = 32;

type Args = (string | number)[];
/** Sends one script (a step's own, or budgetSteps with the steps' arguments) and answers its reply. */
export type SendScript = (name: StepScript | 'budgetSteps', args: Args) => Promise<unknown>;

interface PendingStep {
  name: StepScript;
  args: Args;
  resolve: (v: unknown) => void;
  reject: (err: Error) => void;
}

export class StepBatcher {
  private pending: PendingStep[] = [];

  constructor(private readonly send: SendScript) {}

  /** The call's reply, once the tick's calls went to Redis. */
  run(name: StepScript, args: Args): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const n = this.pending.push({ name, args, resolve, reject });
      if (n === 1) setImmediate(() => this.flush());
      else if (n >= SEND_EARLY_AT) this.flush();
    });
  }

  /** Sends what waits now: a command sent outside the steps then goes after them (one connection keeps the order). */
  flush(): void {
    const all = this.pending;
    if (!all.length) return; // sent already
    this.pending = [];
    for (let i = 0; i < all.length; i += MAX_STEPS) {
      const batch = all.slice(i, i + MAX_STEPS);
      if (batch.length === 1) {
        const [s] = batch;
        this.send(s.name, s.args).then(s.resolve, s.reject);
        continue;
      }
      this.send('budgetSteps', batch.flatMap((s) => [s.name, s.args.length, ...s.args])).then(
        (replies) =>
          batch.forEach((s, k) => {
            const r = (replies as unknown[])[k];
            if (Array.isArray(r) && r[0] === STEP_ERROR) s.reject(new Error(String(r[1])));
            else s.resolve(r);
          }),
        (err: Error) => batch.forEach((s) => s.reject(err)),
      );
    }
  }
}
