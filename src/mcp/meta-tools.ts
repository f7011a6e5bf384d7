// Meta tools: run any agent by name (delegate), fan out (delegate_parallel), and background runs
// (run_status / run_result / run_cancel) that outlive the call that started them.
import { setMaxListeners } from 'node:events';
import type { CallToolResult, McpServer } from '@modelcontextprotocol/server';
import { z } from 'zod';
import { HEARTBEAT_MS, type Orchestrator } from '../orchestrator/orchestrator.js';
import type { RunRecord } from '../orchestrator/runs.js';
import type { BudgetStatus } from '../budget/types.js';
import { RunStatus, type RunResult } from '../contract/run.js';
import { emptyUsage } from '../contract/usage-sum.js';
import { randomUUID } from 'node:crypto';
import { digest } from '../audit/events.js';
import { answerFirst, CallBudgetSchema, progressReporter, runToolResult, RunResultSchema } from './server.js';
import { traceToolCall } from '../telemetry/mcp.js';
import type { TraceContext } from '../telemetry/types.js';
import type { AskFn } from '../orchestrator/tool-gate.js';
import { asksWithInputRequired, conversationCall } from './input-required.js';

/**
 * A background run's asker on a 2026-07-28 connection: its call has returned, and that protocol lets a
 * server ask only in the answer to a call, so the gate denies with this reason.
 */
const backgroundCannotAsk: AskFn = async () => {
  throw new Error(
    'a background run cannot ask on an MCP 2026-07-28 connection: its call has returned, and this protocol lets a server ask only in the answer to a call; run it without background: true to be asked, or allow the call in the agent\'s permissions',
  );
};

const MAX_PARALLEL_TASKS = 256;

const TaskSchema = z.object({
  agent: z.string().describe('name of an exposed agent (see list_agents)'),
  task: z.string().describe('what the agent should do'),
  context: z.string().optional().describe('background the agent needs'),
});

const StatusSchema = z.object({
  run_id: z.string(),
  agent: z.string(),
  status: z.enum(['running', ...RunStatus.options]),
  turn: z.number(),
  last_progress: z.string(),
  elapsed_ms: z.number(),
  usage: z.object({ input_tokens: z.number(), output_tokens: z.number() }),
});

function statusOf(r: RunRecord) {
  return {
    run_id: r.runId,
    agent: r.agent,
    status: r.status,
    turn: r.turn,
    last_progress: r.lastProgress,
    elapsed_ms: (r.endedAt ?? Date.now()) - r.startedAt,
    usage: { input_tokens: r.usage.input_tokens + r.usage.cache_read_input_tokens + r.usage.cache_creation_input_tokens, output_tokens: r.usage.output_tokens },
  };
}

function text(t: string, isError = false): CallToolResult {
  return { content: [{ type: 'text', text: t }], ...(isError ? { isError } : {}) };
}

export function registerMetaTools(server: McpServer, orchestrator: Orchestrator, owner: string): void {
  const askTimeoutMs = orchestrator.cfg.delegate.tools.askTimeoutS * 1000;
  const keepS = orchestrator.cfg.delegate.runs.keepS;
  const unknownRun = (id: string) => {
    const ended = orchestrator.runs.endedRun(id, owner);
    if (ended) {
      return text(
        `run "${id}" (${ended.agent}) ended with status ${ended.status} and is no longer kept: only background runs (delegate with background: true) and runs a run_result is waiting on are kept after they end (${keepS} s); its result went back to the call that started it, and its record is in the audit log`,
        true,
      );
    }
    return text(`unknown run "${id}": not started here, expired, or started by another client session (runs are visible only to the session that started them; background runs are kept ${keepS} s after they end)`, true);
  };

  server.registerTool(
    'delegate',
    {
      description:
        'Run an agent by name. With background: true, returns {run_id, status: "running"} at once; poll with run_status, fetch with run_result, stop with run_cancel.',
      inputSchema: TaskSchema.extend({
        background: z.boolean().optional().describe('return at once with a run_id instead of waiting'),
        timeout_s: z.number().positive().optional().describe('deadline in seconds; can only lower the agent\'s own'),
        budget: CallBudgetSchema.optional(),
      }),
    },
    async (args, ctx) => {
      const input = { task: args.task, ...(args.context ? { context: args.context } : {}) };
      const span = traceToolCall(orchestrator.telemetry, server, ctx, 'delegate', owner);
      if (args.background) {
        // Not tied to this call's signal: the call returns now and the run goes on. On 2026-07-28 it
        // cannot ask: its call has returned, and a server asks only by answering a call (README).
        const ask = asksWithInputRequired(server) ? backgroundCannotAsk : undefined;
        const rec = orchestrator.start({ agent: args.agent, input, owner, timeoutS: args.timeout_s, budget: args.budget, background: true, trace: span?.context, ...(ask && { ask }) });
        await Promise.race([rec.done, Promise.resolve()]);
        span?.end(rec.result?.status === 'error' ? rec.result.error : undefined);
        if (rec.result && rec.result.status === 'error') return runToolResult(rec.result);
        const out = { run_id: rec.runId, status: 'running' };
        return { content: [{ type: 'text', text: JSON.stringify(out) }], structuredContent: out };
      }
      const request = { agent: args.agent, input, owner, timeoutS: args.timeout_s, budget: args.budget, trace: span?.context };
      const finished = (result: RunResult): CallToolResult => {
        span?.end(result.status === 'ok' ? undefined : (result.error ?? result.status));
        return withStructured(runToolResult(result), result);
      };
      if (asksWithInputRequired(server)) {
        // Approvals ride input_required results, as for an agent tool (input-required.ts).
        let ended = false;
        const out = await conversationCall(ctx, {
          tool: 'delegate',
          timeoutMs: askTimeoutMs,
          report: progressReporter(ctx),
          start: (c) => orchestrator.start({ ...request, signal: c.signal, onProgress: c.onProgress, ask: c.ask }).done,
          toResult: (result: RunResult) => ((ended = true), finished(result)),
        });
        // A round that ends with a question (or a refused retry) is a complete call of its own.
        if (!ended) span?.end(out.isError ? 'unknown approval request' : undefined);
        return out as CallToolResult;
      }
      return finished(await orchestrator.run({ ...request, signal: ctx.mcpReq.signal, onProgress: progressReporter(ctx) }));
    },
  );

  server.registerTool(
    'delegate_parallel',
    {
      description: `Run up to ${MAX_PARALLEL_TASKS} agent tasks at once. Returns one result per task, in input order, each with its own status (ok / error / cancelled / timeout / max_turns / budget_exhausted), usage and duration; one failing task never fails the others.`,
      inputSchema: z.object({
        tasks: z.array(TaskSchema).min(1).max(MAX_PARALLEL_TASKS),
        max_concurrency: z.number().int().min(1).max(MAX_PARALLEL_TASKS).optional().describe('how many run at once (default: all)'),
        budget: CallBudgetSchema.optional().describe('budget for the whole batch: every task draws from it, and the batch never spends more'),
      }),
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
          start: (c) => runBatch(args, { report: c.onProgress, signal: c.signal, ask: c.ask, trace: span?.context, endSpan }),
          toResult: (r: CallToolResult) => r,
        });
        // A round that ends with a question is a complete call of its own; the first call's span is
        // the batch's (ended by runBatch unless a question ended it first), a retry's ends here.
        const question = 'resultType' in out && out.resultType === 'input_required';
        endSpan(!question && out.isError ? 'unknown approval request' : undefined);
        return out as CallToolResult;
      }
      return runBatch(args, { report: progressReporter(ctx), signal: ctx.mcpReq.signal, trace: span?.context, endSpan });
    },
  );

  /** One delegate_parallel batch: its tasks' runs, progress, books and audit; the call's result. */
  async function runBatch(
    args: { tasks: z.infer<typeof TaskSchema>[]; max_concurrency?: number; budget?: z.infer<typeof CallBudgetSchema> },
    io: { report: ((m: string) => unknown) | undefined; signal: AbortSignal; ask?: AskFn; trace: TraceContext | undefined; endSpan: (error?: string) => void },
  ): Promise<CallToolResult> {
    const { report, signal } = io;
    const total = args.tasks.length;
    // The batch is a budget scope of its own; each task's run is a child that draws a slice of it.
    const batchId = `batch_${randomUUID()}`;
    await orchestrator.budget.openBatch(batchId, 'delegate_parallel', args.budget);
    orchestrator.runs.addBatch(batchId, owner);
    // The batch is the root of its tasks' run tree in the audit log.
    const batchAudit = orchestrator.audit?.forRun({ run_id: batchId, parent_run_id: null, root_run_id: batchId, depth: 0, agent: 'delegate_parallel' });
    const batchStart = Date.now();
    batchAudit?.emit({ event: 'run_start', caller: owner, input_digest: digest(args), model: '' });
    let done = 0;
    const results: (ReturnType<typeof answerFirst> & { index: number })[] = new Array(total);
    const limit = args.max_concurrency ?? total;
    let next = 0;
    const lastLine = new Map<number, string>();
    // One signal for the whole batch: every task listens on it, so lift the default listener cap.
    const batch = new AbortController();
    setMaxListeners(MAX_PARALLEL_TASKS + 8, batch.signal);
    const onAbort = () => batch.abort(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    const worker = async () => {
      while (next < total) {
        const index = next++;
        const t = args.tasks[index];
        const r = await orchestrator.run({
          agent: t.agent,
          input: { task: t.task, ...(t.context ? { context: t.context } : {}) },
          owner,
          parentRunId: batchId,
          rootRunId: batchId,
          depth: 1,
          signal: batch.signal,
          onProgress: report && ((m) => lastLine.set(index, m)),
          trace: io.trace,
          ...(io.ask && { ask: io.ask }),
        });
        results[index] = { ...answerFirst(r), index };
        done++;
        await report?.(`${done}/${total} done · #${index} ${t.agent} ${r.status}`);
      }
    };
    // Aggregate the tasks' own progress into this one call's progress (and keep it alive).
    const ticker = report && setInterval(() => {
      const running = [...lastLine.entries()].filter(([i]) => !results[i]).slice(0, 3).map(([i, m]) => `#${i} ${m}`);
      void report(`${done}/${total} done${running.length ? ' · ' + running.join(' | ') : ''}`);
    }, HEARTBEAT_MS);
    try {
      await Promise.all(Array.from({ length: Math.min(limit, total) }, worker));
    } finally {
      if (ticker) clearInterval(ticker);
      signal.removeEventListener('abort', onAbort);
      io.endSpan(results.every((r) => r?.status === 'ok') ? undefined : `${results.filter((r) => r?.status !== 'ok').length} of ${total} task(s) did not succeed`);
    }
    const totals = await orchestrator.budget.closeBatch(batchId);
    orchestrator.runs.endBatch(batchId);
    const ok = results.filter((r) => r.status === 'ok').length;
    batchAudit?.emit({
      event: 'run_end',
      status: signal.aborted ? 'cancelled' : ok === total ? 'ok' : 'error',
      turns: 0,
      usage: emptyUsage(),
      cost_usd: totals.self.usd,
      duration_ms: Date.now() - batchStart,
      ...(ok < total ? { error: `${total - ok} of ${total} tasks failed` } : {}),
    });
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

  server.registerTool(
    'budget_status',
    {
      description:
        'Budget books: for each scope (server daily, agent daily, a run and its children) the limit, spent, reserved and remaining tokens and USD, plus usage per agent and per model for the day.',
      inputSchema: z.object({
        run_id: z.string().optional().describe('a run or batch id: that run and its children'),
        day: z.string().regex(/^\d{4}-\d{2}-\d{2}$/).optional().describe('UTC day, YYYY-MM-DD (default today)'),
      }),
      annotations: { readOnlyHint: true },
    },
    async ({ run_id, day }) => {
      // Batch ids are owned like run ids: another session's batch is as unknown as its runs.
      if (run_id && !orchestrator.runs.get(run_id, owner) && !orchestrator.runs.endedRun(run_id, owner) && !orchestrator.runs.ownsBatch(run_id, owner)) return unknownRun(run_id);
      let status;
      try {
        // A queue front answers for the day from the books every front shares (src/queue/front.ts).
        status = (!run_id && (await orchestrator.remote?.sharedBudget?.(day))) || (await orchestrator.budget.ledger.status({ runId: run_id, day }));
      } catch (err) {
        return text(`budget_status: ${(err as Error).message}`, true);
      }
      return { content: [{ type: 'text', text: renderBudget(status) }], structuredContent: status as unknown as Record<string, unknown> };
    },
  );

  server.registerTool(
    'run_status',
    { description: 'Status of a run started by this client: running or its final status, current turn, last progress, usage.', inputSchema: z.object({ run_id: z.string() }), outputSchema: StatusSchema, annotations: { readOnlyHint: true } },
    async ({ run_id }) => {
      // A queue front also finds runs another front started (same visibility rule): src/queue/front.ts.
      const r = orchestrator.runs.get(run_id, owner) ?? (await orchestrator.remote?.find(run_id, owner));
      if (!r) return unknownRun(run_id);
      const s = statusOf(r);
      return { content: [{ type: 'text', text: `${s.run_id} ${s.agent} ${s.status} · turn ${s.turn} · ${s.last_progress}` }], structuredContent: s };
    },
  );

  server.registerTool(
    'run_result',
    {
      description: 'The result of a run started by this client. Waits up to wait_s seconds (default 0) for it to finish; returns status "running" if it has not.',
      inputSchema: z.object({ run_id: z.string(), wait_s: z.number().min(0).max(3600).optional() }),
      annotations: { readOnlyHint: true },
    },
    async ({ run_id, wait_s }, ctx) => {
      // A queue front also finds runs another front started (same visibility rule): src/queue/front.ts.
      const r = orchestrator.runs.get(run_id, owner) ?? (await orchestrator.remote?.find(run_id, owner));
      if (!r) return unknownRun(run_id);
      if (!r.result && wait_s) {
        const report = progressReporter(ctx);
        const beat = report && setInterval(() => void report(`waiting for ${run_id}: ${r.lastProgress}`), HEARTBEAT_MS);
        let timer: NodeJS.Timeout | undefined;
        r.waiters = (r.waiters ?? 0) + 1; // someone is asking for it: kept for keepS after it ends
        try {
          await Promise.race([
            r.done,
            new Promise((res) => (timer = setTimeout(res, wait_s * 1000))),
            new Promise((res) => ctx.mcpReq.signal.addEventListener('abort', res, { once: true })),
          ]);
        } finally {
          clearTimeout(timer);
          if (beat) clearInterval(beat);
          r.waiters--;
        }
      }
      if (!r.result) {
        const s = statusOf(r);
        return { content: [{ type: 'text', text: JSON.stringify(s) }], structuredContent: s };
      }
      return withStructured(runToolResult(r.result), r.result);
    },
  );

  server.registerTool(
    'run_cancel',
    { description: 'Cancel a running run started by this client. Its model request is aborted and nothing it reserved stays reserved.', inputSchema: z.object({ run_id: z.string() }) },
    async ({ run_id }) => {
      // A queue front also finds runs another front started (same visibility rule): src/queue/front.ts.
      const r = orchestrator.runs.get(run_id, owner) ?? (await orchestrator.remote?.find(run_id, owner));
      if (!r) return unknownRun(run_id);
      if (r.status !== 'running') return text(`run ${run_id} already ended: ${r.status}`);
      r.cancel('cancelled');
      const result = await r.done;
      return { content: [{ type: 'text', text: `run ${run_id} ${result.status}` }], structuredContent: { run_id, status: result.status } };
    },
  );
}

/** Error results of meta tools still carry the structured run record, for programs driving them. */
function withStructured(res: CallToolResult, r: RunResult): CallToolResult {
  return res.isError ? { ...res, structuredContent: answerFirst(r) } : res;
}

type BudgetStatusView = BudgetStatus;

/** A compact text view of the books (the structured form carries everything). */
export function renderBudget(st: BudgetStatusView): string {
  const lim = (n: number | undefined, unit: string) => (n === undefined ? 'no limit' : `${unit === '$' ? '$' + n : n} limit`);
  const line = (s: BudgetStatusView['server']) =>
    `${s.scope}: spent ${s.spent.tokens} tokens / $${s.spent.usd.toFixed(4)}, reserved ${s.reserved.tokens} (${lim(s.limits.tokens, 't')}, ${lim(s.limits.usd, '$')})`;
  const out = [`budget for ${st.day}`, line(st.server)];
  for (const a of Object.values(st.agents)) out.push(line(a));
  for (const [m, t] of Object.entries(st.models)) out.push(`model ${m}: ${t.calls} calls, ${t.tokens} tokens, ${t.usd === null ? 'no price known' : '$' + t.usd.toFixed(4)}`);
  for (const r of st.runs) out.push(`${'  '.repeat(r.depth)}${line(r)}`);
  out.push(...st.notes);
  return out.join('\n');
}
