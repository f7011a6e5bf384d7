// Hash-chained JSONL files (the audit log and the budget ledger): the format and its verification; the
// appending half is storage/durable-append.ts. Each line is a JSON object whose first
// key is `prev`, the sha256 (hex) of the bytes of the line before it in the same file (without its
// newline); the first line of a file chains to a genesis value derived from the file's name, so lines
// cannot move between files either. Editing, deleting or inserting a line breaks the chain at the line
// after it, and `verifyChainFile` names that line.
//
// Several processes append to the same files (a server and its re-entry children, several servers on
// one state dir). Appends are serialised by a lock file next to the file (`<file>.lock`, created with
// O_EXCL, held for the few microseconds of one append), so every line chains to the line that really
// precedes it. A file is created with its first lines already in it (written to a temporary file, then
// hard-linked into place), so an empty file is never ours: it is a file someone emptied.
//
// A crash can leave a torn last line (a write cut short). That is not tampering: the next writer ends
// the fragment with a newline and chains its own line to the last complete line before the fragment;
// the verifier accepts such a fragment when the line after it chains over it, and an unterminated tail.
import fs from 'node:fs';
import path from 'node:path';
import { sha256Hex } from './hash.js';

const NL = 0x0a;
const PREV_KEY = '{"prev":"';
const HASH_LEN = 64;

/** The value the first line of `file` chains to. */
export function genesisHash(file: string): string {
  return sha256Hex(`delegate-mcp chain v1\n${path.basename(file)}`);
}

/** sha256 of a line's UTF-8 bytes (our lines are JSON, always valid UTF-8). */
export function hashBytes(line: string): string {
  return sha256Hex(line);
}

/** `{"prev":"<hash>",…}` from a JSON object line `{…}`. */
export function withPrev(json: string, prev: string): string {
  if (!json.startsWith('{')) throw new TypeError('chain: a line must be a JSON object');
  return json === '{}' ? `${PREV_KEY}${prev}"}` : `${PREV_KEY}${prev}",${json.slice(1)}`;
}

/** The `prev` of a chained line, or null when the line is not one (a torn fragment, a foreign line). */
export function prevOf(line: string): string | null {
  if (!line.startsWith(PREV_KEY) || line.charCodeAt(PREV_KEY.length + HASH_LEN) !== 0x22 /* " */) return null;
  const prev = line.slice(PREV_KEY.length, PREV_KEY.length + HASH_LEN);
  if (!/^[0-9a-f]{64}$/.test(prev)) return null;
  try {
    JSON.parse(line);
  } catch {
    return null;
  }
  return prev;
}

// ── verification ───────────────────────────────────────────────────────────────────────────────

export interface ChainBreak {
  file: string;
  /** 1-based line number of the first line that does not verify. */
  line: number;
  reason: string;
}

/**
 * Verifies one file's lines as they come (whole file or tailing). feed() takes each complete line
 * (without its newline) in order and returns the first break it finds, once.
 */
export class ChainVerifier {
  private expected: string;
  private lineNo = 0;
  /** A line that is not a chained record: a torn fragment if the next line chains over it. */
  private fragment: { line: number } | null = null;
  private started = false;
  /** Lines without `prev` before the first chained one: written before chaining existed. */
  unchainedPrefix = 0;
  broken: ChainBreak | null = null;

  constructor(readonly file: string) {
    this.expected = genesisHash(file);
  }

  get lines(): number {
    return this.lineNo;
  }

  /** Returns a break found at this line (only the first one of the file is kept in `broken`). */
  feed(line: string): ChainBreak | null {
    const n = ++this.lineNo;
    const prev = prevOf(line);
    const hash = hashBytes(line);
    if (prev === null) {
      if (!this.started && line.trim() !== '' && isJsonObject(line)) {
        // An old, unchained line at the start of the file: the chain starts after it.
        this.unchainedPrefix++;
        this.expected = hash;
        this.fragment = null; // an old torn line among old lines: nothing chains over it
        return null;
      }
      if (this.fragment) return this.fail(this.fragment.line, 'not a chained record');
      // A torn write is the start of a line chained right here (or, before any chained line, of an
      // old unchained one); anything else was put there by hand.
      const head = `${PREV_KEY}${this.expected}",`;
      if (this.started && !(head.startsWith(line) || line.startsWith(head))) {
        return this.fail(n, 'not a chained record (a line was inserted or rewritten)');
      }
      this.fragment = { line: n };
      return null;
    }
    this.started = true;
    const fragment = this.fragment;
    this.fragment = null;
    if (prev !== this.expected) {
      // A torn write is always followed by a line that chains over it: this one was cut short by hand.
      if (fragment) return this.fail(fragment.line, 'not a chained record (a line was cut short or rewritten)');
      return this.fail(
        n,
        n === 1
          ? "the first line does not chain to the file's start (lines were removed before it, or the file was renamed)"
          : 'does not chain to the line before it (that line was edited, or lines were deleted or inserted)',
      );
    }
    this.expected = hashBytes(line);
    return null;
  }

  /** Call at the end of the file. A fragment as the last complete line cannot be a crash leftover. */
  end(): ChainBreak | null {
    if (this.fragment) return this.fail(this.fragment.line, 'not a chained record');
    return null;
  }

  /** The chain continues at a line this process wrote (already known to chain). */
  accept(lineHashHex: string): void {
    this.lineNo++;
    this.started = true;
    this.fragment = null;
    this.expected = lineHashHex;
  }

  private fail(line: number, reason: string): ChainBreak {
    const b: ChainBreak = { file: this.file, line, reason };
    this.broken ??= b;
    // Carry on from here, so later breaks are not all blamed on this one.
    this.fragment = null;
    return b;
  }
}

function isJsonObject(line: string): boolean {
  if (!line.startsWith('{')) return false;
  try {
    const v: unknown = JSON.parse(line);
    return typeof v === 'object' && v !== null && !Array.isArray(v);
  } catch {
    return false;
  }
}

export interface ChainReport {
  file: string;
  lines: number;
  /** The first break, or null when the whole file verifies. */
  broken: ChainBreak | null;
  /** The file ends in an unterminated line: a write cut short by a crash (not a break). */
  tornTail: boolean;
  /** Lines at the start written before chaining existed (not protected). */
  unchained: number;
}

/** Verifies a whole file. An empty file is a break: a chained file is never created empty. */
export function verifyChainFile(file: string): ChainReport {
  const data = fs.readFileSync(file);
  const v = new ChainVerifier(file);
  if (data.length === 0) {
    return { file, lines: 0, broken: { file, line: 1, reason: 'the file is empty: every line was removed' }, tornTail: false, unchained: 0 };
  }
  let start = 0;
  for (let i = data.indexOf(NL); i !== -1; i = data.indexOf(NL, start)) {
    v.feed(data.subarray(start, i).toString('utf8'));
    start = i + 1;
  }
  v.end();
  return { file, lines: v.lines, broken: v.broken, tornTail: start < data.length, unchained: v.unchainedPrefix };
}

/** Verifies every `<prefix>-*.jsonl` file of a directory, in name order (missing dir: nothing). */
export function verifyChainDir(dir: string, prefix: string): ChainReport[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return names
    .filter((n) => n.startsWith(`${prefix}-`) && n.endsWith('.jsonl'))
    .sort(byDayThenIndex)
    .map((n) => verifyChainFile(path.join(dir, n)));
}

/** audit-2026-01-02.jsonl < audit-2026-01-02.1.jsonl < audit-2026-01-02.10.jsonl < audit-2026-01-03.jsonl */
function byDayThenIndex(a: string, b: string): number {
  const key = (n: string) => {
    const m = /^(.*?)(?:\.(\d+))?\.jsonl$/.exec(n)!;
    return { base: m[1], index: Number(m[2] ?? 0) };
  };
  const ka = key(a);
  const kb = key(b);
  return ka.base === kb.base ? ka.index - kb.index : ka.base < kb.base ? -1 : 1;
}
