// How token counts and costs read in the audit's plain-text views (summary, run tree).

export function fmtTokens(n: number): string {
  if (n < 1000) return String(n);
  if (n < 1_000_000) return `${(n / 1000).toFixed(n < 10_000 ? 1 : 0)}k`;
  return `${(n / 1_000_000).toFixed(2)}M`;
}

export function fmtCost(usd: number): string {
  return `$${usd.toFixed(usd >= 100 ? 0 : usd >= 1 ? 2 : 4)}`;
}
