// Built-in tool read_file: a text file of the workspace, whole or a line range, size-capped. Tool and
// argument names are part of the public contract (agent authors grant and prompt for them).
import { promises as fsp } from 'node:fs';
import { z } from 'zod';
import { defineTool, typeName } from './define-tool.js';
import { describeFsError, errCode, formatSize, isBinary, OPEN_READ_FLAGS, plural, utf8SafeEnd } from './file-io.js';
import type { FsLimits } from './fs-limits.js';
import { abortedOutcome, fail, ok } from './outcome.js';
import { resolveToolPath } from './tool-path.js';
import type { BuiltinTool } from './types.js';

const T = 'read_file';

const lineNumber = (description: string) =>
  z
    .int({
      // z.int() reports a string as "expected number"; the model asked for an integer.
      error: (iss) =>
        iss.code === 'invalid_type' && iss.input !== undefined
          ? `"${String(iss.path?.[0])}" must be an integer, got ${typeof iss.input === 'number' ? String(iss.input) : typeName(iss.input)}`
          : undefined,
    })
    .min(1, { error: (iss) => `"${String(iss.path?.[0])}" must be >= 1 (lines are numbered from 1), got ${String(iss.input)}` })
    .optional()
    .describe(description);

const readFileInput = () =>
  z
    .strictObject({
      path: z.string().describe('File path, relative to the workspace root.'),
      start_line: lineNumber('First line to return (1-based). Default: 1.'),
      end_line: lineNumber('Last line to return (1-based, inclusive). Default: end of file.'),
    })
    .refine((a) => a.start_line === undefined || a.end_line === undefined || a.end_line >= a.start_line, {
      error: (iss) => {
        const a = iss.input as { start_line: number; end_line: number };
        return `"end_line" (${a.end_line}) must be >= "start_line" (${a.start_line})`;
      },
    });

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

export function readFileTool(limits: FsLimits): BuiltinTool {
  return defineTool({
    name: T,
    description:
      'Read a text file from the workspace. `path` is relative to the workspace root (absolute paths ' +
      `are accepted only if they are inside the workspace). Returns at most ${formatSize(limits.readMaxBytes)} ` +
      'of text; longer files are truncated with a note, so use start_line/end_line (1-based, inclusive) ' +
      'to read a specific range. Binary files cannot be read; for directories use list_dir.',
    input: readFileInput,
    async run({ path: p, start_line: startLine, end_line: endLine }, ctx) {
      if (ctx.signal?.aborted) return abortedOutcome(T);

      const r = await resolveToolPath(T, ctx, p, 'read');
      if (!r.ok) return r.outcome;

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
        if (await isBinary(fh, size, limits.binarySniffBytes)) {
          return fail(`${T}: "${r.rel}" appears to be a binary file (${size} bytes); only text files can be read`);
        }
        const cap = limits.readMaxBytes;
        const start = startLine ?? 1;
        const end = endLine ?? Number.POSITIVE_INFINITY;
        const scan = await scanLines(fh, start, end, cap, ctx.signal);
        if (scan.aborted) return abortedOutcome(T);

        if (scan.totalLines !== null && start > 1 && start > scan.totalLines) {
          return fail(`${T}: start_line ${start} is past the end of "${r.rel}" (${plural(scan.totalLines, 'line')})`);
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
        return ok(`${text}[truncated: output limit of ${formatSize(cap)} reached ${where}; use start_line/end_line]`);
      } catch (e) {
        return fail(`${T}: error reading "${r.rel}": ${describeFsError(e)}`);
      } finally {
        // Closing a read-only handle cannot lose data; the outcome above is already decided.
        await fh.close().catch(() => undefined);
      }
    },
  });
}
