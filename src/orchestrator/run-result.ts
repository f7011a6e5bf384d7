// A run's result as callers get it: the answer (parsed, for an agent with output_schema), artifacts
// written from it, cost and notes from the budget books.
import type { AgentDefinition } from '../agents/definition.js';
import { parseAnswer } from '../agents/json-schema.js';
import type { Redactor } from '../audit/redact.js';
import type { RunTotals } from '../budget/ledger.js';
import { log } from '../log.js';
import type { Usage } from '../contract/usage.js';
import { addUsage, emptyUsage } from '../contract/usage-sum.js';
import { extractArtifacts, type ArtifactStore } from './artifacts.js';
import type { RunRecord } from './runs.js';
import type { RunResult } from '../contract/run.js';

export function buildResult(
  host: { readonly artifacts: ArtifactStore; readonly redactor: Redactor },
  record: RunRecord,
  agent: AgentDefinition | undefined,
  end: { status: RunResult['status']; output: string; turns: number; usage: Usage; error?: string },
): RunResult {
  const { output } = end;
  const result: RunResult = {
    run_id: record.runId,
    agent: record.agent,
    status: end.status,
    output,
    turns: end.turns,
    usage: { ...end.usage },
    model: record.model,
    duration_ms: Date.now() - record.startedAt,
    cost_usd: record.costUsd ?? null,
    ...(record.budgetNotes?.length ? { notes: record.budgetNotes } : {}),
    ...(end.error ? { error: end.error } : {}),
  };
  if (result.status === 'ok' && agent?.outputSchema) {
    try {
      result.structured = parseAnswer(output);
    } catch (err) {
      // The loop checked it; a failure here is a bug, reported rather than hidden.
      result.status = 'error';
      result.error = `the answer could not be read as JSON: ${(err as Error).message}`;
    }
  }
  if (result.status === 'ok' && agent?.artifacts.length) {
    try {
      const items = extractArtifacts(agent.artifacts, output).map((a) => ({ ...a, content: host.redactor.redactString(a.content) }));
      const refs = host.artifacts.write(record.runId, record.owner, items);
      if (refs.length) result.artifacts = refs;
      for (const a of refs) record.audit?.emit({ event: 'artifact', name: a.name, path: a.uri, bytes: a.bytes });
    } catch (err) {
      log.warn(`run ${record.runId}: could not write artifacts: ${(err as Error).message}`);
    }
  }
  return result;
}

/** What a run and everything it delegated spent, by the books. */
export function treeUsageOf(totals: RunTotals): Usage {
  const tree = emptyUsage();
  for (const m of Object.values(totals.byModel)) addUsage(tree, m.usage);
  return tree;
}

/** The README promises a note whenever a result's cost is unknown or only partly known. */
export function unpricedNotes(totals: RunTotals): string[] {
  if (totals.unpricedTokens <= 0) return [];
  const models = Object.entries(totals.byModel).filter(([, m]) => m.usd === null).map(([name]) => name);
  const which = models.length ? models.join(', ') : 'its model';
  return [
    totals.usd === 0
      ? `cost unknown: no price known for ${which} (${totals.unpricedTokens} tokens counted; add a price under delegate.prices in mcp.json)`
      : `cost is a lower bound: no price known for ${which} (${totals.unpricedTokens} tokens not priced; add a price under delegate.prices in mcp.json)`,
  ];
}
