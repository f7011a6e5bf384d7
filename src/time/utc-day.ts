// The UTC day: audit files, budget books and `--day` are all cut at UTC midnight. A leaf: imports nothing.

export const DAY_MS = 86_400_000;

/** `YYYY-MM-DD` of the UTC day `d` falls in. */
export function utcDay(d: Date): string {
  return d.toISOString().slice(0, 10);
}
