// Arithmetic on Usage. No zod here (see usage.ts): the worker imports these at run time.
import type { Usage } from './usage.js';

export const emptyUsage = (): Usage => ({
  input_tokens: 0,
  output_tokens: 0,
  cache_read_input_tokens: 0,
  cache_creation_input_tokens: 0,
});

/** Adds `u` into `total` (in place). */
export function addUsage(total: Usage, u: Usage): void {
  total.input_tokens += u.input_tokens;
  total.output_tokens += u.output_tokens;
  total.cache_read_input_tokens += u.cache_read_input_tokens;
  total.cache_creation_input_tokens += u.cache_creation_input_tokens;
}

/** Input tokens, cached or not: what the model actually read (`input_tokens` counts only the uncached). */
export const inputTokens = (u: Usage): number => u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens;

/** All tokens of a usage, input (cached or not) and output. */
export const totalTokens = (u: Usage): number =>
  u.input_tokens + u.output_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens;
