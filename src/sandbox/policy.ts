// What a sandboxed command may touch, derived from a run's permission rules (pure logic, no I/O):
//
//   writable directories   where the run's Edit allow rules reach. A glob's literal directory prefix is
//                          the directory made writable: `Edit(out/**)` and `Edit(out)` → out/,
//                          `Edit(src/*.ts)` → src/, `Edit(**/*.md)` and `Edit(package.json)` → the
//                          workspace root (a rule that is not a directory prefix makes its nearest
//                          covering directory writable). Bare `Edit` → the root. Ask rules make nothing
//                          writable (a command cannot stop to ask). With several layers (a delegated
//                          run), a directory is writable only where EVERY layer's rules reach it.
//   read-only on top       the literal directory prefix of Edit deny rules (`Edit(out/keep/**)`).
//   hidden                 the literal directory prefix of Read deny rules (`Read(secrets/**)`).
//                          Deny globs with wildcards (`Read(**/.env*)`) are not mounts (finding their
//                          files means walking the whole workspace at every command start, and files
//                          created later would still escape): the argv rules are the only layer for
//                          those; README says so.
//   network                only when every layer allows it (an agent's `sandbox: {network: true}`).
import path from 'node:path';
import { compilePathGlob } from '../glob.js';
import type { RuleLayer, RuleSet } from '../permissions/index.js';
import { parseRule } from '../permissions/rules.js';

/** Workspace-relative, `/`-separated directory ("" is the workspace root). */
export type RelDir = string;

/** What the rules let a command reach inside the workspace (relative to its root). */
export interface WorkspaceAccess {
  /** Minimal set: none is inside another. */
  writable: RelDir[];
  /** Mounted read-only on top of a writable directory. */
  readOnly: RelDir[];
  /** Replaced by an empty directory. */
  hidden: RelDir[];
}

const WILDCARD = /[*?[\]{}\\]/;

/**
 * The directory a path glob's literal prefix names, relative to the workspace root, or null when the glob
 * is absolute and outside the workspace. `dirOnly`: the glob's last literal segment is a directory
 * (it ends with `/**` or `/`, or is followed by a wildcard segment); otherwise the last segment may be a
 * file and its parent is the covering directory.
 */
export function literalPrefix(glob: string, roots: readonly string[]): { dir: RelDir; exact: boolean } | null {
  let g = glob.startsWith('//') ? glob.slice(1) : glob;
  if (g.startsWith('/')) {
    const root = roots.find((r) => g === r || g.startsWith(`${r}/`));
    if (!root) return null;
    g = g.slice(root.length);
  }
  const segs = g.split('/').filter((s) => s !== '' && s !== '.');
  const literal: string[] = [];
  for (const s of segs) {
    if (WILDCARD.test(s)) break;
    literal.push(s);
  }
  // `exact`: the glob IS its literal prefix (no wildcard follows): `Edit(out)` covers out/** by directory
  // semantics if out is a directory, or is the file out itself.
  return { dir: literal.join('/'), exact: literal.length === segs.length };
}

/** Is `a` the same directory as `b` or inside it? ("" is the root.) */
export function isInsideDir(a: RelDir, b: RelDir): boolean {
  return b === '' || a === b || a.startsWith(`${b}/`);
}

/** Keep only directories not inside another one of the list. */
export function outermost(dirs: readonly RelDir[]): RelDir[] {
  const uniq = [...new Set(dirs)].sort((x, y) => x.length - y.length);
  const out: RelDir[] = [];
  for (const d of uniq) if (!out.some((o) => isInsideDir(d, o))) out.push(d);
  return out.sort();
}

/** Directories covered by both lists: the deeper of each nested pair. */
function intersectDirs(a: readonly RelDir[], b: readonly RelDir[]): RelDir[] {
  const out: RelDir[] = [];
  for (const x of a) for (const y of b) {
    if (isInsideDir(x, y)) out.push(x);
    else if (isInsideDir(y, x)) out.push(y);
  }
  return outermost(out);
}

/**
 * The directory a literal path covers: itself when it is a directory, else its parent. `isDir` answers for
 * workspace-relative paths (run-time knowledge: the caller stats the file system).
 */
function coveringDir(p: { dir: RelDir; exact: boolean }, isDir: (rel: RelDir) => boolean): RelDir {
  if (!p.exact || p.dir === '' || isDir(p.dir)) return p.dir;
  const slash = p.dir.lastIndexOf('/');
  return slash < 0 ? '' : p.dir.slice(0, slash);
}

function layerWritable(layer: RuleLayer, roots: readonly string[], isDir: (rel: RelDir) => boolean): RelDir[] {
  const dirs: RelDir[] = [];
  for (const s of layer.allow ?? []) {
    const p = parseRule(s);
    if (!p.ok || p.rule.kind !== 'Edit') continue;
    if (p.rule.glob === null) return [''];
    const prefix = literalPrefix(p.rule.glob.source, roots);
    if (prefix) dirs.push(coveringDir(prefix, isDir));
  }
  return outermost(dirs);
}

/** Deny rules whose whole glob is a literal directory (`x`, `x/`, `x/**`): those can be mounted over. */
function denyDirs(layer: RuleLayer, kind: 'Read' | 'Edit', roots: readonly string[]): RelDir[] {
  const dirs: RelDir[] = [];
  for (const s of layer.deny ?? []) {
    const p = parseRule(s);
    if (!p.ok || p.rule.kind !== kind || p.rule.glob === null) continue;
    const src = p.rule.glob.source.replace(/\/\*\*$/, '');
    if (!compilePathGlob(src).ok) continue;
    const prefix = literalPrefix(src, roots);
    if (prefix && prefix.exact && prefix.dir !== '') dirs.push(prefix.dir);
  }
  return dirs;
}

/**
 * What a run's rules let its commands reach in the workspace. `roots` are the workspace root's spellings
 * for absolute globs (its realpath and the path as configured); `isDir` tells existing directories.
 */
export function workspaceAccess(rules: RuleSet, roots: readonly string[], isDir: (rel: RelDir) => boolean): WorkspaceAccess {
  const layers = rules?.layers ?? [];
  if (layers.length === 0) return { writable: [], readOnly: [], hidden: [] };
  const normRoots = roots.map((r) => path.posix.normalize(r).replace(/\/+$/, ''));
  let writable = layerWritable(layers[0], normRoots, isDir);
  for (const layer of layers.slice(1)) writable = intersectDirs(writable, layerWritable(layer, normRoots, isDir));
  const hidden = outermost(layers.flatMap((l) => denyDirs(l, 'Read', normRoots)));
  const readOnly = outermost(layers.flatMap((l) => denyDirs(l, 'Edit', normRoots))).filter((d) => !hidden.some((h) => isInsideDir(d, h)));
  return { writable, readOnly, hidden };
}

/** Network for a run's commands: only when every layer of its rules allows it. */
export function networkAllowed(rules: RuleSet): boolean {
  const layers = rules?.layers ?? [];
  return layers.length > 0 && layers.every((l) => l.network === true);
}
