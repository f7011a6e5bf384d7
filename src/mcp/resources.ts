// MCP resources: the audit summary (what ran, who spent what) and the artifacts runs produced.
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/server';
import { readAuditDir } from '../audit/reader.js';
import { renderSummary, summarize } from '../audit/summary.js';
import type { Orchestrator } from '../orchestrator/orchestrator.js';

/** `owner`: the client session; it lists and reads only the artifacts of the runs it started. */
export function registerResources(server: McpServer, orchestrator: Orchestrator, owner: string): void {
  const auditDir = orchestrator.cfg.auditDir;
  if (auditDir) {
    server.registerResource(
      'audit-summary',
      'audit://summary/today',
      {
        title: 'Audit summary (today, UTC)',
        description: 'Runs per agent and per model today: ok/error/cancelled/denied counts, tokens, cost, p50/p95 duration.',
        mimeType: 'application/json',
      },
      async (uri) => {
        const since = new Date();
        since.setUTCHours(0, 0, 0, 0);
        const { events } = readAuditDir(auditDir, { since });
        const summary = summarize(events, { since });
        return {
          contents: [
            { uri: uri.href, mimeType: 'application/json', text: JSON.stringify(summary, null, 2) },
            { uri: uri.href, mimeType: 'text/plain', text: renderSummary(summary) },
          ],
        };
      },
    );
  }

  server.registerResource(
    'artifact',
    new ResourceTemplate('artifact://{run_id}/{name}', {
      list: async () => ({
        resources: orchestrator.artifacts.list(owner).map((a) => ({
          uri: a.uri,
          name: `${a.uri.slice('artifact://'.length)}`,
          description: `${a.name} (${a.bytes} bytes)`,
          mimeType: a.name.endsWith('.md') ? 'text/markdown' : 'text/plain',
        })),
      }),
    }),
    { description: 'A deliverable written by an agent run (declared in its `artifacts`).', mimeType: 'text/plain' },
    async (uri, vars) => {
      const runId = String(vars.run_id);
      const name = decodeURIComponent(String(vars.name));
      const text = orchestrator.artifacts.read(runId, name, owner);
      if (text === undefined) throw new Error(`no artifact ${name} for run ${runId}`);
      return { contents: [{ uri: uri.href, mimeType: name.endsWith('.md') ? 'text/markdown' : 'text/plain', text }] };
    },
  );
}
