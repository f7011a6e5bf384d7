// How a run's happenings become audit events (audit/events.ts): the tool gate's decisions, and the
// optional previews of a run's input and output.
import type { AuditLog } from '../audit/audit-log.js';
import { digest } from '../audit/events.js';
import type { RunRegistry } from './runs.js';
import type { ToolDecisionRecord } from './tool-gate.js';

/** tool_call (every decision) and permission_denied (refusals) into the run's audit trail. */
export function auditToolDecision(runs: RunRegistry, d: ToolDecisionRecord): void {
  const ra = runs.get(d.runId)?.audit;
  if (!ra) return;
  const decision =
    d.decision === 'ask' ? (d.approval === 'denied' || d.approval === 'unanswered' ? 'ask_denied' : 'ask_approved') : d.decision === 'allow' ? 'allow' : 'deny';
  ra.emit({
    event: 'tool_call',
    tool: d.tool,
    args_digest: digest(d.args ?? {}),
    decision,
    rule: d.rule,
    duration_ms: d.durationMs,
    outcome: d.outcome === 'ok' ? 'ok' : 'error',
  });
  if (decision === 'deny' || decision === 'ask_denied') ra.emit({ event: 'permission_denied', tool: d.tool, rule: d.rule, reason: d.reason });
  for (const p of d.removedProtected ?? []) {
    ra.emit({ event: 'permission_denied', tool: d.tool, rule: null, reason: `sandbox: a command created the protected path ${p}; removed after the command` });
  }
}

/** `{ [key]: preview }` when the audit log keeps previews of this text, else nothing. */
export function previewField<K extends string>(audit: AuditLog | undefined, key: K, text: string, redact: boolean): Partial<Record<K, string>> {
  const preview = audit?.previewText(text, redact);
  return preview === undefined ? {} : ({ [key]: preview } as Record<K, string>);
}
