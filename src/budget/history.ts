// What runs of an agent on a model have recently spent, so a run can be admitted on what it is
// expected to cost (a high percentile of its recent runs) instead of its worst case (the prompt
// estimate plus the whole max output of every call). Fed by the ledger when a run closes, and rebuilt
// from the ledger files at start (today's and yesterday's), so it survives a restart.

/** Runs kept per agent and model. */
export const HISTORY_RUNS = 20;
/** Runs needed before the history is trusted; until then admission falls back to the worst case. */
export const HISTORY_MIN_RUNS = 3;
/** The percentile of recent spend a run is admitted on. */
export const HISTORY_PERCENTILE = 0.9;

export interface ExpectedCost {
  tokens: number;
  /** null when some recent run had no price (tokens only). */
  usd: number | null;
  runs: number;
}

export class RunHistory {
  private readonly byKey = new Map<string, { tokens: number; usd: number | null }[]>();

  /** One finished run's own spend (its calls, not its delegated children's runs: they are admitted on their own). */
  record(agent: string, model: string | undefined, self: { tokens: number; usd: number; unpricedTokens: number; calls: number }): void {
    if (!model || self.calls === 0) return;
    const key = `${agent}\u0000${model}`;
    let list = this.byKey.get(key);
    if (!list) this.byKey.set(key, (list = []));
    list.push({ tokens: self.tokens, usd: self.unpricedTokens > 0 ? null : self.usd });
    if (list.length > HISTORY_RUNS) list.splice(0, list.length - HISTORY_RUNS);
  }

  /** The 90th percentile (nearest rank) of recent runs' spend, or undefined without enough history. */
  expected(agent: string, model: string): ExpectedCost | undefined {
    const list = this.byKey.get(`${agent}\u0000${model}`);
    if (!list || list.length < HISTORY_MIN_RUNS) return undefined;
    const rank = Math.max(0, Math.ceil(HISTORY_PERCENTILE * list.length) - 1);
    const tokens = list.map((r) => r.tokens).sort((a, b) => a - b)[rank];
    const priced = list.every((r) => r.usd !== null);
    const usd = priced ? list.map((r) => r.usd as number).sort((a, b) => a - b)[rank] : null;
    return { tokens, usd, runs: list.length };
  }
}
