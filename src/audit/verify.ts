// `delegate-mcp audit verify`: walks the hash chains of the audit log and the budget ledger.
import { verifyChainDir, type ChainReport } from '../storage/hash-chain.js';

/** Every chained file of the audit dir (audit-*.jsonl) and the ledger dir (ledger-*.jsonl). */
export function verifyStateChains(dirs: { auditDir?: string; ledgerDir?: string }): ChainReport[] {
  return [...(dirs.auditDir ? verifyChainDir(dirs.auditDir, 'audit') : []), ...(dirs.ledgerDir ? verifyChainDir(dirs.ledgerDir, 'ledger') : [])];
}

export function renderChainReports(reports: ChainReport[], dirs: string[]): string {
  if (!reports.length) return `no audit or ledger files in ${[...new Set(dirs)].join(', ')}`;
  const out = reports.map((r) => {
    if (r.broken) return `BROKEN  ${r.broken.file}:${r.broken.line}: ${r.broken.reason}`;
    const notes = [
      r.tornTail ? 'last line torn by a crash' : '',
      r.unchained ? `${r.unchained} line(s) at the start written before chaining (not protected)` : '',
    ].filter(Boolean);
    return `ok      ${r.file} (${r.lines} lines${notes.length ? `; ${notes.join('; ')}` : ''})`;
  });
  const broken = reports.filter((r) => r.broken).length;
  out.push(broken ? `${broken} of ${reports.length} file(s) broken` : `${reports.length} file(s) verified, no break`);
  return out.join('\n');
}
