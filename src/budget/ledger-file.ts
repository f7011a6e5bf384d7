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
import fs from 'node:fs';
import path from 'node:path';

export type ChargeBasis = 'usage' | 'streamed' | 'reserved';

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

export class DayFile {
  readonly path: string;
  private fd: number | null = null;
  /** Bytes consumed: always the end of a complete line (or of a torn tail skipped at first read). */
  private offset = 0;
  private lineNo = 0;
  /** Whether `offset` ends a torn fragment (skipped) rather than a complete line. */
  private atTornEnd = false;
  private unsynced = 0;
  private readonly seen = new Set<string>();

  constructor(
    private readonly dir: string,
    readonly day: string,
    private readonly warn: (msg: string) => void,
    private readonly tornAfterMs = 2000,
  ) {
    this.path = path.join(dir, ledgerFileName(day));
  }

  /** Lines appended since the last fdatasync. */
  get unsyncedCount(): number {
    return this.unsynced;
  }

  /**
   * Records appended since the last call (by anyone) that have not been applied yet. An unterminated
   * tail is left for the next read unless the file is older than `tornAfterMs`: then it is a torn
   * write from a crash, reported and skipped.
   */
  readNew(): LedgerRecord[] {
    if (this.fd === null) {
      if (!fs.existsSync(this.path)) return [];
      this.fd = fs.openSync(this.path, 'a+'); // O_APPEND | O_RDWR: reads are positional, writes go to EOF
    }
    const stat = fs.fstatSync(this.fd);
    const size = stat.size;
    if (size < this.offset) {
      // Someone truncated or replaced the file. Re-read it all; `seen` keeps us from double counting.
      this.warn(`${this.path}: file shrank from ${this.offset} to ${size} bytes; re-reading it from the start`);
      this.offset = 0;
      this.atTornEnd = false;
      this.lineNo = 0;
    }
    const out: LedgerRecord[] = [];
    let carry: Buffer = Buffer.alloc(0);
    let pos = this.offset;
    while (pos < size) {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, size - pos));
      const n = fs.readSync(this.fd, buf, 0, buf.length, pos);
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
    const text = bytes.toString('utf8').trim();
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

  /** Appends one record with a single write. Throws on I/O failure (the caller decides what to keep). */
  append(rec: LedgerRecord): void {
    if (this.fd === null) {
      fs.mkdirSync(this.dir, { recursive: true });
      this.fd = fs.openSync(this.path, 'a+');
    }
    const size = fs.fstatSync(this.fd).size;
    // Nobody appended since our last read (the usual case): the file ends at a line we consumed, so it
    // ends in "\n", and our own line can be consumed right away instead of re-read by the next tail.
    const caughtUp = size === this.offset && !this.atTornEnd;
    let prefix = '';
    if (size > 0 && !caughtUp) {
      const last = Buffer.alloc(1);
      fs.readSync(this.fd, last, 0, 1, size - 1);
      if (last[0] !== NL) prefix = '\n';
    }
    const data = Buffer.from(`${prefix}${JSON.stringify(rec)}\n`, 'utf8');
    const key = recordKey(rec);
    if (key !== null) this.seen.add(key); // our own record: already applied in memory, skip when tailing
    const written = fs.writeSync(this.fd, data);
    this.unsynced++;
    if (written !== data.length) throw new Error(`short write to ${this.path}: ${written} of ${data.length} bytes`);
    // O_APPEND put it at `size` unless another process appended in between; only then is it re-read.
    if (caughtUp && fs.fstatSync(this.fd).size === size + written) {
      this.offset += written;
      this.lineNo++;
    }
  }

  syncNow(): void {
    if (this.fd !== null && this.unsynced > 0) {
      this.unsynced = 0;
      fs.fdatasyncSync(this.fd);
    }
  }

  async sync(): Promise<void> {
    if (this.fd === null || this.unsynced === 0) return;
    const fd = this.fd;
    this.unsynced = 0;
    await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
  }

  close(): void {
    if (this.fd === null) return;
    try {
      this.syncNow();
    } finally {
      fs.closeSync(this.fd);
      this.fd = null;
    }
  }
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
