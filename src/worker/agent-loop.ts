// Piscina task entry: runs one agent's loop (run-loop.ts) on this worker thread. Many runs share a
// worker (they are I/O bound); they talk to the orchestrator over this thread's one control channel,
// tagged with their run id. This file is the worker entry, so it stays thin: adapters and the tokenizer
// load once per worker, not per run.
import { MessageChannel, parentPort, threadId } from 'node:worker_threads';
import { createAdapter } from '../providers/index.js';
import { preloadFetch, warmUp } from './warm.js';
import { RunChannel } from './run-channel.js';
import { runLoop } from './run-loop.js';
import {
  CONTROL_ANNOUNCE,
  WORKER_WARNING,
  type WorkerWarning,
  type ControlAnnounce,
  type ControlDown,
  type ControlUp,
  type RunOutcome,
  type RunTask,
  type WarmCommand,
} from '../contract/worker-protocol.js';

// Provider SDKs warn with console.warn on every request that names a deprecated model. Those go to
// the main thread's logger (see WorkerWarning), once per worker here and once per process there.
const seenWarnings = new Set<string>();
console.warn = (...args: unknown[]) => {
  const message = args.map(String).join(' ');
  if (seenWarnings.has(message)) return;
  if (seenWarnings.size < 1000) seenWarnings.add(message);
  parentPort?.postMessage({ kind: WORKER_WARNING, message } satisfies WorkerWarning);
};

// This thread's control channel, announced to the main thread once (see ControlAnnounce).
const { port1: control, port2: controlPeer } = new MessageChannel();
parentPort?.postMessage({ kind: CONTROL_ANNOUNCE, threadId, port: controlPeer } satisfies ControlAnnounce, [controlPeer]);
control.unref(); // piscina decides when this thread ends, not this port
/** The runs of this thread, by run id. */
const runs = new Map<string, RunChannel>();
/**
 * Cancels that arrived before their run: a cancel goes to every worker and may overtake the task on
 * piscina's own channel. Kept a minute, then forgotten (the run went to another thread).
 */
const earlyCancels = new Map<string, { reason: 'cancelled' | 'timeout'; at: number }>();
// Node loads its fetch (undici) on first use, ~40 ms of CPU that the warm-up would otherwise pay after the
// server has started. Every wire API needs its classes (Headers, Response): load it now, while the main thread is still starting.
setImmediate(preloadFetch);
let warmed = false;
control.on('message', (msg: ControlDown | WarmCommand) => {
  if (msg.kind === 'warm') {
    // Once per thread, in the background: a task arriving meanwhile just interleaves with it.
    if (!warmed) {
      warmed = true;
      warmUp(msg.hint, () => runs.size > 0).catch((err: Error) => {
        // Only a missed speed-up: the first real call pays what the warm-up could not do.
        process.stderr.write(`delegate-mcp worker warm-up failed: ${err.message}\n`);
      });
    }
    return;
  }
  const run = runs.get(msg.runId);
  if (run) return run.receive(msg);
  if (msg.kind !== 'cancel') return; // a reply for a run that is over
  const now = Date.now();
  for (const [id, c] of earlyCancels) if (now - c.at > 60_000) earlyCancels.delete(id);
  earlyCancels.set(msg.runId, { reason: msg.reason, at: now });
});

export default async function runAgent(task: RunTask): Promise<RunOutcome> {
  const channel = new RunChannel(task.runId, threadId, (msg: ControlUp) => control.postMessage(msg), () => runs.delete(task.runId));
  runs.set(task.runId, channel);
  const early = earlyCancels.get(task.runId);
  if (early) {
    earlyCancels.delete(task.runId);
    channel.receive({ kind: 'cancel', reason: early.reason, runId: task.runId });
  }
  return runLoop(task, channel, createAdapter);
}
