#!/usr/bin/env node
// delegate-mcp command line (loaded by src/main.ts, the entry): serve (MCP over stdio and/or HTTP), run,
// budget, audit (and audit verify), init, agents list/validate/create here; fanout, runs and ui in cli/.
// Only the CLI (this file and cli/) writes to stdout, and never while serving stdio: stdout then belongs to
// the MCP protocol. Every failure reaches the user as one "delegate-mcp: …" line on stderr (the handler at
// the end of this file).
import { realpathSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { formatLoadError } from './agents/definition.js';
import { AgentStore } from './agents/store.js';
import { agentSources } from './config/agent-sources.js';
import { dirExists, loadAgentSources } from './agents/formats.js';
import { watchAgents } from './agents/watch.js';
import { createAgent, CreateAgentError } from './agents/create.js';
import { draftThroughOrchestrator } from './orchestrator/draft-agent.js';
import { RESERVED_TOOL_NAMES } from './mcp/agent-tools.js';
import { knownProviders, loadConfig, type ConfigOverrides } from './config/config.js';
import { ConfigError } from './config/config-error.js';
import { openStateDir } from './config/state-dir.js';
import { log, warnOnce } from './log.js';
import { Orchestrator, unknownAgentMessage } from './orchestrator/orchestrator.js';
import type { RunResult } from './contract/run.js';
import type { Colour } from './cli/terminal.js';
import { BudgetGate } from './orchestrator/budget-gate.js';
import { DAY_MS, utcDay } from './time/utc-day.js';
import { readAuditDirs } from './audit/reader.js';
import { renderSummary, summarize } from './audit/summary.js';
import { renderTree, runTree } from './audit/run-tree.js';
import { renderChainReports, verifyStateChains } from './audit/verify.js';
import { renderBudget } from './mcp/budget-view.js';
import { serveStdioServer } from './transports/stdio.js';
import type { HttpCliOptions } from './transports/http-serve.js';
import { registerFanoutCommand } from './cli/fanout.js';
import { renderInit, runInit } from './cli/init.js';
import { registerRunsCommand } from './cli/runs.js';
import { registerUiCommand } from './cli/ui.js';
import { renderTimeline, runTimeline } from './audit/runs-view.js';
import { VERSION } from './version.js';
import { errorMessage } from './describe-cause.js';
import { inputTokens } from './contract/usage-sum.js';
import { intOption, registerQueueCommands } from './queue/commands.js';
import { queueUrl } from './queue/connection.js';

interface CommonOpts extends ConfigOverrides {}

// Provider SDKs print warnings (a deprecated model) with console.warn; on this thread too (agents create).
// Through the logger they come once, and above a live progress line rather than inside it.
console.warn = (...args: unknown[]) => warnOnce(args.map(String).join(' '));

function addCommon(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'path to mcp.json (default: <workspace>/mcp.json, else ~/.config/delegate-mcp/mcp.json)')
    .option('--agents <dir>', "the workspace's agents directory (default: delegate.agentsDir or <workspace>/agents)")
    .option('--workspace <dir>', 'workspace root the agents work in (default: the current directory)');
}

function realHome(): string | undefined {
  try {
    return realpathSync(homedir());
  } catch {
    return undefined; // no home directory: nothing to compare with
  }
}

function boot(opts: CommonOpts) {
  const cfg = loadConfig(opts);
  openStateDir(cfg);
  const agents = new AgentStore(cfg.agentsDir, agentSources(cfg), { providers: knownProviders(cfg) });
  agents.load();
  for (const e of agents.formattedErrors()) log.error(`agent file error: ${e}`);
  const empty = agents.emptyNote();
  if (empty) log.warn(`*** ${empty} ***`);
  // A client that starts the server from / or the home directory without --workspace would hand every
  // agent that directory as its workspace: say so loudly (it is almost never what was meant).
  if (!opts.workspace && (cfg.workspace === path.parse(cfg.workspace).root || cfg.workspace === realHome())) {
    log.warn(`*** the workspace is ${cfg.workspace} (the server's working directory; no --workspace given): agents' file tools and commands reach everything their rules allow under it. Pass --workspace <your project dir>. ***`);
  }
  return { cfg, agents };
}

/** The one-line end of a run on the terminal: status, turns, tokens, cost, duration, run id. */
export function runSummary(r: RunResult, paint: (colour: Colour, text: string) => string): string {
  const tokensIn = inputTokens(r.usage);
  const status = paint(r.status === 'ok' ? 'green' : r.status === 'cancelled' ? 'yellow' : 'red', r.status);
  const cost = r.cost_usd !== null ? `$${r.cost_usd.toFixed(4)}` : tokensIn + r.usage.output_tokens === 0 ? '$0' : 'cost n/a (no price for this model)';
  const parts = [status, `${r.turns} turn${r.turns === 1 ? '' : 's'}`, `${tokensIn} in / ${r.usage.output_tokens} out tokens`, cost, `${(r.duration_ms / 1000).toFixed(1)}s`, paint('dim', r.run_id)];
  return parts.join(' · ');
}

/** A UTC day from --day: today, yesterday or YYYY-MM-DD (a real calendar date). */
export function parseDay(value: string, now = new Date()): string {
  if (value === 'today') return utcDay(now);
  if (value === 'yesterday') return utcDay(new Date(now.getTime() - DAY_MS));
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (m && utcDay(new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])))) === value) return value;
  throw new InvalidArgumentError(`expected today, yesterday or a UTC date YYYY-MM-DD, got "${value}"`);
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
  .option('--queue <url>', 'queue mode: enqueue runs on Redis (redis://HOST:PORT/DB) for `delegate-mcp worker`s (default: DELEGATE_MCP_QUEUE_URL, else delegate.queue.url)')
  .option('--work', 'queue mode: also run a worker in this process')
  .option('--concurrency <n>', 'with --work: runs at once on the local worker', intOption('--concurrency', 1, 1024))
  .action(async (opts: CommonOpts & HttpCliOptions & { http?: boolean; stdio?: boolean; queue?: string; work?: boolean; concurrency?: number }) => {
    const { cfg, agents } = boot(opts);
    // Refuse an unsafe HTTP setup before anything starts.
    // The HTTP stack (Node adapter, legacy SSE) loads only when asked for: stdio start-up stays fast.
    const http = opts.http ? await import('./transports/http-serve.js') : undefined;
    const httpOpts = http?.resolveHttpOptions(cfg, opts);
    // Queue mode (a front): BullMQ loads only then, and Redis must answer before anything starts.
    const queueAt = queueUrl(cfg, opts.queue);
    if (!queueAt && (opts.work || opts.concurrency !== undefined)) throw new ConfigError('--work and --concurrency need a queue (--queue redis://HOST:PORT/DB)');
    const front = queueAt ? await (await import('./queue/runtime.js')).prepareFront(cfg, queueAt) : undefined;
    const orchestrator = await Orchestrator.create(cfg, agents, front ? { node: front.settings.nodeId, ledger: front.ledger } : {});
    if (front) await front.attach(orchestrator, agents, opts.work ? { concurrency: opts.concurrency } : undefined);
    orchestrator.auditStart();
    // Hot reload: file changes reach every session as tools/list_changed (delegate.watch, default on).
    if (cfg.delegate.watch) watchAgents(agents);
    log.info(`serving ${agents.exposed().length} agents from ${agents.sources.filter((s) => dirExists(s.dir)).map((s) => s.dir).join(', ') || '(no agent directory)'} over ${httpOpts ? (opts.stdio ? 'HTTP and stdio' : 'HTTP') : 'stdio'} (workspace ${cfg.workspace})`);
    // The workers warm up now, on their own threads (they loaded while this thread did, see main.ts),
    // so that they are done before a client's first call rather than running beside it.
    orchestrator.warm();
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
    // Checked before anything is opened: a typo leaves no audit row and no state behind.
    if (!agents.get(agentName)) throw new ConfigError(unknownAgentMessage(agentName, agents.exposed().map((a) => a.name)));
    const orchestrator = await Orchestrator.create(cfg, agents);
    const abort = new AbortController();
    let interrupts = 0;
    process.on('SIGINT', () => {
      // First Ctrl-C cancels cleanly; a second one exits at once.
      if (++interrupts > 1) process.exit(130);
      process.stderr.write('\ncancelling… (Ctrl-C again to force)\n');
      abort.abort();
    });
    // On a terminal: one live progress line, with log lines (and SDK warnings) going above it. Loaded
    // here, not at start-up: display widths need an Intl.Segmenter, which is slow to make the first time.
    const { LiveLine, colourEnabled, painter } = await import('./cli/terminal.js');
    const live = process.stderr.isTTY ? new LiveLine(process.stderr) : undefined;
    let result: RunResult;
    try {
      result = await orchestrator.run({
        agent: agentName,
        input: { task: taskWords.join(' '), ...(opts.context ? { context: opts.context } : {}) },
        owner: 'cli',
        timeoutS: opts.timeout,
        signal: abort.signal,
        onProgress: (m) => (live ? live.set(m) : process.stderr.write(`${m}\n`)),
      });
    } finally {
      live?.close();
    }
    await orchestrator.close();
    if (opts.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    else {
      if (result.status !== 'ok') process.stderr.write(`run ${result.run_id} ${result.status}: ${result.error ?? ''}\n`);
      if (result.output) process.stdout.write(result.output + '\n');
      process.stderr.write(runSummary(result, painter(colourEnabled(process.stderr))) + '\n');
    }
    process.exitCode = result.status === 'ok' ? 0 : result.status === 'cancelled' ? 130 : 1;
  });

addCommon(program.command('budget').description("show today's budget books from the state directory (per scope, agent and model)"))
  .option('--day <day>', 'UTC day: today (default), yesterday or YYYY-MM-DD', (v: string) => parseDay(v))
  .option('--json', 'print as JSON')
  .option('--queue <url>', 'queue mode: the books every front shares, in Redis (default: DELEGATE_MCP_QUEUE_URL, else delegate.queue.url)')
  .action(async (opts: CommonOpts & { day?: string; json?: boolean; queue?: string }) => {
    const cfg = loadConfig(opts);
    const queueAt = queueUrl(cfg, opts.queue);
    if (queueAt) {
      const status = await (await import('./queue/runtime.js')).sharedBudgetStatus(cfg, queueAt, opts.day);
      process.stdout.write(opts.json ? JSON.stringify(status, null, 2) + '\n' : renderBudget(status) + '\n');
      return;
    }
    openStateDir(cfg);
    const gate = await BudgetGate.open(cfg);
    try {
      const status = await gate.ledger.status({ day: opts.day });
      process.stdout.write(opts.json ? JSON.stringify(status, null, 2) + '\n' : renderBudget(status) + '\n');
    } finally {
      await gate.close();
    }
  });

registerFanoutCommand(program, { addCommon, boot });
registerRunsCommand(program, { addCommon });
registerUiCommand(program, { addCommon });
registerQueueCommands(program, { addCommon, boot });

const auditCmd = addCommon(program.command('audit').description('summarise the audit log per agent and model, or show the run tree of one run'))
  .option('--run <id>', 'print the run tree of this root run (children across re-entry hops included) and its timeline of model and tool calls')
  .option('--from <dir...>', 'read these audit directories instead, merged into one log (queue mode: each node writes its own)')
  .option('--since <date>', 'start of the period (ISO date or time; default: 7 days ago)')
  .option('--until <date>', 'end of the period (ISO date or time)')
  .option('--json', 'print as JSON')
  .action((opts: CommonOpts & { run?: string; since?: string; until?: string; json?: boolean; from?: string[] }) => {
    const cfg = loadConfig(opts);
    if (!opts.from) openStateDir(cfg);
    if (!cfg.auditDir && !opts.from) throw new ConfigError('the audit log is switched off (delegate.audit.enabled: false)');
    const since = opts.since ? new Date(opts.since) : opts.run ? undefined : new Date(Date.now() - 7 * DAY_MS);
    const until = opts.until ? new Date(opts.until) : undefined;
    for (const [flag, d] of [['--since', since], ['--until', until]] as const) {
      if (d && Number.isNaN(d.getTime())) throw new ConfigError(`${flag}: not a date: ${flag === '--since' ? opts.since : opts.until}`);
    }
    const dirs = opts.from ? opts.from.map((d) => path.resolve(d)) : [cfg.auditDir!];
    for (const d of dirs) if (!dirExists(d)) throw new ConfigError(`--from: no such directory: ${d}`);
    const { events, torn, invalid } = readAuditDirs(dirs, { since, until });
    if (torn || invalid) process.stderr.write(`note: skipped ${torn} torn and ${invalid} invalid line(s) in ${dirs.join(', ')}\n`);
    for (const r of dirs.flatMap((auditDir) => verifyStateChains({ auditDir })).filter((r) => r.broken)) {
      process.stderr.write(`warning: the audit log was tampered with: ${r.broken!.file}:${r.broken!.line}: ${r.broken!.reason} (see delegate-mcp audit verify)\n`);
    }
    if (opts.run) {
      const tree = runTree(events, opts.run);
      if (!tree) {
        process.stderr.write(`no run ${opts.run} in ${dirs.join(', ')}\n`);
        process.exitCode = 1;
        return;
      }
      const timeline = runTimeline(events, tree);
      process.stdout.write(opts.json ? JSON.stringify({ ...tree, timeline }, null, 2) + '\n' : `${renderTree(tree)}\n${renderTimeline(timeline)}`);
    } else {
      const summary = summarize(events, { since, until });
      process.stdout.write(opts.json ? JSON.stringify(summary, null, 2) + '\n' : renderSummary(summary) + '\n');
    }
  });

program
  .command('init')
  .description('set up a project: a starter agent and mcp.json, plus the config snippet for each MCP client on this machine')
  .argument('[dir]', 'the project directory (default: the current directory)')
  .option('--write', "merge the snippets into the detected clients' config files (other entries are kept)")
  .option('--force', 'overwrite existing starter files, and replace an existing "delegate" server entry')
  .option('--json', 'print the report as JSON')
  .action((dir: string | undefined, opts: { write?: boolean; force?: boolean; json?: boolean }) => {
    const report = runInit({ dir: dir ?? process.cwd(), write: opts.write, force: opts.force });
    process.stdout.write(opts.json ? JSON.stringify(report, null, 2) + '\n' : renderInit(report));
    if (report.merged.some((m) => m.action === 'refused')) process.exitCode = 1;
  });

addCommon(auditCmd.command('verify').description('verify the hash chains of the audit log and the budget ledger; exits 1 naming the first break of each file'))
  .option('--dir <dir>', 'verify the audit-*.jsonl and ledger-*.jsonl files of this directory instead')
  .option('--json', 'print as JSON')
  .action((opts: CommonOpts & { dir?: string; json?: boolean }) => {
    let dirs: { auditDir?: string; ledgerDir?: string };
    if (opts.dir) dirs = { auditDir: opts.dir, ledgerDir: opts.dir };
    else {
      const cfg = loadConfig(opts);
      dirs = { auditDir: cfg.auditDir, ledgerDir: path.join(cfg.stateDir, 'budget') };
    }
    const reports = verifyStateChains(dirs);
    process.stdout.write(opts.json ? JSON.stringify(reports, null, 2) + '\n' : renderChainReports(reports, Object.values(dirs).filter((d) => d !== undefined)) + '\n');
    if (reports.some((r) => r.broken)) process.exitCode = 1;
  });

const agentsCmd = program.command('agents').description('inspect agent definitions');
addCommon(agentsCmd.command('list').description('list the agents and any load errors'))
  .option('--json', 'print as JSON')
  .action((opts: CommonOpts & { json?: boolean }) => {
    const cfg = loadConfig(opts);
    const sources = agentSources(cfg);
    const catalog = loadAgentSources(sources, { providers: knownProviders(cfg) });
    const list = [...catalog.agents.values()].map((a) => ({
      name: a.name,
      model: a.model ?? cfg.defaultModel,
      expose: a.expose,
      tools: a.tools.builtin,
      description: a.description,
      source: catalog.origins.get(a.name) ?? 'workspace',
      file: a.source.file,
    }));
    if (opts.json) {
      process.stdout.write(JSON.stringify({ agents: list, errors: catalog.errors.map(formatLoadError), shadowed: catalog.shadowed }, null, 2) + '\n');
    } else {
      const w = Math.max(4, ...list.map((a) => a.name.length));
      for (const a of list) process.stdout.write(`${a.name.padEnd(w)}  ${a.source.padEnd(9)}  ${a.model.padEnd(34)}  ${a.file}\n`);
      for (const sh of catalog.shadowed) process.stderr.write(`note: ${sh.file} not served: "${sh.name}" is taken by ${sh.by}\n`);
      for (const e of catalog.errors) process.stderr.write(`error: ${formatLoadError(e)}\n`);
      if (list.length === 0) process.stderr.write(`no agents found in ${sources.map((s) => s.dir).join(', ')}\n`);
    }
    if (catalog.errors.length) process.exitCode = 1;
  });

agentsCmd
  .command('validate')
  .description('check agent files; exits 1 with file:line:col messages when anything is wrong')
  .argument('[dir]', "one agents directory to check (default: every agent directory: the workspace's, the user's and the shipped ones)")
  .option('--config <file>', 'path to mcp.json (default: <workspace>/mcp.json, else ~/.config/delegate-mcp/mcp.json)')
  .option('--workspace <dir>', 'workspace root (default: the current directory)')
  .option('--format <format>', 'format of the files in [dir]: yaml, claude-md or codex-toml', 'yaml')
  .action((dir: string | undefined, opts: CommonOpts & { format: string }) => {
    if (!['yaml', 'claude-md', 'codex-toml'].includes(opts.format)) throw new ConfigError(`--format: expected yaml, claude-md or codex-toml, got ${opts.format}`);
    const cfg = loadConfig(opts);
    const sources = dir ? [{ dir: path.resolve(dir), format: opts.format as 'yaml' }] : agentSources(cfg);
    const agentsDir = sources.filter((s) => !s.optional || dirExists(s.dir)).map((s) => s.dir).join(', ') || '(no agent directory)';
    const catalog = loadAgentSources(sources, { providers: knownProviders(cfg) });
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
    // The drafting run goes through an orchestrator like `run` does: the budget books and the audit log see it.
    const orchestrator = await Orchestrator.create(cfg, agents);
    const onProgress = (m: string) => process.stderr.write(`${m}\n`);
    try {
      const out = await createAgent(cfg, agents, { description: words.join(' '), name: opts.name, save: opts.save, onProgress }, RESERVED_TOOL_NAMES, (modelRef) =>
        draftThroughOrchestrator(orchestrator, modelRef, { owner: 'cli', caller: 'cli', onProgress }),
      );
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
    } finally {
      await orchestrator.close();
    }
  });

// Every failure reaches the user as one message, never a stack trace (DELEGATE_MCP_DEBUG=1 shows it).
program.parseAsync().catch((err: unknown) => {
  const message = errorMessage(err);
  process.stderr.write(`delegate-mcp: ${message}\n`);
  if (process.env.DELEGATE_MCP_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  process.exit(2);
});
