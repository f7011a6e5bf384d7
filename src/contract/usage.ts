// Token usage of model calls, in Anthropic's field names (every adapter converts to these).
// The sums live in usage-sum.ts, apart from the schema: the worker adds usage on every turn and its
// bundle carries no zod (start-up cost), so it must not load this file at run time.
import { z } from 'zod';

export const Usage = z.object({
  /** Uncached input tokens (Anthropic `input_tokens`; OpenAI input minus cached). */
  input_tokens: z.number(),
  output_tokens: z.number(),
  cache_read_input_tokens: z.number(),
  cache_creation_input_tokens: z.number(),
});
export type Usage = z.infer<typeof Usage>;
