// Hash-chained JSONL files: the audit log and the budget ledger. Each line is a JSON object whose first
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
/** Read/append without O_CREAT: reads are positional, writes go to the end. */
const OPEN_EXISTING = fs.constants.O_RDWR | fs.constants.O_APPEND;
const PREV_KEY = '{"prev":"';
const HASH_LEN = 64;
/** A lock older than this is left over from a crash (an append holds it for microseconds). */
const STALE_LOCK_MS = 10_000;
/** How long an append waits for another process's lock before failing (it is then retried by the caller). */
const LOCK_WAIT_MS = 5_000;

/** The value the first line of `file` chains to. */
export function genesisHash(file: string): string {
  return sha256Hex(`delegate-mcp chain v1\n${path.basename(file)}`);
}

/** sha256 of a line's UTF-8 bytes (our lines are JSON, always valid UTF-8). */
function hashBytes(line: string): string {
  return sha256Hex(line);
}

/** `{"prev":"<hash>",…}` from a JSON object line `{…}`. */
function withPrev(json: string, prev: string): string {
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

// ── appending ──────────────────────────────────────────────────────────────────────────────────

export interface AppendResult {
  /** Offset the appended bytes start at (a newline ending a torn fragment included). */
  start: number;
  bytes: number;
  /** Whether this append created the file. */
  created: boolean;
  /** Hash of the last line written. */
  lastHash: string;
}

/**
 * One process's appender to a chained file. Not for concurrent use inside a process (the callers are
 * synchronous); across processes the lock file serialises appends.
 */
export class ChainFile {
  fd: number | null = null;
  /** Our last line as we wrote it: where it ends, its length and hash (to notice tampering behind us). */
  private mine: { end: number; len: number; hash: string } | null = null;

  constructor(
    readonly path: string,
    private readonly opts: { mode?: number; onTamper?: (msg: string) => void } = {},
  ) {}

  /** Opens the file if it exists, without creating it; returns its size, or -1 when there is none. */
  openExisting(): number {
    if (this.fd === null) {
      try {
        this.fd = fs.openSync(this.path, OPEN_EXISTING); // never creates: only append() does, with content
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') return -1;
        throw err;
      }
    }
    return fs.fstatSync(this.fd).size;
  }

  /** Appends JSON object lines (no newlines inside), chained, in one write(2). Throws on I/O failure. */
  append(jsonLines: string[]): AppendResult {
    if (!jsonLines.length) throw new TypeError('chain: nothing to append');
    return withLock(`${this.path}.lock`, () => (this.fd !== null || fs.existsSync(this.path) ? this.appendExisting(jsonLines) : this.create(jsonLines)));
  }

  close(): void {
    if (this.fd === null) return;
    try {
      fs.closeSync(this.fd);
    } catch {
      // already gone (EBADF): nothing left to release
    }
    this.fd = null;
  }

  private appendExisting(jsonLines: string[]): AppendResult {
    if (this.fd === null) this.fd = fs.openSync(this.path, OPEN_EXISTING);
    const fd = this.fd;
    const size = fs.fstatSync(fd).size;
    let prev: string;
    let lead = '';
    // Our own last line must still be where we wrote it; if not, chain to it as we wrote it, so the
    // next verification names the change instead of the chain silently adopting it.
    const intact = this.mine !== null && size >= this.mine.end && hashAt(fd, this.mine.end - this.mine.len, this.mine.len) === this.mine.hash;
    if (this.mine && !intact) {
      prev = this.mine.hash;
      this.opts.onTamper?.(`${this.path}: the file changed behind this process (${size < this.mine.end ? 'it shrank' : 'its last line was rewritten'}); the chain break is kept visible`);
    } else if (this.mine && size === this.mine.end) {
      prev = this.mine.hash; // nobody appended since our last line (the usual case): no need to read
    } else {
      const tail = readTail(fd, size);
      prev = tail.lastHash ?? genesisHash(this.path);
      if (!tail.endsWithNewline) lead = '\n';
    }
    const { buf, lastHash, lastLen } = this.build(jsonLines, prev, lead);
    writeAll(fd, buf, this.path);
    this.mine = { end: size + buf.length, len: lastLen, hash: lastHash };
    return { start: size, bytes: buf.length, created: false, lastHash };
  }

  /** A new file appears with its lines already in it: written aside, then linked into place. */
  private create(jsonLines: string[]): AppendResult {
    fs.mkdirSync(path.dirname(this.path), { recursive: true });
    const { buf, lastHash, lastLen } = this.build(jsonLines, genesisHash(this.path), '');
    const tmp = `${this.path}.${process.pid}.tmp`;
    const fd = fs.openSync(tmp, 'w', this.opts.mode ?? 0o600);
    try {
      writeAll(fd, buf, tmp);
      fs.linkSync(tmp, this.path);
    } catch (err) {
      // Created by a writer that does not lock (not one of ours): append to it instead.
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return this.appendExisting(jsonLines);
      throw err;
    } finally {
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
    }
    this.close();
    this.fd = fs.openSync(this.path, 'a+');
    this.mine = { end: buf.length, len: lastLen, hash: lastHash };
    return { start: 0, bytes: buf.length, created: true, lastHash };
  }

  private build(jsonLines: string[], prev: string, lead: string): { buf: Buffer; lastHash: string; lastLen: number } {
    const out: string[] = [];
    let lastLen = 0;
    for (const json of jsonLines) {
      const line = withPrev(json, prev);
      prev = hashBytes(line);
      lastLen = Buffer.byteLength(line) + 1;
      out.push(line);
    }
    return { buf: Buffer.from(`${lead}${out.join('\n')}\n`, 'utf8'), lastHash: prev, lastLen };
  }
}

function writeAll(fd: number, buf: Buffer, file: string): void {
  let off = 0;
  // One write(2) in practice; the loop only matters after a short write (e.g. a full disk).
  while (off < buf.length) {
    const n = fs.writeSync(fd, buf, off, buf.length - off);
    if (n <= 0) throw new Error(`short write to ${file}`);
    off += n;
  }
}

/** Hash of the `len` bytes at `pos` (a line and its newline), or null when they are not a whole line. */
function hashAt(fd: number, pos: number, len: number): string | null {
  if (pos < 0) return null;
  const b = Buffer.alloc(len);
  if (fs.readSync(fd, b, 0, len, pos) !== len || b[len - 1] !== NL) return null;
  return hashBytes(b.subarray(0, len - 1).toString('utf8'));
}

/** The hash of the last complete line (null: none) and whether the file ends with a newline. */
function readTail(fd: number, size: number): { lastHash: string | null; endsWithNewline: boolean } {
  if (size === 0) return { lastHash: null, endsWithNewline: true };
  let chunkSize = 4096; // lines are short; grows for a long one
  let buf = Buffer.alloc(0);
  let pos = size;
  // Find the last newline (the end of the last complete line), then the one before it.
  let lastNl = -1;
  for (;;) {
    const from = Math.max(0, pos - chunkSize);
    chunkSize = Math.min(chunkSize * 4, 1 << 20);
    const chunk = Buffer.alloc(pos - from);
    fs.readSync(fd, chunk, 0, chunk.length, from);
    buf = Buffer.concat([chunk, buf]);
    pos = from;
    if (lastNl === -1) {
      const i = buf.lastIndexOf(NL);
      if (i !== -1) lastNl = pos + i;
    }
    if (lastNl !== -1) {
      const rel = lastNl - pos;
      const before = rel > 0 ? buf.lastIndexOf(NL, rel - 1) : -1;
      if (before !== -1 || pos === 0) {
        const lineStart = before === -1 ? 0 : before + 1;
        const line = buf.subarray(lineStart, rel).toString('utf8');
        return { lastHash: hashBytes(line), endsWithNewline: lastNl === size - 1 };
      }
    }
    if (pos === 0) return { lastHash: null, endsWithNewline: false }; // one torn fragment, no complete line
  }
}

/**
 * Runs `fn` holding an exclusive lock: a symlink whose target is our pid (created atomically, holder's
 * pid included, in one system call — half the cost of create + write + close). Stale locks of dead
 * processes are broken.
 */
function withLock<T>(lock: string, fn: () => T): T {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      fs.symlinkSync(String(process.pid), lock);
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        fs.mkdirSync(path.dirname(lock), { recursive: true });
        continue;
      }
      if (code !== 'EEXIST') throw err;
      if (staleLock(lock)) {
        unlinkQuietly(lock);
        continue;
      }
      if (Date.now() > deadline) throw new Error(`${lock} has been held for over ${LOCK_WAIT_MS / 1000} s`);
      Atomics.wait(SLEEPER, 0, 0, 1); // 1 ms: the holder needs microseconds
    }
  }
  try {
    return fn();
  } finally {
    unlinkQuietly(lock);
  }
}

function unlinkQuietly(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

const SLEEPER = new Int32Array(new SharedArrayBuffer(4));

function staleLock(lock: string): boolean {
  try {
    const st = fs.lstatSync(lock);
    if (Date.now() - st.mtimeMs > STALE_LOCK_MS) return true;
    const pid = Number(fs.readlinkSync(lock));
    if (!Number.isInteger(pid) || pid <= 0) return true; // not one of ours
    // Appends are synchronous: while this thread waits it cannot hold the lock, so one naming our pid
    // was left by an earlier process that had it (pids are reused, e.g. pid 1 in containers).
    if (pid === process.pid) return true;
    try {
      process.kill(pid, 0);
      return false;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ESRCH';
    }
  } catch {
    return false; // gone already: the next attempt takes it
  }
}
