// search_files' matcher: RE2 syntax (linear-time, no backreferences or lookaround) run in a worker
// thread (search-worker.ts) under a deadline, so no pattern and no file can stall the main thread.
// Workers are kept warm between searches (a cold one costs ~100 ms: thread start plus the RE2 wasm);
// one that overruns its deadline or is cancelled is terminated, and the next search starts a new one.
import { Worker } from 'node:worker_threads';
import { SEARCH_WORKER_ENTRY } from '../paths.js';

export interface SearchRequest {
  id: number;
  source: string;
  /** The file's bytes (UTF-8); absent: only compile the pattern. */
  text?: Uint8Array;
  maxMatches: number;
  maxChars: number;
}

export type SearchReply =
  | { id: number; kind: 'matches'; lines: { n: number; text: string }[] }
  | { id: number; kind: 'invalid'; message: string };

export type MatchOutcome = { kind: 'matches'; lines: { n: number; text: string }[] } | { kind: 'deadline' } | { kind: 'aborted' };

/** Warm workers waiting for the next search. */
const idle: Worker[] = [];
const MAX_IDLE = 2;

/**
 * The RE2-unsupported construct a pattern uses, named for the model, or null. RE2 would refuse these
 * too, but with messages such as "invalid perl operator: (?<" that do not say what to do instead.
 */
export function unsupportedConstruct(pattern: string): string | null {
  // Skip escaped characters and character classes, where these sequences are literal.
  const plain = pattern.replace(/\\[^1-9k]|\[(?:\\.|[^\]\\])*\]/g, '_');
  if (/\\[1-9]/.test(plain)) return 'backreferences (\\1 … \\9)';
  if (/\\k</.test(plain)) return 'named backreferences (\\k<name>)';
  if (/\(\?<[=!]/.test(plain)) return 'lookbehind ((?<=…), (?<!…))';
  if (/\(\?[=!]/.test(plain)) return 'lookahead ((?=…), (?!…))';
  return null;
}

export class LineSearch {
  private nextId = 0;
  private worker: Worker | null;
  private pending: { id: number; resolve: (r: SearchReply | { kind: 'failed'; message: string }) => void } | null = null;

  private constructor(
    worker: Worker,
    private readonly source: string,
    private readonly deadlineAt: number,
    private readonly signal?: AbortSignal,
  ) {
    this.worker = worker;
    worker.ref(); // while a search is on, the thread counts as work (an idle one does not)
    worker.on('message', this.onMessage);
    worker.on('error', this.onFailure);
    worker.on('exit', this.onExit);
  }

  /** Compiles `pattern` in a worker; a syntax error (or an unsupported construct) comes back as a message. */
  static async open(pattern: string, opts: { deadlineMs: number; signal?: AbortSignal }): Promise<LineSearch | { error: string }> {
    const construct = unsupportedConstruct(pattern);
    if (construct) return { error: `${construct} are not supported: patterns use RE2 syntax, which matches in linear time` };
    const search = new LineSearch(idle.pop() ?? new Worker(SEARCH_WORKER_ENTRY), pattern, Date.now() + opts.deadlineMs, opts.signal);
    const r = await search.request(undefined, 0, 0);
    if (r.kind === 'invalid') {
      search.close();
      const prefix = `Invalid regular expression: /${pattern}/u: `;
      return { error: r.message.startsWith(prefix) ? r.message.slice(prefix.length) : r.message };
    }
    if (r.kind !== 'matches') {
      search.close();
      return { error: r.kind === 'deadline' ? 'the pattern took too long to compile' : r.kind === 'aborted' ? 'cancelled' : r.message };
    }
    return search;
  }

  /** The matching lines of one file (at most maxMatches + 1: one more tells the cap was reached). */
  async match(buf: Buffer, maxMatches: number, maxChars: number): Promise<MatchOutcome | { kind: 'failed'; message: string }> {
    const r = await this.request(buf, maxMatches, maxChars);
    if (r.kind === 'invalid') return { kind: 'failed', message: r.message };
    return r.kind === 'matches' ? { kind: 'matches', lines: r.lines } : r;
  }

  /** Hands a healthy worker back for the next search; a dead one is dropped. */
  close(): void {
    const w = this.worker;
    this.worker = null;
    if (!w) return;
    w.off('message', this.onMessage);
    w.off('error', this.onFailure);
    w.off('exit', this.onExit);
    if (idle.length < MAX_IDLE) {
      w.unref(); // an idle worker never keeps the process alive
      idle.push(w);
    } else void w.terminate();
  }

  private request(text: Buffer | undefined, maxMatches: number, maxChars: number): Promise<SearchReply | { kind: 'deadline' } | { kind: 'aborted' } | { kind: 'failed'; message: string }> {
    const w = this.worker;
    if (!w) return Promise.resolve({ kind: 'failed', message: 'search worker is gone' });
    if (this.signal?.aborted) return Promise.resolve(this.kill({ kind: 'aborted' }));
    const id = ++this.nextId;
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(this.kill({ kind: 'deadline' })), Math.max(0, this.deadlineAt - Date.now()));
      const onAbort = () => finish(this.kill({ kind: 'aborted' }));
      const finish = (r: SearchReply | { kind: 'deadline' } | { kind: 'aborted' } | { kind: 'failed'; message: string }) => {
        clearTimeout(timer);
        this.signal?.removeEventListener('abort', onAbort);
        this.pending = null;
        resolve(r);
      };
      this.signal?.addEventListener('abort', onAbort, { once: true });
      this.pending = { id, resolve: finish };
      const msg: SearchRequest = { id, source: this.source, maxMatches, maxChars, ...(text && { text }) };
      w.postMessage(msg);
    });
  }

  private kill<T>(outcome: T): T {
    const w = this.worker;
    this.worker = null;
    if (w) void w.terminate();
    return outcome;
  }

  private readonly onMessage = (r: SearchReply) => {
    if (this.pending?.id === r.id) this.pending.resolve(r);
  };

  private readonly onFailure = (err: Error) => {
    this.worker = null;
    this.pending?.resolve({ kind: 'failed', message: `search worker failed: ${err.message}` });
  };

  private readonly onExit = (code: number) => {
    this.worker = null;
    this.pending?.resolve({ kind: 'failed', message: `search worker exited (code ${code})` });
  };
}
