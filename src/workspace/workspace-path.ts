// Safe resolution of model-supplied paths against the workspace root. Security-critical: every file
// tool goes through here. Guards against:
//   - `..` escapes and absolute paths outside the root;
//   - prefix confusion (`/ws` must not admit `/ws-other`; CVE-2025-53110): containment is
//     "equal to root, or starts with root + path.sep", never a bare startsWith(root);
//   - symlinks anywhere in the path that lead outside (CVE-2025-53109): the target is realpath'd,
//     and for paths that do not exist yet the nearest existing ancestor is realpath'd (dangling
//     symlinks on the way are followed by hand, so a dangling link to /outside/new is caught too).
// The returned `abs` is the resolved real path; callers must use it (not the requested string).
// Residual risk: a time-of-check/time-of-use race if something swaps a path component for a
// symlink between this check and the caller's open(); callers open with O_NOFOLLOW where they can.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

/**
 * Why a path was refused: `invalid` (empty, NUL, not a string), `outside` (lexically outside the root),
 * `symlink_outside` (a symlink on the way leads out), `write_symlink` (forWrite and the final component
 * is a symlink), `unresolvable` (symlink loop, permission denied, root not accessible, …).
 */
export type ResolveFailureKind = 'invalid' | 'outside' | 'symlink_outside' | 'write_symlink' | 'unresolvable';

export type ResolveResult =
  | { ok: true; abs: string; rel: string }
  | { ok: false; reason: string; kind: ResolveFailureKind };

export interface ResolveOptions {
  /** The caller intends to create/modify the target: its final component must not be a symlink. */
  forWrite?: boolean;
}

/** Same limit as Linux's MAXSYMLINKS. */
const MAX_SYMLINK_HOPS = 40;

/** True when `p` is `root` itself or lies strictly below it. Both must be absolute and normalised. */
export function isWithin(root: string, p: string): boolean {
  if (p === root) return true;
  const prefix = root.endsWith(path.sep) ? root : root + path.sep;
  return p.startsWith(prefix);
}

/** `abs` relative to `root`, with `/` separators, `.` for the root itself. */
export function toRel(root: string, abs: string): string {
  const rel = path.relative(root, abs);
  if (rel === '') return '.';
  return path.sep === '/' ? rel : rel.split(path.sep).join('/');
}

function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null ? (e as NodeJS.ErrnoException).code : undefined;
}

/**
 * realpath() that also works for paths that do not exist (yet): realpath the nearest existing
 * ancestor and re-append the missing components. Dangling symlinks met on the way up are
 * followed manually (their target is where a write would actually land).
 */
async function realpathLoose(p: string): Promise<string> {
  const rest: string[] = [];
  let cur = p;
  let hops = 0;
  for (;;) {
    try {
      const real = await fsp.realpath(cur);
      return rest.length > 0 ? path.join(real, ...rest) : real;
    } catch (e) {
      const code = errCode(e);
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
    }
    let isLink = false;
    try {
      isLink = (await fsp.lstat(cur)).isSymbolicLink();
    } catch {
      // cur itself does not exist (or a parent is not a directory): climb.
    }
    if (isLink) {
      // A dangling symlink: continue from its target, resolved against the *real* parent directory
      // (a `..` in the target is relative to where the link really lives).
      if (++hops > MAX_SYMLINK_HOPS) {
        throw Object.assign(new Error('too many levels of symbolic links'), { code: 'ELOOP' });
      }
      const target = await fsp.readlink(cur);
      const parentReal = await fsp.realpath(path.dirname(cur));
      cur = path.resolve(parentReal, target);
      continue;
    }
    const parent = path.dirname(cur);
    if (parent === cur) return rest.length > 0 ? path.join(cur, ...rest) : cur;
    rest.unshift(path.basename(cur));
    cur = parent;
  }
}

/**
 * Resolve a model-supplied path inside the workspace.
 * @param root the workspace root (expected to be a realpath already; it is realpath'd again defensively)
 * @param requested relative (to root, never process.cwd()) or absolute path as sent by the model
 */
export async function resolveInWorkspace(
  root: string,
  requested: string,
  opts: ResolveOptions = {},
): Promise<ResolveResult> {
  if (typeof requested !== 'string') return { ok: false, kind: 'invalid', reason: 'path must be a string' };
  if (requested.trim() === '') return { ok: false, kind: 'invalid', reason: 'path is empty' };
  const shown = JSON.stringify(requested);
  if (requested.includes('\0')) return { ok: false, kind: 'invalid', reason: `path ${shown} contains a NUL byte` };

  let rootReal: string;
  try {
    rootReal = await fsp.realpath(root);
  } catch (e) {
    return { ok: false, kind: 'unresolvable', reason: `workspace root ${root} is not accessible (${errCode(e) ?? String(e)})` };
  }

  // Lexical resolution (normalises `.`/`..`); absolute `requested` is taken as-is.
  const lexical = path.resolve(rootReal, requested);
  const lexicallyInside = isWithin(rootReal, lexical);
  const outside: ResolveResult = {
    ok: false,
    kind: 'outside',
    reason: `path ${shown} resolves outside the workspace (${rootReal})`,
  };

  let real: string;
  try {
    real = await realpathLoose(lexical);
  } catch (e) {
    // Don't turn outside paths into an existence/permission oracle: same answer whatever went wrong.
    if (!lexicallyInside) return outside;
    const code = errCode(e);
    if (code === 'ELOOP') {
      return { ok: false, kind: 'unresolvable', reason: `path ${shown} could not be resolved: too many levels of symbolic links` };
    }
    if (code === 'EACCES' || code === 'EPERM') {
      return { ok: false, kind: 'unresolvable', reason: `path ${shown} could not be resolved: permission denied` };
    }
    return { ok: false, kind: 'unresolvable', reason: `path ${shown} could not be resolved (${code ?? String(e)})` };
  }

  if (!isWithin(rootReal, real)) {
    if (!lexicallyInside) return outside;
    return { ok: false, kind: 'symlink_outside', reason: `path ${shown} goes through a symlink that leads outside the workspace` };
  }

  if (opts.forWrite) {
    try {
      if ((await fsp.lstat(lexical)).isSymbolicLink()) {
        return { ok: false, kind: 'write_symlink', reason: `path ${shown} is a symlink; refusing to write through it` };
      }
    } catch {
      // Does not exist: fine for a write (the parent chain was checked above).
    }
  }

  return { ok: true, abs: real, rel: toRel(rootReal, real) };
}
