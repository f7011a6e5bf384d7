// The stdio wire: newline-delimited JSON-RPC on stdin/stdout, handed to the SDK's serveStdio as its
// transport. It replaces the SDK's StdioServerTransport because no input may stop the server:
//   - a line that is not JSON gets a -32700 Parse error response (the SDK's ReadBuffer drops it silently);
//   - JSON that is not a JSON-RPC message gets -32600 Invalid Request (with its id when it has one);
//   - a message longer than maxMessageBytes is skipped as it streams in (never buffered whole) and
//     answered with an error naming the size and the limit; the SDK's buffer instead threw and closed
//     the connection, ending every call in flight.
// It also knows which requests are still unanswered, so a shutdown can wait for their results, and
// it can refuse new tool calls while the server drains.
import type { Readable, Writable } from 'node:stream';
import { isJSONRPCRequest, isJSONRPCResponse, parseJSONRPCMessage, serializeMessage, type JSONRPCMessage, type Transport } from '@modelcontextprotocol/server';

const PARSE_ERROR = -32700;
const INVALID_REQUEST = -32600;
/** Server error range: what a refused call during shutdown gets. */
const SHUTTING_DOWN = -32000;
/** What is kept of an oversized line to find its id: its first and last bytes. */
const KEEP_BYTES = 1024;

type Id = string | number;

export class LineTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  private chunks: Buffer[] = [];
  private bytes = 0;
  /** Set while skipping a line past the limit: its size so far, head and tail (to find its id). */
  private oversized?: { bytes: number; head: Buffer; tail: Buffer };
  private lineNo = 0;
  private closed = false;
  private started = false;
  /** Requests delivered to the server and not yet answered. */
  private readonly unanswered = new Set<Id>();
  private answeredWaiters: (() => void)[] = [];
  private refusing?: string;

  constructor(
    private readonly maxMessageBytes: number,
    private readonly stdin: Readable = process.stdin,
    private readonly stdout: Writable = process.stdout,
    /** Names the setting in errors, so a user knows what to raise. */
    private readonly limitName = 'delegate.stdio.maxMessageBytes',
  ) {}

  async start(): Promise<void> {
    if (this.started) throw new Error('LineTransport already started');
    this.started = true;
    this.stdin.on('data', this.onData);
    this.stdin.on('error', this.onStdinError);
    this.stdin.on('end', this.onStdinEnd);
    this.stdin.on('close', this.onStdinEnd);
    this.stdout.on('error', this.onStdoutError);
  }

  /** From now on a new tools/call is answered at once with an error saying why (the server is draining). */
  refuseNewCalls(reason: string): void {
    this.refusing = reason;
  }

  /** Resolves true when every delivered request has been answered, false when `timeoutMs` passed first. */
  whenAnswered(timeoutMs: number): Promise<boolean> {
    if (this.unanswered.size === 0 || this.closed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.answeredWaiters = this.answeredWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      this.answeredWaiters.push(done);
    });
  }

  get pendingRequests(): number {
    return this.unanswered.size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stdin.off('data', this.onData);
    this.stdin.off('error', this.onStdinError);
    this.stdin.off('end', this.onStdinEnd);
    this.stdin.off('close', this.onStdinEnd);
    if (this.stdin.listenerCount('data') === 0) this.stdin.pause();
    this.chunks = [];
    this.releaseWaiters();
    this.onclose?.();
  }

  send(message: JSONRPCMessage): Promise<void> {
    if (isJSONRPCResponse(message) && message.id !== undefined) this.settle(message.id as Id);
    if (this.closed) return Promise.reject(new Error('stdio transport is closed'));
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => {
        this.stdout.off('drain', onDrain);
        reject(err);
      };
      const onDrain = () => {
        this.stdout.off('error', onError);
        resolve();
      };
      this.stdout.once('error', onError);
      if (this.stdout.write(serializeMessage(message))) {
        this.stdout.off('error', onError);
        resolve();
      } else this.stdout.once('drain', onDrain);
    });
  }

  private onData = (chunk: Buffer): void => {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl === -1) {
        this.take(chunk.subarray(start));
        return;
      }
      this.take(chunk.subarray(start, nl));
      this.endLine();
      start = nl + 1;
    }
  };

  /** Adds part of the current line: buffered while within the limit, else only head and tail kept. */
  private take(part: Buffer): void {
    if (part.length === 0) return;
    if (this.oversized) {
      this.oversized.bytes += part.length;
      this.oversized.tail = keepTail(this.oversized.tail, part);
      return;
    }
    if (this.bytes + part.length > this.maxMessageBytes) {
      const all = Buffer.concat([...this.chunks, part]);
      this.oversized = { bytes: all.length, head: Buffer.from(all.subarray(0, KEEP_BYTES)), tail: keepTail(Buffer.alloc(0), all) };
      this.chunks = [];
      this.bytes = 0;
      return;
    }
    // Copied: a chunk of stdin may be a view of a pooled buffer.
    this.chunks.push(Buffer.from(part));
    this.bytes += part.length;
  }

  private endLine(): void {
    this.lineNo++;
    if (this.oversized) {
      const { bytes, head, tail } = this.oversized;
      this.oversized = undefined;
      const id = idOfOversized(head.toString('utf8'), tail.toString('utf8'));
      const message = `Invalid Request: message ${this.lineNo} is ${bytes} bytes, over the limit of ${this.maxMessageBytes} bytes (${this.limitName}); it was skipped`;
      this.onerror?.(new Error(message));
      this.reply(id, INVALID_REQUEST, message, { size: bytes, limit: this.maxMessageBytes });
      return;
    }
    const line = Buffer.concat(this.chunks).toString('utf8').replace(/\r$/, '');
    this.chunks = [];
    this.bytes = 0;
    if (line.trim() === '') return;
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch (err) {
      this.reply(null, PARSE_ERROR, `Parse error: message ${this.lineNo} is not valid JSON (${(err as Error).message})`);
      return;
    }
    let message: JSONRPCMessage;
    try {
      message = parseJSONRPCMessage(raw);
    } catch (err) {
      const issue = (err as { issues?: { path: PropertyKey[]; message: string }[] }).issues?.[0];
      const why = Array.isArray(raw)
        ? 'batches are not supported; send one message per line'
        : issue
          ? `${issue.path.map(String).join('.') || 'message'}: ${issue.message}`
          : (err as Error).message;
      this.reply(idOf(raw), INVALID_REQUEST, `Invalid Request: message ${this.lineNo} is not a JSON-RPC 2.0 message (${why})`);
      return;
    }
    if (isJSONRPCRequest(message)) {
      if (this.refusing && message.method === 'tools/call') {
        this.reply(message.id, SHUTTING_DOWN, this.refusing);
        return;
      }
      this.unanswered.add(message.id);
    }
    try {
      this.onmessage?.(message);
    } catch (err) {
      this.onerror?.(err as Error);
    }
  }

  private reply(id: Id | null, code: number, message: string, data?: unknown): void {
    this.send({ jsonrpc: '2.0', id, error: { code, message, ...(data !== undefined ? { data } : {}) } } as unknown as JSONRPCMessage).catch((err: Error) =>
      this.onerror?.(err),
    );
  }

  private settle(id: Id): void {
    if (!this.unanswered.delete(id)) return;
    if (this.unanswered.size === 0) this.releaseWaiters();
  }

  private releaseWaiters(): void {
    const waiters = this.answeredWaiters;
    this.answeredWaiters = [];
    for (const w of waiters) w();
  }

  private onStdinError = (err: Error): void => {
    this.onerror?.(err);
  };

  private onStdinEnd = (): void => {
    void this.close();
  };

  private onStdoutError = (err: Error): void => {
    if (this.closed) return;
    this.onerror?.(err);
    void this.close();
  };
}

function keepTail(tail: Buffer, part: Buffer): Buffer {
  if (part.length >= KEEP_BYTES) return Buffer.from(part.subarray(part.length - KEEP_BYTES));
  const joined = Buffer.concat([tail, part]);
  return joined.length > KEEP_BYTES ? Buffer.from(joined.subarray(joined.length - KEEP_BYTES)) : joined;
}

function idOf(raw: unknown): Id | null {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return null;
  const id = (raw as { id?: unknown }).id;
  return typeof id === 'string' || typeof id === 'number' ? id : null;
}

const ID_VALUE = String.raw`(-?\d{1,16}|"(?:[^"\\]|\\.){0,256}")`;
/** `{"jsonrpc":"2.0","id":…` or `{"id":…` at the very start: the outermost object's id. */
const HEAD_ID = new RegExp(String.raw`^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*${ID_VALUE}`);
/** `…,"id":…}` at the very end (the SDK clients write the id last): the outermost object's id. */
const TAIL_ID = new RegExp(String.raw`[,{]\s*"id"\s*:\s*${ID_VALUE}\s*\}\s*$`);

/** The id of a message too large to parse, from its first or last bytes, so its caller gets an answer. */
function idOfOversized(head: string, tail: string): Id | null {
  const m = HEAD_ID.exec(head) ?? TAIL_ID.exec(tail.replace(/\r$/, ''));
  if (!m) return null;
  try {
    return JSON.parse(m[1]) as Id;
  } catch {
    return null;
  }
}
