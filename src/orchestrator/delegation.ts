// Delegation: the `agent__<name>` tools a run is offered, and what running one does once the tool gate
// has allowed it (the gate does the permission check and the audit, as for every tool). The child runs
// over the re-entry hop (a child delegate-mcp process, the default) or in-process, with progress
// forwarded and cancellation passed down.
import type { AgentDefinition } from '../agents/definition.js';
import type { AgentStore } from '../agents/store.js';
import type { ResolvedConfig } from '../config/config.js';
import { delegationTarget, delegationToolName } from '../contract/tool-names.js';
import type { ToolCall, ToolOutcome, ToolSpec } from '../contract/tool.js';
import type { Usage } from '../contract/usage.js';
import type { ToolSpanHandle } from '../telemetry/types.js';
import type { LedgerStore } from '../budget/index.js';
import type { BudgetGate, RunBudget } from './budget-gate.js';
import { RESULT_META_KEY, refuseHop, type CallChain } from './chain.js';
import { ChildHub } from './reentry.js';

/** What a process-hop delegation is sent through (ChildHub, or a queue's hub): one MCP-shaped call. */
export type ReentryHub = Pick<ChildHub, 'call' | 'close'>;
import { unknownAgentMessage, type RunRequest } from './run-request.js';
import type { RunRecord } from './runs.js';
import type { DelegationHandler, ToolRun } from './tool-gate.js';

export class Delegations {
  /** The warm child delegate-mcp that delegations run in (process re-entry). */
  /**
   * Where process-hop delegations go: the warm child delegate-mcp (made on first use), or whatever was
   * set here first (a queue worker sets a hub that enqueues each delegation as a job: src/queue/).
   */
  hub?: ReentryHub;

  constructor(
    private readonly cfg: ResolvedConfig,
    private readonly agents: AgentStore,
    private readonly budget: BudgetGate<LedgerStore>,
    /** Starts an in-process child run (Orchestrator.start). */
    private readonly startChild: (req: RunRequest) => RunRecord,
  ) {}

  /** One `agent__<name>` tool per agent this one may delegate to (listed in `agents:` or allowed by Agent(name)). */
  toolsFor(agent: AgentDefinition, toolRun: ToolRun): ToolSpec[] {
    const names = new Set(agent.agents);
    for (const layer of toolRun.rules.layers) for (const r of [...layer.allow, ...layer.ask]) {
      const m = /^Agent\(([A-Za-z0-9_-]+)\)$/.exec(r.trim());
      if (m) names.add(m[1]);
    }
    const specs: ToolSpec[] = [];
    for (const name of names) {
      const target = this.agents.get(name);
      if (!target || (target.name === agent.name && !target.allowReentry)) continue;
      specs.push({
        name: delegationToolName(name),
        description: `Delegate to the agent "${name}": ${target.description}`.slice(0, 1024),
        inputSchema: target.inputSchema,
      });
    }
    return specs;
  }

  /** The tool gate's handler for one parent run's `agent__<name>` calls. */
  forRun(parent: RunRecord, rb: RunBudget, toolRun: () => ToolRun, progress: (what: string) => void): DelegationHandler {
    return {
      refuse: (call) => {
        const name = delegationTarget(call.name);
        const target = this.agents.get(name);
        if (!target) return { reason: 'unknown agent', text: unknownAgentMessage(name, this.agents.list().map((a) => a.name)) };
        // Depth and cycles before the rules: they name the whole chain, which says more than a missing rule would.
        const refused = refuseHop(parent.lineage!, target, call.arguments, this.cfg.delegate.reentry.maxDepth);
        return refused ? { reason: refused, text: refused } : undefined;
      },
      run: (call, signal, span) => this.run(parent, rb, toolRun(), call, signal, progress, span),
    };
  }

  /**
   * Runs an allowed `agent__<name>` call for a parent run: a budget slice reserved in the parent's
   * scopes, then the child run, over the re-entry hop or in-process.
   */
  private async run(
    parent: RunRecord,
    rb: RunBudget,
    toolRun: ToolRun,
    call: ToolCall,
    signal: AbortSignal,
    progress: (what: string) => void,
    span?: ToolSpanHandle,
  ): Promise<{ outcome: ToolOutcome; refused?: string }> {
    const name = delegationTarget(call.name);
    const target = this.agents.get(name)!;
    const lineage = parent.lineage!;
    // An agent made with create_agent and not saved exists only in this process: a re-entry child
    // would not know it, so it runs here (same checks, same ledger, the chain's limits as ever).
    const mode = target.source.format === 'dynamic' ? 'in-process' : this.cfg.delegate.reentry.mode;
    const input = call.arguments;
    const onProgress = (m: string) => progress(`→ ${name}: ${m}`);

    if (mode === 'in-process') {
      // Same process, same ledger: the child's budget scope is a child of the parent's run scope.
      const child = this.startChild({
        agent: name,
        input,
        owner: parent.owner,
        signal,
        onProgress,
        parentRunId: parent.runId,
        caller: `agent:${parent.agent}`,
        chain: { v: 1, root_run_id: lineage.rootRunId, parent_run_id: parent.runId, depth: lineage.depth + 1, ancestry: lineage.ancestry, budget: {}, rules: toolRun.rules },
        trace: span?.context,
      });
      parent.audit?.emit({ event: 'delegation', child_run_id: child.runId, child_agent: name, hop: 'in-process' });
      const r = await child.done;
      return { outcome: delegationOutcome(r.run_id, name, r.status, r.output, r.error) };
    }

    // Process hop: reserve the child's slice here; commit what it reports for its whole tree.
    const childModel = target.model ?? this.cfg.defaultModel ?? 'unknown/unknown';
    let slice: Awaited<ReturnType<BudgetGate<LedgerStore>['reserveSlice']>>;
    try {
      slice = await this.budget.reserveSlice(rb, childModel, target.budget.runTokens);
    } catch (err) {
      slice = { ok: false, reason: `budget: the ledger did not answer: ${(err as Error).message}` };
    }
    if (!slice.ok) {
      parent.audit?.emit({ event: 'budget_refused', scope: 'run', tokens: 0, usd: null, message: slice.reason });
      return { outcome: { isError: true, content: `delegation to ${name} refused: ${slice.reason}` }, refused: slice.reason };
    }
    const chain: CallChain = {
      v: 1,
      root_run_id: lineage.rootRunId,
      parent_run_id: parent.runId,
      depth: lineage.depth + 1,
      ancestry: lineage.ancestry,
      budget: slice.tokens !== undefined ? { tokens: slice.tokens } : {},
      rules: toolRun.rules,
    };
    this.hub ??= new ChildHub(this.cfg);
    let res: Awaited<ReturnType<ChildHub['call']>>;
    try {
      res = await this.hub.call(name, input, chain, { signal, onProgress, timeoutMs: this.cfg.delegate.runs.timeoutS * 1000, meta: span?.meta() });
    } catch (err) {
      // The child never reported: nothing is known to be spent beyond what it streamed; release the slice.
      // (Should the ledger not answer, the parent's closeRun frees it.)
      await Promise.resolve(this.budget.ledger.release(slice.reservationId)).catch(() => undefined);
      const why = signal.aborted ? 'cancelled' : (err as Error).message;
      return { outcome: { isError: true, content: `delegation to ${name} failed: ${why}` } };
    }
    const meta = (res._meta?.[RESULT_META_KEY] ?? {}) as { run_id?: string; usage?: Usage; tree_usage?: Usage; cost_usd?: number | null; status?: string };
    const childRunId = meta.run_id ?? '';
    parent.audit?.emit({ event: 'delegation', child_run_id: childRunId, child_agent: name, hop: 'process' });
    try {
      const charge = await this.budget.commitSlice(slice.reservationId, meta.tree_usage ?? meta.usage ?? null, meta.cost_usd ?? null);
      parent.childCostUsd = (parent.childCostUsd ?? 0) + (charge.usd ?? 0);
      parent.audit?.emit({ event: 'budget_commit', scope: 'run', tokens: charge.tokens, usd: charge.usd, message: `re-entry child ${childRunId} (${name})` });
    } catch (err) {
      // The child's answer still reaches the model; only its charge is missing (and said so).
      parent.audit?.emit({ event: 'error', message: `budget: the ledger did not record re-entry child ${childRunId} (${name}): ${(err as Error).message}` });
    }
    const text = res.content.map((c) => (c.type === 'text' ? c.text : `[${c.type}]`)).join('\n');
    return { outcome: { isError: Boolean(res.isError), content: text } };
  }

  async close(): Promise<void> {
    await this.hub?.close();
  }
}

function delegationOutcome(runId: string, agent: string, status: string, output: string, error?: string): ToolOutcome {
  return status === 'ok'
    ? { isError: false, content: output }
    : { isError: true, content: `run ${runId} (${agent}) ${status}: ${error ?? ''}${output ? `\n\nLast partial answer:\n${output}` : ''}` };
}
