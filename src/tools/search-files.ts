// Built-in tool search_files: a regular expression (RE2, in a worker thread: line-search.ts) over the
// text files of a workspace path, optionally narrowed by a glob in the syntax of the permission rules
// (src/glob.ts). Every entry it would read passes the rules (ctx.filterPath) and the protected paths.
import { promises as fsp } from 'node:fs';
import type { Dirent, Stats } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { compilePathGlob, type PathGlob } from '../glob.js';
import { defineTool } from './define-tool.js';
import { byName, describeFsError, errCode, formatSize, joinRel, plural, readSmall } from './file-io.js';
import type { FsLimits } from './fs-limits.js';
import { LineSearch } from './line-search.js';
import { abortedOutcome, fail, ok } from './outcome.js';
import { resolveToolPath } from './tool-path.js';
import type { BuiltinTool, ToolContext } from './types.js';
import type { ToolOutcome } from '../contract/tool.js';
import { resolveInWorkspace, type ResolveResult } from '../workspace/workspace-path.js';

const T = 'search_files';

/** Directories search_files never descends into. */
const NOT_EXPANDED = new Set(['.git', 'node_modules']);

const searchFilesInput = () =>
  z.strictObject({
    // refine, not .min(1): the offered schema stays as it was (no minLength).
    pattern: z.string().refine((v) => v !== '', { error: '"pattern" must not be empty' }).describe('JavaScript regular expression, matched against each line.'),
    path: z.string().optional().describe('File or directory to search, relative to the workspace root. Default: "." (everything).'),
    glob: z
      .string()
      .optional()
      .describe('Only search files matching this glob, e.g. "*.ts", "src/**/*.{js,ts}". Without a "/" it matches file names.'),
  });

export function searchFilesTool(limits: FsLimits): BuiltinTool {
  return defineTool({
    name: T,
    description:
      'Search text files in the workspace for a JavaScript regular expression, line by line ' +
      '(prefix the pattern with (?i) for case-insensitive). Output lines look like "path:line: text" ' +
      `with paths relative to the workspace root; at most ${limits.searchMaxMatches} matches. ` +
      `Skips .git, node_modules, binary files and files over ${formatSize(limits.searchMaxFileBytes)}.`,
    input: searchFilesInput,
    async run(args, ctx) {
      const { pattern } = args;
      const p = args.path ?? '.';
      const glob = args.glob === '' ? undefined : args.glob;
      let compiled: PathGlob | undefined;
      if (glob !== undefined) {
        const g = compilePathGlob(glob);
        if (!g.ok) return fail(`${T}: invalid glob ${JSON.stringify(glob)}: ${g.error}`);
        compiled = g.glob;
      }
      if (ctx.signal?.aborted) return abortedOutcome(T);

      const r = await resolveToolPath(T, ctx, p, 'read');
      if (!r.ok) return r.outcome;
      // The pattern is compiled and matched in a worker thread (RE2, under a deadline): see line-search.ts.
      const search = await LineSearch.open(pattern, { deadlineMs: limits.searchDeadlineMs, signal: ctx.signal });
      if (!(search instanceof LineSearch)) {
        if (ctx.signal?.aborted) return abortedOutcome(T);
        return fail(`${T}: invalid regular expression ${JSON.stringify(pattern)}: ${search.error}`);
      }
      try {
        return await searchTree(search, r, { pattern, glob, compiled }, ctx, limits);
      } finally {
        search.close();
      }
    },
  });
}

/** Thrown out of the walk when the search is cancelled or overruns its deadline. */
class SearchStopped extends Error {}

async function searchTree(
  search: LineSearch,
  r: Extract<ResolveResult, { ok: true }>,
  { pattern, glob, compiled }: { pattern: string; glob: string | undefined; compiled: PathGlob | undefined },
  ctx: ToolContext,
  limits: FsLimits,
): Promise<ToolOutcome> {
  const root = await fsp.realpath(ctx.workspaceRoot).catch(() => ctx.workspaceRoot);

  let top: Stats;
  try {
    top = await fsp.stat(r.abs);
  } catch (e) {
    const code = errCode(e);
    if (code === 'ENOENT' || code === 'ENOTDIR') return fail(`${T}: path "${r.rel}" not found in the workspace`);
    return fail(`${T}: cannot access "${r.rel}": ${describeFsError(e)}`);
  }

  const globMatches = (rel: string, abs: string): boolean => {
    if (!compiled || glob === undefined) return true;
    // An absolute glob is matched against the real absolute path (as in the rules).
    if (compiled.absolute) return compiled.re.test(abs.replace(/^\/+/, ''));
    if (!glob.includes('/')) return compiled.re.test(rel.slice(rel.lastIndexOf('/') + 1));
    // With a slash: match relative to the search directory, or to the workspace root.
    const underSearch = r.rel === '.' ? rel : rel.startsWith(`${r.rel}/`) ? rel.slice(r.rel.length + 1) : rel;
    return compiled.re.test(underSearch) || compiled.re.test(rel);
  };

  const results: string[] = [];
  let matches = 0;
  let visited = 0;
  let searched = 0;
  let skippedBinary = 0;
  let skippedLarge = 0;
  let skippedOutsideLinks = 0;
  let skippedDirLinks = 0;
  let unreadable = 0;
  let unresolvableLinks = 0;
  let skippedByRules = 0;
  let hitMatchCap = false;
  let hitVisitCap = false;
  let hitDeadline = false;
  let notFile = false;

  const searchFile = async (abs: string, rel: string): Promise<void> => {
    // Protected files (mcp.json, anything in the state dir) are skipped without a trace.
    if (ctx.protect?.check('read', abs)) return;
    if (ctx.filterPath && !ctx.filterPath(rel, abs, 'read')) {
      skippedByRules++;
      return;
    }
    let buf: Buffer | null;
    try {
      const st = await fsp.stat(abs);
      if (st.size > limits.searchMaxFileBytes) {
        skippedLarge++;
        return;
      }
      buf = await readSmall(abs, limits.searchMaxFileBytes);
    } catch {
      unreadable++;
      return;
    }
    if (buf === null) {
      skippedLarge++;
      return;
    }
    if (buf.subarray(0, limits.binarySniffBytes).includes(0)) {
      skippedBinary++;
      return;
    }
    searched++;
    const found = await search.match(buf, limits.searchMaxMatches - matches, limits.searchLineMaxChars);
    if (found.kind === 'deadline') hitDeadline = true;
    if (found.kind === 'aborted' || found.kind === 'deadline') throw new SearchStopped();
    if (found.kind === 'failed') throw new Error(found.message);
    for (const { n, text } of found.lines) {
      if (matches >= limits.searchMaxMatches) {
        hitMatchCap = true;
        return;
      }
      matches++;
      results.push(`${rel}:${n}: ${text}`);
    }
  };

  async function walkTree(): Promise<void> {
    if (top.isFile()) {
      visited = 1;
      await searchFile(r.abs, r.rel);
    } else if (top.isDirectory()) {
      // Depth-first in sorted order, so output is grouped and deterministic.
      const stack: { abs: string; rel: string }[] = [{ abs: r.abs, rel: r.rel }];
      walk: while (stack.length > 0) {
        if (ctx.signal?.aborted) throw new SearchStopped();
        const dir = stack.pop()!;
        let dirents: Dirent[];
        try {
          dirents = await fsp.readdir(dir.abs, { withFileTypes: true });
        } catch {
          unreadable++;
          continue;
        }
        dirents.sort(byName);
        const subdirs: { abs: string; rel: string }[] = [];
        for (const d of dirents) {
          if (ctx.signal?.aborted) throw new SearchStopped();
          if (hitMatchCap) break walk;
          if (visited >= limits.searchMaxFiles) {
            hitVisitCap = true;
            break walk;
          }
          visited++;
          const rel = joinRel(dir.rel, d.name);
          const abs = path.join(dir.abs, d.name);
          if (d.isDirectory()) {
            if (NOT_EXPANDED.has(d.name) || ctx.protect?.hidden(abs)) continue;
            if (ctx.filterPath && !ctx.filterPath(rel, abs, 'list')) skippedByRules++;
            else subdirs.push({ abs, rel });
          } else if (d.isSymbolicLink()) {
            // Symlinked directories are never descended into, so a link the glob excludes is irrelevant.
            if (!globMatches(rel, abs)) continue;
            const lr = await resolveInWorkspace(root, rel);
            if (!lr.ok) {
              if (lr.kind === 'outside' || lr.kind === 'symlink_outside') skippedOutsideLinks++;
              else unresolvableLinks++;
              continue;
            }
            if (ctx.protect?.hidden(lr.abs)) continue;
            try {
              const st = await fsp.stat(lr.abs);
              if (st.isFile()) {
                await searchFile(lr.abs, rel);
              } else if (st.isDirectory()) {
                skippedDirLinks++;
              }
            } catch {
              // broken symlink: nothing to search
            }
          } else if (d.isFile()) {
            if (globMatches(rel, abs)) await searchFile(abs, rel);
          }
        }
        // Push in reverse so the alphabetically first subdirectory is searched next.
        for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]);
      }
    } else {
      notFile = true;
    }
  }

  try {
    await walkTree();
  } catch (err) {
    if (!(err instanceof SearchStopped)) throw err;
    if (!hitDeadline) return abortedOutcome(T);
  }
  if (notFile) return fail(`${T}: "${r.rel}" is not a regular file or directory`);

  const notes: string[] = [];
  if (hitDeadline) {
    notes.push(`[stopped after ${limits.searchDeadlineMs / 1000} s: the pattern is too costly on these files; simplify it, or narrow the path or glob]`);
  }

  if (hitMatchCap) {
    notes.push(`[stopped after ${limits.searchMaxMatches} matches; narrow the pattern, path or glob to see more]`);
  }
  if (hitVisitCap) {
    notes.push(`[stopped after visiting ${limits.searchMaxFiles} entries; narrow the path or glob to search the rest]`);
  }
  const skipped: string[] = [];
  if (skippedBinary) skipped.push(plural(skippedBinary, 'binary file'));
  if (skippedLarge) skipped.push(`${plural(skippedLarge, 'file')} larger than ${formatSize(limits.searchMaxFileBytes)}`);
  if (skippedOutsideLinks) skipped.push(`${plural(skippedOutsideLinks, 'symlink')} leading outside the workspace`);
  if (skippedDirLinks) skipped.push(`${plural(skippedDirLinks, 'symlinked directory', 'symlinked directories')} (not followed)`);
  if (unresolvableLinks) {
    skipped.push(`${plural(unresolvableLinks, 'symlink')} that cannot be resolved (loop or permission denied)`);
  }
  if (unreadable) skipped.push(`${plural(unreadable, 'unreadable entry', 'unreadable entries')}`);
  if (skippedByRules) skipped.push(`${plural(skippedByRules, 'entry', 'entries')} excluded by permission rules`);
  if (skipped.length > 0) notes.push(`[skipped: ${skipped.join(', ')}]`);

  const where = r.rel === '.' ? 'the workspace' : `"${r.rel}"`;
  if (results.length === 0) {
    const head = `No matches for /${pattern}/ in ${where}${glob ? ` (glob ${glob})` : ''}; ${plural(searched, 'file')} searched.`;
    return ok([head, ...notes].join('\n'));
  }
  return ok([...results, ...notes].join('\n'));
}
