// The audit log's event schema, version 1. One JSON object per line (JSONL). The zod schemas are the
// single source of truth: the writer's types are inferred from them and the reader validates with them.
//
// Conventions the writer and the reader both rely on:
// - every event carries the run context (run_id, parent_run_id, root_run_id, depth, agent); server-level
//   events (server_start/stop) carry nulls there;
// - `run_end.usage` / `cost_usd` are the run's OWN model usage, not including child runs — the child
//   runs write their own run_end (maybe in another process), so summing over runs never double counts;
// - digests are `sha256:` + the first 16 hex digits of sha256 over canonical JSON (see `digest`), so
//   inputs can be correlated without storing them.
import { sha256Hex } from '../storage/hash.js';
import { z } from 'zod';
import { RunStatus } from '../contract/run.js';
import { Usage } from '../contract/usage.js';

export const AUDIT_SCHEMA_VERSION = 1 as const;

/** A run's status as the log records it: a delegation refused before it ran ends 'denied'. */
export const AuditRunStatus = z.enum([...RunStatus.options, 'denied']);
export type AuditRunStatus = z.infer<typeof AuditRunStatus>;

export const ToolDecisionSchema = z.enum(['allow', 'deny', 'ask_approved', 'ask_denied']);
export type ToolDecision = z.infer<typeof ToolDecisionSchema>;

const nullableString = z.string().nullable().default(null);

/** Fields every event has. The context fields default to null so older or partial lines still parse. */
const envelope = {
  v: z.number().int(),
  ts: z.string(),
  seq: z.number().int(),
  pid: z.number().int(),
  /** The node that wrote it (queue mode: a front or a worker), so logs of many machines merge. */
  node: z.string().optional(),
  run_id: nullableString,
  parent_run_id: nullableString,
  root_run_id: nullableString,
  depth: z.number().int().nullable().default(null),
  agent: nullableString,
};

const ev = <K extends string, S extends z.ZodRawShape>(kind: K, shape: S) =>
  z.object({ ...envelope, event: z.literal(kind), ...shape });

export const ServerStartSchema = ev('server_start', {
  version: z.string(),
  config_digest: z.string(),
  agents_loaded: z.number().int(),
  agents: z.array(z.string()).optional(),
});
export const ServerStopSchema = ev('server_stop', { reason: z.string().optional() });
export const RunStartSchema = ev('run_start', {
  /** Who asked: an MCP client name/session, or "agent:<name>" for a delegation. */
  caller: z.string().nullable(),
  input_digest: z.string(),
  model: z.string(),
  input_preview: z.string().optional(),
  /** run_command's OS sandbox for this run: "bwrap", or "off" when mcp.json turned it off. */
  sandbox: z.enum(['bwrap', 'off']).optional(),
  /**
   * A call chain the caller sent in `_meta` without the signature of this server's parent: its limits
   * were applied, but the run is recorded as a root run and this is only what the caller claimed.
   */
  claimed_chain: z.object({ root_run_id: z.string(), parent_run_id: z.string(), depth: z.number().int(), agent: z.string() }).optional(),
});
export const RunEndSchema = ev('run_end', {
  status: AuditRunStatus,
  turns: z.number().int(),
  usage: Usage,
  cost_usd: z.number().nullable(),
  duration_ms: z.number(),
  error: z.string().optional(),
  output_preview: z.string().optional(),
});
export const ModelCallSchema = ev('model_call', {
  provider: z.string(),
  model: z.string(),
  turn: z.number().int(),
  estimated_input_tokens: z.number().nullable(),
  /** Null when the stream ended without reporting usage (interrupted). */
  usage: Usage.nullable(),
  latency_ms: z.number(),
  retries: z.number().int(),
  stop_reason: z.string().nullable(),
  error: z.string().optional(),
});
export const ToolCallSchema = ev('tool_call', {
  tool: z.string(),
  args_digest: z.string(),
  decision: ToolDecisionSchema,
  rule: z.string().nullable(),
  duration_ms: z.number(),
  outcome: z.enum(['ok', 'error']),
  args_preview: z.string().optional(),
  result_preview: z.string().optional(),
});
export const PermissionDeniedSchema = ev('permission_denied', {
  tool: z.string(),
  rule: z.string().nullable(),
  reason: z.string(),
});
const budgetShape = {
  /** Which ledger scope: "run", "root", "agent:<name>:daily", … */
  scope: z.string(),
  tokens: z.number(),
  usd: z.number().nullable(),
  message: z.string().optional(),
};
export const BudgetReserveSchema = ev('budget_reserve', budgetShape);
export const BudgetCommitSchema = ev('budget_commit', budgetShape);
export const BudgetRefusedSchema = ev('budget_refused', budgetShape);
export const DelegationSchema = ev('delegation', {
  child_run_id: z.string(),
  child_agent: z.string(),
  hop: z.enum(['process', 'in-process']),
});
export const CancelledSchema = ev('cancelled', { reason: z.string() });
export const ErrorEventSchema = ev('error', { message: z.string() });
export const ArtifactSchema = ev('artifact', { name: z.string(), path: z.string(), bytes: z.number().int() });

export const AuditEventSchema = z.discriminatedUnion('event', [
  ServerStartSchema,
  ServerStopSchema,
  RunStartSchema,
  RunEndSchema,
  ModelCallSchema,
  ToolCallSchema,
  PermissionDeniedSchema,
  BudgetReserveSchema,
  BudgetCommitSchema,
  BudgetRefusedSchema,
  DelegationSchema,
  CancelledSchema,
  ErrorEventSchema,
  ArtifactSchema,
]);

export type AuditEvent = z.infer<typeof AuditEventSchema>;
export type AuditEventKind = AuditEvent['event'];
export type AuditEventOf<K extends AuditEventKind> = Extract<AuditEvent, { event: K }>;
export const AUDIT_EVENT_KINDS: readonly AuditEventKind[] = AuditEventSchema.options.map((o) => o.shape.event.value);

type FilledByWriter = 'v' | 'ts' | 'seq' | 'pid' | 'node';
type ContextKey = 'run_id' | 'parent_run_id' | 'root_run_id' | 'depth' | 'agent';

/** The run context every run-level event carries. */
export interface RunContext {
  run_id: string;
  parent_run_id: string | null;
  root_run_id: string;
  depth: number;
  agent: string;
}

/** What callers pass to `AuditLog.emit`: the writer fills v/ts/seq/pid; context fields default to null. */
export type AuditEventInput = AuditEvent extends infer E
  ? E extends AuditEvent
    ? Omit<E, FilledByWriter | ContextKey> & Partial<Pick<E, ContextKey>>
    : never
  : never;

/** An event without its run context, for emitters that already hold one (`AuditLog.forRun`). */
export type RunEventInput = AuditEventInput extends infer E ? (E extends AuditEventInput ? Omit<E, ContextKey> : never) : never;

/** JSON with object keys sorted recursively, so equal values always digest equally. */
export function canonicalJson(value: unknown): string {
  const out = JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'bigint') return v.toString();
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      return Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]]));
    }
    return v;
  });
  return out ?? 'null';
}

/** `sha256:` + first 16 hex digits of sha256(canonical JSON). */
export function digest(value: unknown): string {
  return 'sha256:' + sha256Hex(canonicalJson(value)).slice(0, 16);
}
