// Read-only built-in file tools: read_file, list_dir, search_files. Tool and argument names are part
// of the public contract (agent authors grant and prompt for them). Every path goes through
// resolveInWorkspace; every failure is returned as an error ToolOutcome, never thrown.
import { constants as fsc, promises as fsp } from 'node:fs';
import type { Dirent, Stats } from 'node:fs';
import path from 'node:path';
import type { BuiltinTool, ToolContext } from './types.js';
import type { ToolOutcome } from '../contract/tool.js';
import { resolveInWorkspace, type ResolveResult } from '../workspace/workspace-path.js';
import { LineSearch } from './line-search.js';

/** Shared caps; the orchestrator may overwrite these at startup. */
export const limits = {
  /** read_file: maximum bytes of file text returned by one call. */
  readMaxBytes: 256 * 1024,
  /** Bytes sniffed for a NUL to decide that a file is binary. */
  binarySniffBytes: 8 * 1024,
  /** list_dir: maximum entries listed. */
  listMaxEntries: 1000,
  /** search_files: maximum matching lines reported. */
  searchMaxMatches: 200,
  /** search_files: maximum directory entries (files and directories) visited. */
  searchMaxFiles: 20_000,
  /** search_files: files larger than this are skipped. */
  searchMaxFileBytes: 1024 * 1024,
  /** search_files: each reported line is cut to this many characters. */
  searchLineMaxChars: 300,
  /** search_files: the whole search stops (with what it found) after this long. */
  searchDeadlineMs: 10_000,
};

/** Directories search_files never descends into. */
const NOT_EXPANDED = new Set(['.git', 'node_modules']);

/** O_NOFOLLOW where the platform has it: the final component of a resolved path must not be a symlink. */
const OPEN_READ_FLAGS = fsc.O_RDONLY | (fsc.O_NOFOLLOW ?? 0);

// ---------------------------------------------------------------------------------------------
// Small helpers (exported for the other built-in tool modules: same argument checks and messages)

export const ok = (content: string): ToolOutcome => ({ content, isError: false });
export const fail = (content: string): ToolOutcome => ({ content, isError: true });

export class ArgError extends Error {}

export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

export function checkArgs(tool: string, args: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (typeof args !== 'object' || args === null || Array.isArray(args)) {
    throw new ArgError(`${tool}: arguments must be a JSON object, got ${typeName(args)}`);
  }
  for (const key of Object.keys(args)) {
    if (!allowed.includes(key)) {
      throw new ArgError(`${tool}: unknown argument "${key}" (expected: ${allowed.join(', ')})`);
    }
  }
  return args as Record<string, unknown>;
}

/** `null` counts as absent for optional arguments (some models send null for unset fields). */
export function optString(tool: string, args: Record<string, unknown>, key: string): string | undefined {
  const v = args[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new ArgError(`${tool}: "${key}" must be a string, got ${typeName(v)}`);
  return v;
}

export function reqString(tool: string, args: Record<string, unknown>, key: string): string {
  if (args[key] === undefined) throw new ArgError(`${tool}: missing required argument "${key}" (a string)`);
  const v = args[key];
  if (typeof v !== 'string') throw new ArgError(`${tool}: "${key}" must be a string, got ${typeName(v)}`);
  return v;
}

function optPositiveInt(tool: string, args: Record<string, unknown>, key: string): number | undefined {
  const v = args[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new ArgError(`${tool}: "${key}" must be an integer, got ${typeof v === 'number' ? String(v) : typeName(v)}`);
  }
  if (v < 1) throw new ArgError(`${tool}: "${key}" must be >= 1 (lines are numbered from 1), got ${v}`);
  return v;
}

export function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null ? (e as NodeJS.ErrnoException).code : undefined;
}

export function describeFsError(e: unknown): string {
  const code = errCode(e);
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'ELOOP') return 'is a symlink or has too many levels of symbolic links';
  return code ?? (e instanceof Error ? e.message : String(e));
}

export function formatSize(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/** Largest end <= `end` that does not split a UTF-8 sequence. */
export function utf8SafeEnd(buf: Buffer, end: number): number {
  let e = Math.min(end, buf.length);
  // Back up over continuation bytes (10xxxxxx) so buf[e] starts a character.
  let back = 0;
  while (e > 0 && e < buf.length && (buf[e] & 0xc0) === 0x80 && back < 3) {
    e--;
    back++;
  }
  return e;
}

async function readAt(fh: fsp.FileHandle, buf: Buffer, position: number): Promise<number> {
  let filled = 0;
  while (filled < buf.length) {
    const { bytesRead } = await fh.read(buf, filled, buf.length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled;
}

async function isBinary(fh: fsp.FileHandle, size: number): Promise<boolean> {
  const n = Math.min(size, limits.binarySniffBytes);
  if (n <= 0) return false;
  const buf = Buffer.alloc(n);
  const got = await readAt(fh, buf, 0);
  return buf.subarray(0, got).includes(0);
}

/** Last line of defence: tools report errors, they never throw. */
export function neverThrows(
  tool: string,
  fn: (args: Record<string, unknown>, ctx: ToolContext) => Promise<ToolOutcome>,
): (args: Record<string, unknown>, ctx: ToolContext) => Promise<ToolOutcome> {
  return async (args, ctx) => {
    try {
      return await fn(args, ctx);
    } catch (e) {
      if (e instanceof ArgError) return fail(e.message);
      return fail(`${tool}: internal error: ${e instanceof Error ? e.message : String(e)}`);
    }
  };
}

export function abortedOutcome(tool: string): ToolOutcome {
  return fail(`${tool}: aborted`);
}

// ---------------------------------------------------------------------------------------------
// read_file

interface ScanResult {
  /** Bytes of the requested lines (up to the cap). */
  buf: Buffer;
  /** The output cap was hit before the requested range was complete. */
  capped: boolean;
  /** Number of lines in the file, if the scan reached end of file. */
  totalLines: number | null;
  aborted: boolean;
}

/** Streams the file and collects lines [start, end] (1-based, inclusive) up to `cap` bytes. */
async function scanLines(
  fh: fsp.FileHandle,
  start: number,
  end: number,
  cap: number,
  signal: AbortSignal | undefined,
): Promise<ScanResult> {
  const chunk = Buffer.alloc(64 * 1024);
  const out: Buffer[] = [];
  let outBytes = 0;
  let line = 1;
  let pos = 0;
  let sawAny = false;
  let lastWasNewline = false;
  for (;;) {
    if (signal?.aborted) return { buf: Buffer.alloc(0), capped: false, totalLines: null, aborted: true };
    const { bytesRead } = await fh.read(chunk, 0, chunk.length, pos);
    if (bytesRead === 0) break;
    pos += bytesRead;
    sawAny = true;
    const data = chunk.subarray(0, bytesRead);
    lastWasNewline = data[bytesRead - 1] === 0x0a;
    let i = 0;
    while (i < data.length) {
      const nl = data.indexOf(0x0a, i);
      const pieceEnd = nl === -1 ? data.length : nl + 1;
      if (line >= start) {
        const piece = data.subarray(i, pieceEnd);
        if (outBytes + piece.length > cap) {
          // Take one byte more than fits so the caller knows it was capped; copy (chunk is reused).
          out.push(Buffer.from(piece.subarray(0, cap - outBytes + 1)));
          return { buf: Buffer.concat(out), capped: true, totalLines: null, aborted: false };
        }
        out.push(Buffer.from(piece));
        outBytes += piece.length;
      }
      if (nl === -1) break;
      line++;
      if (line > end) return { buf: Buffer.concat(out), capped: false, totalLines: null, aborted: false };
      i = nl + 1;
    }
  }
  const totalLines = !sawAny ? 0 : lastWasNewline ? line - 1 : line;
  return { buf: Buffer.concat(out), capped: false, totalLines, aborted: false };
}

/** Cut a capped buffer back to whole lines (or a UTF-8 boundary if one line exceeds the cap). */
function cutCapped(buf: Buffer, cap: number): Buffer {
  const within = buf.subarray(0, Math.min(cap, buf.length));
  const lastNl = within.lastIndexOf(0x0a);
  if (lastNl > 0) return within.subarray(0, lastNl + 1);
  return within.subarray(0, utf8SafeEnd(buf, cap));
}

function countNewlines(buf: Buffer): number {
  let n = 0;
  for (let i = buf.indexOf(0x0a); i !== -1; i = buf.indexOf(0x0a, i + 1)) n++;
  return n;
}

async function runReadFile(rawArgs: Record<string, unknown>, ctx: ToolContext): Promise<ToolOutcome> {
  const T = 'read_file';
  let p: string;
  let startLine: number | undefined;
  let endLine: number | undefined;
  try {
    const args = checkArgs(T, rawArgs, ['path', 'start_line', 'end_line']);
    p = reqString(T, args, 'path');
    startLine = optPositiveInt(T, args, 'start_line');
    endLine = optPositiveInt(T, args, 'end_line');
    if (startLine !== undefined && endLine !== undefined && endLine < startLine) {
      throw new ArgError(`${T}: "end_line" (${endLine}) must be >= "start_line" (${startLine})`);
    }
  } catch (e) {
    if (e instanceof ArgError) return fail(e.message);
    throw e;
  }
  if (ctx.signal?.aborted) return abortedOutcome(T);

  const r = await resolveInWorkspace(ctx.workspaceRoot, p);
  if (!r.ok) return fail(`${T}: ${r.reason}`);
  const hit = ctx.protect?.check('read', r.abs, path.resolve(ctx.workspaceRoot, p));
  if (hit) return fail(`${T}: ${hit.message}`);

  let fh: fsp.FileHandle;
  try {
    const st = await fsp.stat(r.abs);
    if (st.isDirectory()) return fail(`${T}: "${r.rel}" is a directory; use list_dir to see its contents`);
    if (!st.isFile()) return fail(`${T}: "${r.rel}" is not a regular file`);
    fh = await fsp.open(r.abs, OPEN_READ_FLAGS);
  } catch (e) {
    const code = errCode(e);
    if (code === 'ENOENT' || code === 'ENOTDIR') return fail(`${T}: file "${r.rel}" not found in the workspace`);
    return fail(`${T}: cannot open "${r.rel}": ${describeFsError(e)}`);
  }

  try {
    const size = (await fh.stat()).size;
    if (await isBinary(fh, size)) {
      return fail(`${T}: "${r.rel}" appears to be a binary file (${size} bytes); only text files can be read`);
    }
    const cap = limits.readMaxBytes;
    const start = startLine ?? 1;
    const end = endLine ?? Number.POSITIVE_INFINITY;
    const scan = await scanLines(fh, start, end, cap, ctx.signal);
    if (scan.aborted) return abortedOutcome(T);

    if (scan.totalLines !== null && start > 1 && start > scan.totalLines) {
      return fail(
        `${T}: start_line ${start} is past the end of "${r.rel}" (${plural(scan.totalLines, 'line')})`,
      );
    }
    if (!scan.capped) {
      const text = scan.buf.toString('utf8');
      if (text === '' && size === 0) return ok('[empty file]');
      return ok(text);
    }
    const kept = cutCapped(scan.buf, cap);
    let text = kept.toString('utf8');
    if (!text.endsWith('\n')) text += '\n';
    if (startLine === undefined && endLine === undefined) {
      return ok(`${text}[truncated: file is ${size} bytes; use start_line/end_line]`);
    }
    const lastFull = start + countNewlines(kept) - 1;
    const where = lastFull >= start ? `after line ${lastFull}` : `inside line ${start}`;
    return ok(
      `${text}[truncated: output limit of ${formatSize(cap)} reached ${where}; use start_line/end_line]`,
    );
  } catch (e) {
    return fail(`${T}: error reading "${r.rel}": ${describeFsError(e)}`);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// list_dir

const joinRel = (dirRel: string, name: string): string => (dirRel === '.' ? name : `${dirRel}/${name}`);

const byName = (a: Dirent, b: Dirent): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

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

async function runListDir(rawArgs: Record<string, unknown>, ctx: ToolContext): Promise<ToolOutcome> {
  const T = 'list_dir';
  let p: string;
  try {
    const args = checkArgs(T, rawArgs, ['path']);
    p = optString(T, args, 'path') ?? '.';
  } catch (e) {
    if (e instanceof ArgError) return fail(e.message);
    throw e;
  }
  if (ctx.signal?.aborted) return abortedOutcome(T);

  const r = await resolveInWorkspace(ctx.workspaceRoot, p);
  if (!r.ok) return fail(`${T}: ${r.reason}`);
  const hit = ctx.protect?.check('list', r.abs, path.resolve(ctx.workspaceRoot, p));
  if (hit) return fail(`${T}: ${hit.message}`);
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
}

// ---------------------------------------------------------------------------------------------
// search_files

/**
 * Minimal glob → RegExp: `*` (within a segment), `**` (any depth; `** /` may match nothing),
 * `?`, `[abc]`/`[!abc]`, `{a,b}`. Throws on unbalanced braces.
 */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  let depth = 0;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++;
        if (glob[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
        } else {
          re += '.*';
        }
      } else {
        re += '[^/]*';
      }
    } else if (c === '?') {
      re += '[^/]';
    } else if (c === '[') {
      const close = glob.indexOf(']', i + 2);
      if (close === -1) {
        re += '\\[';
      } else {
        let body = glob.slice(i + 1, close);
        if (body.startsWith('!')) body = `^${body.slice(1)}`;
        re += `[${body.replace(/\\/g, '\\\\')}]`;
        i = close;
      }
    } else if (c === '{') {
      depth++;
      re += '(?:';
    } else if (c === '}' && depth > 0) {
      depth--;
      re += ')';
    } else if (c === ',' && depth > 0) {
      re += '|';
    } else {
      re += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    }
  }
  if (depth !== 0) throw new Error('unbalanced "{" in glob');
  return new RegExp(`^${re}$`);
}

/** Reads a whole (small) file through O_NOFOLLOW; null if it turned out bigger than `max`. */
async function readSmall(abs: string, max: number): Promise<Buffer | null> {
  const fh = await fsp.open(abs, OPEN_READ_FLAGS);
  try {
    const size = (await fh.stat()).size;
    if (size > max) return null;
    const buf = Buffer.alloc(size);
    const got = await readAt(fh, buf, 0);
    return buf.subarray(0, got);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

async function runSearchFiles(rawArgs: Record<string, unknown>, ctx: ToolContext): Promise<ToolOutcome> {
  const T = 'search_files';
  let pattern: string;
  let p: string;
  let glob: string | undefined;
  try {
    const args = checkArgs(T, rawArgs, ['pattern', 'path', 'glob']);
    pattern = reqString(T, args, 'pattern');
    if (pattern === '') throw new ArgError(`${T}: "pattern" must not be empty`);
    p = optString(T, args, 'path') ?? '.';
    glob = optString(T, args, 'glob');
    if (glob === '') glob = undefined;
  } catch (e) {
    if (e instanceof ArgError) return fail(e.message);
    throw e;
  }

  let globRe: RegExp | undefined;
  if (glob !== undefined) {
    try {
      globRe = globToRegExp(glob);
    } catch (e) {
      return fail(`${T}: invalid glob ${JSON.stringify(glob)}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  if (ctx.signal?.aborted) return abortedOutcome(T);

  const r = await resolveInWorkspace(ctx.workspaceRoot, p);
  if (!r.ok) return fail(`${T}: ${r.reason}`);
  const hit = ctx.protect?.check('read', r.abs, path.resolve(ctx.workspaceRoot, p));
  if (hit) return fail(`${T}: ${hit.message}`);
  // The pattern is compiled and matched in a worker thread (RE2, under a deadline): see line-search.ts.
  const search = await LineSearch.open(pattern, { deadlineMs: limits.searchDeadlineMs, signal: ctx.signal });
  if (!(search instanceof LineSearch)) {
    if (ctx.signal?.aborted) return abortedOutcome(T);
    return fail(`${T}: invalid regular expression ${JSON.stringify(pattern)}: ${search.error}`);
  }
  try {
    return await searchTree(search, r, { pattern, glob, globRe }, ctx);
  } finally {
    search.close();
  }
}

/** Thrown out of the walk when the search is cancelled or overruns its deadline. */
class SearchStopped extends Error {}

async function searchTree(
  search: LineSearch,
  r: Extract<ResolveResult, { ok: true }>,
  { pattern, glob, globRe }: { pattern: string; glob: string | undefined; globRe: RegExp | undefined },
  ctx: ToolContext,
): Promise<ToolOutcome> {
  const T = 'search_files';
  const root = await fsp.realpath(ctx.workspaceRoot).catch(() => ctx.workspaceRoot);

  let top: Stats;
  try {
    top = await fsp.stat(r.abs);
  } catch (e) {
    const code = errCode(e);
    if (code === 'ENOENT' || code === 'ENOTDIR') return fail(`${T}: path "${r.rel}" not found in the workspace`);
    return fail(`${T}: cannot access "${r.rel}": ${describeFsError(e)}`);
  }

  const globMatches = (rel: string): boolean => {
    if (!globRe || glob === undefined) return true;
    if (!glob.includes('/')) return globRe.test(rel.slice(rel.lastIndexOf('/') + 1));
    // With a slash: match relative to the search directory, or to the workspace root.
    const underSearch = r.rel === '.' ? rel : rel.startsWith(`${r.rel}/`) ? rel.slice(r.rel.length + 1) : rel;
    return globRe.test(underSearch) || globRe.test(rel);
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
            if (!globMatches(rel)) continue;
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
            if (globMatches(rel)) await searchFile(abs, rel);
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

// ---------------------------------------------------------------------------------------------
// Registry

const readFileTool: BuiltinTool = {
  get spec() {
    return {
      name: 'read_file',
      description:
        'Read a text file from the workspace. `path` is relative to the workspace root (absolute paths ' +
        `are accepted only if they are inside the workspace). Returns at most ${formatSize(limits.readMaxBytes)} ` +
        'of text; longer files are truncated with a note, so use start_line/end_line (1-based, inclusive) ' +
        'to read a specific range. Binary files cannot be read; for directories use list_dir.',
      inputSchema: {
        type: 'object',
        properties: {
          path: { type: 'string', description: 'File path, relative to the workspace root.' },
          start_line: { type: 'integer', minimum: 1, description: 'First line to return (1-based). Default: 1.' },
          end_line: {
            type: 'integer',
            minimum: 1,
            description: 'Last line to return (1-based, inclusive). Default: end of file.',
          },
        },
        required: ['path'],
        additionalProperties: false,
      },
    };
  },
  run: neverThrows('read_file', runReadFile),
};

const listDirTool: BuiltinTool = {
  get spec() {
    return {
      name: 'list_dir',
      description:
        'List the direct entries of a workspace directory (one level, at most ' +
        `${limits.listMaxEntries} entries; call it again on a subdirectory to go deeper). Paths are shown ` +
        'relative to the workspace root, sorted; directories end with "/", files show their size in bytes, ' +
        'symlinks are marked.',
      inputSchema: {
        type: 'object',
        properties: {
          path: {
            type: 'string',
            description: 'Directory path, relative to the workspace root. Default: "." (the root).',
          },
        },
        required: [],
        additionalProperties: false,
      },
    };
  },
  run: neverThrows('list_dir', runListDir),
};

const searchFilesTool: BuiltinTool = {
  get spec() {
    return {
      name: 'search_files',
      description:
        'Search text files in the workspace for a JavaScript regular expression, line by line ' +
        '(prefix the pattern with (?i) for case-insensitive). Output lines look like "path:line: text" ' +
        `with paths relative to the workspace root; at most ${limits.searchMaxMatches} matches. ` +
        `Skips .git, node_modules, binary files and files over ${formatSize(limits.searchMaxFileBytes)}.`,
      inputSchema: {
        type: 'object',
        properties: {
          pattern: { type: 'string', description: 'JavaScript regular expression, matched against each line.' },
          path: {
            type: 'string',
            description: 'File or directory to search, relative to the workspace root. Default: "." (everything).',
          },
          glob: {
            type: 'string',
            description:
              'Only search files matching this glob, e.g. "*.ts", "src/**/*.{js,ts}". Without a "/" it matches file names.',
          },
        },
        required: ['pattern'],
        additionalProperties: false,
      },
    };
  },
  run: neverThrows('search_files', runSearchFiles),
};

/** Read-only built-in tools keyed by tool name. */
export const fsTools: Record<string, BuiltinTool> = {
  read_file: readFileTool,
  list_dir: listDirTool,
  search_files: searchFilesTool,
};
