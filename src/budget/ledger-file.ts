// One UTC day's append-only ledger file: <stateDir>/budget/ledger-YYYY-MM-DD.jsonl.
//
// Several server processes may share a stateDir. Safety rests on three rules:
//  - every record is ONE writeSync of a complete "...\n" line on an O_APPEND descriptor, so appends from
//    different processes land whole and never interleave (the kernel positions each write at EOF);
//  - the file is never rewritten: readers tail it from their last offset and only consume up to the last
//    newline, so a line another process is writing right now is picked up on the next read;
//  - each record carries (writer, seq); a reader remembers the keys it has applied (its own writes
//    included), so a re-read can never count a record twice.
// A crash can leave a torn line without its newline. A writer that finds the file not ending in "\n"
// starts its record with one, so the torn fragment becomes a line of its own (skipped as corrupt)
// instead of swallowing the next good record. A reader treats an unterminated tail as torn only once
// the file has not been modified for `tornAfterMs`: a live writer finishes its single write() in
// microseconds, so a tail that old can only be a crash leftover (a newer one is re-read next time).
//
// Appending, torn-tail repair and group commit (fdatasync every `syncEvery` lines or `syncIntervalMs`
// after the first unsynced one) are the primitive the audit log uses too (storage/durable-append.ts);
// lines are hash-chained like the audit log's (storage/hash-chain.ts: appends under a lock file, each
// line carrying the hash of the one before it). Reading verifies the chain as it goes; the first break
// (an edited, deleted or inserted line, an emptied or shrunk file) is kept in `chainBreak`, and the
// ledger refuses to start on it: spend must never be forgotten silently.
import fs from 'node:fs';
import path from 'node:path';
import type { Usage } from '../contract/usage.js';
import { DurableAppendFile } from '../storage/durable-append.js';
import { ChainVerifier, type ChainBreak } from '../storage/hash-chain.js';

export type ChargeBasis = 'usage' | 'streamed' | 'reserved';

/**
 * One charge as a line of a day file. Its token parts keep the file's own names (input, output,
 * cache_read, cache_write) so every day file written so far still loads, and processes of other versions
 * sharing the state dir read each other's lines; in memory the budget speaks the contract's Usage, and
 * recordParts / usageOfRecord are the only conversions.
 */
export interface LedgerRecord {
  ts: string;
  day: string;
  runId: string;
  parentRunId?: string;
  rootRunId?: string;
  agent: string;
  model: string;
  tokens: number;
  usd: number | null;
  input: number;
  output: number;
  cache_read: number;
  cache_write: number;
  /** How the charge was computed: reported usage, streamed-output fallback, or the full reservation. */
  basis: ChargeBasis;
  pid: number;
  /** Unique per ledger instance (pid alone is not: tests and embedders may open two in one process). */
  writer: string;
  seq: number;
}

const CHUNK = 1 << 20;
const NL = 0x0a;

export function ledgerFileName(day: string): string {
  return `ledger-${day}.jsonl`;
}

/** A ledger file whose chain is broken: the server does not start on it. */
export class LedgerChainError extends Error {
  constructor(readonly chainBreak: ChainBreak) {
    const { file, line, reason } = chainBreak;
    super(
      `budget ledger ${file}:${line}: ${reason}. The spend it records cannot be trusted, so the server does not start. ` +
        `Check the file (delegate-mcp audit verify); to go on without it, move it aside knowingly (mv ${file} ${file}.broken): ` +
        `the day's spend then counts only what is recorded after that.`,
    );
    this.name = 'LedgerChainError';
  }
}

/** Group commit of a day file (see DurableAppendFile). */
export interface DayFileSync {
  syncEvery: number;
  syncIntervalMs: number;
}

export class DayFile {
  readonly path: string;
  private readonly chain: DurableAppendFile;
  private verifier: ChainVerifier;
  /** The first break seen (sticky: a later re-read does not clear it). */
  private break_: ChainBreak | null = null;
  /** Bytes consumed: always the end of a complete line (or of a torn tail skipped at first read). */
  private offset = 0;
  private lineNo = 0;
  /** Whether `offset` ends a torn fragment (skipped) rather than a complete line. */
  private atTornEnd = false;
  private readonly seen = new Set<string>();

  constructor(
    private readonly dir: string,
    readonly day: string,
    private readonly warn: (msg: string) => void,
    sync: DayFileSync,
    private readonly tornAfterMs = 2000,
  ) {
    this.path = path.join(dir, ledgerFileName(day));
    this.chain = new DurableAppendFile(this.path, {
      commitEvery: sync.syncEvery,
      commitIntervalMs: sync.syncIntervalMs,
      onSyncError: (err) => warn(`fdatasync ${this.path}: ${err.message}`),
      onTamper: warn,
    });
    this.verifier = new ChainVerifier(this.path);
  }

  /** The first chain break found while reading (null: everything read so far verifies). */
  get chainBreak(): ChainBreak | null {
    return this.break_;
  }

  private get fd(): number | null {
    return this.chain.fd;
  }

  private noteBreak(b: ChainBreak | null): void {
    if (!b) return;
    this.warn(`${b.file}:${b.line}: chain broken: ${b.reason}`);
    this.break_ ??= b;
  }

  /** Lines appended since the last fdatasync. */
  get unsyncedCount(): number {
    return this.chain.unsyncedLines;
  }

  /**
   * Records appended since the last call (by anyone) that have not been applied yet. An unterminated
   * tail is left for the next read unless the file is older than `tornAfterMs`: then it is a torn
   * write from a crash, reported and skipped.
   */
  readNew(): LedgerRecord[] {
    if (this.chain.openExisting() < 0) return [];
    const fd = this.fd!;
    const stat = fs.fstatSync(fd);
    const size = stat.size;
    // Our writer never leaves a ledger file empty (it is created with its first line in it).
    if (size === 0 && this.offset === 0) this.noteBreak({ file: this.path, line: 1, reason: 'the file is empty: every line was removed' });
    if (size < this.offset) {
      // Someone truncated or replaced the file. Re-read it all; `seen` keeps us from double counting.
      this.noteBreak({ file: this.path, line: this.lineNo, reason: `the file shrank from ${this.offset} to ${size} bytes: lines were removed` });
      this.warn(`${this.path}: file shrank from ${this.offset} to ${size} bytes; re-reading it from the start`);
      this.offset = 0;
      this.atTornEnd = false;
      this.lineNo = 0;
      this.verifier = new ChainVerifier(this.path);
    }
    const out: LedgerRecord[] = [];
    let carry: Buffer = Buffer.alloc(0);
    let pos = this.offset;
    while (pos < size) {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, size - pos));
      const n = fs.readSync(fd, buf, 0, buf.length, pos);
      if (n <= 0) break;
      pos += n;
      const data = carry.length ? Buffer.concat([carry, buf.subarray(0, n)]) : buf.subarray(0, n);
      let start = 0;
      for (let i = data.indexOf(NL); i >= 0; i = data.indexOf(NL, start)) {
        this.consume(data.subarray(start, i), out);
        this.offset += i + 1 - start;
        this.atTornEnd = false;
        start = i + 1;
      }
      carry = Buffer.from(data.subarray(start));
    }
    if (carry.length && Date.now() - stat.mtimeMs >= this.tornAfterMs) {
      this.consume(carry, out, 'torn write: no trailing newline');
      this.offset += carry.length;
      this.atTornEnd = true;
    }
    return out;
  }

  private consume(bytes: Buffer, out: LedgerRecord[], tornReason?: string): void {
    this.lineNo++;
    const raw = bytes.toString('utf8');
    // A torn tail is not part of the chain (the next writer chains over it); every whole line is.
    if (!tornReason) this.noteBreak(this.verifier.feed(raw));
    const text = raw.trim();
    if (!text) return; // blank lines come from the torn-tail guard in append()
    let rec: LedgerRecord | null = null;
    try {
      rec = validRecord(JSON.parse(text), this.day);
    } catch {
      rec = null;
    }
    if (!rec) {
      this.warn(`${this.path}:${this.lineNo}: skipped corrupt line${tornReason ? ` (${tornReason})` : ''}`);
      return;
    }
    const key = recordKey(rec);
    if (key !== null) {
      if (this.seen.has(key)) return;
      this.seen.add(key);
    }
    out.push(rec);
  }

  /**
   * Appends one record, chained, with a single write (chain.ts ends a torn tail first). Throws on I/O
   * failure (the caller decides what to keep).
   */
  append(rec: LedgerRecord): void {
    const key = recordKey(rec);
    if (key !== null) this.seen.add(key); // our own record: already applied in memory, skip when tailing
    const r = this.chain.append([JSON.stringify(rec)]);
    // Nobody appended since our last read (the usual case): our own line is consumed right away
    // instead of re-read by the next tail; otherwise the next read picks it up (and verifies it).
    if (r.start === this.offset && !this.atTornEnd) {
      this.offset += r.bytes;
      this.lineNo++;
      this.verifier.accept(r.lastHash);
    }
  }

  /** Every line appended so far made durable (off the event loop). Rejects on failure. */
  sync(): Promise<void> {
    return this.chain.flush();
  }

  close(): void {
    if (this.fd === null) return;
    this.chain.close();
  }
}

/** A charge's usage in the day file's field names. */
export function recordParts(u: Usage): Pick<LedgerRecord, 'input' | 'output' | 'cache_read' | 'cache_write'> {
  return { input: u.input_tokens, output: u.output_tokens, cache_read: u.cache_read_input_tokens, cache_write: u.cache_creation_input_tokens };
}

/** A day-file line's token parts as the contract's Usage. */
export function usageOfRecord(r: Pick<LedgerRecord, 'input' | 'output' | 'cache_read' | 'cache_write'>): Usage {
  return { input_tokens: r.input, output_tokens: r.output, cache_read_input_tokens: r.cache_read, cache_creation_input_tokens: r.cache_write };
}

function recordKey(rec: LedgerRecord): string | null {
  return Number.isInteger(rec.seq) ? `${rec.writer ?? `pid${rec.pid}`}:${rec.seq}` : null;
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;

/** The fields replay relies on; anything else in a line is informational. */
function validRecord(v: unknown, day: string): LedgerRecord | null {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return null;
  const r = v as Record<string, unknown>;
  if (r.day !== day) return null;
  if (typeof r.agent !== 'string' || typeof r.model !== 'string' || typeof r.runId !== 'string') return null;
  if (!isCount(r.tokens) || !(r.usd === null || isCount(r.usd))) return null;
  for (const k of ['input', 'output', 'cache_read', 'cache_write'] as const) if (r[k] !== undefined && !isCount(r[k])) return null;
  return {
    ...(r as unknown as LedgerRecord),
    input: (r.input as number | undefined) ?? 0,
    output: (r.output as number | undefined) ?? 0,
    cache_read: (r.cache_read as number | undefined) ?? 0,
    cache_write: (r.cache_write as number | undefined) ?? 0,
  };
}
