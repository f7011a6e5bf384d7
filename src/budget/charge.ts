// What a finished model call is charged: its reported usage, or for a stream cut short (or without
// usage) the larger of the report and the input estimate plus the output streamed, or with neither the
// whole reservation (the safe upper bound). Pure: the ledgers apply the result to their scopes.
import type { Usage } from '../contract/usage.js';
import type { ChargeBasis } from './ledger-file.js';
import { usageCost, type ResolvedPrice } from './prices.js';
import type { Charge, CommitFallback } from './types.js';

/** The reservation a charge settles, as far as the charge depends on it. */
export interface ChargedReservation {
  inputTokens: number;
  maxOutputTokens: number;
  price: ResolvedPrice | null;
}

/**
 * `usage` must have passed validUsage (or be null). `usdOverride`: the USD to charge instead of pricing
 * the parts at the reservation's model (usage reported by a re-entry child, whose tree may have used
 * several models).
 */
export function chargeFor(res: ChargedReservation, usage: Usage | null, fallback?: CommitFallback, usdOverride?: number | null): Charge {
  const u = usage;
  let basis: ChargeBasis;
  let parts: { input: number; output: number; cache_read: number; cache_write: number };
  const streamed = fallback && Number.isFinite(fallback.streamedOutputTokens) ? Math.max(0, Math.ceil(fallback.streamedOutputTokens)) : undefined;
  const estimate = Math.max(res.inputTokens, fallback?.inputEstimate !== undefined && Number.isFinite(fallback.inputEstimate) ? Math.ceil(fallback.inputEstimate) : 0);
  if (u) {
    basis = 'usage';
    parts = { input: u.input_tokens, output: u.output_tokens, cache_read: u.cache_read_input_tokens, cache_write: u.cache_creation_input_tokens };
    // A stream cut short reported only part of its usage (e.g. Anthropic's message_start, 1 output token):
    // charge the larger of the report and what is known to have been sent and received.
    if (fallback?.cut && streamed !== undefined) {
      const reportedInput = parts.input + parts.cache_read + parts.cache_write;
      if (estimate > reportedInput) {
        parts.input += estimate - reportedInput;
        basis = 'streamed';
      }
      if (streamed > parts.output) {
        parts.output = streamed;
        basis = 'streamed';
      }
    }
  } else if (streamed !== undefined) {
    basis = 'streamed';
    parts = { input: estimate, output: streamed, cache_read: 0, cache_write: 0 };
  } else {
    basis = 'reserved';
    parts = { input: res.inputTokens, output: res.maxOutputTokens, cache_read: 0, cache_write: 0 };
  }
  const tokens = parts.input + parts.output + parts.cache_read + parts.cache_write;
  const usd = usdOverride !== undefined
    ? usdOverride
    : res.price
    ? usageCost(res.price, {
        input_tokens: parts.input,
        output_tokens: parts.output,
        cache_read_input_tokens: parts.cache_read,
        cache_creation_input_tokens: parts.cache_write,
      })
    : null;
  return { tokens, usd, parts, basis };
}

export function validUsage(u: Usage): boolean {
  const ok = (n: unknown) => typeof n === 'number' && Number.isFinite(n) && n >= 0;
  return ok(u.input_tokens) && ok(u.output_tokens) && ok(u.cache_read_input_tokens) && ok(u.cache_creation_input_tokens);
}
