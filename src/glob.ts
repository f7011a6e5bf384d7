// The one glob syntax of the server: path globs for Read(...)/Edit(...) rules, the sandbox's writable
// directories and search_files' `glob` argument; name globs for mcp__…/Agent(...) rules. It imports
// nothing of ours, so permissions, sandbox and tools may all use it.
//
// Why hand-written: Node's `path.matchesGlob` is experimental in Node 20 (prints a warning). picomatch 4
// with {dot, noextglob, nonegate, strictBrackets} comes close but differs where a permission boundary
// cares: `[/]` matches the separator, `{x}` is a literal instead of a refused typo, `..` and `~` pass
// through, and POSIX classes (`[[:alpha:]]`) add syntax we don't document. Checked 2026-12-07.
//
// Path glob syntax (documented for agent authors):
//   - Relative globs (`src/**`, `./src/**`) are anchored at the workspace root. There is no gitignore-style
//     "a name without a slash matches at any depth": `*.pem` is top-level only; write `**/*.pem` for any depth.
//   - Absolute globs (`/srv/ws/src/**`) are matched against the absolute real path. (Claude Code's `//abs`
//     spelling is accepted as the same thing.) `~` is refused: it is never expanded.
//   - `*` matches within one path segment, `?` one character, `[abc]`/`[a-z]`/`[!x]` one character of a
//     class, `{a,b}` alternatives, `**` as a whole segment any number of segments (including none), so
//     `**/.env*` matches `.env` and `a/b/.env.local`. `\x` matches `x` literally.
//   - Wildcards match dotfiles too (unlike a shell): `Read(**)` must really mean every file, and a deny
//     rule `Read(src/*)` must not silently skip `src/.secret`.
//   - `..` segments are refused; `.` segments and repeated/trailing slashes are ignored.
//   - Directory semantics (as in .gitignore): a glob that matches a directory also covers everything
//     below it. `Read(./secrets)` denies `secrets/key.pem`; `Edit(./src/**)` (or `Edit(./src)`) allows
//     `src/new/file.ts`; `Read(.)` is the whole workspace.

export interface PathGlob {
  /** The glob as written in the rule. */
  source: string;
  /** Absolute globs are matched against absolute paths, relative ones against workspace-relative paths. */
  absolute: boolean;
  /** Matches one candidate path: relative, `/`-separated, no leading slash, "" for the root. */
  re: RegExp;
}

export type GlobResult = { ok: true; glob: PathGlob } | { ok: false; error: string };

/** A glob with more brace alternatives than this is refused (it is a mistake, not a real rule). */
const MAX_ALTERNATIVES = 256;

class GlobError extends Error {}

const REGEX_SPECIAL = /[\\^$.*+?()[\]{}|/-]/g;
const escapeRe = (s: string): string => s.replace(REGEX_SPECIAL, '\\$&');

/** Index of the first unescaped occurrence of `ch` at or after `from`, or -1. */
function indexUnescaped(s: string, ch: string, from = 0): number {
  for (let i = from; i < s.length; i++) {
    if (s[i] === '\\') i++;
    else if (s[i] === ch) return i;
  }
  return -1;
}

/** `{a,b}c` → [`ac`, `bc`]; nested groups work. Escapes are kept (resolved later, per segment). */
function expandBraces(s: string, out: string[]): void {
  const open = indexUnescaped(s, '{');
  if (open < 0) {
    if (indexUnescaped(s, '}') >= 0) throw new GlobError('unbalanced "}"');
    out.push(s);
    if (out.length > MAX_ALTERNATIVES) throw new GlobError(`more than ${MAX_ALTERNATIVES} {…} alternatives`);
    return;
  }
  if (indexUnescaped(s.slice(0, open), '}') >= 0) throw new GlobError('unbalanced "}"');
  let depth = 0;
  const commas: number[] = [];
  let close = -1;
  for (let i = open; i < s.length && close < 0; i++) {
    const c = s[i];
    if (c === '\\') i++;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) close = i;
    else if (c === ',' && depth === 1) commas.push(i);
  }
  if (close < 0) throw new GlobError('unbalanced "{"');
  // `{x}` without a comma is almost certainly a typo; refusing beats guessing literal vs group.
  if (commas.length === 0) throw new GlobError(`"${s.slice(open, close + 1)}" has no ","; escape braces as \\{ \\}`);
  const pre = s.slice(0, open);
  const post = s.slice(close + 1);
  const bounds = [open, ...commas, close];
  for (let i = 0; i + 1 < bounds.length; i++) {
    expandBraces(pre + s.slice(bounds[i] + 1, bounds[i + 1]) + post, out);
  }
}

/** One path segment (no `/`) → regex source. */
function segmentToRe(seg: string): string {
  let re = '';
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i];
    if (c === '\\') {
      if (i + 1 >= seg.length) throw new GlobError('trailing "\\"');
      re += escapeRe(seg[++i]);
    } else if (c === '*') {
      while (seg[i + 1] === '*') i++; // `a**b` inside a segment is just `a*b`
      re += '[^/]*';
    } else if (c === '?') {
      re += '[^/]';
    } else if (c === '[') {
      let j = i + 1;
      let negate = false;
      if (seg[j] === '!' || seg[j] === '^') {
        negate = true;
        j++;
      }
      let body = '';
      let first = true;
      for (; j < seg.length; j++) {
        const d = seg[j];
        if (d === ']' && !first) break;
        first = false;
        if (d === '\\' && j + 1 < seg.length) body += escapeRe(seg[++j]);
        else if (d === '-' && body !== '' && seg[j + 1] !== ']') body += '-'; // a range
        else body += escapeRe(d);
      }
      if (j >= seg.length) throw new GlobError('unterminated "[" (escape it as \\[ for a literal bracket)');
      // A class never matches the separator.
      re += negate ? `[^/${body}]` : `(?!/)[${body}]`;
      i = j;
    } else {
      re += escapeRe(c);
    }
  }
  return re;
}

/** One brace-free alternative → anchored-less regex source over a `/`-joined path without leading slash. */
function alternativeToRe(alt: string): string {
  const segs: string[] = [];
  for (const seg of alt.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') throw new GlobError('".." is not allowed in path globs');
    if (seg === '**' && segs[segs.length - 1] === '**') continue;
    segs.push(seg);
  }
  if (segs.length === 0) return ''; // the root itself (directory semantics then cover everything)
  let re = '';
  segs.forEach((seg, i) => {
    const last = i === segs.length - 1;
    if (seg === '**') {
      if (i === 0) re += last ? '.*' : '(?:.*/)?';
      else re += last ? '(?:/.*)?' : '(?:/.*)?/';
    } else {
      re += segmentToRe(seg) + (last || segs[i + 1] === '**' ? '' : '/');
    }
  });
  return re;
}

export function compilePathGlob(source: string): GlobResult {
  try {
    if (source.includes('\0')) throw new GlobError('contains a NUL byte');
    if (source.startsWith('~')) {
      throw new GlobError('"~" is not expanded; write the path relative to the workspace root (./…) or absolute');
    }
    const absolute = source.startsWith('/');
    const alts: string[] = [];
    expandBraces(source, alts);
    const res = alts.map((a) => alternativeToRe(a.replace(/^\/+/, '')));
    return { ok: true, glob: { source, absolute, re: new RegExp(`^(?:${res.join('|')})$`, 's') } };
  } catch (e) {
    if (e instanceof GlobError) return { ok: false, error: e.message };
    throw e;
  }
}

/**
 * The candidate itself and every ancestor up to the root ("" last): directory semantics.
 * `p` is relative, `/`-separated, without leading slash; "." or "" is the root.
 */
export function withAncestors(p: string): string[] {
  const out: string[] = [];
  let cur = p === '.' ? '' : p.replace(/^\/+/, '').replace(/\/+$/, '');
  while (cur !== '') {
    out.push(cur);
    const slash = cur.lastIndexOf('/');
    cur = slash < 0 ? '' : cur.slice(0, slash);
  }
  out.push('');
  return out;
}

/**
 * Does the glob cover any of the given names of one target?
 * @param rels workspace-relative names (for relative globs)
 * @param abss absolute names (for absolute globs)
 */
export function globCovers(g: PathGlob, rels: readonly string[], abss: readonly string[]): boolean {
  const names = g.absolute ? abss : rels;
  return names.some((n) => withAncestors(n).some((c) => g.re.test(c)));
}

/** Name globs (`mcp__github__get_*`, `Agent(test-*)`): `*` matches any run of characters, nothing else is special. */
export function compileNameGlob(source: string): RegExp {
  return new RegExp(`^${source.split('*').map(escapeRe).join('.*')}$`, 's');
}
