// One durable append-only JSONL file: the primitive under the audit log (audit/durable-file.ts) and the
// budget ledger (budget/ledger-file.ts). The protocol, in one place:
// - append: lines are hash-chained and go out in ONE write(2) on an O_APPEND descriptor, serialised
//   across processes by a lock file (hash-chain.ts), so appends of several processes never interleave;
// - torn tail: a crash can leave a last line without its newline; the next append ends that fragment
//   with a newline first (hash-chain.ts), so it never swallows a good line;
// - a file appears with its first lines already in it, and its directory entry is fsync'd, or
//   fdatasync'd lines could vanish with the entry;
// - group commit: fdatasync every `commitEvery` lines or `commitIntervalMs` after the first unsynced
//   one, whichever comes first, on libuv's pool (never blocking the event loop); callers arriving while
//   a sync is in flight share ONE follow-up sync. flushSync() forces it at once (shutdown, rotation).
import fs from 'node:fs';
import path from 'node:path';
import { ChainFile, type AppendResult } from './hash-chain.js';

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
    this.inflight = done.catch(() => {});
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
