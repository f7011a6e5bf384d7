// How a duration is printed to people (audit summaries, run trees, the fan-out table). A leaf.

/**
 * `850ms`, `12.3s`, `2m05s`; `-` when unknown. Past a minute the seconds are cut (`floor`, the audit
 * views) or rounded (`round`, the fan-out table, so 119.6 s shows as 2m00s).
 */
export function formatDuration(ms: number | null, seconds: 'floor' | 'round' = 'floor'): string {
  if (ms === null) return '-';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = seconds === 'round' ? Math.round(ms / 1000) : Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}
