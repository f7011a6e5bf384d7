// Model prices for budget accounting, in USD per million tokens.
//
// The defaults below are public LIST prices as known when this file was written (late 2025). They
// drift, differ by contract, region and batch/priority tier, and are NOT authoritative: override
// them in mcp.json (`delegate.budget.prices`), where entries are merged over these defaults.
// Not modelled: Anthropic's long-context (>200k input) surcharge for Sonnet, 1-hour cache writes
// (2x input; the 5-minute rate 1.25x is used), OpenAI flex/priority tiers and batch discounts.
//
// Keys are provider-local model ids ("claude-sonnet-4-5"); a full "provider/model" key is also
// accepted in overrides and wins over the local id (e.g. "openrouter/anthropic/claude-sonnet-4.5").
import { z } from 'zod';
import type { Usage } from '../contract/usage.js';

export interface ModelPrice {
  /** Uncached input. */
  input: number;
  output: number;
  /** Cache hits; defaults to `input` when absent. */
  cache_read?: number;
  /** Cache writes; defaults to `input` when absent (OpenAI does not charge extra for them). */
  cache_write?: number;
}

export type PriceTable = Record<string, ModelPrice>;

const rate = z.number().finite().min(0);
export const ModelPriceSchema = z.strictObject({
  input: rate,
  output: rate,
  cache_read: rate.optional(),
  cache_write: rate.optional(),
});
export const PriceTableSchema = z.record(z.string().min(1), ModelPriceSchema);

export const DEFAULT_PRICES: Readonly<PriceTable> = Object.freeze({
  // Anthropic: cache read 0.1x input, 5-minute cache write 1.25x input.
  // Claude 5.5 (platform.claude.com model pages, 2026): Haiku 5.5's higher rate above 100k input tokens
  // ($0.50/$2.50) is not modelled.
  'claude-opus-5-5': { input: 4, output: 20, cache_read: 0.4, cache_write: 5 },
  'claude-sonnet-5-5': { input: 2, output: 10, cache_read: 0.2, cache_write: 2.5 },
  'claude-haiku-5-5': { input: 0.1, output: 0.5, cache_read: 0.01, cache_write: 0.125 },
  'claude-opus-4-5': { input: 5, output: 25, cache_read: 0.5, cache_write: 6.25 },
  'claude-opus-4-1': { input: 15, output: 75, cache_read: 1.5, cache_write: 18.75 },
  'claude-opus-4': { input: 15, output: 75, cache_read: 1.5, cache_write: 18.75 },
  'claude-sonnet-4-5': { input: 3, output: 15, cache_read: 0.3, cache_write: 3.75 },
  'claude-sonnet-4': { input: 3, output: 15, cache_read: 0.3, cache_write: 3.75 },
  'claude-haiku-4-5': { input: 1, output: 5, cache_read: 0.1, cache_write: 1.25 },
  'claude-3-7-sonnet': { input: 3, output: 15, cache_read: 0.3, cache_write: 3.75 },
  'claude-3-5-haiku': { input: 0.8, output: 4, cache_read: 0.08, cache_write: 1 },
  // OpenAI: cached input is discounted; cache writes cost plain input.
  'gpt-5.1': { input: 1.25, output: 10, cache_read: 0.125 },
  'gpt-5': { input: 1.25, output: 10, cache_read: 0.125 },
  'gpt-5-mini': { input: 0.25, output: 2, cache_read: 0.025 },
  'gpt-5-nano': { input: 0.05, output: 0.4, cache_read: 0.005 },
  'gpt-4.1': { input: 2, output: 8, cache_read: 0.5 },
  'gpt-4.1-mini': { input: 0.4, output: 1.6, cache_read: 0.1 },
  'gpt-4.1-nano': { input: 0.1, output: 0.4, cache_read: 0.025 },
  'gpt-4o': { input: 2.5, output: 10, cache_read: 1.25 },
  'gpt-4o-mini': { input: 0.15, output: 0.6, cache_read: 0.075 },
  o3: { input: 2, output: 8, cache_read: 0.5 },
  'o3-mini': { input: 1.1, output: 4.4, cache_read: 0.55 },
  'o4-mini': { input: 1.1, output: 4.4, cache_read: 0.275 },
});

/** A price resolved for one model, with the table key it came from (for messages). */
export interface ResolvedPrice {
  key: string;
  input: number;
  output: number;
  cache_read: number;
  cache_write: number;
}

// Separators that may follow a known id in a longer one: dated snapshots ("claude-sonnet-4-5-20250929",
// "gpt-5-2025-08-07"), aliases ("-latest"), Bedrock/Vertex style ("@20250929", ":0"). A dot is NOT
// one: "gpt-4.1" must never match a hypothetical "gpt-4" entry.
const SEPARATORS = new Set(['-', '@', ':']);

export class Prices {
  private readonly table: PriceTable;
  private readonly cache = new Map<string, ResolvedPrice | null>();

  /** `overrides` are merged over DEFAULT_PRICES; invalid entries throw (they come from config). */
  constructor(overrides: PriceTable = {}) {
    const parsed = PriceTableSchema.safeParse(overrides);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new Error(`invalid budget price table at ${issue.path.join('.') || '(root)'}: ${issue.message}`);
    }
    this.table = { ...DEFAULT_PRICES, ...parsed.data };
  }

  /**
   * Price for "provider/model" (or a bare model id). Order: exact full ref, exact local id, then the
   * longest table key that prefixes the local id at a separator. null = unknown (count tokens only).
   */
  lookup(modelRef: string): ResolvedPrice | null {
    const hit = this.cache.get(modelRef);
    if (hit !== undefined) return hit;
    const resolved = this.resolve(modelRef);
    this.cache.set(modelRef, resolved);
    return resolved;
  }

  private resolve(modelRef: string): ResolvedPrice | null {
    const local = localModelId(modelRef);
    let key: string | undefined;
    if (Object.hasOwn(this.table, modelRef)) key = modelRef;
    else if (Object.hasOwn(this.table, local)) key = local;
    else {
      for (const k of Object.keys(this.table)) {
        if (local.length > k.length && local.startsWith(k) && SEPARATORS.has(local[k.length]) && (!key || k.length > key.length)) key = k;
      }
    }
    if (key === undefined) return null;
    const p = this.table[key];
    return { key, input: p.input, output: p.output, cache_read: p.cache_read ?? p.input, cache_write: p.cache_write ?? p.input };
  }
}

/**
 * "anthropic/claude-sonnet-4-5" → "claude-sonnet-4-5" (only the FIRST slash separates, as in
 * providers/model-ref.ts); a bare id is returned as is. Never throws: prices must not fail a call.
 */
export function localModelId(modelRef: string): string {
  const ref = modelRef.trim();
  const slash = ref.indexOf('/');
  return slash < 0 ? ref : ref.slice(slash + 1).trim();
}

/** USD for a reported usage. */
export function usageCost(p: ResolvedPrice, u: Usage): number {
  return (
    (u.input_tokens * p.input + u.output_tokens * p.output + u.cache_read_input_tokens * p.cache_read + u.cache_creation_input_tokens * p.cache_write) /
    1e6
  );
}

/** USD for a planned call: input priced as uncached (see ledger.ts on cache-write over-runs). */
export function plannedCost(p: ResolvedPrice, inputTokens: number, outputTokens: number): number {
  return (inputTokens * p.input + outputTokens * p.output) / 1e6;
}
