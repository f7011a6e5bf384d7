// Message authentication for queue mode: Redis carries what fronts and workers tell each other, and anyone
// who can write to Redis (a program an agent runs, with network, on a worker's machine) could otherwise
// enqueue a run of any agent with any input, owner, call chain and no budget, report a run's usage lower
// than it was, or cancel runs. Every message that steers something is signed with a key fronts and workers
// share (HMAC-SHA256 over a canonical encoding of the message, its kind, the queue prefix and the run id,
// so a signature cannot be moved onto another message, queue or run); a job also carries the time after
// which no worker may start it (its front has given up on it by then), which bounds the replay of a
// genuine job after BullMQ removed it. Redis still sees inputs and outputs in clear: this is integrity,
// not secrecy (README "Scaling out").
import { createHash, createHmac, createSecretKey, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ResolvedConfig } from '../config/config.js';
import { ConfigError } from '../config/config-error.js';
import { errorMessage } from '../describe-cause.js';
import { RunJobSchema, type CancelMessage, type RunJob } from './jobs.js';
// Keys sorted, `undefined` members left out: what was signed and what comes back out of Redis (parsed JSON) encode the same.
import { canonicalJson } from '../audit/events.js';

export const QUEUE_KEY_ENV = 'DELEGATE_MCP_QUEUE_KEY';
/** The key file made on first use in the state dir (hidden from agents: permissions/protected-paths.ts). */
export const QUEUE_KEY_FILE = 'queue.key';
const MIN_KEY_CHARS = 32;
/** A job's start-by time is read on the worker's clock: machines' clocks may differ by this much. */
export const CLOCK_SKEW_MS = 60_000;
const KEY_HELP = `every front and worker of a queue needs the same key: ${QUEUE_KEY_ENV}, delegate.queue.keyFile, or the same state dir (README "Scaling out")`;

/** What a signature signs: the kind of message says what it is for (a job's signature is no answer's). */
export type SignedKind = 'job' | 'return' | 'progress' | 'failure' | 'cancel' | 'approval' | 'approval-answer';

export interface Signature {
  /** The key's id (a hash of it, not the key): says "another key" apart from "changed". */
  kid: string;
  /** Job only: no worker starts it after this time (ms since the epoch). */
  exp?: number;
  mac: string;
}

/** The queue's shared key. The key itself is kept in a KeyObject: printing or serialising this shows its id only. */
export class QueueKey {
  readonly #key: KeyObject;
  readonly id: string;

  constructor(
    secret: string,
    /** Where it came from, for messages ("DELEGATE_MCP_QUEUE_KEY" or the file). */
    readonly source: string,
  ) {
    this.#key = createSecretKey(Buffer.from(secret, 'utf8'));
    this.id = createHash('sha256').update('delegate-mcp queue key id\0').update(secret).digest('hex').slice(0, 16);
  }

  private mac(kind: SignedKind, prefix: string, runId: string, exp: number | undefined, body: unknown): Buffer {
    return createHmac('sha256', this.#key)
      .update(canonicalJson(['delegate-mcp queue v1', kind, prefix, runId, exp ?? null, body]))
      .digest();
  }

  /** `body` with its signature added as `sig`. */
  seal<T extends object>(kind: SignedKind, prefix: string, runId: string, body: T, exp?: number): T & { sig: Signature } {
    const sig: Signature = { kid: this.id, ...(exp !== undefined && { exp }), mac: this.mac(kind, prefix, runId, exp, body).toString('base64url') };
    return { ...body, sig };
  }

  /** The message without its signature, or why it is refused (never naming the key). */
  open(kind: SignedKind, prefix: string, runId: string, value: unknown, now = Date.now()): { ok: true; body: Record<string, unknown> } | { ok: false; reason: string } {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, reason: 'not a message of delegate-mcp (no signature)' };
    const { sig, ...body } = value as { sig?: Partial<Signature> };
    if (typeof sig !== 'object' || sig === null) return { ok: false, reason: 'unsigned: not sent by a delegate-mcp node holding this queue\'s key' };
    if (typeof sig.kid !== 'string' || !/^[0-9a-f]{16}$/.test(sig.kid) || typeof sig.mac !== 'string' || (sig.exp !== undefined && typeof sig.exp !== 'number')) {
      return { ok: false, reason: 'malformed signature' };
    }
    if (sig.kid !== this.id) return { ok: false, reason: `signed with another queue key (key id ${sig.kid}; this node's is ${this.id}): ${KEY_HELP}` };
    let want: Buffer;
    try {
      want = this.mac(kind, prefix, runId, sig.exp, body);
    } catch {
      return { ok: false, reason: 'malformed message (cannot be encoded)' }; // nested too deep for the encoder: no message of ours
    }
    const got = Buffer.from(sig.mac, 'base64url');
    if (got.length !== want.length || !timingSafeEqual(got, want)) {
      return { ok: false, reason: `signature does not match: the ${kind === 'return' ? 'answer' : kind} was changed in Redis, or its signature belongs to another ${kind === 'return' ? 'answer' : kind}, run or queue` };
    }
    if (kind === 'job' && (sig.exp === undefined || now > sig.exp + CLOCK_SKEW_MS)) {
      return { ok: false, reason: `expired: signed to start by ${new Date(sig.exp ?? 0).toISOString()} (its front has given up on it; a copy put back into Redis is not run again)` };
    }
    return { ok: true, body };
  }
}

/**
 * The queue key: DELEGATE_MCP_QUEUE_KEY, else delegate.queue.keyFile, else `queue.key` in the state dir,
 * made on first use (0600). Nodes of one user on one machine sharing a workspace share it with no setup.
 */
export function loadQueueKey(cfg: ResolvedConfig, env: NodeJS.ProcessEnv = process.env): QueueKey {
  const fromEnv = env[QUEUE_KEY_ENV];
  if (fromEnv !== undefined && fromEnv !== '') {
    const secret = fromEnv.trim();
    if (secret.length < MIN_KEY_CHARS) throw new ConfigError(`${QUEUE_KEY_ENV}: too short (${secret.length} characters; at least ${MIN_KEY_CHARS}): make one with \`openssl rand -base64 32\``);
    return new QueueKey(secret, QUEUE_KEY_ENV);
  }
  const configured = cfg.delegate.queue.keyFile;
  if (configured) return readKeyFile(configured, 'delegate.queue.keyFile');
  const file = path.join(cfg.stateDir, QUEUE_KEY_FILE);
  createKeyFile(file);
  return readKeyFile(file, 'queue key file');
}

function readKeyFile(file: string, what: string): QueueKey {
  let mode: number;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new ConfigError(`${what} ${file}: not a file`);
    mode = st.mode & 0o777;
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ConfigError(`${what} ${file}: not found (make one: \`openssl rand -base64 32 > ${file} && chmod 600 ${file}\`, or copy the key of the other nodes)`);
    throw new ConfigError(`${what} ${file}: ${errorMessage(err)}`);
  }
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    throw new ConfigError(`${what} ${file}: open to group or others (mode ${mode.toString(8).padStart(4, '0')}); the queue key must be readable by its owner only: chmod 600 ${file}`);
  }
  let secret: string;
  try {
    secret = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new ConfigError(`${what} ${file}: cannot read: ${errorMessage(err)}`);
  }
  if (secret.length < MIN_KEY_CHARS) throw new ConfigError(`${what} ${file}: the key is too short (${secret.length} characters; at least ${MIN_KEY_CHARS}): make one with \`openssl rand -base64 32\``);
  return new QueueKey(secret, file);
}

/** Writes a new random key to `file` unless one is there; two nodes starting at once end up with the same one. */
function createKeyFile(file: string): void {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(tmp, randomBytes(32).toString('base64url') + '\n', { mode: 0o600, flag: 'wx' });
    // Whole or not at all: a node reading it never sees half a key; the first of two racing nodes wins.
    linkSync(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new ConfigError(`queue key file ${file}: cannot create it: ${errorMessage(err)}`);
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // never written (the directory could not be made): nothing to remove
    }
  }
}

/** A node's key and the queue it signs for. */
export interface QueueAuth {
  key: QueueKey;
  prefix: string;
}

/** A job's data as a worker may run it, or why not (checked before anything of it is used). */
export function openJob(a: QueueAuth, jobId: string | undefined, raw: unknown, now = Date.now()): { ok: true; job: RunJob } | { ok: false; reason: string } {
  if (!jobId) return { ok: false, reason: 'a job without an id' };
  const opened = a.key.open('job', a.prefix, jobId, raw, now);
  if (!opened.ok) return opened;
  const parsed = RunJobSchema.safeParse(opened.body);
  if (!parsed.success) return { ok: false, reason: `not a run job: ${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}` };
  if (parsed.data.runId !== jobId) return { ok: false, reason: `its run id ${parsed.data.runId} is not its job id` };
  return { ok: true, job: parsed.data };
}

/** A cancel for pub/sub, signed. */
export function cancelMessage(a: QueueAuth, runId: string, reason: CancelMessage['reason']): string {
  return JSON.stringify(a.key.seal('cancel', a.prefix, runId, { runId, reason } satisfies CancelMessage));
}

/** A cancel heard on pub/sub, or why it is ignored. */
export function openCancel(a: QueueAuth, raw: string): { ok: true; cancel: CancelMessage } | { ok: false; reason: string } {
  let m: unknown;
  try {
    m = JSON.parse(raw);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  const runId = (m as { runId?: unknown } | null)?.runId;
  if (typeof runId !== 'string' || !/^run_[0-9a-f-]{36}$/.test(runId)) return { ok: false, reason: 'no run id' };
  const opened = a.key.open('cancel', a.prefix, runId, m);
  if (!opened.ok) return opened;
  const reason = opened.body.reason;
  if (reason !== 'cancelled' && reason !== 'timeout') return { ok: false, reason: 'no reason' };
  return { ok: true, cancel: { runId, reason } };
}
