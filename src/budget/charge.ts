// What a finished model call is charged: its reported usage, or for a stream cut short (or without
// usage) the larger of the report and the input estimate plus the output streamed, or with neither the
// whole reservation (the safe upper bound). Pure: the ledgers apply the result to their scopes.
import type { Usage } from '../contract/usage.js';
import { emptyUsage, inputTokens, totalTokens } from '../contract/usage-sum.js';
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
  let charged: Usage;
  const streamed = fallback && Number.isFinite(fallback.streamedOutputTokens) ? Math.max(0, Math.ceil(fallback.streamedOutputTokens)) : undefined;
  const estimate = Math.max(res.inputTokens, fallback?.inputEstimate !== undefined && Number.isFinite(fallback.inputEstimate) ? Math.ceil(fallback.inputEstimate) : 0);
  if (u) {
    basis = 'usage';
    charged = { ...u };
    // A stream cut short reported only part of its usage (e.g. Anthropic's message_start, 1 output token):
    // charge the larger of the report and what is known to have been sent and received.
    if (fallback?.cut && streamed !== undefined) {
      const reportedInput = inputTokens(charged);
      if (estimate > reportedInput) {
        charged.input_tokens += estimate - reportedInput;
        basis = 'streamed';
      }
      if (streamed > charged.output_tokens) {
        charged.output_tokens = streamed;
        basis = 'streamed';
      }
    }
  } else if (streamed !== undefined) {
    basis = 'streamed';
    charged = { ...emptyUsage(), input_tokens: estimate, output_tokens: streamed };
  } else {
    basis = 'reserved';
    charged = { ...emptyUsage(), input_tokens: res.inputTokens, output_tokens: res.maxOutputTokens };
  }
  const usd = usdOverride !== undefined ? usdOverride : res.price ? usageCost(res.price, charged) : null;
  return { tokens: totalTokens(charged), usd, usage: charged, basis };
}

export function validUsage(u: Usage): boolean {
  const ok = (n: unknown) => typeof n === 'number' && Number.isFinite(n) && n >= 0;
  return ok(u.input_tokens) && ok(u.output_tokens) && ok(u.cache_read_input_tokens) && ok(u.cache_creation_input_tokens);
}
