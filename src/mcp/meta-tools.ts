// Meta tools: run any agent by name (delegate), fan out (delegate_parallel, in delegate-parallel.ts),
// the budget books (budget_status), and background runs (run_status / run_result / run_cancel) that
// outlive the call that started them.
import type { CallToolResult, McpServer } from '@modelcontextprotocol/server';
import { z } from 'zod';
import type { RunLauncher } from '../orchestrator/launcher.js';
import { HEARTBEAT_MS, type Orchestrator } from '../orchestrator/orchestrator.js';
import type { RunRecord } from '../orchestrator/runs.js';
import { RunStatus, type RunResult } from '../contract/run.js';
import { inputTokens } from '../contract/usage-sum.js';
import type { AskFn } from '../orchestrator/tool-gate.js';
import { traceToolCall } from '../telemetry/mcp.js';
import { renderBudget } from './budget-view.js';
import { registerDelegateParallel } from './delegate-parallel.js';
import { asksWithInputRequired, conversationCall } from './input-required.js';
import { CallBudgetSchema, progressReporter, runToolResult, TaskSchema, withStructured } from './tool-results.js';

/**
 * A background run's asker on a 2026-07-28 connection: its call has returned, and that protocol lets a
 * server ask only in the answer to a call, so the gate denies with this reason.
 */
const backgroundCannotAsk: AskFn = async () => {
  throw new Error(
    'a background run cannot ask on an MCP 2026-07-28 connection: its call has returned, and this protocol lets a server ask only in the answer to a call; run it without background: true to be asked, or allow the call in the agent\'s permissions',
  );
};

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
    usage: { input_tokens: inputTokens(r.usage), output_tokens: r.usage.output_tokens },
  };
}

function text(t: string, isError = false): CallToolResult {
  return { content: [{ type: 'text', text: t }], ...(isError ? { isError } : {}) };
}

/**
 * `launcher` starts the runs (it may ask this session's client: approval.ts); `orchestrator` is read for
 * settings, run records and the books.
 */
export function registerMetaTools(server: McpServer, orchestrator: Orchestrator, launcher: RunLauncher, owner: string): void {
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
        const rec = launcher.start({ agent: args.agent, input, owner, timeoutS: args.timeout_s, budget: args.budget, background: true, trace: span?.context, ...(ask && { ask }) });
        await Promise.race([rec.done, Promise.resolve()]);
        const ended = rec.result && (rec.result.status === 'error' || rec.result.status === 'failed') ? rec.result : undefined;
        span?.end(ended?.error);
        if (ended) return runToolResult(ended);
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
          start: (c) => launcher.start({ ...request, signal: c.signal, onProgress: c.onProgress, ask: c.ask }).done,
          toResult: (result: RunResult) => ((ended = true), finished(result)),
        });
        // A round that ends with a question (or a refused retry) is a complete call of its own.
        if (!ended) span?.end(out.isError ? 'unknown approval request' : undefined);
        return out as CallToolResult;
      }
      const report = progressReporter(ctx);
      const result = await launcher.run({ ...request, signal: ctx.mcpReq.signal, onProgress: report });
      await report?.sent();
      return finished(result);
    },
  );

  // delegate_parallel next (delegate-parallel.ts): tools are listed in registration order.
  registerDelegateParallel(server, orchestrator, launcher, owner);

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
        // On a queue front these are the books every front shares (Redis): any front's runs, one day.
        status = await orchestrator.budget.ledger.status({ runId: run_id, day });
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
