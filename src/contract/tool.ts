// Tools as the model sees them (spec), as it calls them (call), and what a call returns (outcome).
import { z } from 'zod';
import { JsonSchema } from './json-schema.js';

export const ToolSpec = z.object({
  name: z.string(),
  description: z.string(),
  inputSchema: JsonSchema,
});
export type ToolSpec = z.infer<typeof ToolSpec>;

export const ToolCall = z.object({
  /** Provider-assigned id, echoed back with the result (Anthropic tool_use.id / OpenAI call_id). */
  id: z.string(),
  name: z.string(),
  /** Parsed arguments; adapters parse streamed JSON and pass `{}` plus `parseError` when it is invalid. */
  arguments: z.record(z.string(), z.unknown()),
  parseError: z.string().optional(),
});
export type ToolCall = z.infer<typeof ToolCall>;

export const ToolOutcome = z.object({
  content: z.string(),
  isError: z.boolean(),
  /** run_command: protected paths the command created, removed after it (absolute); audited as refusals. */
  removedProtected: z.array(z.string()).optional(),
});
export type ToolOutcome = z.infer<typeof ToolOutcome>;
