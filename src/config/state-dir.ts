// Where the server keeps its state (budget ledger, audit log, artifacts): outside the workspace, because
// agents read and write the workspace. Default: ${XDG_STATE_HOME:-~/.local/state}/delegate-mcp/<workspace id>/,
// one folder per workspace; `delegate.stateDir` in mcp.json overrides it. Older versions kept it in
// <workspace>/.delegate-mcp/: openStateDir() moves that once into the new place.
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from './config-error.js';
import { errorMessage } from '../describe-cause.js';

/** The state folder of older versions, inside the workspace. Still a protected path (see permissions/protected-paths.ts). */
export const LEGACY_STATE_DIRNAME = '.delegate-mcp';

/**
 * A readable, stable name for a workspace: `<basename>-<first 12 hex of sha256(realpath)>`. The basename says
 * which project it is; the hash keeps two projects of the same name apart. Pass the workspace's realpath.
 */
export function workspaceId(workspaceReal: string): string {
  const base = path.basename(workspaceReal).replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '').slice(0, 48) || 'root';
  const hash = createHash('sha256').update(workspaceReal).digest('hex').slice(0, 12);
  return `${base}-${hash}`;
}

/** The user's state home: $XDG_STATE_HOME when it is an absolute path (the XDG spec ignores relative ones), else ~/.local/state. */
export function stateHome(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_STATE_HOME;
  if (xdg && path.isAbsolute(xdg)) return xdg;
  return path.join(env.HOME || os.homedir(), '.local', 'state');
}

/** The default state dir of a workspace (its realpath): <state home>/delegate-mcp/<workspace id>. */
export function defaultStateDir(workspaceReal: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(stateHome(env), 'delegate-mcp', workspaceId(workspaceReal));
}

function isEmptyDir(dir: string): boolean {
  try {
    return readdirSync(dir).length === 0;
  } catch {
    return false;
  }
}

/** errno code of a thrown fs error. */
function code(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * Moves <workspace>/.delegate-mcp into `stateDir` when that one is missing or empty, and returns the one line
 * to tell the user (undefined when there was nothing to do). Across devices (rename fails with EXDEV) it copies
 * into a temporary sibling first, renames that into place, then removes the old folder, so a crash midway
 * never leaves a half-filled state dir. When both hold state nothing is touched and the line says so.
 */
export function moveLegacyStateDir(workspaceReal: string, stateDir: string): string | undefined {
  const legacy = path.join(workspaceReal, LEGACY_STATE_DIRNAME);
  if (path.resolve(stateDir) === legacy || !existsSync(legacy)) return undefined;
  if (existsSync(stateDir) && !isEmptyDir(stateDir)) {
    if (isEmptyDir(legacy)) return undefined;
    return `delegate-mcp: both ${legacy} (old location) and ${stateDir} hold server state; using ${stateDir} and leaving ${legacy} alone (merge or remove it by hand)`;
  }
  mkdirSync(path.dirname(stateDir), { recursive: true, mode: 0o700 });
  // An empty target directory is replaced (rename cannot move onto a directory).
  if (existsSync(stateDir)) rmSync(stateDir, { recursive: true });
  try {
    renameSync(legacy, stateDir);
  } catch (e) {
    if (code(e) !== 'EXDEV') throw e;
    const tmp = `${stateDir}.moving-${process.pid}`;
    cpSync(legacy, tmp, { recursive: true, preserveTimestamps: true, errorOnExist: true, force: false });
    renameSync(tmp, stateDir);
    rmSync(legacy, { recursive: true });
  }
  return `delegate-mcp: moved the server state from ${legacy} to ${stateDir} (state now lives outside the workspace)`;
}

/**
 * Gets the state dir ready before a command uses it: the one-time move of an old in-workspace state folder
 * (its line goes to `say`, stderr by default), then the folder itself, private to the user (0700).
 */
export function openStateDir(cfg: { workspace: string; stateDir: string }, say: (line: string) => void = (l) => void process.stderr.write(`${l}\n`)): void {
  const rel = path.relative(path.resolve(cfg.stateDir), cfg.workspace);
  if (rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel))) {
    // The state dir is never shown to agents: one around the workspace would hide every file in it.
    throw new ConfigError(`delegate.stateDir ${cfg.stateDir} is or contains the workspace ${cfg.workspace}; choose a directory outside it (or below it)`);
  }
  try {
    const line = moveLegacyStateDir(cfg.workspace, cfg.stateDir);
    if (line) say(line);
    mkdirSync(cfg.stateDir, { recursive: true, mode: 0o700 });
    // The moved folder kept the workspace's permissions: it holds other runs' inputs and outputs.
    if (line?.includes(' moved ')) chmodSync(cfg.stateDir, 0o700);
  } catch (e) {
    throw new ConfigError(
      `cannot set up the state directory ${cfg.stateDir}: ${errorMessage(e)} ` +
        '(set delegate.stateDir in mcp.json, or XDG_STATE_HOME, to a writable directory)',
    );
  }
}
