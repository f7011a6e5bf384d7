// A winston transport that writes JSONL durably. winston's own file transports never fsync, so an
// audit record could vanish with the page cache. Here:
// - appends, torn-tail repair and group commit are the shared primitive (storage/durable-append.ts):
//   lines hash-chained, appends of the processes sharing the directory (a server and its re-entry
//   children) serialised by a lock file, each batch of lines in ONE write(2), fdatasync every
//   `commitEvery` lines (default 256) or `commitIntervalMs` (default 100 ms), whichever first
//   (~4 µs a record instead of ~200 µs); `flush()` forces it for run ends and shutdown;
// - files rotate by UTC day (audit-YYYY-MM-DD.jsonl) and by size (audit-YYYY-MM-DD.1.jsonl, .2, …);
// - I/O failures never throw into the server: they are reported once through `onError`, lines wait in a
//   bounded backlog, and the file is reopened on the next write or retry tick.
import fs from 'node:fs';
import path from 'node:path';
import Transport from 'winston-transport';
import { DurableAppendFile } from '../storage/durable-append.js';
import { DAY_MS, utcDay } from '../time/utc-day.js';

/** triple-beam's MESSAGE symbol: the formatted line a winston format produced. */
const MESSAGE = Symbol.for('message');

export interface DurableFileOptions {
  dir: string;
  /** File name prefix (default "audit"). */
  prefix?: string;
  /** Start a new file (.1, .2, …) when the current one would exceed this (default 50 MB). */
  maxBytes?: number;
  /** fdatasync after this many lines (default 256). */
  commitEvery?: number;
  /** …or this long after the first unsynced line (default 100 ms). */
  commitIntervalMs?: number;
  /** Minimum delay between reopen attempts after a failure (default 1000 ms). */
  retryMs?: number;
  /** Lines kept in memory while the disk refuses them (default 10 000); the oldest are dropped beyond. */
  maxBacklog?: number;
  /** Called once per failure episode (until a write succeeds again). Must not throw. */
  onError?: (err: Error) => void;
  /** Clock in ms, for tests of day rotation. */
  now?: () => number;
}

export interface DurableFileStats {
  file: string | null;
  written: number;
  synced: number;
  backlog: number;
  dropped: number;
  failing: boolean;
}

export class DurableFileTransport extends Transport {
  readonly dir: string;
  private readonly prefix: string;
  private readonly maxBytes: number;
  private readonly commitEvery: number;
  private readonly commitIntervalMs: number;
  private readonly retryMs: number;
  private readonly maxBacklog: number;
  private readonly onError: (err: Error) => void;
  private readonly now: () => number;

  private chain: DurableAppendFile | null = null;
  private file: string | null = null;
  private day = '';
  private dayEndsAt = 0;
  private index = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private failing = false;
  private nextRetryAt = 0;
  /** Blocks of lines (newline-separated, no final newline) the disk refused so far. */
  private backlog: string[] = [];
  private shut = false;
  private stats_ = { written: 0, synced: 0, dropped: 0 };

  constructor(opts: DurableFileOptions) {
    super();
    this.dir = path.resolve(opts.dir);
    this.prefix = opts.prefix ?? 'audit';
    this.maxBytes = opts.maxBytes ?? 50 * 1024 * 1024;
    this.commitEvery = Math.max(1, opts.commitEvery ?? 256);
    this.commitIntervalMs = opts.commitIntervalMs ?? 100;
    this.retryMs = opts.retryMs ?? 1000;
    this.maxBacklog = opts.maxBacklog ?? 10_000;
    this.onError = opts.onError ?? (() => {});
    this.now = opts.now ?? Date.now;
  }

  /** winston entry point: writes the formatted line (info[MESSAGE]) or the info as JSON. */
  override log(info: Record<string | symbol, unknown>, next: () => void): void {
    const formatted = info[MESSAGE];
    this.writeLine(typeof formatted === 'string' ? formatted : JSON.stringify(info));
    next();
  }

  /**
   * Appends one JSON object line, or several joined by newlines, chained, in one write. Never throws.
   */
  writeLine(line: string): void {
    if (this.shut) {
      this.stats_.dropped++;
      return;
    }
    const block = line.endsWith('\n') ? line.slice(0, -1) : line;
    if (this.failing || this.backlog.length) {
      this.enqueue(block);
      this.recover(false);
      return;
    }
    try {
      this.append(block);
    } catch (err) {
      this.enqueue(block);
      this.fail(err);
    }
  }

  /** Makes every line written so far durable now (fdatasync), retrying a failed file first. Never throws. */
  flush(): void {
    if (this.failing || this.backlog.length) this.recover(true);
    this.sync();
  }

  /**
   * flush() without blocking the event loop: the fdatasync runs on libuv's pool, and callers that
   * arrive while one is in flight share the next one (group commit for bursts of run ends).
   */
  flushAsync(): Promise<void> {
    if (this.failing || this.backlog.length) this.recover(true);
    const file = this.chain;
    if (!file) return Promise.resolve();
    return file.flush().catch((err: unknown) => {
      if (this.chain === file) this.fail(err);
    });
  }

  override close(): void {
    if (this.shut) return;
    this.flush();
    this.shut = true;
    // Whatever the disk still refuses after a last retry is lost; count it so it shows in stats.
    this.stats_.dropped += this.backlog.length;
    this.backlog = [];
    this.clearTimers();
    this.closeFd();
  }

  get stats(): DurableFileStats {
    return { file: this.file, ...this.stats_, backlog: this.backlog.length, failing: this.failing };
  }

  /** File name for a UTC day and rotation index. */
  fileName(day: string, index: number): string {
    return `${this.prefix}-${day}${index ? `.${index}` : ''}.jsonl`;
  }

  private append(block: string): void {
    const jsonLines = block.split('\n').filter((l) => l !== '');
    if (!jsonLines.length) return;
    // Each line grows by its chain hash (~75 bytes) on the way out.
    const file = this.ensureFile(Buffer.byteLength(block) + 76 * jsonLines.length);
    // Group commit runs off the event loop (the primitive's); only flush()/close() block, at shutdown.
    file.append(jsonLines);
    this.stats_.written += jsonLines.length;
  }

  /** The file for `len` more bytes, rotating by day or size and reopening a deleted file. */
  private ensureFile(len: number): DurableAppendFile {
    const t = this.now();
    if (this.chain !== null && t < this.dayEndsAt) {
      // fstat sees other processes' appends too, so every writer rotates at the same point; a file
      // unlinked under us (nlink 0) would swallow lines silently, so reopen instead.
      if (this.chain.fd === null) return this.chain; // not created yet: its first append creates it
      const st = fs.fstatSync(this.chain.fd);
      if (st.nlink > 0 && !(st.size > 0 && st.size + len > this.maxBytes)) return this.chain;
      if (st.nlink > 0) this.index++;
    } else {
      const day = utcDay(new Date(t));
      if (day !== this.day) {
        this.day = day;
        this.index = -1; // pick up where an earlier run (or another process) left off
      }
      this.dayEndsAt = (Math.floor(t / DAY_MS) + 1) * DAY_MS;
    }
    this.sync();
    this.closeFd();
    return this.openFor(len);
  }

  private openFor(len: number): DurableAppendFile {
    fs.mkdirSync(this.dir, { recursive: true });
    if (this.index < 0) this.index = this.highestIndex(this.day);
    for (;;) {
      const file = path.join(this.dir, this.fileName(this.day, this.index));
      // A torn last line (crash, short write) is ended by the chain's next append, not here.
      const chain = new DurableAppendFile(file, {
        commitEvery: this.commitEvery,
        commitIntervalMs: this.commitIntervalMs,
        onSyncError: (err) => {
          if (this.chain === chain) this.fail(err);
        },
        onSynced: (n) => {
          this.stats_.synced += n;
        },
        onTamper: (msg) => this.onError(new Error(msg)),
      });
      const size = chain.openExisting();
      if (size > 0 && size + len > this.maxBytes) {
        chain.abandon();
        this.index++;
        continue;
      }
      this.chain = chain;
      this.file = file;
      return chain;
    }
  }

  private highestIndex(day: string): number {
    const re = new RegExp(`^${escapeRe(this.prefix)}-${day}(?:\\.(\\d+))?\\.jsonl$`);
    let max = 0;
    for (const name of fs.readdirSync(this.dir)) {
      const m = re.exec(name);
      if (m) max = Math.max(max, m[1] ? Number(m[1]) : 0);
    }
    return max;
  }

  private sync(): void {
    try {
      this.chain?.flushSync();
    } catch (err) {
      this.fail(err);
    }
  }

  private enqueue(block: string): void {
    this.backlog.push(block);
    if (this.backlog.length > this.maxBacklog) {
      const n = this.backlog.length - this.maxBacklog;
      this.backlog.splice(0, n);
      this.stats_.dropped += n;
    }
  }

  private fail(err: unknown): void {
    this.closeFd();
    this.nextRetryAt = Date.now() + this.retryMs;
    if (!this.failing) {
      this.failing = true;
      try {
        this.onError(err instanceof Error ? err : new Error(String(err)));
      } catch {
        // the reporter must not take the server down either
      }
    }
    if (!this.retryTimer && !this.shut) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        this.recover(true);
      }, this.retryMs);
      this.retryTimer.unref();
    }
  }

  /** Writes the backlog to a freshly opened file; on success the failure episode ends. */
  private recover(force: boolean): void {
    // Nothing to prove the disk works again with: stay failing until a real line gets through.
    if (this.backlog.length === 0 || (!force && Date.now() < this.nextRetryAt)) return;
    let done = 0;
    try {
      for (const block of this.backlog) {
        this.append(block);
        done++;
      }
      this.failing = false;
    } catch (err) {
      this.fail(err);
    } finally {
      this.backlog.splice(0, done);
    }
  }

  /** Closes the file without a sync (callers sync first when they can): unsynced lines are forgotten. */
  private closeFd(): void {
    this.chain?.abandon();
    this.chain = null;
  }

  private clearTimers(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
