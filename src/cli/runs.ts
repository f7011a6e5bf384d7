// `delegate-mcp runs`: recent runs from the audit log, with their ids (for `audit --run ID`).
import type { Command } from 'commander';
import { loadConfig, type ConfigOverrides } from '../config/config.js';
import { ConfigError } from '../config/config-error.js';
import { openStateDir } from '../config/state-dir.js';
import { readAuditDir } from '../audit/reader.js';
import { listRuns, parseSince, renderRunList, RUN_STATUSES } from '../audit/runs-view.js';

interface RunsCliOptions extends ConfigOverrides {
  agent?: string;
  status?: string;
  since?: string;
  limit?: string;
  roots?: boolean;
  json?: boolean;
}

export function registerRunsCommand(program: Command, common: { addCommon: (cmd: Command) => Command }): void {
  common
    .addCommon(program.command('runs').description('list recent runs from the audit log, newest first, with their ids (details: audit --run ID)'))
    .option('--agent <name>', 'only runs of this agent')
    .option('--status <status>', `only runs with this status (${RUN_STATUSES.join(', ')})`)
    .option('--since <when>', 'runs started since: an ISO date/time or a span such as 30m, 12h, 7d (default 7d)')
    .option('--limit <n>', 'at most this many runs (default 50)')
    .option('--roots', 'only top-level runs (not the runs they delegated to)')
    .option('--json', 'print as JSON')
    .action((opts: RunsCliOptions) => {
      const cfg = loadConfig(opts);
      openStateDir(cfg);
      if (!cfg.auditDir) throw new ConfigError('the audit log is switched off (delegate.audit.enabled: false): there are no runs to list');
      if (opts.status !== undefined && !(RUN_STATUSES as readonly string[]).includes(opts.status)) {
        throw new ConfigError(`--status: expected one of ${RUN_STATUSES.join(', ')}, got "${opts.status}"`);
      }
      const since = parseSince(opts.since ?? '7d');
      if (!since) throw new ConfigError(`--since: not a date or a span like 12h or 7d: "${opts.since}"`);
      const limit = opts.limit === undefined ? 50 : Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new ConfigError(`--limit: expected a positive whole number, got "${opts.limit}"`);
      const { events, torn, invalid } = readAuditDir(cfg.auditDir, { since });
      if (torn || invalid) process.stderr.write(`note: skipped ${torn} torn and ${invalid} invalid line(s) in ${cfg.auditDir}\n`);
      const runs = listRuns(events, { agent: opts.agent, status: opts.status, since, rootsOnly: opts.roots, limit });
      process.stdout.write(opts.json ? JSON.stringify({ runs }, null, 2) + '\n' : renderRunList(runs));
    });
}
