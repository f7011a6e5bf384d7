// A run's status and its result, as the orchestrator settles it and every caller (MCP tools, the CLI,
// run records) reads it. The MCP tool's answer-first view of it is in mcp/tool-results.ts (RunResultSchema).
import { z } from 'zod';
import { Usage } from './usage.js';

/**
 * How a run ended. `error`: the run itself ended in an error (its model, provider, tools, budget check);
 * `failed`: what was running it failed under it (queue mode: the worker holding it was lost or could not
 * run the job), so the run may not have finished its work. The audit log adds 'denied' (a delegation
 * refused before it ran), see audit/events.ts.
 */
export const RunStatus = z.enum(['ok', 'max_turns', 'error', 'failed', 'cancelled', 'timeout', 'budget_exhausted']);
export type RunStatus = z.infer<typeof RunStatus>;

/** A deliverable written from a run's answer, readable as an MCP resource. */
export const Artifact = z.object({ name: z.string(), uri: z.string(), bytes: z.number() });
export type Artifact = z.infer<typeof Artifact>;

export const RunResult = z.object({
  run_id: z.string(),
  agent: z.string(),
  status: RunStatus,
  output: z.string(),
  /** The answer parsed as JSON, for an agent with output_schema (validated against it in the worker). */
  structured: z.unknown().optional(),
  turns: z.number(),
  usage: Usage,
  model: z.string(),
  duration_ms: z.number(),
  /** USD for the run and its children; null when no price is known for its model (tokens only). */
  cost_usd: z.number().nullable(),
  /** Deliverables written from the answer, readable as MCP resources. */
  artifacts: z.array(Artifact).optional(),
  /** Budget notes, e.g. a max output shrunk to fit, or a model with no known price. */
  notes: z.array(z.string()).optional(),
  error: z.string().optional(),
});
export type RunResult = z.infer<typeof RunResult>;
