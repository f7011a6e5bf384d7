// Built-in tool run_command: runs one program with an argv array in the workspace. Never a shell:
// the program gets argv as given (shell: false), so `$( )`, backticks, `;`, `|`, globs and quotes in
// the arguments reach the program literally. WHETHER a given argv may run is the permission engine's
// decision (made before this tool is called); this tool enforces the mechanical limits:
//   - the OS sandbox (src/sandbox/): under bubblewrap unless delegate.sandbox.mode is "off"; refused
//     when the call carries no sandbox settings or no sandbox can be made (never a silent fallback);
//   - a scrubbed environment (small allowlist; anything that looks like a credential is dropped), plus
//     git settings that keep git from running programs named by files in the workspace;
//   - cwd = the workspace root, stdin closed;
//   - a timeout (default 60 s, max 600 s) and ctx.signal: SIGTERM to the command and everything it
//     started, SIGKILL 2 s later. Sandboxed, SIGKILL goes to bwrap, which takes its whole pid namespace
//     with it; unsandboxed, the child is its own process group (detached: true) and the group is
//     killed. Whatever is left when the command exits is killed too (no stray background jobs; under
//     bwrap not even a setsid or double-forked one);
//   - output capped (default 64 KiB for stdout + stderr together), keeping head and tail.
// A non-zero exit status is a normal result (isError: false) the model should read; isError is true
// only when the command could not be started, timed out or was cancelled.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { z } from 'zod';
import { buildChildEnv } from './command-env.js';
import { HeadTail, shareBudget } from './command-output.js';
import { defineTool, typeName } from './define-tool.js';
import { formatSize } from './file-io.js';
import { abortedOutcome, fail, ok } from './outcome.js';
import type { BuiltinTool, ToolContext } from './types.js';
import type { ToolOutcome } from '../contract/tool.js';
import { gitHardeningEnv, prepareLaunch, type Launch } from '../sandbox/index.js';
import { descendantPids } from '../sandbox/processes.js';
import { errorMessage } from '../describe-cause.js';

/** Limits of run_command, given to createCommandTools (never a mutable global). */
export interface CommandLimits {
  /** Timeout when the call gives none, in seconds. */
  defaultTimeoutS: number;
  /** Largest timeout_s a call may ask for. */
  maxTimeoutS: number;
  /** Delay between SIGTERM and SIGKILL, in milliseconds. */
  killGraceMs: number;
  /** Maximum bytes of stdout + stderr shown in the result (head and tail are kept). */
  maxOutputBytes: number;
  /** Maximum number of argv elements and total argv bytes. */
  maxArgs: number;
  maxArgvBytes: number;
}

export const COMMAND_LIMITS: Readonly<CommandLimits> = Object.freeze({
  defaultTimeoutS: 60,
  maxTimeoutS: 600,
  killGraceMs: 2000,
  maxOutputBytes: 64 * 1024,
  maxArgs: 4096,
  maxArgvBytes: 256 * 1024,
});

// ---------------------------------------------------------------------------------------------
// Process-group handling

function killGroup(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  if (process.platform !== 'win32') {
    try {
      process.kill(-child.pid, sig);
      return;
    } catch {
      // The group is gone (ESRCH) or not ours: fall back to the child itself.
    }
  }
  try {
    child.kill(sig);
  } catch {
    // already gone
  }
}

function signalAll(pids: number[], sig: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
    } catch {
      // exited meanwhile
    }
  }
}

// ---------------------------------------------------------------------------------------------
// run_command

function runCommandInput(limits: CommandLimits) {
  const argvError = (iss: z.core.$ZodRawIssue): string | undefined =>
    iss.code !== 'invalid_type'
      ? undefined
      : iss.input === undefined
        ? 'missing required argument "argv" (an array of strings)'
        : `"argv" must be an array of strings (program first, then its arguments), got ${typeName(iss.input)}`;
  return z.strictObject({
    argv: z
      .array(
        z.string().refine((a) => !a.includes('\0'), { error: (iss) => `argv[${String(iss.path?.[1])}] contains a NUL byte` }),
        { error: argvError },
      )
      .min(1, { error: '"argv" must not be empty (argv[0] is the program to run)' })
      .superRefine((argv, c) => {
        // Here rather than .max(): the offered schema stays as it was (no maxItems).
        if (argv.length > limits.maxArgs) {
          c.addIssue({ code: 'custom', message: `"argv" has ${argv.length} elements; the limit is ${limits.maxArgs}` });
          return;
        }
        if (argv[0] === '') c.addIssue({ code: 'custom', message: 'argv[0] (the program) must not be empty' });
        const bytes = argv.reduce((n, a) => n + (typeof a === 'string' ? Buffer.byteLength(a, 'utf8') + 1 : 0), 0);
        if (bytes > limits.maxArgvBytes) {
          c.addIssue({ code: 'custom', message: `"argv" is ${bytes} bytes in total; the limit is ${formatSize(limits.maxArgvBytes)}` });
        }
      })
      .describe('Program and arguments, e.g. ["ls", "-la", "src"]. argv[0] is looked up on PATH.'),
    timeout_s: z
      .number({
        error: (iss) =>
          iss.code === 'invalid_type' && iss.input !== undefined
            ? `"timeout_s" must be a number of seconds, got ${typeof iss.input === 'number' ? String(iss.input) : typeName(iss.input)}`
            : undefined,
      })
      .positive()
      .max(limits.maxTimeoutS)
      .optional()
      .describe(`Seconds before the command is killed. Default ${limits.defaultTimeoutS}.`),
  });
}

const NOT_FOUND = 'program not found (argv[0] must be a program on PATH or a path to an executable; there is no shell)';
const NO_PERMISSION = 'permission denied (not executable?)';

type Ending =
  | { kind: 'exit'; code: number | null; signal: NodeJS.Signals | null }
  | { kind: 'spawn_error'; error: NodeJS.ErrnoException };

async function runCommand(
  { argv, timeout_s }: z.output<ReturnType<typeof runCommandInput>>,
  ctx: ToolContext,
  limits: CommandLimits,
): Promise<ToolOutcome> {
  const T = 'run_command';
  const timeoutS = timeout_s ?? limits.defaultTimeoutS;
  if (ctx.signal?.aborted) return abortedOutcome(T);

  // A missing cwd would surface as a misleading spawn ENOENT ("program not found").
  try {
    if (!(await fsp.stat(ctx.workspaceRoot)).isDirectory()) throw new Error('not a directory');
  } catch {
    return fail(`${T}: the workspace root ${ctx.workspaceRoot} is not an accessible directory`);
  }

  const launch = await prepareLaunch(ctx.sandbox, ctx.workspaceRoot, argv, { ...buildChildEnv(), ...gitHardeningEnv() });
  if (!launch.ok) return fail(`${T}: refused: ${launch.error}`);
  const info = { text: '' };
  try {
    return await runLaunched(T, argv, timeoutS, ctx, launch, info, limits);
  } finally {
    // Normally done already (the result reports what was removed; a second call is a no-op). This keeps a
    // thrown error from leaving the command counted as running, which would stop every later removal.
    await launch.done(info.text);
  }
}

async function runLaunched(
  T: string,
  argv: string[],
  timeoutS: number,
  ctx: ToolContext,
  launch: Extract<Launch, { ok: true }>,
  info: { text: string },
  limits: CommandLimits,
): Promise<ToolOutcome> {
  if (ctx.signal?.aborted) {
    launch.release();
    await launch.done(undefined);
    return abortedOutcome(T);
  }

  const cap = limits.maxOutputBytes;
  const stdout = new HeadTail(cap);
  const stderr = new HeadTail(cap);
  let stopReason: 'timeout' | 'aborted' | undefined;
  let lastSignalSent: NodeJS.Signals | undefined;
  const started = Date.now();

  let child: ChildProcess;
  try {
    child = spawn(launch.file, launch.args, {
      shell: false,
      cwd: ctx.workspaceRoot,
      env: launch.env,
      detached: process.platform !== 'win32',
      // fds 3, 4, …: the sandbox's writable directories, opened and checked beforehand.
      // then bwrap's info pipe (the pid of the sandbox's init, to wait for its namespace to end).
      stdio: ['ignore', 'pipe', 'pipe', ...launch.fds, ...(launch.infoFd !== undefined ? (['pipe'] as const) : [])],
      windowsHide: true,
    });
  } catch (e) {
    // Synchronous spawn failures (e.g. invalid arguments).
    await launch.done(undefined);
    return fail(`${T}: could not start ${JSON.stringify(argv[0])}: ${errorMessage(e)}`);
  } finally {
    launch.release(); // the child has its copies
  }
  child.stdout?.on('data', (c: Buffer) => stdout.push(c));
  child.stderr?.on('data', (c: Buffer) => stderr.push(c));
  const infoStream = launch.infoFd !== undefined ? child.stdio[launch.infoFd] : undefined;
  infoStream?.on('data', (c: Buffer) => {
    if (info.text.length < 4096) info.text += c.toString('utf8');
  });

  const ending = await new Promise<Ending>((resolve) => {
    let exited: Ending | undefined;
    let settled = false;
    let termTimer: NodeJS.Timeout | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    let closeGrace: NodeJS.Timeout | undefined;

    const finish = (e: Ending): void => {
      if (settled) return;
      settled = true;
      clearTimeout(termTimer);
      clearTimeout(killTimer);
      clearTimeout(closeGrace);
      ctx.signal?.removeEventListener('abort', onAbort);
      resolve(e);
    };
    const stop = (reason: 'timeout' | 'aborted'): void => {
      if (stopReason || exited) return;
      stopReason = reason;
      lastSignalSent = 'SIGTERM';
      // Under bwrap: SIGTERM to the processes inside (bwrap would die of it and take them down at once).
      if (launch.sandboxed && child.pid !== undefined) signalAll(descendantPids(child.pid), 'SIGTERM');
      else killGroup(child, 'SIGTERM');
      killTimer = setTimeout(() => {
        lastSignalSent = 'SIGKILL';
        killGroup(child, 'SIGKILL');
      }, limits.killGraceMs);
    };
    const onAbort = (): void => stop('aborted');

    termTimer = setTimeout(() => stop('timeout'), Math.round(timeoutS * 1000));
    ctx.signal?.addEventListener('abort', onAbort, { once: true });

    child.once('error', (error: NodeJS.ErrnoException) => {
      // Spawn failure (ENOENT, EACCES, …): no pid, and 'exit' never comes. Later errors (a failed
      // kill) are followed by 'exit'/'close' as usual.
      if (child.pid === undefined) finish({ kind: 'spawn_error', error });
    });
    child.once('exit', (code, signal) => {
      exited = { kind: 'exit', code, signal };
      clearTimeout(termTimer);
      clearTimeout(killTimer);
      // Kill whatever is left of the process group (background jobs, grandchildren), then wait for
      // the pipes to drain. A process that escaped the group could hold them open: don't wait forever.
      killGroup(child, 'SIGKILL');
      closeGrace = setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        finish(exited!);
      }, 1000);
    });
    child.once('close', () => {
      if (exited) finish(exited);
    });
  });

  const elapsed = ((Date.now() - started) / 1000).toFixed(1);
  infoStream?.destroy();
  // Protected paths the command created where they were missing (mcp.json, .git, …) are removed once no
  // sandboxed command runs any more (sandbox/created.ts); the model is told, the audit records it.
  const removed = await launch.done(ending.kind === 'spawn_error' ? undefined : info.text);
  const outcome = commandOutcome(T, argv, launch.sandboxed, ending, stopReason, lastSignalSent, timeoutS, elapsed, stdout, stderr, cap);
  if (removed.length === 0) return outcome;
  const rel = removed.map((p) => (p.startsWith(`${ctx.workspaceRoot}/`) ? p.slice(ctx.workspaceRoot.length + 1) : p));
  return {
    ...outcome,
    content:
      `${outcome.content}\n--- sandbox: removed ${rel.join(', ')}: protected paths (server config, .git, agent directories, MCP server code) ` +
      'may not be created by a command, whatever the permission rules say ---',
    removedProtected: removed,
  };
}

function commandOutcome(
  T: string,
  argv: string[],
  sandboxed: boolean,
  ending: Ending,
  stopReason: 'timeout' | 'aborted' | undefined,
  lastSignalSent: NodeJS.Signals | undefined,
  timeoutS: number,
  elapsed: string,
  stdout: HeadTail,
  stderr: HeadTail,
  cap: number,
): ToolOutcome {
  if (ending.kind === 'spawn_error') {
    const code = ending.error.code;
    const why = code === 'ENOENT' ? NOT_FOUND : code === 'EACCES' ? NO_PERMISSION : (code ?? ending.error.message);
    return fail(`${T}: could not start ${JSON.stringify(argv[0])}: ${why}`);
  }

  // bwrap reports a program it cannot exec (or a sandbox it cannot set up) on stderr with status 1.
  if (sandboxed && !stopReason && ending.code === 1) {
    const m = /^bwrap: (.*)/.exec(stderr.render(cap).split('\n')[0] ?? '');
    if (m) {
      const why = /^execvp .*: No such file or directory$/.test(m[1])
        ? `${NOT_FOUND}; in the sandbox only /usr, /bin, /lib…, the Node.js install and delegate.sandbox.readOnly paths are visible`
        : /^execvp .*: Permission denied$/.test(m[1])
          ? NO_PERMISSION
          : `the sandbox could not be set up: ${m[1]}`;
      return fail(`${T}: could not start ${JSON.stringify(argv[0])}: ${why}`);
    }
  }

  let status: string;
  if (stopReason === 'timeout') {
    status = `killed by ${lastSignalSent ?? 'SIGTERM'} after timeout (${timeoutS} s)`;
  } else if (stopReason === 'aborted') {
    status = `killed by ${lastSignalSent ?? 'SIGTERM'}: the call was cancelled`;
  } else if (ending.code !== null) {
    status =
      ending.code === 0
        ? 'exit code 0'
        : `exit code ${ending.code} (the command ran and reported failure; read its output below)`;
  } else {
    status = `killed by signal ${ending.signal ?? 'unknown'}`;
  }

  const [outBudget, errBudget] = shareBudget([stdout.total, stderr.total], cap);
  const section = (name: string, s: HeadTail, budget: number): string =>
    s.total === 0 ? `--- ${name}: (empty) ---` : `--- ${name} (${s.total} bytes) ---\n${s.render(budget).replace(/\n$/, '')}`;
  const content = [
    `${status} [${elapsed} s]`,
    section('stdout', stdout, outBudget),
    section('stderr', stderr, errBudget),
  ].join('\n');
  return stopReason ? fail(`${T}: ${content}`) : ok(content);
}

// ---------------------------------------------------------------------------------------------
// Registry

/** Command-running built-in tools keyed by tool name, with `limits` over the defaults. */
export function createCommandTools(limits: Partial<CommandLimits> = {}): Record<string, BuiltinTool> {
  const l: CommandLimits = { ...COMMAND_LIMITS, ...limits };
  return {
    run_command: defineTool({
      name: 'run_command',
      description:
        'Run one program in the workspace root and return its exit code, stdout and stderr. `argv` is the ' +
        'program followed by its arguments, e.g. ["git", "status", "--short"] or ["npm", "test"]. There is NO ' +
        'shell: pipes, redirects, `&&`, `$VAR`, globs and quotes are passed literally to the program, so run ' +
        'one program per call. Unless the server turned its sandbox off, it runs in one: the workspace is ' +
        'writable only where your Edit permissions reach, nothing outside it is visible, and there is no ' +
        'network unless your configuration allows it. ' +
        'stdin is empty; the environment is minimal (no credentials). Timeout: ' +
        `timeout_s (default ${l.defaultTimeoutS}, max ${l.maxTimeoutS} seconds); ` +
        'the command and its child processes are killed when it expires, and background processes are ' +
        `killed when the command exits. Output is capped at ${formatSize(l.maxOutputBytes)} ` +
        '(beginning and end kept). A non-zero exit code is reported as a normal result.',
      input: () => runCommandInput(l),
      run: (args, ctx) => runCommand(args, ctx, l),
    }),
  };
}

/** run_command with the default limits. */
export const commandTools: Record<string, BuiltinTool> = createCommandTools();
