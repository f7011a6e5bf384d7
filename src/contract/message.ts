// The conversation of a run in the one normalised shape every provider adapter speaks; wire formats
// (Anthropic Messages, OpenAI Responses, OpenAI Chat Completions) stay inside the adapters.
import { z } from 'zod';
import { ToolCall } from './tool.js';

export const ToolResultMessage = z.object({
  callId: z.string(),
  name: z.string(),
  content: z.string(),
  isError: z.boolean(),
});
export type ToolResultMessage = z.infer<typeof ToolResultMessage>;

export const Message = z.discriminatedUnion('role', [
  z.object({ role: z.literal('user'), content: z.string() }),
  z.object({ role: z.literal('assistant'), text: z.string(), toolCalls: z.array(ToolCall) }),
  z.object({ role: z.literal('tool'), results: z.array(ToolResultMessage) }),
]);
export type Message = z.infer<typeof Message>;

export const StopReason = z.enum(['end_turn', 'tool_use', 'max_tokens', 'stop_sequence', 'refusal', 'other']);
export type StopReason = z.infer<typeof StopReason>;
