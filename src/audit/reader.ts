// Reading the audit log back: all files of a directory (written by any number of processes), or of
// several directories merged (`audit --from`), tolerant of a torn last line. What the events say is
// gathered elsewhere: runs (run-info.ts), summaries (summary.ts), run trees (run-tree.ts).
import fs from 'node:fs';
import path from 'node:path';
import { AuditEventSchema, type AuditEvent } from './events.js';
import { DAY_MS } from '../time/utc-day.js';

const FILE_RE = /^audit-(\d{4}-\d{2}-\d{2})(?:\.(\d+))?\.jsonl$/;

export interface ReadResult {
  events: AuditEvent[];
  files: string[];
  /** Unparseable last lines of a file (a write cut short by a crash). */
  torn: number;
  /** Other lines that are not valid JSON or not a known v1 event. */
  invalid: number;
}

export interface ReadOptions {
  /** Skip files whose UTC day lies entirely outside [since, until] (one day of slack either side). */
  since?: Date;
  until?: Date;
}

/** Reads every audit file in `dir`, oldest first; events sorted by time. A missing dir reads as empty. */
export function readAuditDir(dir: string, opts: ReadOptions = {}): ReadResult {
  const result: ReadResult = { events: [], files: [], torn: 0, invalid: 0 };
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return result;
    throw err;
  }
  const files = names
    .map((name) => ({ name, m: FILE_RE.exec(name) }))
    .filter((f): f is { name: string; m: RegExpExecArray } => f.m !== null)
    .filter(({ m }) => {
      const dayStart = Date.parse(`${m[1]}T00:00:00Z`);
      if (opts.since && dayStart + 2 * DAY_MS <= opts.since.getTime()) return false;
      if (opts.until && dayStart - DAY_MS > opts.until.getTime()) return false;
      return true;
    })
    .sort((a, b) => (a.m[1] === b.m[1] ? Number(a.m[2] ?? 0) - Number(b.m[2] ?? 0) : a.m[1] < b.m[1] ? -1 : 1));
  for (const { name } of files) {
    const file = path.join(dir, name);
    result.files.push(file);
    const parsed = parseAuditText(fs.readFileSync(file, 'utf8'));
    for (const e of parsed.events) result.events.push(e);
    result.torn += parsed.torn;
    result.invalid += parsed.invalid;
  }
  result.events.sort(byTime);
  return result;
}

/** Several audit directories as one log (queue mode: each node writes its own; `audit --run … --from DIR…`). */
export function readAuditDirs(dirs: readonly string[], opts: ReadOptions = {}): ReadResult {
  const result: ReadResult = { events: [], files: [], torn: 0, invalid: 0 };
  for (const dir of dirs) {
    const r = readAuditDir(dir, opts);
    for (const e of r.events) result.events.push(e);
    result.files.push(...r.files);
    result.torn += r.torn;
    result.invalid += r.invalid;
  }
  result.events.sort(byTime);
  return result;
}

/** Parses JSONL text. A bad final line without a trailing newline counts as torn, anything else as invalid. */
export function parseAuditText(text: string): { events: AuditEvent[]; torn: number; invalid: number } {
  const events: AuditEvent[] = [];
  let torn = 0;
  let invalid = 0;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (!line.trim()) continue;
    const isTail = i === lines.length - 1; // no newline after it: the write may have been cut short
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      if (isTail) torn++;
      else invalid++;
      continue;
    }
    const parsed = AuditEventSchema.safeParse(json);
    if (parsed.success) events.push(parsed.data);
    else invalid++;
  }
  return { events, torn, invalid };
}

const byTime = (a: AuditEvent, b: AuditEvent) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : a.pid - b.pid || a.seq - b.seq);
