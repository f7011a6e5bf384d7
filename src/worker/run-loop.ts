// One agent's loop of model calls and tool calls, independent of where it runs: on a piscina worker
// (agent-loop.ts, the worker entry) or in the calling thread (orchestrator/in-process-pool.ts). It holds
// no authority: budgets and tools are asked for over its RunChannel.
import { ProviderError, type ProviderAdapter } from '../providers/types.js';
import type { ProviderEndpoint } from '../contract/endpoint.js';
import type { Message } from '../contract/message.js';
import type { ToolCall } from '../contract/tool.js';
import type { Usage } from '../contract/usage.js';
import { addUsage, emptyUsage } from '../contract/usage-sum.js';
import { estimateInputTokens, loadTokenizer } from './tokens.js';
import { answerProblem, strictCompatible, withoutDialect } from '../agents/json-schema.js';
import type { RunChannel } from './run-channel.js';
import type { MainReply, ModelCallEnd, RunOutcome, RunTask } from '../contract/worker-protocol.js';

/**
 * What the books need about a stream cut short: the output tokens it delivered, and (when the gate
 * made none, i.e. no budget applied) an input estimate. Made here, off the main thread.
 */
async function forTheBooks(task: RunTask, messages: Message[], streamedText: string, estimated: number | null): Promise<Pick<ModelCallEnd, 'streamedOutputTokens' | 'inputEstimate' | 'cut'>> {
  const count = await loadTokenizer();
  const inputEstimate = estimated ?? (await estimateInputTokens(task.system, messages, task.tools));
  return { cut: true, streamedOutputTokens: Math.ceil(count(streamedText) * task.tokenScale), inputEstimate };
}

/**
 * Runs one agent's loop to its outcome. `channel` carries the run's questions to the orchestrator (which
 * answers them on the main thread); `adapterFor` gives the provider adapter for the task's endpoint.
 */
export async function runLoop(task: RunTask, channel: RunChannel, adapterFor: (endpoint: ProviderEndpoint) => ProviderAdapter): Promise<RunOutcome> {
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
    const adapter = adapterFor(task.endpoint);
    const { agent } = task;
    while (turns < agent.maxTurns) {
      if (channel.abort.signal.aborted) return stopped();
      turns++;

      // Gate: the orchestrator checks budgets before every model call and may shrink max output.
      const estimated = task.estimateTokens ? await estimateInputTokens(task.system, messages, task.tools) : null;
      const gate: MainReply =
        turns === 1 && task.firstTurnGranted
          ? { kind: 'reply', id: 0, ok: true, ...task.firstTurnGranted }
          : await channel.ask({ kind: 'model_call_start', turn: turns, threadId: channel.threadId, estimatedInputTokens: estimated, maxOutputTokens: agent.maxOutputTokens });
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
