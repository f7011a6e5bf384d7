// One durable append-only JSONL file: the primitive under the audit log (audit/durable-file.ts) and the
// budget ledger (budget/ledger-file.ts). The protocol, in one place:
// - append: lines are hash-chained and go out in ONE write(2) on an O_APPEND descriptor, serialised
//   across processes by a lock file (ChainFile below), so appends of several processes never interleave;
// - torn tail: a crash can leave a last line without its newline; the next append ends that fragment
//   with a newline first (ChainFile), so it never swallows a good line;
// - a file appears with its first lines already in it, and its directory entry is fsync'd, or
//   fdatasync'd lines could vanish with the entry;
// - group commit: fdatasync every `commitEvery` lines or `commitIntervalMs` after the first unsynced
//   one, whichever comes first, on libuv's pool (never blocking the event loop); callers arriving while
//   a sync is in flight share ONE follow-up sync. flushSync() forces it at once (shutdown, rotation).
import fs from 'node:fs';
import path from 'node:path';
import { genesisHash, hashBytes, withPrev } from './hash-chain.js';

const NL = 0x0a;
/** Read/append without O_CREAT: reads are positional, writes go to the end. */
const OPEN_EXISTING = fs.constants.O_RDWR | fs.constants.O_APPEND;
/** A lock older than this is left over from a crash (an append holds it for microseconds). */
const STALE_LOCK_MS = 10_000;
/** How long an append waits for another process's lock before failing (it is then retried by the caller). */
const LOCK_WAIT_MS = 5_000;

export interface DurableAppendOptions {
  /** fdatasync after this many unsynced lines (at least 1). */
  commitEvery: number;
  /** …or this long after the first unsynced line. */
  commitIntervalMs: number;
  /** A group commit started in the background failed (explicit flushes report to their caller). Must not throw. */
  onSyncError: (err: Error) => void;
  /** These many lines were made durable (for statistics). */
  onSynced?: (lines: number) => void;
  /** The file changed behind this process (see ChainFile). */
  onTamper?: (msg: string) => void;
  /** Mode of a newly created file (default 0o600). */
  mode?: number;
}

export class DurableAppendFile {
  readonly path: string;
  /** The chained file; readers (the ledger's tail) read through its descriptor. */
  readonly chain: ChainFile;
  private readonly commitEvery: number;
  private unsynced = 0;
  private commitTimer: NodeJS.Timeout | null = null;
  private inflight: Promise<void> | null = null;
  private followUp: Promise<void> | null = null;

  constructor(
    file: string,
    private readonly opts: DurableAppendOptions,
  ) {
    this.path = file;
    this.commitEvery = Math.max(1, opts.commitEvery);
    this.chain = new ChainFile(file, { mode: opts.mode, onTamper: opts.onTamper });
  }

  get fd(): number | null {
    return this.chain.fd;
  }

  /** Lines appended since the last fdatasync. */
  get unsyncedLines(): number {
    return this.unsynced;
  }

  /** Opens the file if it exists (never creates it); its size, or -1 when there is none. */
  openExisting(): number {
    return this.chain.openExisting();
  }

  /** Appends JSON object lines (no newlines inside), chained, in one write. Throws on I/O failure. */
  append(jsonLines: string[]): AppendResult {
    const r = this.chain.append(jsonLines);
    if (r.created) fsyncDir(path.dirname(this.path));
    this.unsynced += jsonLines.length;
    if (this.unsynced >= this.commitEvery) this.groupCommit();
    else if (!this.commitTimer) {
      this.commitTimer = setTimeout(() => this.groupCommit(), this.opts.commitIntervalMs);
      this.commitTimer.unref();
    }
    return r;
  }

  /**
   * Makes every line appended so far durable, off the event loop. A caller arriving while a sync is
   * in flight shares the single follow-up sync. Rejects on failure (the lines count as unsynced again).
   */
  flush(): Promise<void> {
    if (this.inflight) {
      return (this.followUp ??= this.inflight.then(() => {
        this.followUp = null;
        return this.flush();
      }));
    }
    this.clearTimer();
    const fd = this.chain.fd;
    if (fd === null || this.unsynced === 0) return Promise.resolve();
    const n = this.unsynced;
    this.unsynced = 0;
    const done = new Promise<void>((resolve, reject) => {
      fs.fdatasync(fd, (err) => {
        this.inflight = null;
        if (!err) {
          this.opts.onSynced?.(n);
          resolve();
        } else if (this.chain.fd === fd) {
          this.unsynced += n;
          reject(err);
        } else resolve(); // closed meanwhile (rotation, shutdown): close() made its own lines durable
      });
    });
    this.inflight = done.catch(() => {}); // a marker for followers only: the failure reaches the caller via `done`
    return done;
  }

  /** Makes every line appended so far durable now, blocking. Throws on failure. */
  flushSync(): void {
    this.clearTimer();
    const fd = this.chain.fd;
    if (fd === null || this.unsynced === 0) return;
    fs.fdatasyncSync(fd);
    const n = this.unsynced;
    this.unsynced = 0;
    this.opts.onSynced?.(n);
  }

  /** flushSync, then closes the descriptor (also when the sync throws). */
  close(): void {
    try {
      this.flushSync();
    } finally {
      this.abandon();
    }
  }

  /** Closes the descriptor without a sync: after a failure, unsynced lines are not known to be on disk. */
  abandon(): void {
    this.clearTimer();
    this.unsynced = 0;
    this.chain.close();
  }

  private groupCommit(): void {
    this.flush().catch((err: unknown) => {
      try {
        this.opts.onSyncError(err instanceof Error ? err : new Error(String(err)));
      } catch {
        // the reporter must not take the process down either
      }
    });
  }

  private clearTimer(): void {
    if (this.commitTimer) clearTimeout(this.commitTimer);
    this.commitTimer = null;
  }
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

function fsyncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // some filesystems refuse fsync on a directory; the file's own fdatasync still holds
  }
}
