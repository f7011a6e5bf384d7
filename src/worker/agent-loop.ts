// Piscina task entry: runs one agent's loop of model calls and tool calls. Many runs share a worker
// (they are I/O bound); they talk to the orchestrator over this thread's one control channel, tagged
// with their run id. This file is the worker entry, so it stays thin: adapters and the tokenizer load
// once per worker, not per run.
import { MessageChannel, parentPort, threadId } from 'node:worker_threads';
import { createAdapter } from '../providers/index.js';
import { ProviderError } from '../providers/types.js';
import type { Message } from '../contract/message.js';
import type { ToolCall } from '../contract/tool.js';
import type { Usage } from '../contract/usage.js';
import { addUsage, emptyUsage } from '../contract/usage-sum.js';
import { estimateInputTokens, loadTokenizer } from './tokens.js';
import { warmUp } from './warm.js';
import { answerProblem, strictCompatible, withoutDialect } from '../agents/json-schema.js';
import {
  CONTROL_ANNOUNCE,
  WORKER_WARNING,
  type WorkerWarning,
  type ControlAnnounce,
  type ControlDown,
  type ControlUp,
  type MainReply,
  type ModelCallEnd,
  type RunOutcome,
  type RunTask,
  type WarmCommand,
  type WorkerEvent,
  type WorkerRequest,
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

/** One run's side of the control channel: requests and replies, one-way events, the cancel command. */
class RunChannel {
  private nextId = 1;
  private pending = new Map<number, (reply: MainReply) => void>();
  /** Model-call reports waiting for the next message to the main thread (see ModelCallEnd). */
  private ended: ModelCallEnd[] = [];
  readonly abort = new AbortController();
  cancelReason: 'cancelled' | 'timeout' | undefined;

  constructor(private runId: string) {
    runs.set(runId, this);
    const early = earlyCancels.get(runId);
    if (early) {
      earlyCancels.delete(runId);
      this.receive({ kind: 'cancel', reason: early.reason, runId });
    }
  }

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
    control.postMessage({ ...msg, runId: this.runId } as ControlUp);
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
    this.ended.push({ threadId, ...end });
  }

  takeEnded(): ModelCallEnd[] {
    const e = this.ended;
    this.ended = [];
    return e;
  }

  /** The run is over: late replies and cancels for it are dropped. */
  release(): void {
    runs.delete(this.runId);
  }
}

/**
 * What the books need about a stream cut short: the output tokens it delivered, and (when the gate
 * made none, i.e. no budget applied) an input estimate. Made here, off the main thread.
 */
async function forTheBooks(task: RunTask, messages: Message[], streamedText: string, estimated: number | null): Promise<Pick<ModelCallEnd, 'streamedOutputTokens' | 'inputEstimate' | 'cut'>> {
  const count = await loadTokenizer();
  const inputEstimate = estimated ?? (await estimateInputTokens(task.system, messages, task.tools));
  return { cut: true, streamedOutputTokens: Math.ceil(count(streamedText) * task.tokenScale), inputEstimate };
}

type DistributiveOmit<T, K extends keyof any> = T extends unknown ? Omit<T, K> : never;

export default async function runAgent(task: RunTask): Promise<RunOutcome> {
  const channel = new RunChannel(task.runId);
  const usage = emptyUsage();
  const messages: Message[] = [{ role: 'user', content: task.userMessage }];
  let lastText = '';
  let turns = 0;
  let modelCalls = 0;
  const finish = (status: RunOutcome['status'], output: string, error?: string): RunOutcome => {
    const callsEnded = channel.takeEnded();
    return { status, output, turns, usage, modelCalls, ...(error ? { error } : {}), ...(callsEnded.length ? { callsEnded } : {}) };
  };
  const stopped = () => {
    const reason = channel.cancelReason ?? 'cancelled';
    return finish(reason, lastText, reason === 'timeout' ? 'run deadline reached' : 'run cancelled');
  };

  const outputSchema = task.outputSchema;
  const responseFormat = outputSchema
    ? { name: task.agent.name, schema: withoutDialect(outputSchema), strict: strictCompatible(outputSchema) }
    : undefined;
  let repairAsked = false;

  try {
    const adapter = createAdapter(task.endpoint);
    const { agent } = task;
    while (turns < agent.maxTurns) {
      if (channel.abort.signal.aborted) return stopped();
      turns++;

      // Gate: the orchestrator checks budgets before every model call and may shrink max output.
      const estimated = task.estimateTokens ? await estimateInputTokens(task.system, messages, task.tools) : null;
      const gate: MainReply =
        turns === 1 && task.firstTurnGranted
          ? { kind: 'reply', id: 0, ok: true, ...task.firstTurnGranted }
          : await channel.ask({ kind: 'model_call_start', turn: turns, threadId, estimatedInputTokens: estimated, maxOutputTokens: agent.maxOutputTokens });
      if (channel.abort.signal.aborted) return stopped();
      if (!gate.ok) return finish('error', lastText, gate.reason);
      const maxOutputTokens = gate.maxOutputTokens ?? agent.maxOutputTokens;

      const started = Date.now();
      let text = '';
      let toolCalls: ToolCall[] = [];
      let callUsage: Usage | null = null;
      let streamedChars = 0;
      // Output the reservation holds; the stream asks for more before passing it (budgeted runs only).
      let reservedOut = gate.reservedOutputTokens ?? maxOutputTokens;
      const watch = task.budgeted ? await loadTokenizer() : undefined;
      let rawTokens = 0;
      let streamedTokens = 0;
      let refused: string | undefined;
      let cutByBudget = false;
      let extending: Promise<unknown> | undefined;
      const extend = () =>
        (extending ??= channel
          .ask({ kind: 'extend_output', turn: turns, streamedOutputTokens: streamedTokens, wantOutputTokens: task.extensionStep })
          .then((r) => {
            extending = undefined;
            if (r.ok) reservedOut = r.reservedOutputTokens ?? reservedOut;
            else refused = r.reason;
          }));
      /** Counts output as it streams; false = the budget refused more and the stream must stop now. */
      const spend = async (outputText: string): Promise<boolean> => {
        if (!watch) return true;
        rawTokens += watch(outputText);
        streamedTokens = Math.ceil(rawTokens * task.tokenScale);
        // Ask one step ahead, so a grant usually arrives before the output needs it.
        if (streamedTokens >= reservedOut - task.extensionStep / 2 && !refused) void extend();
        // Never consume past what is held: wait for the answer (the provider's bytes wait in the socket).
        while (streamedTokens > reservedOut && !refused && !channel.abort.signal.aborted) await extend();
        return !refused;
      };
      try {
        modelCalls++;
        for await (const ev of adapter.stream({
          model: task.modelId,
          system: task.system,
          messages,
          tools: task.tools,
          maxOutputTokens,
          temperature: agent.temperature,
          signal: channel.abort.signal,
          ...(responseFormat && { responseFormat }),
        })) {
          if (ev.type === 'stream_start') {
            if (task.progress) channel.emit({ type: 'stream_start', turn: turns });
          } else if (ev.type === 'text_delta') {
            streamedChars += ev.text.length;
            text += ev.text;
            // Leaving the loop ends the generator, whose finally aborts the HTTP request at once.
            if (watch && !(await spend(ev.text))) {
              cutByBudget = true;
              break;
            }
          } else if (ev.type === 'tool_call') {
            if (watch && !(await spend(ev.call.name + JSON.stringify(ev.call.arguments)))) {
              cutByBudget = true;
              break;
            }
          } else if (ev.type === 'retry') channel.emit({ type: 'retry', turn: turns, attempt: ev.attempt, delayMs: ev.delayMs, reason: ev.reason });
          else if (ev.type === 'done') {
            text = ev.text;
            toolCalls = ev.toolCalls;
            callUsage = ev.usage;
            // No final usage (a server that never reports it, or Anthropic's message_start only): count it here.
            const cut = ev.usagePartial === true || ev.usage === null;
            channel.modelCallEnded({
              turn: turns,
              usage: callUsage,
              streamedOutputChars: streamedChars,
              ...(cut ? await forTheBooks(task, messages, text, estimated) : watch ? { streamedOutputTokens: streamedTokens } : {}),
              stopReason: ev.stopReason,
              latencyMs: Date.now() - started,
              ...(ev.model && { responseModel: ev.model }),
            });
          }
        }
      } catch (err) {
        const pe = err instanceof ProviderError ? err : undefined;
        const partial = pe?.partialText ?? text;
        // Counted only when the provider had started answering (a refused or unreachable request is not).
        const answered = Boolean(pe?.partialUsage) || partial.length > 0;
        channel.modelCallEnded({
          turn: turns,
          usage: pe?.partialUsage ?? null,
          streamedOutputChars: partial.length,
          ...(answered ? await forTheBooks(task, messages, partial, estimated) : {}),
          stopReason: 'error',
          latencyMs: Date.now() - started,
          error: (err as Error).message,
        });
        if (channel.abort.signal.aborted) return stopped();
        return finish('error', lastText, `model call failed (${task.modelRef}): ${(err as Error).message}`);
      }
      if (cutByBudget) {
        // Cut by the budget (or by a cancel that arrived while an extension was asked for): charged the input estimate plus what streamed; the run ends with what it has.
        channel.modelCallEnded({
          turn: turns,
          usage: null,
          streamedOutputChars: streamedChars,
          ...(await forTheBooks(task, messages, text, estimated)),
          stopReason: channel.abort.signal.aborted ? 'error' : 'budget_exhausted',
          latencyMs: Date.now() - started,
          error: refused,
        });
        if (channel.abort.signal.aborted) return stopped();
        return finish('budget_exhausted', text || lastText, `stream cut: ${refused}`);
      }
      if (callUsage) addUsage(usage, callUsage);
      if (text) lastText = text;
      messages.push({ role: 'assistant', text, toolCalls });
      if (toolCalls.length === 0) {
        if (!outputSchema) return finish('ok', text);
        // A structured answer is checked here; a bad one gets one repair turn, then the run fails.
        const problem = answerProblem(outputSchema, text);
        if (!problem) return finish('ok', text.trim());
        if (repairAsked || turns >= agent.maxTurns) {
          return finish('error', text, `the answer does not match the agent's output_schema: ${problem}${repairAsked ? ' (also after a repair turn)' : ' (no turn left for a repair)'}`);
        }
        repairAsked = true;
        messages.push({
          role: 'user',
          content: `Your answer does not match the required JSON Schema: ${problem}. Reply with only the corrected JSON value, nothing else.`,
        });
        continue;
      }

      // Tool calls are executed by the orchestrator (it checks permissions with the real arguments).
      const results = [];
      for (const call of toolCalls) {
        if (channel.abort.signal.aborted) return stopped();
        const reply = await channel.ask({ kind: 'call_tool', turn: turns, call });
        if (channel.abort.signal.aborted) return stopped();
        const outcome = reply.ok ? reply.outcome! : { content: reply.reason, isError: true };
        results.push({ callId: call.id, name: call.name, content: outcome.content, isError: outcome.isError });
      }
      messages.push({ role: 'tool', results });
    }
    return finish(
      'max_turns',
      lastText,
      `stopped after ${turns} turns (max_turns ${task.agent.maxTurns}) without a final answer`,
    );
  } catch (err) {
    if (channel.abort.signal.aborted) return stopped();
    return finish('error', lastText, (err as Error).message);
  } finally {
    channel.release();
  }
}
