// Built-in tool list_dir: one level of a workspace directory, sorted, capped; entries the rules or
// the protected paths hide are left out.
import { promises as fsp } from 'node:fs';
import type { Dirent } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { defineTool } from './define-tool.js';
import { byName, describeFsError, errCode, joinRel, plural } from './file-io.js';
import type { FsLimits } from './fs-limits.js';
import { abortedOutcome, fail, ok } from './outcome.js';
import { resolveToolPath } from './tool-path.js';
import type { BuiltinTool } from './types.js';
import { resolveInWorkspace } from '../workspace/workspace-path.js';

const T = 'list_dir';

const listDirInput = () =>
  z.strictObject({
    path: z.string().optional().describe('Directory path, relative to the workspace root. Default: "." (the root).'),
  });

async function describeSymlink(root: string, rel: string, abs: string): Promise<{ key: string; line: string }> {
  const r = await resolveInWorkspace(root, rel);
  if (!r.ok) {
    if (r.kind === 'outside' || r.kind === 'symlink_outside') {
      return { key: rel, line: `${rel} -> (symlink leading outside the workspace; not followed)` };
    }
    return { key: rel, line: `${rel} -> (unresolvable symlink, e.g. a loop; not followed)` };
  }
  let target = '';
  try {
    target = await fsp.readlink(abs);
  } catch {
    // keep empty
  }
  const arrow = target ? ` -> ${target}` : '';
  try {
    const st = await fsp.stat(r.abs);
    if (st.isDirectory()) return { key: `${rel}/`, line: `${rel}/${arrow} (symlink to a directory)` };
    if (st.isFile()) return { key: rel, line: `${rel}${arrow} (symlink, ${st.size} bytes)` };
    return { key: rel, line: `${rel}${arrow} (symlink)` };
  } catch {
    return { key: rel, line: `${rel}${arrow} (broken symlink)` };
  }
}

export function listDirTool(limits: FsLimits): BuiltinTool {
  return defineTool({
    name: T,
    description:
      'List the direct entries of a workspace directory (one level, at most ' +
      `${limits.listMaxEntries} entries; call it again on a subdirectory to go deeper). Paths are shown ` +
      'relative to the workspace root, sorted; directories end with "/", files show their size in bytes, ' +
      'symlinks are marked.',
    input: listDirInput,
    async run(args, ctx) {
      const p = args.path ?? '.';
      if (ctx.signal?.aborted) return abortedOutcome(T);

      const r = await resolveToolPath(T, ctx, p, 'list');
      if (!r.ok) return r.outcome;
      const root = await fsp.realpath(ctx.workspaceRoot).catch(() => ctx.workspaceRoot);

      try {
        const st = await fsp.stat(r.abs);
        if (!st.isDirectory()) return fail(`${T}: "${r.rel}" is not a directory; use read_file to read a file`);
      } catch (e) {
        const code = errCode(e);
        if (code === 'ENOENT' || code === 'ENOTDIR') return fail(`${T}: directory "${r.rel}" not found in the workspace`);
        return fail(`${T}: cannot access "${r.rel}": ${describeFsError(e)}`);
      }

      let dirents: Dirent[];
      try {
        dirents = await fsp.readdir(r.abs, { withFileTypes: true });
      } catch (e) {
        return fail(`${T}: cannot read "${r.rel}": ${describeFsError(e)}`);
      }
      if (ctx.signal?.aborted) return abortedOutcome(T);

      // One level only: sort by name, keep the first `max`, then stat just those.
      dirents.sort(byName);
      const total = dirents.length;
      const max = limits.listMaxEntries;
      const truncated = total > max;
      const entries: { key: string; line: string }[] = [];
      let hidden = 0;
      for (const d of truncated ? dirents.slice(0, max) : dirents) {
        if (entries.length % 100 === 99 && ctx.signal?.aborted) return abortedOutcome(T);
        const rel = joinRel(r.rel, d.name);
        const abs = path.join(r.abs, d.name);
        // Protected paths that are never shown (the state dir) are left out without a trace, links to them too.
        const lr = d.isSymbolicLink() && (ctx.filterPath || ctx.protect) ? await resolveInWorkspace(root, rel) : undefined;
        if (ctx.protect?.hidden(abs) || (lr?.ok && ctx.protect?.hidden(lr.abs))) continue;
        if (ctx.filterPath) {
          // Permission rules see a symlink's real target (a link to .env is still .env).
          if (!ctx.filterPath(rel, lr?.ok ? lr.abs : abs, 'list')) {
            hidden++;
            continue;
          }
        }
        if (d.isDirectory()) {
          entries.push({ key: `${rel}/`, line: `${rel}/` });
        } else if (d.isSymbolicLink()) {
          entries.push(await describeSymlink(root, rel, abs));
        } else if (d.isFile()) {
          let size: number | undefined;
          try {
            size = (await fsp.lstat(abs)).size;
          } catch {
            size = undefined;
          }
          entries.push({ key: rel, line: size === undefined ? rel : `${rel} (${size} bytes)` });
        } else {
          entries.push({ key: rel, line: `${rel} (special file)` });
        }
      }

      entries.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      const lines = entries.map((e) => e.line);
      if (lines.length === 0 && hidden === 0) lines.push(`(empty directory: ${r.rel === '.' ? 'workspace root' : `${r.rel}/`})`);
      if (hidden > 0) lines.push(`[${plural(hidden, 'entry', 'entries')} hidden by permission rules]`);
      if (truncated) {
        lines.push(
          `[listing truncated at ${max} entries (of ${total}, sorted by name); ` +
            'use search_files with a glob, or list_dir on a subdirectory, to find specific files]',
        );
      }
      return ok(lines.join('\n'));
    },
  });
}
