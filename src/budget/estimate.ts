// Scales the worker's pre-call input estimate (o200k tokenizer, see worker/tokens.ts) to the model's
// own tokenizer, learning a per-model factor from the usage providers report.
//
// o200k is exact for current OpenAI models, so they start at 1.0. Claude's tokenizer produces more
// tokens for the same text; 1.15 is a deliberately slightly-high start so the first reservations
// err on the safe side until real usage has been seen.
//
// Usage (orchestrator):
//   const est = scaler.scale(modelRef, raw);                // before ledger.reserve({ inputTokens: est })
//   scaler.learn(modelRef, raw, inputTokens(u));               // contract/usage-sum.ts
// `actualInputTokens` must be the WHOLE prompt (uncached + cache read + cache write): the raw estimate
// counts the whole prompt too.

export const MIN_FACTOR = 0.5;
export const MAX_FACTOR = 3;
export const CLAUDE_START = 1.15;

export interface TokenScalerOptions {
  /** Weight of the newest observation in the moving average (0 < alpha ≤ 1). Default 0.3. */
  alpha?: number;
  /** Estimates below this are too small for a meaningful ratio (framing overhead dominates). Default 32. */
  minSample?: number;
}

const clamp = (x: number) => Math.min(MAX_FACTOR, Math.max(MIN_FACTOR, x));

export function isClaudeModel(modelRef: string): boolean {
  const ref = modelRef.trim().toLowerCase();
  const slash = ref.indexOf('/');
  const provider = slash < 0 ? '' : ref.slice(0, slash);
  const model = slash < 0 ? ref : ref.slice(slash + 1);
  return provider === 'anthropic' || model.startsWith('claude');
}

export class TokenScaler {
  private readonly factors = new Map<string, number>();
  private readonly alpha: number;
  private readonly minSample: number;

  constructor(opts: TokenScalerOptions = {}) {
    this.alpha = opts.alpha ?? 0.3;
    this.minSample = opts.minSample ?? 32;
    if (!(this.alpha > 0 && this.alpha <= 1)) throw new RangeError(`TokenScaler alpha must be in (0, 1], got ${opts.alpha}`);
  }

  /** Current factor for a "provider/model" ref. */
  factor(model: string): number {
    return this.factors.get(model) ?? (isClaudeModel(model) ? CLAUDE_START : 1);
  }

  /** The estimate to reserve: rounded UP so scaling never under-reserves by a fraction. */
  scale(model: string, rawEstimate: number): number {
    if (!Number.isFinite(rawEstimate) || rawEstimate <= 0) return 0;
    return Math.ceil(rawEstimate * this.factor(model));
  }

  /** Feeds one observation: the raw (unscaled) estimate and the input tokens the provider reported. */
  learn(model: string, rawEstimate: number, actualInputTokens: number): void {
    if (!Number.isFinite(rawEstimate) || !Number.isFinite(actualInputTokens)) return;
    if (rawEstimate < this.minSample || actualInputTokens <= 0) return;
    const ratio = clamp(actualInputTokens / rawEstimate);
    const next = (1 - this.alpha) * this.factor(model) + this.alpha * ratio;
    this.factors.set(model, clamp(next));
  }

  /** Learned factors (for status / debugging). */
  snapshot(): Record<string, number> {
    return Object.fromEntries(this.factors);
  }
}
