// The OS sandbox around run_command. The argv rules decide WHETHER a command may run; the sandbox bounds
// what an allowed program can then do (its own options, the code it runs, what it starts):
//
//   mode "bwrap" (the default)  every command runs under bubblewrap (see bwrap-args.ts for the layout):
//                               own namespaces and /proc, system read-only, the workspace writable only
//                               where the run's Edit rules reach, protected paths read-only or hidden,
//                               nothing else of the host, private /tmp, no network unless every layer
//                               of the run's rules allows it. When bwrap is missing or cannot create
//                               namespaces, commands are REFUSED with what to install — never run bare.
//                               On a system other than Linux the same refusal (sandbox-exec is not
//                               implemented yet).
//   mode "off"                  commands run directly (process group, scrubbed environment), as chosen
//                               explicitly in mcp.json; warned about at start and recorded in the audit.
//
// Lifetime: the command is pid 2 of its own pid namespace under bwrap's init; when it exits, or bwrap is
// killed (timeout, cancel), or the server dies (--die-with-parent), the namespace goes and the kernel
// kills everything in it — setsid or double-forked children included.
import { execFile } from 'node:child_process';
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { RuleSet } from '../permissions/index.js';
import { bwrapArgs, type BwrapFeatures } from './bwrap-args.js';
import { beginCommand, endCommand } from './created.js';
import { closeMounts, systemMounts, workspaceMounts, type ProtectedPaths } from './mounts.js';
import type { SandboxMode } from '../config/sandbox-modes.js';
import { networkAllowed, workspaceAccess } from './policy.js';

export { gitHardeningEnv } from './git-env.js';
export type { ProtectedPaths } from './mounts.js';

export { SANDBOX_MODES, type SandboxMode } from '../config/sandbox-modes.js';

/** The server's sandbox settings (delegate.sandbox in mcp.json, plus the paths it protects). */
export interface SandboxSettings {
  mode: SandboxMode;
  /** Extra host paths mounted read-only (toolchains outside /usr). */
  readOnly: string[];
  protected: ProtectedPaths;
}

/** What run_command needs to confine one call: the server's settings and the run's effective rules. */
export interface CommandSandbox {
  settings: SandboxSettings;
  rules: RuleSet;
  /** The workspace root as configured, when it differs from its realpath (absolute Edit globs name either). */
  configuredRoot?: string;
}

/**
 * How to start one command: the program to spawn, its arguments and environment, and descriptors to pass
 * as fds 3, 4, … (`fds`); `release()` closes them in this process once the command is spawned (or not).
 */
export type Launch =
  | {
      ok: true;
      file: string;
      args: string[];
      env: Record<string, string>;
      sandboxed: boolean;
      fds: number[];
      release: () => void;
      /** Under bwrap: the stdio index of a pipe bwrap writes its info JSON to (the sandbox init's pid). */
      infoFd?: number;
      /**
       * Call exactly once after the command ended (or failed to start), with what bwrap wrote to `infoFd`:
       * waits until the sandbox's pid namespace is gone, then removes protected paths the command created
       * (created.ts). Resolves to the removed paths.
       */
      done: (info: string | undefined) => Promise<string[]>;
    }
  | { ok: false; error: string };

/** The first descriptor number bwrap sees the writable directories as (0-2 are stdio). */
const FIRST_CHILD_FD = 3;

const INSTALL_HINT = 'install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap; Arch: pacman -S bubblewrap)';
const OFF_HINT = 'or set delegate.sandbox.mode to "off" in mcp.json to run commands without a sandbox (the argv rules are then the only guard)';

type Availability = { ok: true; path: string; features: BwrapFeatures } | { ok: false; reason: string };
let available: Promise<Availability> | undefined;

/** bwrap on the server's PATH, or undefined. */
export function findBwrap(envPath = process.env.PATH ?? ''): string | undefined {
  for (const d of envPath.split(path.delimiter).filter((d) => path.isAbsolute(d))) {
    const p = path.join(d, 'bwrap');
    try {
      if (statSync(p).isFile()) {
        accessSync(p, constants.X_OK);
        return p;
      }
    } catch {
      // not there
    }
  }
  return undefined;
}

/** Why commands cannot be sandboxed here, or null. Found once bwrap works; looked for again while it does not. */
export async function sandboxUnavailable(): Promise<string | null> {
  if (process.platform !== 'linux') {
    return `commands run in an OS sandbox, and delegate-mcp has none for ${process.platform} yet (bubblewrap is Linux-only; there is no sandbox-exec profile for macOS yet); set delegate.sandbox.mode to "off" in mcp.json to run commands without a sandbox (the argv rules are then the only guard)`;
  }
  available ??= probe();
  const a = await available;
  if (a.ok) return null;
  available = undefined;
  return a.reason;
}

async function probe(): Promise<Availability> {
  const bwrap = findBwrap();
  if (!bwrap) return { ok: false, reason: `commands run in a bubblewrap sandbox, and bwrap was not found; ${INSTALL_HINT}, ${OFF_HINT}` };
  // Can it create the namespaces? (Some kernels or AppArmor profiles forbid unprivileged user namespaces.)
  const stderr = await new Promise<string | null>((resolve) => {
    execFile(bwrap, ['--unshare-all', '--unshare-user', '--cap-drop', 'ALL', '--ro-bind', '/', '/', '--', 'true'], { timeout: 10_000, env: {} }, (err, _out, errText) =>
      resolve(err ? (String(errText).trim() || err.message) : null),
    );
  });
  if (stderr !== null) {
    return {
      ok: false,
      reason:
        `commands run in a bubblewrap sandbox, and ${bwrap} cannot create one here: ${stderr} ` +
        '(unprivileged user namespaces must be allowed: sysctl kernel.unprivileged_userns_clone=1, or on Ubuntu 24.04+ ' +
        `kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor profile for bwrap); ${OFF_HINT}`,
    };
  }
  // Newer options, when this bwrap has them (Debian 12 ships 0.8; older releases lack both).
  const help = await new Promise<string>((resolve) => execFile(bwrap, ['--help'], { timeout: 10_000, env: {} }, (_e, out, err) => resolve(`${out}${err}`)));
  return { ok: true, path: bwrap, features: { disableUserns: help.includes('--disable-userns'), tmpfsSize: /^\s*--size\b/m.test(help) } };
}

/** Environment overrides inside the sandbox: the host's home and temp dirs are not there. */
const SANDBOX_ENV = { HOME: '/tmp', TMPDIR: '/tmp' };

/**
 * How to start `argv` for a call: under bwrap, or directly when the mode is "off". `env` is the command's
 * scrubbed environment. Refuses (ok: false) when no sandbox is configured or none can be made.
 */
export async function prepareLaunch(sb: CommandSandbox | undefined, workspaceRoot: string, argv: string[], env: Record<string, string>): Promise<Launch> {
  if (!sb) return { ok: false, error: 'no sandbox settings were given for this call; commands are not run without them' };
  if (sb.settings.mode === 'off') return { ok: true, file: argv[0], args: argv.slice(1), env, sandboxed: false, fds: [], release: () => {}, done: async () => [] };
  const why = await sandboxUnavailable();
  if (why) return { ok: false, error: why };
  const bwrap = (await available) as Extract<Availability, { ok: true }>;
  const roots = [workspaceRoot, ...(sb.configuredRoot && sb.configuredRoot !== workspaceRoot ? [sb.configuredRoot] : [])];
  const isDir = (rel: string): boolean => {
    try {
      return statSync(path.join(workspaceRoot, rel)).isDirectory();
    } catch {
      return false;
    }
  };
  const access = workspaceAccess(sb.rules, roots, isDir);
  const ws = workspaceMounts(workspaceRoot, access, sb.settings.protected);
  const args = bwrapArgs(
    {
      workspace: workspaceRoot,
      writable: ws.writable.map((w, i) => ({ path: w.path, childFd: FIRST_CHILD_FD + i })),
      readOnly: ws.readOnly,
      hidden: ws.hidden,
      system: systemMounts({ nodeExecPath: process.execPath, extra: sb.settings.readOnly }),
      network: networkAllowed(sb.rules),
      env: { ...env, ...SANDBOX_ENV },
      features: bwrap.features,
      infoFd: FIRST_CHILD_FD + ws.writable.length,
    },
    argv,
  );
  beginCommand(workspaceRoot, sb.settings.protected.noCreate);
  let ended = false;
  const done = async (info: string | undefined): Promise<string[]> => {
    if (ended) return [];
    ended = true;
    return endCommand(workspaceRoot, await namespaceGone(info));
  };
  // bwrap itself gets an empty environment: the sandbox's /proc/1/environ shows nothing of the server's.
  return {
    ok: true,
    file: bwrap.path,
    args,
    env: {},
    sandboxed: true,
    fds: ws.writable.map((w) => w.fd),
    release: () => closeMounts(ws),
    infoFd: FIRST_CHILD_FD + ws.writable.length,
    done,
  };
}

/** Field 3 (state) and 22 (start time) of /proc/<pid>/stat, or undefined when the process is gone. */
function procState(pid: number): { state: string; start: string } | undefined {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0], start: rest[19] };
  } catch {
    return undefined;
  }
}

/**
 * Waits until the pid namespace whose init bwrap reported in `info` ({"child-pid": N}) is gone: its init
 * reaped, a zombie (the kernel kills and reaps the namespace's other processes before its init finishes
 * exiting), or its pid reused (another start time). When bwrap itself was killed its init may still be
 * tearing down; after 2 s it gets SIGKILL. false when that could not be confirmed within 10 s.
 */
async function namespaceGone(info: string | undefined): Promise<boolean> {
  let pid: number | undefined;
  try {
    const n = (JSON.parse(info ?? '') as Record<string, unknown>)['child-pid'];
    if (typeof n === 'number' && Number.isInteger(n) && n > 1) pid = n;
  } catch {
    pid = undefined; // no info: bwrap never started a sandbox (spawn failed, or set-up failed first)
  }
  if (pid === undefined) return true;
  const first = procState(pid);
  if (!first) return true;
  const started = Date.now();
  let killed = false;
  for (;;) {
    const s = procState(pid);
    if (!s || s.start !== first.start || s.state === 'Z' || s.state === 'X') return true;
    const waited = Date.now() - started;
    if (waited > 10_000) return false;
    if (waited > 2000 && !killed) {
      killed = true;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}
