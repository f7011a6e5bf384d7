// The budget books as text: budget_status's text content and `delegate-mcp budget`.
import type { BudgetStatus } from '../budget/types.js';

type BudgetStatusView = BudgetStatus;

/** A compact text view of the books (the structured form carries everything). */
export function renderBudget(st: BudgetStatusView): string {
  const lim = (n: number | undefined, unit: string) => (n === undefined ? 'no limit' : `${unit === '$' ? '$' + n : n} limit`);
  const line = (s: BudgetStatusView['server']) =>
    `${s.scope}: spent ${s.spent.tokens} tokens / $${s.spent.usd.toFixed(4)}, reserved ${s.reserved.tokens} (${lim(s.limits.tokens, 't')}, ${lim(s.limits.usd, '$')})`;
  const out = [`budget for ${st.day}`, line(st.server)];
  for (const a of Object.values(st.agents)) out.push(line(a));
  for (const [m, t] of Object.entries(st.models)) out.push(`model ${m}: ${t.calls} calls, ${t.tokens} tokens, ${t.usd === null ? 'no price known' : '$' + t.usd.toFixed(4)}`);
  for (const r of st.runs) out.push(`${'  '.repeat(r.depth)}${line(r)}`);
  out.push(...st.notes);
  return out.join('\n');
}
