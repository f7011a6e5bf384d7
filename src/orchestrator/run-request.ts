// What starting a run takes: the request a transport (MCP tool call, CLI, queue job, a delegating run)
// hands to Orchestrator.start/run.
import type { AgentDefinition } from '../agents/definition.js';
import { suggest } from '../file-errors/positions.js';
import type { RuleSet } from '../permissions/index.js';
import type { TraceContext } from '../telemetry/types.js';
import type { CallBudget } from './budget-gate.js';
import type { CallChain } from './chain.js';
import type { AskFn } from './tool-gate.js';

export interface RunRequest {
  agent: string;
  /** The run's id when someone else minted it (a queue front: job id = run id); otherwise made at start. */
  runId?: string;
  input: Record<string, unknown>;
  /** The client session that owns the run (background runs are visible only to it). */
  owner?: string;
  /** Caller-requested deadline; can only lower the agent's and the server's. */
  timeoutS?: number;
  /** Aborts the run (client cancellation or disconnect). */
  signal?: AbortSignal;
  /** Short human progress lines ("turn 2/8 · read_file src/app.ts · 1.9k tokens"). */
  onProgress?: (message: string) => void;
  /** Caller caps; they can only lower the agent's own (a model-supplied argument never raises one). */
  budget?: CallBudget;
  /** A background run: its record is kept for runs.keepS after it ends (others are dropped when they end). */
  background?: boolean;
  /** The run (or fan-out batch) this one is delegated from: its budget is a slice of the parent's. */
  parentRunId?: string;
  /**
   * The parent's budget scope is in another process's books (a queue front's, which reserved this run's
   * slice and sent it as `budget`): the run opens as a root in ours; parentRunId is its lineage only.
   */
  parentBooksElsewhere?: boolean;
  /** Root of the delegation tree and this run's depth in it (for the audit trail). */
  rootRunId?: string;
  depth?: number;
  /** Who asked, for the audit log: an MCP client, "cli", or "agent:<name>". */
  caller?: string;
  /** The call chain this run arrives with (from a delegating agent, in-process or over the re-entry hop). */
  chain?: CallChain;
  /** The chain came in a caller's `_meta` without our parent's signature: its limits hold, its ids are only a claim (chain.ts). */
  chainClaimed?: boolean;
  /** Asks the client to approve a call an `ask` rule covers; without it such calls are denied. */
  ask?: AskFn;
  /** The delegating caller's permission rules: the run may only do what both allow. */
  callerRules?: RuleSet;
  /** The trace this run belongs to (the MCP request's span, or the delegating tool call's), when telemetry is on. */
  trace?: TraceContext;
  /** A built-in agent that is not in the store (create_agent's drafter); `agent` is its name. */
  definition?: AgentDefinition;
}

/** `unknown agent "code-reviewr" (did you mean "code-reviewer"?; available: …)`. */
export function unknownAgentMessage(name: string, available: readonly string[]): string {
  const hint = suggest(name, available);
  return `unknown agent "${name}"${hint ? ` (did you mean "${hint}"?)` : ''}; available: ${available.join(', ') || 'none'}`;
}
