#!/usr/bin/env node
// delegate-mcp command line: serve (stdio MCP), run one agent, list/validate agent files.
// Only this file writes to stdout, and never while serving stdio.
import { Command } from 'commander';
import { loadAgentsDir } from './agents/loader.js';
import { formatLoadError } from './agents/definition.js';
import { AgentStore } from './agents/store.js';
import { agentSources, loadAgentSources } from './agents/formats.js';
import { watchAgents } from './agents/watch.js';
import { createAgent, CreateAgentError } from './agents/create.js';
import { RESERVED_TOOL_NAMES } from './server/agent-tools.js';
import { ConfigError, loadConfig, type ConfigOverrides } from './config/config.js';
import { openStateDir } from './config/state-dir.js';
import { log } from './log.js';
import { Orchestrator } from './orchestrator/orchestrator.js';
import { BudgetGate } from './orchestrator/budget-gate.js';
import { digest } from './audit/events.js';
import { readAuditDir, renderSummary, renderTree, runTree, summarize } from './audit/reader.js';
import { renderBudget } from './server/meta-tools.js';
import { serveStdioServer } from './server/stdio.js';
import type { HttpCliOptions } from './server/http-serve.js';
import { registerFanoutCommand } from './cli/fanout.js';
import { VERSION } from './version.js';

interface CommonOpts extends ConfigOverrides {}

function addCommon(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'path to mcp.json (default: ./mcp.json when present)')
    .option('--agents <dir>', 'agents directory (default: delegate.agentsDir or ./agents)')
    .option('--workspace <dir>', 'workspace root the agents work in (default: the current directory)');
}

function boot(opts: CommonOpts) {
  const cfg = loadConfig(opts);
  openStateDir(cfg);
  const agents = new AgentStore(cfg.agentsDir, agentSources(cfg));
  agents.load();
  for (const e of agents.formattedErrors()) log.error(`agent file error: ${e}`);
  return { cfg, agents };
}

const program = new Command()
  .name('delegate-mcp')
  .description('An MCP server that exposes YAML-defined AI agents as MCP tools.')
  .version(VERSION);

addCommon(program.command('serve').description('serve MCP over stdio, or over HTTP with --http (both with --http --stdio)'))
  .option('--http', 'serve Streamable HTTP at /mcp and legacy SSE at /sse instead of stdio')
  .option('--stdio', 'with --http: also serve stdio')
  .option('--host <host>', 'HTTP bind address (default: delegate.http.host or 127.0.0.1; beyond loopback a token is required)')
  .option('--port <port>', 'HTTP port, 0 for a free one (default: delegate.http.port or 8808)')
  .option('--token <token>', 'bearer token HTTP clients must send (prefer env DELEGATE_MCP_TOKEN: flags show in ps)')
  .action(async (opts: CommonOpts & HttpCliOptions & { http?: boolean; stdio?: boolean }) => {
    const { cfg, agents } = boot(opts);
    // Refuse an unsafe HTTP setup before anything starts.
    // The HTTP stack (Node adapter, legacy SSE) loads only when asked for: stdio start-up stays fast.
    const http = opts.http ? await import('./server/http-serve.js') : undefined;
    const httpOpts = http?.resolveHttpOptions(cfg, opts);
    const orchestrator = await Orchestrator.create(cfg, agents);
    orchestrator.audit?.emit({
      event: 'server_start',
      version: VERSION,
      config_digest: digest({ delegate: cfg.delegate, mcpServers: Object.keys(cfg.mcpServers) }),
      agents_loaded: agents.exposed().length,
      agents: agents.list().map((a) => a.name),
    });
    // Hot reload: file changes reach every session as tools/list_changed (delegate.watch, default on).
    if (cfg.delegate.watch) watchAgents(agents);
    log.info(`serving ${agents.exposed().length} agents from ${cfg.agentsDir} over ${httpOpts ? (opts.stdio ? 'HTTP and stdio' : 'HTTP') : 'stdio'} (workspace ${cfg.workspace})`);
    if (http && httpOpts) await http.serveHttp(orchestrator, { ...httpOpts, stdio: opts.stdio });
    else await serveStdioServer(orchestrator);
  });

addCommon(program.command('run').description('run one agent from the terminal and print its answer'))
  .argument('<agent>', 'agent name')
  .argument('<task...>', 'the task')
  .option('--context <text>', 'extra context for the agent')
  .option('--timeout <seconds>', 'deadline for the run', Number)
  .option('--json', 'print the structured result as JSON')
  .action(async (agentName: string, taskWords: string[], opts: CommonOpts & { json?: boolean; context?: string; timeout?: number }) => {
    const { cfg, agents } = boot(opts);
    const orchestrator = await Orchestrator.create(cfg, agents);
    const abort = new AbortController();
    let interrupts = 0;
    process.on('SIGINT', () => {
      // First Ctrl-C cancels cleanly; a second one exits at once.
      if (++interrupts > 1) process.exit(130);
      process.stderr.write('\ncancelling… (Ctrl-C again to force)\n');
      abort.abort();
    });
    const tty = process.stderr.isTTY;
    const result = await orchestrator.run({
      agent: agentName,
      input: { task: taskWords.join(' '), ...(opts.context ? { context: opts.context } : {}) },
      owner: 'cli',
      timeoutS: opts.timeout,
      signal: abort.signal,
      onProgress: (m) => process.stderr.write(tty ? `\r\x1b[2K${m}` : `${m}\n`),
    });
    if (tty) process.stderr.write('\r\x1b[2K');
    await orchestrator.close();
    if (opts.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    else if (result.status === 'ok') process.stdout.write(result.output + '\n');
    else {
      process.stderr.write(`run ${result.run_id} ${result.status}: ${result.error ?? ''}\n`);
      if (result.output) process.stdout.write(result.output + '\n');
    }
    process.exitCode = result.status === 'ok' ? 0 : result.status === 'cancelled' ? 130 : 1;
  });

addCommon(program.command('budget').description("show today's budget books from the state directory (per scope, agent and model)"))
  .option('--day <YYYY-MM-DD>', 'UTC day (default today)')
  .option('--json', 'print as JSON')
  .action(async (opts: CommonOpts & { day?: string; json?: boolean }) => {
    const cfg = loadConfig(opts);
    openStateDir(cfg);
    const gate = await BudgetGate.open(cfg);
    try {
      const status = gate.ledger.status({ day: opts.day });
      process.stdout.write(opts.json ? JSON.stringify(status, null, 2) + '\n' : renderBudget(status) + '\n');
    } finally {
      await gate.close();
    }
  });

registerFanoutCommand(program, { addCommon, boot });

addCommon(program.command('audit').description('summarise the audit log per agent and model, or show the run tree of one run'))
  .option('--run <id>', 'print the run tree of this root run (children across re-entry hops included)')
  .option('--since <date>', 'start of the period (ISO date or time; default: 7 days ago)')
  .option('--until <date>', 'end of the period (ISO date or time)')
  .option('--json', 'print as JSON')
  .action((opts: CommonOpts & { run?: string; since?: string; until?: string; json?: boolean }) => {
    const cfg = loadConfig(opts);
    openStateDir(cfg);
    if (!cfg.auditDir) throw new ConfigError('the audit log is switched off (delegate.audit.enabled: false)');
    const since = opts.since ? new Date(opts.since) : opts.run ? undefined : new Date(Date.now() - 7 * 86_400_000);
    const until = opts.until ? new Date(opts.until) : undefined;
    for (const [flag, d] of [['--since', since], ['--until', until]] as const) {
      if (d && Number.isNaN(d.getTime())) throw new ConfigError(`${flag}: not a date: ${flag === '--since' ? opts.since : opts.until}`);
    }
    const { events, torn, invalid } = readAuditDir(cfg.auditDir, { since, until });
    if (torn || invalid) process.stderr.write(`note: skipped ${torn} torn and ${invalid} invalid line(s) in ${cfg.auditDir}\n`);
    if (opts.run) {
      const tree = runTree(events, opts.run);
      if (!tree) {
        process.stderr.write(`no run ${opts.run} in ${cfg.auditDir}\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(opts.json ? JSON.stringify(tree, null, 2) + '\n' : renderTree(tree) + '\n');
    } else {
      const summary = summarize(events, { since, until });
      process.stdout.write(opts.json ? JSON.stringify(summary, null, 2) + '\n' : renderSummary(summary) + '\n');
    }
  });

const agentsCmd = program.command('agents').description('inspect agent definitions');
addCommon(agentsCmd.command('list').description('list the agents and any load errors'))
  .option('--json', 'print as JSON')
  .action((opts: CommonOpts & { json?: boolean }) => {
    const cfg = loadConfig(opts);
    const catalog = loadAgentSources(agentSources(cfg));
    const list = [...catalog.agents.values()].map((a) => ({
      name: a.name,
      model: a.model ?? cfg.defaultModel ?? '(default model not set)',
      expose: a.expose,
      tools: a.tools.builtin,
      description: a.description,
      file: a.source.file,
    }));
    if (opts.json) {
      process.stdout.write(JSON.stringify({ agents: list, errors: catalog.errors.map(formatLoadError) }, null, 2) + '\n');
    } else {
      for (const a of list) process.stdout.write(`${a.name.padEnd(20)} ${a.model.padEnd(36)} ${a.description.split('\n')[0].slice(0, 80)}\n`);
      for (const e of catalog.errors) process.stderr.write(`error: ${formatLoadError(e)}\n`);
    }
    if (catalog.errors.length) process.exitCode = 1;
  });

agentsCmd
  .command('validate')
  .description('check agent files; exits 1 with file:line:col messages when anything is wrong')
  .argument('[dir]', 'agents directory (default: every agent directory from config: agentsDir, agentDirs or .claude/agents, .codex/agents)')
  .option('--config <file>', 'path to mcp.json')
  .option('--format <format>', 'format of the files in [dir]: yaml, claude-md or codex-toml', 'yaml')
  .action((dir: string | undefined, opts: CommonOpts & { format: string }) => {
    if (!['yaml', 'claude-md', 'codex-toml'].includes(opts.format)) throw new ConfigError(`--format: expected yaml, claude-md or codex-toml, got ${opts.format}`);
    const sources = dir ? [{ dir, format: opts.format as 'yaml' }] : agentSources(loadConfig(opts));
    const agentsDir = sources.map((s) => s.dir).join(', ');
    const catalog = dir && opts.format === 'yaml' ? loadAgentsDir(dir) : loadAgentSources(sources);
    for (const e of catalog.errors) process.stderr.write(`${formatLoadError(e)}\n`);
    const n = catalog.agents.size;
    if (catalog.errors.length) {
      process.stderr.write(`${catalog.errors.length} error(s); ${n} agent(s) valid in ${agentsDir}\n`);
      process.exitCode = 1;
    } else process.stdout.write(`${n} agent(s) valid in ${agentsDir}\n`);
  });

addCommon(agentsCmd.command('create').description('draft a new agent from a description with a model; prints its YAML (permissions clamped to delegate.createAgent.ceiling)'))
  .argument('<description...>', 'what the agent should do')
  .option('--name <name>', "the agent's name (default: chosen by the model)")
  .option('--save', 'write it to the agents directory (only when delegate.createAgent.allowSave is true)')
  .action(async (words: string[], opts: CommonOpts & { name?: string; save?: boolean }) => {
    const { cfg, agents } = boot(opts);
    try {
      const out = await createAgent(cfg, agents, { description: words.join(' '), name: opts.name, save: opts.save, onProgress: (m) => process.stderr.write(`${m}\n`) }, RESERVED_TOOL_NAMES);
      process.stdout.write(out.yaml);
      if (out.clamped.length) process.stderr.write(`removed by the permission ceiling: ${out.clamped.join('; ')}\n`);
      if (out.savedTo) process.stderr.write(`saved to ${out.savedTo}\n`);
      if (out.saveRefused) {
        process.stderr.write(`${out.saveRefused.replace(/; the agent is served.*$/, '')}\n`);
        process.exitCode = 1;
      }
    } catch (err) {
      if (!(err instanceof CreateAgentError)) throw err;
      process.stderr.write(`delegate-mcp: ${err.message}\n`);
      process.exitCode = 1;
    }
  });

program.parseAsync().catch((err: unknown) => {
  if (err instanceof ConfigError) process.stderr.write(`delegate-mcp: ${err.message}\n`);
  else process.stderr.write(`delegate-mcp: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(2);
});
