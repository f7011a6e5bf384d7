// delegate_parallel: the MCP face of a batch (orchestrator/batch.ts runs it). This file translates: the
// tool's arguments into a batch, its tasks' progress into one call's progress (a heartbeat that names
// what is running), and the outcome into the tool result; on 2026-07-28 connections the batch's
// approvals ride input_required results (input-required.ts).
import type { CallToolResult, McpServer } from '@modelcontextprotocol/server';
import { z } from 'zod';
import { runBatch, type BatchOutcome } from '../orchestrator/batch.js';
import type { RunLauncher } from '../orchestrator/launcher.js';
import { HEARTBEAT_MS, type Orchestrator } from '../orchestrator/orchestrator.js';
import type { AskFn } from '../orchestrator/tool-gate.js';
import { traceToolCall } from '../telemetry/mcp.js';
import type { TraceContext } from '../telemetry/types.js';
import { asksWithInputRequired, conversationCall } from './input-required.js';
import { answerFirst, CallBudgetSchema, progressReporter, RunResultSchema, TaskSchema } from './tool-results.js';

const MAX_PARALLEL_TASKS = 256;

const ParallelArgs = z.object({
  tasks: z.array(TaskSchema).min(1).max(MAX_PARALLEL_TASKS),
  max_concurrency: z.number().int().min(1).max(MAX_PARALLEL_TASKS).optional().describe('how many run at once (default: all)'),
  budget: CallBudgetSchema.optional().describe('budget for the whole batch: every task draws from it, and the batch never spends more'),
});

type TaskResult = ReturnType<typeof answerFirst> & { index: number };

/** How one call of the tool reaches its client: progress, cancellation, approvals, its span. */
interface CallIo {
  report: ((m: string) => unknown) | undefined;
  signal: AbortSignal;
  ask?: AskFn;
  trace: TraceContext | undefined;
  endSpan: (error?: string) => void;
}

export function registerDelegateParallel(server: McpServer, orchestrator: Orchestrator, launcher: RunLauncher, owner: string): void {
  const askTimeoutMs = orchestrator.cfg.delegate.tools.askTimeoutS * 1000;
  server.registerTool(
    'delegate_parallel',
    {
      description: `Run up to ${MAX_PARALLEL_TASKS} agent tasks at once. Returns one result per task, in input order, each with its own status (ok / error / failed / cancelled / timeout / max_turns / budget_exhausted), usage and duration; one failing task never fails the others.`,
      inputSchema: ParallelArgs,
      outputSchema: z.object({
        batch_id: z.string(),
        // output: an agent with output_schema answers with its JSON value, any other with text.
        results: z.array(RunResultSchema.extend({ output: z.unknown(), index: z.number(), error: z.string().optional() })),
        ok: z.number(),
        failed: z.number(),
        usage: z.object({ tokens: z.number(), cost_usd: z.number() }),
      }),
    },
    async (args, ctx) => {
      const span = traceToolCall(orchestrator.telemetry, server, ctx, 'delegate_parallel', owner);
      let spanEnded = false;
      const endSpan = (error?: string) => {
        if (spanEnded) return;
        spanEnded = true;
        span?.end(error);
      };
      if (asksWithInputRequired(server)) {
        // Approvals ride input_required results: the batch runs detached from each round, and a round
        // carries every question its tasks have pending (input-required.ts).
        const out = await conversationCall(ctx, {
          tool: 'delegate_parallel',
          timeoutMs: askTimeoutMs,
          report: progressReporter(ctx),
          start: (c) => parallelCall(args, { report: c.onProgress, signal: c.signal, ask: c.ask, trace: span?.context, endSpan }),
          toResult: (r: CallToolResult) => r,
        });
        // A round that ends with a question is a complete call of its own; the first call's span is
        // the batch's (ended by parallelCall unless a question ended it first), a retry's ends here.
        const question = 'resultType' in out && out.resultType === 'input_required';
        endSpan(!question && out.isError ? 'unknown approval request' : undefined);
        return out as CallToolResult;
      }
      return parallelCall(args, { report: progressReporter(ctx), signal: ctx.mcpReq.signal, trace: span?.context, endSpan });
    },
  );

  /** One delegate_parallel call: the batch, its progress, and the call's result. */
  async function parallelCall(args: z.infer<typeof ParallelArgs>, io: CallIo): Promise<CallToolResult> {
    const { report } = io;
    const total = args.tasks.length;
    const results: TaskResult[] = new Array(total);
    const lastLine = new Map<number, string>();
    let done = 0;
    // Aggregate the tasks' own progress into this one call's progress (and keep it alive).
    const ticker = report && setInterval(() => {
      const running = [...lastLine.entries()].filter(([i]) => !results[i]).slice(0, 3).map(([i, m]) => `#${i} ${m}`);
      void report(`${done}/${total} done${running.length ? ' · ' + running.join(' | ') : ''}`);
    }, HEARTBEAT_MS);
    let outcome: BatchOutcome;
    try {
      outcome = await runBatch(orchestrator, launcher, {
        tasks: args.tasks,
        owner,
        concurrency: args.max_concurrency,
        signal: io.signal,
        trace: io.trace,
        ...(io.ask && { ask: io.ask }),
        // The batch is a budget scope of its own (each task's run draws a slice of it) and the root of its tasks' run tree in the audit log.
        scope: { label: 'delegate_parallel', budget: args.budget, input: args },
        onTaskProgress: report && ((index, m) => void lastLine.set(index, m)),
        onTaskEnd: async (index, r, n) => {
          results[index] = { ...answerFirst(r), index };
          done = n;
          await report?.(`${n}/${total} done · #${index} ${args.tasks[index].agent} ${r.status}`);
        },
      });
    } finally {
      if (ticker) clearInterval(ticker);
      io.endSpan(results.every((r) => r?.status === 'ok') ? undefined : `${results.filter((r) => r?.status !== 'ok').length} of ${total} task(s) did not succeed`);
    }
    const { ok, batchId, totals } = outcome as Required<BatchOutcome>;
    // A closing line, sent after every per-task one has gone out, so the client's last word is the total.
    await report?.(`${total}/${total} done · ${ok} ok, ${total - ok} failed`);
    const summary = results
      .map((r) => `#${r.index} ${r.agent} ${r.status} (${r.duration_ms} ms, ${r.usage.input_tokens}+${r.usage.output_tokens} tokens)${r.status === 'ok' ? ':\n' + r.output : ': ' + (r.error ?? '')}`)
      .join('\n\n');
    return {
      content: [{ type: 'text', text: `${ok}/${total} ok · ${totals.tokens} tokens · $${totals.usd.toFixed(4)}\n\n${summary}` }],
      structuredContent: { batch_id: batchId, results, ok, failed: total - ok, usage: { tokens: totals.tokens, cost_usd: totals.usd } },
    };
  }
}
