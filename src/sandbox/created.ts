// Protected paths a sandboxed command CREATED. Existing protected paths are mounted read-only or hidden
// (and their parent directories pinned, mounts.ts), but a mount needs something to mount over: where
// `<workspace>/mcp.json`, `.git` or a downstream server's script is missing and the command may write
// the directory that would hold it, the command can create it, and the next `serve` or `git` in that
// folder would run what it says outside any sandbox. So: every call records which protected paths are
// missing when it starts (the first missing component: `.git` for `.git/config`), and whatever exists
// at one of those places afterwards is removed.
//
// Why removing is safe:
//   - It happens only when NO sandboxed command of this server is running (`running` back to 0), after the
//     last one's pid namespace is gone (run-command waits for the namespace's init to be reaped or a
//     zombie: the kernel kills and reaps every process of a pid namespace before its init exits). Nothing
//     of a command can race the removal: no process re-creates the path, swaps a parent directory for a
//     symlink between the check and the removal, or holds a mount over it. Places recorded by any call
//     stay recorded until then, so a path created by one command while another still runs is removed too.
//   - The parent of the removed path must still be, by realpath, exactly where it was (inside the
//     workspace, no symlink on the way); then `rm` removes the entry itself: a symlink is unlinked, never
//     followed, and a recursive removal does not descend into symlinked directories.
// The user creating one of these paths by hand while a command runs would see it removed (the result
// and the audit say so); the file tools never create them (ProtectedGuard).
//
// A server stopped or killed while a command runs never gets to its removal (bwrap dies with it, the
// created path stays). So the recorded places are also kept in a journal in the state dir,
// `sandbox-created-<pid>.json`, and the next server start removes what a DEAD server's journal names
// (never a live one's: that server is still running commands and removes them itself).
import { lstatSync, readdirSync, readFileSync, realpathSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';

interface Watch {
  /** Sandboxed commands started and whose namespace is not known to be gone yet. */
  running: number;
  /** Absolute paths (under the workspace realpath) that were missing when some running command started. */
  missing: Set<string>;
  /** This process's journal file, when the server has a state dir. */
  journal?: string;
}

const JOURNAL = /^sandbox-created-(\d+)\.json$/;

/** Per workspace realpath (tool execution is on the main thread: one server, one map). */
const watches = new Map<string, Watch>();

const inside = (root: string, p: string): boolean => p === root || p.startsWith(`${root}/`);

function exists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * The first component of `p` (a path under `root`) that does not exist, or undefined when `p` exists or
 * cannot be created lexically there (a component on the way is a symlink or not a directory: the mounts
 * then cover its real place).
 */
function firstMissing(root: string, p: string): string | undefined {
  let cur = root;
  for (const seg of path.relative(root, p).split(path.sep)) {
    cur = path.join(cur, seg);
    let st;
    try {
      st = lstatSync(cur);
    } catch {
      return cur;
    }
    if (cur !== p && (st.isSymbolicLink() || !st.isDirectory())) return undefined;
  }
  return undefined;
}

function watchOf(root: string): Watch {
  let w = watches.get(root);
  if (!w) watches.set(root, (w = { running: 0, missing: new Set() }));
  return w;
}

/** Writes (or, when nothing is recorded, deletes) this process's journal. */
function saveJournal(root: string, w: Watch): void {
  if (!w.journal) return;
  try {
    if (w.missing.size === 0) unlinkSync(w.journal);
    else writeFileSync(w.journal, JSON.stringify({ pid: process.pid, root, missing: [...w.missing] }));
  } catch {
    // ENOENT on unlink: nothing to delete. A state dir that cannot be written loses only the after-crash
    // cleanup; the removal after each command does not depend on it.
  }
}

/**
 * Removes the entry at `p` (a path under `root`) when it exists and its parent is still, by realpath,
 * exactly where it was. True when it was removed.
 */
function removeCreated(root: string, p: string): boolean {
  if (!exists(p)) return false;
  let parent: string;
  try {
    parent = realpathSync.native(path.dirname(p));
  } catch {
    return false;
  }
  // Still exactly where it was: no symlink leads the removal elsewhere.
  if (parent !== path.dirname(p) || !inside(root, parent)) return false;
  try {
    rmSync(p, { recursive: true, force: true });
    return true;
  } catch {
    return false; // not removable (permissions): it stays recorded and is tried again later
  }
}

/**
 * Call before starting a sandboxed command: records the protected paths (absolute, inside `root`, the
 * workspace realpath) that are missing now. Every begin() must be followed by exactly one end().
 */
export function beginCommand(root: string, protectedPaths: readonly string[]): void {
  const w = watchOf(root);
  w.running++;
  for (const p of protectedPaths) {
    const abs = path.resolve(p);
    if (!inside(root, abs) || abs === root) continue;
    const m = firstMissing(root, abs);
    if (m) w.missing.add(m);
  }
  saveJournal(root, w);
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * At server start: this process journals into `stateDir`; what the journals of dead servers of the same
 * workspace name is removed now (their commands are gone: bwrap dies with its server). Returns the
 * removed paths.
 */
export function recoverJournals(root: string, stateDir: string): string[] {
  const w = watchOf(root);
  w.journal = path.join(stateDir, `sandbox-created-${process.pid}.json`);
  let names: string[];
  try {
    names = readdirSync(stateDir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = JOURNAL.exec(name);
    if (!m || Number(m[1]) === process.pid || alive(Number(m[1]))) continue;
    const file = path.join(stateDir, name);
    let missing: unknown;
    try {
      const j = JSON.parse(readFileSync(file, 'utf8')) as { root?: unknown; missing?: unknown };
      if (j.root !== root) continue; // another workspace's (a state dir is per workspace; be strict anyway)
      missing = j.missing;
    } catch {
      missing = undefined; // unreadable or half-written: nothing to act on
    }
    const paths = Array.isArray(missing) ? missing.filter((p): p is string => typeof p === 'string' && path.isAbsolute(p) && inside(root, p) && p !== root) : [];
    for (const p of paths.sort((a, b) => a.split('/').length - b.split('/').length)) if (removeCreated(root, p)) removed.push(p);
    try {
      unlinkSync(file);
    } catch {
      // removed meanwhile by another starting server
    }
  }
  return removed;
}

/**
 * Call once the command's processes are all gone. When it was the last running one, removes whatever now
 * exists where a protected path was missing; returns the removed paths (absolute), for the result and
 * the audit. `namespaceGone: false` (its end could not be confirmed) skips removal this time; the places
 * stay recorded for the next call's end.
 */
export function endCommand(root: string, namespaceGone: boolean): string[] {
  const w = watches.get(root);
  if (!w) return [];
  w.running = Math.max(0, w.running - 1);
  if (w.running > 0 || !namespaceGone) return [];
  const removed: string[] = [];
  // Shallowest first: removing a created `.claude` takes a created `.claude/agents` with it.
  for (const p of [...w.missing].sort((a, b) => a.split('/').length - b.split('/').length)) {
    if (removeCreated(root, p)) removed.push(p);
  }
  for (const p of [...w.missing]) if (!exists(p)) w.missing.delete(p);
  saveJournal(root, w);
  return removed;
}
