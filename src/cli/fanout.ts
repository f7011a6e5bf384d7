// `delegate-mcp fanout`: run many agent tasks at once from the terminal. Tasks come from arguments
// ("agent:task text") and/or a JSON file; at most --concurrency run at a time. Progress goes to
// stderr (a live board on a TTY, plain lines otherwise); the summary table, or --json results, to
// stdout. The first Ctrl-C cancels every run cleanly, a second one exits at once.
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import type { AgentStore } from '../agents/store.js';
import type { ConfigOverrides, ResolvedConfig } from '../config/config.js';
import { runBatch } from '../orchestrator/batch.js';
import { Orchestrator } from '../orchestrator/orchestrator.js';
import type { RunResult } from '../contract/run.js';
import { inputTokens } from '../contract/usage-sum.js';
import { formatDuration } from '../time/duration.js';
// Loaded when a fan-out starts, not at start-up: display widths need an Intl.Segmenter, whose first
// construction costs tens of ms that `serve` must not pay.
let terminal: typeof import('./terminal.js');

export interface FanoutTask {
  agent: string;
  task: string;
  context?: string;
}

export type FanoutResult = RunResult & { index: number };

interface FanoutCliOptions extends ConfigOverrides {
  file?: string;
  concurrency?: number;
  json?: boolean;
  timeout?: number;
}

/** Thrown for bad input (arguments, task file); the command reports it and exits 2. */
export class FanoutUsageError extends Error {}

const AGENT_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** "agent:task text" → {agent, task}; the agent is everything before the first colon. */
export function parseTaskArg(arg: string): FanoutTask {
  const i = arg.indexOf(':');
  const agent = i > 0 ? arg.slice(0, i).trim() : '';
  const task = i > 0 ? arg.slice(i + 1).trim() : '';
  if (!AGENT_NAME.test(agent) || !task) {
    throw new FanoutUsageError(`task "${arg}" is not of the form "agent:task text" (quote each task as one argument)`);
  }
  return { agent, task };
}

/** A JSON array of {agent, task, context?}; every problem names the element. */
export function loadTaskFile(file: string): FanoutTask[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new FanoutUsageError(`cannot read tasks from ${file}: ${(err as Error).message}`);
  }
  if (!Array.isArray(raw)) throw new FanoutUsageError(`${file}: expected a JSON array of {agent, task, context?}`);
  return raw.map((t: unknown, i): FanoutTask => {
    const where = `${file}: [${i}]`;
    if (!t || typeof t !== 'object' || Array.isArray(t)) throw new FanoutUsageError(`${where}: expected an object {agent, task, context?}`);
    const { agent, task, context, ...rest } = t as Record<string, unknown>;
    const extra = Object.keys(rest);
    if (extra.length) throw new FanoutUsageError(`${where}: unknown key${extra.length > 1 ? 's' : ''} ${extra.join(', ')} (allowed: agent, task, context)`);
    if (typeof agent !== 'string' || !AGENT_NAME.test(agent)) throw new FanoutUsageError(`${where}.agent: expected an agent name ([A-Za-z0-9_-])`);
    if (typeof task !== 'string' || !task.trim()) throw new FanoutUsageError(`${where}.task: expected a non-empty string`);
    if (context !== undefined && typeof context !== 'string') throw new FanoutUsageError(`${where}.context: expected a string`);
    return { agent, task, ...(context ? { context } : {}) };
  });
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number of seconds');
  return n;
}

/** Adds `fanout` to the program; `addCommon`/`boot` are cli.ts's shared options and start-up. */
export function registerFanoutCommand(
  program: Command,
  common: {
    addCommon: (cmd: Command) => Command;
    boot: (opts: ConfigOverrides) => { cfg: ResolvedConfig; agents: AgentStore };
  },
): void {
  common
    .addCommon(program.command('fanout').description('run many agent tasks at once; live progress on stderr, a summary table on stdout'))
    .argument('[tasks...]', 'tasks as "agent:task text", one per argument')
    .option('--file <tasks.json>', 'JSON array of {agent, task, context?} (added before the argument tasks)')
    .option('--concurrency <n>', 'how many tasks run at once (default: all, up to the pool capacity)', positiveInt)
    .option('--timeout <seconds>', 'deadline for each run', positiveNumber)
    .option('--json', 'print the array of results as JSON instead of the table')
    .action(async (taskArgs: string[], opts: FanoutCliOptions, cmd: Command) => {
      let tasks: FanoutTask[];
      try {
        tasks = [...(opts.file ? loadTaskFile(opts.file) : []), ...taskArgs.map(parseTaskArg)];
        if (!tasks.length) throw new FanoutUsageError('no tasks: pass "agent:task text" arguments or --file tasks.json');
      } catch (err) {
        if (err instanceof FanoutUsageError) cmd.error(`error: ${err.message}`, { exitCode: 2 });
        throw err;
      }
      const { cfg, agents } = common.boot(opts);
      const orchestrator = await Orchestrator.create(cfg, agents);
      const pool = cfg.delegate.pool;
      const capacity = pool.maxThreads * pool.concurrentTasksPerWorker;
      process.exitCode = await runFanout(orchestrator, tasks, {
        concurrency: opts.concurrency ?? Math.min(tasks.length, capacity),
        json: opts.json,
        timeoutS: opts.timeout,
      });
    });
}

export interface FanoutRunOptions {
  concurrency: number;
  json?: boolean;
  timeoutS?: number;
  stdout?: NodeJS.WriteStream;
  stderr?: NodeJS.WriteStream;
}

type TaskState = { index: number; agent: string; status: 'queued' | 'running' | RunResult['status']; message: string; startedAt?: number };

/** Runs the tasks, reports, closes the orchestrator; resolves to the exit code (0 all ok, else 1). */
export async function runFanout(orchestrator: Orchestrator, tasks: FanoutTask[], opts: FanoutRunOptions): Promise<number> {
  terminal ??= await import('./terminal.js');
  const stdout = opts.stdout ?? process.stdout;
  const stderr = opts.stderr ?? process.stderr;
  const abort = new AbortController();
  const states: TaskState[] = tasks.map((t, index) => ({ index, agent: t.agent, status: 'queued', message: '' }));
  const board: ProgressView = stderr.isTTY ? new TtyBoard(stderr, states) : new PlainProgress(stderr, states);
  let interrupts = 0;
  const onSigint = () => {
    // First Ctrl-C cancels every run (queued ones end as cancelled too); a second one exits at once.
    if (++interrupts > 1) {
      stderr.write('\x1b[?25h');
      process.exit(130);
    }
    abort.abort();
    for (const st of states) {
      if (st.status === 'running') {
        st.message = 'cancelling';
        board.changed(st);
      }
    }
    board.note('cancelling all runs… (Ctrl-C again to force)');
  };
  process.on('SIGINT', onSigint);
  const started = Date.now();
  let results: FanoutResult[];
  try {
    // The lanes, cancellation and result collection are the orchestrator's batch (delegate_parallel's
    // too); the tasks here are independent root runs, as `run` starts them.
    const outcome = await runBatch(orchestrator, orchestrator, {
      tasks,
      owner: 'cli',
      concurrency: opts.concurrency,
      timeoutS: opts.timeoutS,
      signal: abort.signal,
      onTaskStart: (index) => {
        const st = states[index];
        st.status = 'running';
        st.startedAt = Date.now();
        st.message = abort.signal.aborted ? 'cancelling' : 'starting';
        board.changed(st);
      },
      onTaskProgress: (index, m) => {
        if (abort.signal.aborted) return; // keep showing "cancelling"
        const st = states[index];
        st.message = stripAgent(m, tasks[index].agent);
        board.changed(st);
      },
      onTaskEnd: (index, r) => {
        const st = states[index];
        st.status = r.status;
        st.message = r.status === 'ok' ? `${fmtDuration(r.duration_ms)} · ${fmtTokens(r)}` : firstLine(r.error ?? 'no answer');
        board.changed(st);
      },
    });
    results = outcome.results.map((r, index) => ({ index, ...r }));
  } finally {
    board.finish();
    process.off('SIGINT', onSigint);
    await orchestrator.close();
  }
  const wallMs = Date.now() - started;
  if (opts.json) stdout.write(JSON.stringify(results, null, 2) + '\n');
  else stdout.write(summaryTable(results, wallMs, stdout.isTTY ? stdout.columns : undefined));
  return results.every((r) => r.status === 'ok') ? 0 : 1;
}

/** Progress lines start with "agent · "; the board already shows the agent. */
function stripAgent(message: string, agent: string): string {
  return message.startsWith(`${agent} · `) ? message.slice(agent.length + 3) : message;
}

function firstLine(s: string): string {
  return (s.split('\n').find((l) => l.trim()) ?? '').trim();
}

/** The fan-out table rounds to the nearest second past a minute (the audit views cut). */
const fmtDuration = (ms: number): string => formatDuration(ms, 'round');

function fmtTokens(r: RunResult): string {
  return `${inputTokens(r.usage)} in / ${r.usage.output_tokens} out tokens`;
}

/** Cut to a terminal width by display width (wide CJK and emoji take two columns). */
function truncate(s: string, width: number): string {
  return width <= 0 ? s : terminal.truncateToWidth(s, width);
}

const STATUS_MARK: Record<TaskState['status'], string> = {
  queued: '·',
  running: '▸',
  ok: '✓',
  max_turns: '!',
  error: '✗',
  failed: '✗',
  cancelled: '✗',
  timeout: '✗',
  budget_exhausted: '✗',
};

function stateLine(st: TaskState, agentWidth: number, indexWidth: number): string {
  const elapsed = st.status === 'running' && st.startedAt ? ` ${fmtDuration(Date.now() - st.startedAt)}` : '';
  // The live elapsed column replaces the progress line's own (stale between messages) "· 12s".
  const message = elapsed ? st.message.replace(/ · \d+s$/, '') : st.message;
  return `${STATUS_MARK[st.status]} #${String(st.index + 1).padStart(indexWidth)} ${st.agent.padEnd(agentWidth)}  ${st.status.padEnd(9)}${elapsed ? elapsed.padEnd(7) : ''}  ${message}`.trimEnd();
}

interface ProgressView {
  changed(st: TaskState): void;
  note(message: string): void;
  finish(): void;
}

/** Not a TTY: one plain line per event, as it happens. */
class PlainProgress implements ProgressView {
  private last = new Map<number, string>();
  constructor(
    private out: NodeJS.WriteStream,
    private states: TaskState[],
  ) {}

  changed(st: TaskState): void {
    const text = `${st.status === 'running' ? '' : st.status + (st.message ? ': ' : '')}${st.message}`;
    // Heartbeats repeat the same line; print a line only when something changed.
    if (this.last.get(st.index) === text) return;
    this.last.set(st.index, text);
    this.out.write(`[#${st.index + 1} ${st.agent}] ${text}\n`);
  }

  note(message: string): void {
    this.out.write(`${message}\n`);
  }

  finish(): void {
    const failed = this.states.filter((s) => s.status !== 'ok').length;
    this.out.write(`fanout: ${this.states.length - failed}/${this.states.length} ok\n`);
  }
}

/** A TTY: one line per task, redrawn in place (at most every 100 ms), cursor hidden meanwhile. */
class TtyBoard implements ProgressView {
  private drawn = 0;
  private timer: NodeJS.Timeout | undefined;
  private ticker: NodeJS.Timeout;
  private footer = '';
  private indexWidth: number;
  private agentWidth: number;
  /** The board's own writes; everything else written to the stream goes above the board. */
  private raw: (chunk: string) => void;
  private restore: () => void;

  constructor(
    private out: NodeJS.WriteStream,
    private states: TaskState[],
  ) {
    this.indexWidth = String(states.length).length;
    this.agentWidth = Math.min(24, Math.max(...states.map((s) => s.agent.length)));
    const original = out.write;
    this.raw = (chunk) => void (original as (c: string) => boolean).call(out, chunk);
    this.restore = terminal.interceptWrites(out, {
      erase: () => {
        const e = this.drawn ? `\x1b[${this.drawn}A\r\x1b[J` : '';
        this.drawn = 0;
        return e;
      },
      redraw: () => this.frame(),
    });
    this.raw('\x1b[?25l');
    // Elapsed times keep moving between progress messages.
    this.ticker = setInterval(() => this.draw(), 1000);
    this.ticker.unref();
    this.draw();
  }

  changed(): void {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.draw();
    }, 100);
  }

  note(message: string): void {
    this.footer = message;
    this.draw();
  }

  private lines(): string[] {
    const maxLines = Math.max(3, (this.out.rows || 24) - 2);
    const footer = this.footer ? [this.footer] : [];
    let shown = this.states;
    const header: string[] = [];
    if (this.states.length + footer.length > maxLines) {
      // Too many tasks for the screen: a count line, then the running ones, then the latest failures.
      const count = (f: (s: TaskState) => boolean) => this.states.filter(f).length;
      header.push(
        `${count((s) => s.status !== 'queued' && s.status !== 'running')}/${this.states.length} done · ${count((s) => s.status === 'running')} running · ${count((s) => s.status === 'queued')} queued · ${count((s) => s.status !== 'ok' && s.status !== 'queued' && s.status !== 'running')} failed`,
      );
      const rank = (s: TaskState) => (s.status === 'running' ? 0 : s.status === 'queued' || s.status === 'ok' ? 2 : 1);
      shown = [...this.states].sort((a, b) => rank(a) - rank(b) || a.index - b.index).filter((s) => rank(s) < 2).slice(0, maxLines - 1 - footer.length);
    }
    return [...header, ...shown.map((s) => stateLine(s, this.agentWidth, this.indexWidth)), ...footer];
  }

  /** The escape sequence that redraws the board in place (and how many lines it now takes). */
  private frame(): string {
    const width = (this.out.columns || 100) - 1;
    let frame = this.drawn ? `\x1b[${this.drawn}A\r` : '';
    const lines = this.lines();
    for (const l of lines) frame += `\x1b[2K${truncate(l, width)}\n`;
    frame += '\x1b[J';
    this.drawn = lines.length;
    return frame;
  }

  private draw(): void {
    this.raw(this.frame());
  }

  finish(): void {
    clearInterval(this.ticker);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.draw();
    this.raw('\x1b[?25h');
    this.restore();
  }
}

/** The summary: one row per task in input order, then totals. */
export function summaryTable(results: FanoutResult[], wallMs: number, columns?: number): string {
  const header = ['#', 'agent', 'status', 'duration', 'tokens in', 'tokens out', 'output / error'];
  const rows = results.map((r) => [
    String(r.index + 1),
    r.agent,
    r.status,
    fmtDuration(r.duration_ms),
    String(inputTokens(r.usage)),
    String(r.usage.output_tokens),
    r.status === 'ok' ? firstLine(r.output) : firstLine(r.error ?? '') || firstLine(r.output),
  ]);
  const widths = header.map((h, i) => (i === header.length - 1 ? 0 : Math.max(h.length, ...rows.map((row) => row[i].length))));
  const right = new Set([0, 3, 4, 5]);
  const fixed = widths.slice(0, -1).reduce((a, w) => a + w + 2, 0);
  const lastWidth = columns ? Math.max(20, columns - fixed - 1) : 120;
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? truncate(c, lastWidth) : right.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  const ok = results.filter((r) => r.status === 'ok').length;
  const inTotal = results.reduce((a, r) => a + inputTokens(r.usage), 0);
  const outTotal = results.reduce((a, r) => a + r.usage.output_tokens, 0);
  // Cost only when some model has a price; a run with tokens but no price makes the sum a lower bound.
  const costSum = results.reduce((a, r) => a + (r.cost_usd ?? 0), 0);
  const unpriced = results.some((r) => r.cost_usd === null && inputTokens(r.usage) + r.usage.output_tokens > 0);
  const cost = costSum > 0 ? ` · $${costSum.toFixed(4)}${unpriced ? ' + unpriced models' : ''}` : '';
  const out = [line(header), ...rows.map(line), ''];
  out.push(
    `total: ${results.length} task${results.length === 1 ? '' : 's'} · ${ok} ok · ${results.length - ok} failed · wall ${fmtDuration(wallMs)} · tokens ${inTotal} in / ${outTotal} out${cost}`,
  );
  return out.join('\n') + '\n';
}
