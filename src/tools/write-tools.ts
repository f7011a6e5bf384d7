// Built-in file-writing tools: write_file, edit_file. Tool and argument names are part of the public
// contract. WHETHER a call is allowed is decided by the permission engine before the tool runs; these
// tools do the work safely and enforce the mechanical limits:
//   - every path goes through resolveToolPath (tool-path.ts: resolveInWorkspace with forWrite, then the
//     protected paths): `..`/absolute escapes, symlinks anywhere on the way that lead outside, and a
//     final-component symlink are all refused;
//   - missing parent directories are created one component at a time, each checked to be a real
//     directory (not a symlink) inside the workspace;
//   - writes are atomic: a temp file in the same directory, opened O_CREAT|O_EXCL|O_NOFOLLOW, then
//     rename() over the target. rename() replaces a final symlink/hard link instead of writing through
//     it, so even a link swapped in after the check cannot redirect the data outside.
// Residual risk (as in workspace-path.ts): an intermediate directory swapped for a symlink between the
// check and the rename. The parent is re-checked with realpath just before writing to narrow that window.
// Every failure is returned as an error ToolOutcome, never thrown.
import { randomBytes } from 'node:crypto';
import { constants as fsc, promises as fsp } from 'node:fs';
import type { Stats } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { defineTool } from './define-tool.js';
import { describeFsError, errCode, formatSize } from './file-io.js';
import { abortedOutcome, fail, ok } from './outcome.js';
import { resolveToolPath } from './tool-path.js';
import type { BuiltinTool, ToolContext } from './types.js';
import type { ToolOutcome } from '../contract/tool.js';
import { isWithin } from '../workspace/workspace-path.js';

/** Caps of the write tools, given to createWriteTools (never a mutable global). */
export interface WriteLimits {
  /** write_file: maximum size of `content` (UTF-8 bytes). */
  writeMaxBytes: number;
  /** edit_file: maximum size of the file, before and after the edit. */
  editMaxFileBytes: number;
}

export const WRITE_LIMITS: Readonly<WriteLimits> = Object.freeze({ writeMaxBytes: 1024 * 1024, editMaxFileBytes: 1024 * 1024 });

const TEMP_FLAGS = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | (fsc.O_NOFOLLOW ?? 0);
const READ_FLAGS = fsc.O_RDONLY | (fsc.O_NOFOLLOW ?? 0);

// ---------------------------------------------------------------------------------------------
// Helpers

class WriteError extends Error {}

async function rootRealpath(root: string): Promise<string> {
  return fsp.realpath(root).catch(() => root);
}

/**
 * Make sure every directory between `rootReal` and `dirAbs` (inclusive) exists and is a real
 * directory, creating missing ones one at a time. Throws WriteError with a model-facing message.
 */
async function ensureDirs(rootReal: string, dirAbs: string, shownRel: (abs: string) => string): Promise<void> {
  if (!isWithin(rootReal, dirAbs)) throw new WriteError(`directory "${shownRel(dirAbs)}" is outside the workspace`);
  const parts = path.relative(rootReal, dirAbs).split(path.sep).filter((s) => s !== '');
  let cur = rootReal;
  for (const part of parts) {
    cur = path.join(cur, part);
    let st: Stats | undefined;
    try {
      st = await fsp.lstat(cur);
    } catch (e) {
      if (errCode(e) !== 'ENOENT') throw new WriteError(`cannot access "${shownRel(cur)}": ${describeFsError(e)}`);
    }
    if (st === undefined) {
      try {
        await fsp.mkdir(cur);
      } catch (e) {
        if (errCode(e) !== 'EEXIST') throw new WriteError(`cannot create directory "${shownRel(cur)}": ${describeFsError(e)}`);
      }
      st = await fsp.lstat(cur);
    }
    if (st.isSymbolicLink()) {
      throw new WriteError(`"${shownRel(cur)}" is a symlink; refusing to create files through it`);
    }
    if (!st.isDirectory()) throw new WriteError(`"${shownRel(cur)}" exists and is not a directory`);
  }
  // Narrow the race window: the directory we are about to write into must still be where we think.
  const real = await fsp.realpath(dirAbs);
  if (real !== dirAbs || !isWithin(rootReal, real)) {
    throw new WriteError(`directory "${shownRel(dirAbs)}" changed while writing (a symlink appeared); refusing`);
  }
}

interface ExistingTarget {
  mode: number;
  size: number;
  mtimeMs: number;
}

/** lstat the target: undefined if it does not exist; refuses symlinks, directories, special files. */
async function inspectTarget(abs: string, rel: string): Promise<ExistingTarget | undefined> {
  let st: Stats;
  try {
    st = await fsp.lstat(abs);
  } catch (e) {
    if (errCode(e) === 'ENOENT') return undefined;
    throw new WriteError(`cannot access "${rel}": ${describeFsError(e)}`);
  }
  if (st.isSymbolicLink()) throw new WriteError(`path "${rel}" is a symlink; refusing to write through it`);
  if (st.isDirectory()) throw new WriteError(`"${rel}" is a directory; give a file path`);
  if (!st.isFile()) throw new WriteError(`"${rel}" is not a regular file`);
  return { mode: st.mode & 0o777, size: st.size, mtimeMs: st.mtimeMs };
}

/**
 * Atomically replace (or create) `abs` with `data`: temp file in the same directory + rename.
 * `beforeRename` runs right before the rename (last-moment checks); throwing there aborts cleanly.
 */
async function atomicWrite(
  abs: string,
  data: Buffer,
  mode: number | undefined,
  beforeRename?: () => Promise<void>,
): Promise<void> {
  const dir = path.dirname(abs);
  const tmp = path.join(dir, `.${path.basename(abs).slice(0, 100)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await fsp.open(tmp, TEMP_FLAGS, mode ?? 0o666);
  let renamed = false;
  try {
    try {
      await fh.writeFile(data);
      // Keep an existing file's permission bits (open()'s mode is filtered by the umask).
      if (mode !== undefined) await fh.chmod(mode);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    if (beforeRename) await beforeRename();
    await fsp.rename(tmp, abs);
    renamed = true;
  } finally {
    // A temp file left behind is only litter (its random name is never read); the write's own error wins.
    if (!renamed) await fsp.unlink(tmp).catch(() => undefined);
  }
}

function lineOf(buf: Buffer, index: number): number {
  let n = 1;
  for (let i = buf.indexOf(0x0a); i !== -1 && i < index; i = buf.indexOf(0x0a, i + 1)) n++;
  return n;
}

/** Start offsets of every (possibly overlapping) occurrence of `needle`, up to `max` of them. */
function occurrences(hay: Buffer, needle: Buffer, max: number): number[] {
  const out: number[] = [];
  for (let i = hay.indexOf(needle); i !== -1 && out.length < max; i = hay.indexOf(needle, i + 1)) out.push(i);
  return out;
}

function refuseDirPath(tool: string, p: string): ToolOutcome | undefined {
  if (p.endsWith('/') || p.endsWith(path.sep)) {
    return fail(`${tool}: path ${JSON.stringify(p)} ends with "/"; give the path of a file`);
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// write_file

const writeFileInput = () =>
  z.strictObject({
    path: z.string().describe('File path, relative to the workspace root.'),
    content: z.string().describe('The complete new content of the file.'),
  });

async function runWriteFile(
  { path: p, content }: z.output<ReturnType<typeof writeFileInput>>,
  ctx: ToolContext,
  writeLimits: WriteLimits,
): Promise<ToolOutcome> {
  const T = 'write_file';
  const data = Buffer.from(content, 'utf8');
  if (data.length > writeLimits.writeMaxBytes) {
    return fail(`${T}: content is ${data.length} bytes; the limit is ${formatSize(writeLimits.writeMaxBytes)}`);
  }
  const dirPath = refuseDirPath(T, p);
  if (dirPath) return dirPath;
  if (ctx.signal?.aborted) return abortedOutcome(T);

  const r = await resolveToolPath(T, ctx, p, 'write');
  if (!r.ok) return r.outcome;
  if (r.rel === '.') return fail(`${T}: "." is the workspace root directory; give a file path`);
  const rootReal = await rootRealpath(ctx.workspaceRoot);
  const shownRel = (abs: string): string => path.relative(rootReal, abs).split(path.sep).join('/') || '.';

  try {
    await ensureDirs(rootReal, path.dirname(r.abs), shownRel);
    const existing = await inspectTarget(r.abs, r.rel);
    if (ctx.signal?.aborted) return abortedOutcome(T);
    await atomicWrite(r.abs, data, existing?.mode, async () => {
      await inspectTarget(r.abs, r.rel);
    });
  } catch (e) {
    if (e instanceof WriteError) return fail(`${T}: ${e.message}`);
    return fail(`${T}: cannot write "${r.rel}": ${describeFsError(e)}`);
  }
  return ok(`wrote ${data.length} bytes to ${r.rel}`);
}

// ---------------------------------------------------------------------------------------------
// edit_file

const editFileInput = () =>
  z
    .strictObject({
      path: z.string().describe('File path, relative to the workspace root.'),
      old: z
        .string()
        .refine((v) => v !== '', { error: '"old" must not be empty (to create or overwrite a whole file use write_file)' })
        .describe('Exact text to replace; must occur exactly once in the file.'),
      new: z.string().describe('Replacement text (may be empty to delete `old`).'),
    })
    .refine((a) => a.old !== a.new, { error: '"old" and "new" are identical; nothing to change' });

async function runEditFile(
  { path: p, old: oldText, new: newText }: z.output<ReturnType<typeof editFileInput>>,
  ctx: ToolContext,
  writeLimits: WriteLimits,
): Promise<ToolOutcome> {
  const T = 'edit_file';
  const dirPath = refuseDirPath(T, p);
  if (dirPath) return dirPath;
  if (ctx.signal?.aborted) return abortedOutcome(T);

  const r = await resolveToolPath(T, ctx, p, 'write');
  if (!r.ok) return r.outcome;
  const max = writeLimits.editMaxFileBytes;

  let buf: Buffer;
  let before: ExistingTarget;
  try {
    const st = await fsp.stat(r.abs);
    if (st.isDirectory()) return fail(`${T}: "${r.rel}" is a directory; give a file path`);
    if (!st.isFile()) return fail(`${T}: "${r.rel}" is not a regular file`);
    const fh = await fsp.open(r.abs, READ_FLAGS);
    try {
      const fst = await fh.stat();
      if (fst.size > max) {
        return fail(`${T}: "${r.rel}" is ${fst.size} bytes; edit_file handles files up to ${formatSize(max)}`);
      }
      before = { mode: fst.mode & 0o777, size: fst.size, mtimeMs: fst.mtimeMs };
      buf = await fh.readFile();
    } finally {
      // Closing a handle that was only read cannot lose data; a failure here must not hide the read's result.
      await fh.close().catch(() => undefined);
    }
  } catch (e) {
    const code = errCode(e);
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      return fail(`${T}: file "${r.rel}" not found in the workspace (to create a file use write_file)`);
    }
    return fail(`${T}: cannot open "${r.rel}": ${describeFsError(e)}`);
  }
  if (buf.length > max) return fail(`${T}: "${r.rel}" is over ${formatSize(max)}; edit_file cannot handle it`);
  if (buf.includes(0)) return fail(`${T}: "${r.rel}" appears to be a binary file; only text files can be edited`);

  // Work on bytes, not a decoded string: bytes outside the edit (even invalid UTF-8) stay untouched.
  const oldBuf = Buffer.from(oldText, 'utf8');
  const newBuf = Buffer.from(newText, 'utf8');
  const hits = occurrences(buf, oldBuf, 1000);
  if (hits.length === 0) {
    let hint = 'it must match the file exactly, including whitespace and indentation; read_file the region first';
    if (buf.includes('\r\n') && oldText.includes('\n') && !oldText.includes('\r\n')) {
      hint = 'the file uses CRLF (\\r\\n) line endings; include the \\r in "old"';
    }
    return fail(`${T}: old text not found in "${r.rel}" (${hint})`);
  }
  if (hits.length > 1) {
    const lines = [...new Set(hits.slice(0, 10).map((i) => lineOf(buf, i)))];
    const count = hits.length >= 1000 ? 'at least 1000' : String(hits.length);
    return fail(
      `${T}: old text occurs ${count} times; include more context so it matches exactly once ` +
        `(in "${r.rel}" at line${lines.length === 1 ? '' : 's'} ${lines.join(', ')}${hits.length > 10 ? ', …' : ''})`,
    );
  }
  const at = hits[0];
  const out = Buffer.concat([buf.subarray(0, at), newBuf, buf.subarray(at + oldBuf.length)]);
  if (out.length > max) {
    return fail(`${T}: the edited file would be ${out.length} bytes; the limit is ${formatSize(max)}`);
  }
  if (ctx.signal?.aborted) return abortedOutcome(T);

  try {
    await atomicWrite(r.abs, out, before.mode, async () => {
      const now = await inspectTarget(r.abs, r.rel);
      if (!now || now.size !== before.size || now.mtimeMs !== before.mtimeMs) {
        throw new WriteError(`"${r.rel}" changed while it was being edited; read it again and retry`);
      }
    });
  } catch (e) {
    if (e instanceof WriteError) return fail(`${T}: ${e.message}`);
    return fail(`${T}: cannot write "${r.rel}": ${describeFsError(e)}`);
  }
  return ok(`edited ${r.rel}: replaced 1 occurrence at line ${lineOf(buf, at)} (${buf.length} → ${out.length} bytes)`);
}

// ---------------------------------------------------------------------------------------------
// Registry

/** File-writing built-in tools keyed by tool name, with `limits` over the defaults. */
export function createWriteTools(limits: Partial<WriteLimits> = {}): Record<string, BuiltinTool> {
  const l: WriteLimits = { ...WRITE_LIMITS, ...limits };
  return {
    write_file: defineTool({
      name: 'write_file',
      description:
        'Create or overwrite a text file in the workspace with `content` (UTF-8, at most ' +
        `${formatSize(l.writeMaxBytes)}). \`path\` is relative to the workspace root; missing parent ` +
        'directories are created. The write is atomic (the file is replaced as a whole). Paths outside the ' +
        'workspace and symlinks are refused. To change part of an existing file prefer edit_file.',
      input: writeFileInput,
      run: (args, ctx) => runWriteFile(args, ctx, l),
    }),
    edit_file: defineTool({
      name: 'edit_file',
      description:
        'Edit a text file in the workspace by exact string replacement: `old` must occur exactly once in ' +
        'the file (byte for byte, including whitespace, indentation and line endings) and is replaced by ' +
        '`new`. If `old` is not found or occurs more than once the file is left unchanged and an error ' +
        'says so; add surrounding lines to `old` to make it unique. Files up to ' +
        `${formatSize(l.editMaxFileBytes)}; the write is atomic.`,
      input: editFileInput,
      run: (args, ctx) => runEditFile(args, ctx, l),
    }),
  };
}

/** The write tools with the default caps. */
export const writeTools: Record<string, BuiltinTool> = createWriteTools();
