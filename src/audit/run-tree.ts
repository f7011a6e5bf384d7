// Run trees: a root run and everything it delegated to, across the re-entry boundary and every process
// that wrote to the log, and their plain-text rendering for the CLI (--json prints the objects).
import type { AuditEvent } from './events.js';
import type { Usage } from '../contract/usage.js';
import { addUsage, totalTokens } from '../contract/usage-sum.js';
import { formatDuration } from '../time/duration.js';
import { collectRuns, type RunInfo } from './run-info.js';
import { fmtCost, fmtTokens } from './text-format.js';

export interface RunTreeNode extends RunInfo {
  children: RunTreeNode[];
  /** This run plus all its descendants. */
  subtree: { runs: number; usage: Usage; cost_usd: number; denials: number };
  /** Attached under the root because its recorded parent is missing from the log. */
  orphan?: boolean;
}

/**
 * The tree of runs under `rootRunId`, children linked by parent_run_id (or a parent's delegation
 * event), across all processes that wrote to the directory. Runs that name this root but whose
 * parent is missing are attached to the root as orphans. Undefined when the log never mentions the root.
 */
export function runTree(events: Iterable<AuditEvent>, rootRunId: string): RunTreeNode | undefined {
  const runs = collectRuns(events);
  const rootInfo = runs.get(rootRunId);
  if (!rootInfo) return undefined;
  const childrenOf = new Map<string, RunInfo[]>();
  for (const r of runs.values()) {
    if (r.parent_run_id === null || r.run_id === rootRunId) continue;
    const list = childrenOf.get(r.parent_run_id);
    if (list) list.push(r);
    else childrenOf.set(r.parent_run_id, [r]);
  }
  const visited = new Set<string>();
  const build = (info: RunInfo): RunTreeNode => {
    visited.add(info.run_id);
    const kids = (childrenOf.get(info.run_id) ?? []).filter((c) => !visited.has(c.run_id)); // a cycle in a corrupt log ends here
    kids.sort(byStart);
    const node: RunTreeNode = { ...info, children: [], subtree: { runs: 1, usage: { ...info.usage }, cost_usd: info.cost_usd ?? 0, denials: info.denials } };
    for (const k of kids) {
      if (visited.has(k.run_id)) continue;
      node.children.push(build(k));
    }
    for (const c of node.children) {
      node.subtree.runs += c.subtree.runs;
      addUsage(node.subtree.usage, c.subtree.usage);
      node.subtree.cost_usd += c.subtree.cost_usd;
      node.subtree.denials += c.subtree.denials;
    }
    return node;
  };
  const root = build(rootInfo);
  const orphans = [...runs.values()].filter((r) => r.root_run_id === rootRunId && !visited.has(r.run_id)).sort(byStart);
  for (const o of orphans) {
    if (visited.has(o.run_id)) continue; // already placed as a descendant of an earlier orphan
    const node = build(o);
    node.orphan = true;
    root.children.push(node);
    root.subtree.runs += node.subtree.runs;
    addUsage(root.subtree.usage, node.subtree.usage);
    root.subtree.cost_usd += node.subtree.cost_usd;
    root.subtree.denials += node.subtree.denials;
  }
  return root;
}

const byStart = (a: RunInfo, b: RunInfo) => (a.started_at ?? '').localeCompare(b.started_at ?? '') || a.run_id.localeCompare(b.run_id);

export function renderTree(root: RunTreeNode): string {
  const lines: string[] = [];
  const describe = (n: RunTreeNode) =>
    [
      n.run_id,
      n.agent ?? '?',
      n.status,
      n.model ?? '',
      `${fmtTokens(totalTokens(n.usage))} tok`,
      n.cost_usd === null ? '$?' : fmtCost(n.cost_usd),
      formatDuration(n.duration_ms),
      `model×${n.model_calls}`,
      `tools×${n.tool_calls}`,
      n.denials ? `denied×${n.denials}` : '',
      n.nodes.length ? `on ${n.nodes.join(', ')}` : '',
      n.orphan ? '(parent missing)' : '',
    ]
      .filter(Boolean)
      .join('  ');
  const walk = (n: RunTreeNode, prefix: string, childPrefix: string) => {
    lines.push(prefix + describe(n));
    n.children.forEach((c, i) => {
      const last = i === n.children.length - 1;
      walk(c, childPrefix + (last ? '└─ ' : '├─ '), childPrefix + (last ? '   ' : '│  '));
    });
  };
  walk(root, '', '');
  const t = root.subtree;
  lines.push(
    '',
    `total: ${t.runs} run(s), ${fmtTokens(totalTokens(t.usage))} tokens, ${fmtCost(t.cost_usd)}${t.denials ? `, ${t.denials} denial(s)` : ''}`,
  );
  return lines.join('\n') + '\n';
}
