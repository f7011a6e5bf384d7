// The audit log: versioned, redacted JSONL events written through winston with the durable transport.
// The orchestrator (main thread, the one authority) is the only writer in a process; re-entry children
// are separate processes writing to the same directory, which the transport makes safe.
import winston from 'winston';
import { log } from '../log.js';
import { DurableFileTransport, type DurableFileStats } from './durable-file.js';
import {
  AUDIT_SCHEMA_VERSION,
  type AuditEvent,
  type AuditEventInput,
  type RunContext,
  type RunEventInput,
} from './events.js';
import { Redactor } from './redact.js';

export interface AuditLogOptions {
  /** Directory of the audit files (created if missing), e.g. `.delegate-mcp/audit`. */
  dir: string;
  /** Default: a Redactor over process.env (pass one that also knows the config's keys). */
  redactor?: Redactor;
  /** Allow short, redacted text previews in events (default false: digests only). */
  previews?: boolean;
  /** Also print every event line on stderr (debugging; default false). Never stdout: stdio is the protocol. */
  stderrMirror?: boolean;
  maxBytes?: number;
  commitEvery?: number;
  commitIntervalMs?: number;
  /** The node that writes (queue mode): stamped on every event, so logs of many machines merge. */
  node?: string;
  /** Write failures, reported once per episode. Default: a warning on the diagnostics log. */
  onError?: (err: Error) => void;
}

export const PREVIEW_CHARS = 500;
/** Events after which the log is made durable at once rather than at the next group commit. */
const FLUSH_AFTER: ReadonlySet<string> = new Set(['server_stop']);
/**
 * Events written at once, with everything queued before them: a run's trail is in the file before its
 * result goes out (a kill -9 from then on cannot lose it). Other events wait at most QUEUE_MS (or until
 * QUEUE_LINES are queued): a short run's whole trail then goes through winston and write(2) once, and
 * a burst of runs shares one write, instead of one per event.
 */
const WRITE_NOW: ReadonlySet<string> = new Set(['run_end', 'server_start', 'server_stop']);
const QUEUE_MS = 50;
const QUEUE_LINES = 256;

// Per process, not per instance: (pid, seq) stays unique even with two AuditLogs in one process.
let processSeq = 0;

export interface RunAudit {
  readonly context: RunContext;
  emit(event: RunEventInput): void;
  /**
   * Writes what was emitted while the emitter was held (see forRun), in order and with the times they
   * were emitted, and stops holding. Idempotent.
   */
  release(): void;
}

export class AuditLog {
  readonly dir: string;
  readonly redactor: Redactor;
  readonly previews: boolean;
  private readonly transport: DurableFileTransport;
  private readonly logger: winston.Logger;
  private readonly onError: (err: Error) => void;
  private readonly node?: string;
  private closed = false;
  /** Serialised events waiting to be written (see WRITE_NOW). */
  private pending: string[] = [];
  private writeScheduled: NodeJS.Timeout | null = null;

  private constructor(opts: AuditLogOptions) {
    this.redactor = opts.redactor ?? new Redactor();
    this.previews = opts.previews ?? false;
    this.node = opts.node;
    this.onError =
      opts.onError ??
      ((err) => log.warn(`audit log: cannot write to ${opts.dir}: ${err.message}; retrying, events are kept in memory`));
    this.transport = new DurableFileTransport({
      dir: opts.dir,
      maxBytes: opts.maxBytes,
      commitEvery: opts.commitEvery,
      commitIntervalMs: opts.commitIntervalMs,
      onError: this.onError,
    });
    this.dir = this.transport.dir;
    // winston's role here is routing only: it hands each message (a block of already serialised,
    // redacted lines, see writePending) unchanged (printf below) to its transports, synchronously in the
    // same tick (tests/audit-durable.test.ts proves flush() covers every line written before it), and
    // mirrors it to stderr when asked. It does NOT buffer, batch, chain, rotate, fsync or retry: the
    // durable transport does all of that, and flush()/close() talk to it directly, not through winston.
    const transports: winston.transport[] = [this.transport];
    if (opts.stderrMirror) {
      transports.push(new winston.transports.Console({ stderrLevels: ['info'] }));
    }
    this.logger = winston.createLogger({
      level: 'info',
      // The line is serialised in emit(); every transport writes exactly that text.
      format: winston.format.printf((info) => String(info.message)),
      transports,
      exitOnError: false,
    });
  }

  static open(opts: AuditLogOptions): AuditLog {
    return new AuditLog(opts);
  }

  /**
   * Stamps (v, ts, seq, pid), redacts and writes one event. Never throws: an audit problem must not
   * fail the run it records.
   */
  emit(input: AuditEventInput): void {
    this.write(undefined, input);
  }

  private write(context: RunContext | undefined, input: AuditEventInput | RunEventInput, at?: number): void {
    if (this.closed) return;
    try {
      const c = (context ?? input) as Partial<RunContext>;
      // One object, redacted while it is serialised (no deep copy): this runs several times per run.
      const record = {
        v: AUDIT_SCHEMA_VERSION,
        ts: new Date(at ?? Date.now()).toISOString(),
        seq: ++processSeq,
        pid: process.pid,
        ...(this.node !== undefined && { node: this.node }),
        event: input.event,
        run_id: c.run_id ?? null,
        parent_run_id: c.parent_run_id ?? null,
        root_run_id: c.root_run_id ?? null,
        depth: c.depth ?? null,
        agent: c.agent ?? null,
        // A run's events carry no context keys of their own (RunEventInput), so they spread as they are.
        ...(context ? input : withoutContext(input)),
      };
      this.pending.push(this.redactor.redactToJson(record));
      if (WRITE_NOW.has(input.event) || this.pending.length >= QUEUE_LINES) this.writePending();
      else if (!this.writeScheduled) {
        this.writeScheduled = setTimeout(() => this.writePending(), QUEUE_MS);
        this.writeScheduled.unref(); // the exit hook writes what is left
      }
      if (FLUSH_AFTER.has(input.event)) this.flush();
    } catch (err) {
      this.onError(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** An emitter bound to one run's context. */
  /**
   * An emitter bound to one run's context. `held`: events are only noted (input and time) until
   * release(), and `first` (the run_start, built only then) goes before them: the orchestrator starts
   * the run's model request first and builds and serialises its start-up events while the request is
   * on its way.
   */
  forRun(context: RunContext, opts: { held?: boolean; first?: () => RunEventInput } = {}): RunAudit {
    let held: { e: RunEventInput; at: number }[] | null = opts.held ? [] : null;
    const startedAt = Date.now();
    let first = opts.first;
    if (first && !held) {
      this.write(context, first());
      first = undefined;
    }
    const release = () => {
      const q = held;
      held = null;
      if (first) this.write(context, first(), startedAt);
      first = undefined;
      if (q) for (const { e, at } of q) this.write(context, e, at);
    };
    return {
      context,
      emit: (e) => {
        if (held && !WRITE_NOW.has(e.event)) held.push({ e, at: Date.now() });
        else {
          release(); // a run_end never waits: everything before it goes first
          this.write(context, e);
        }
      },
      release,
    };
  }

  /**
   * A text preview for an event, or undefined when previews are off or the agent asked for secrets to
   * be redacted (`policies.secrets.redact: true`). Redacted before truncation, so a secret cut at the
   * boundary cannot leak its first half.
   */
  previewText(text: string, agentRedactFlag: boolean): string | undefined {
    if (!this.previews || agentRedactFlag) return undefined;
    // Redact a window well past the preview so a long secret that starts inside it is still recognised.
    const clean = this.redactor.redactString(text.length > 8 * PREVIEW_CHARS ? text.slice(0, 8 * PREVIEW_CHARS) : text);
    if (clean.length <= PREVIEW_CHARS) return clean;
    const cut = isHighSurrogate(clean.charCodeAt(PREVIEW_CHARS - 1)) ? PREVIEW_CHARS - 1 : PREVIEW_CHARS;
    return clean.slice(0, cut);
  }

  /** Hands the queued events to winston as one message: the transport writes it in one write(2). */
  private writePending(): void {
    if (this.writeScheduled) {
      clearTimeout(this.writeScheduled);
      this.writeScheduled = null;
    }
    if (!this.pending.length) return;
    const lines = this.pending.join('\n');
    this.pending = [];
    try {
      this.logger.info(lines);
    } catch (err) {
      this.onError(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** Written and fdatasync'd now: on shutdown. Sync, never throws. */
  flush(): void {
    this.writePending();
    this.transport.flush();
  }

  close(): void {
    if (this.closed) return;
    this.writePending();
    this.closed = true;
    this.transport.close();
    this.logger.close();
  }

  get stats(): DurableFileStats {
    return this.transport.stats;
  }
}

/**
 * Flushes the audit log on SIGTERM, SIGINT, beforeExit and exit. It never calls process.exit: when it
 * is the only listener for a signal it removes itself and re-raises the signal, so the process still
 * dies the default way; when the server has its own handler, that handler decides. Returns an uninstaller.
 */
export function installShutdownFlush(audit: Pick<AuditLog, 'flush'>): () => void {
  const flush = () => audit.flush();
  const onSignal = (signal: NodeJS.Signals) => {
    flush();
    if (process.listenerCount(signal) === 1) {
      uninstall();
      process.kill(process.pid, signal);
    }
  };
  const uninstall = () => {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    process.off('beforeExit', flush);
    process.off('exit', flush);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('beforeExit', flush);
  // 'exit' also covers process.exit() and uncaught exceptions, which skip beforeExit.
  process.on('exit', flush);
  return uninstall;
}

/** The event's own fields: the context keys are stamped from the run's context (or null). */
function withoutContext(input: AuditEventInput | RunEventInput): Record<string, unknown> {
  const { event: _e, run_id: _r, parent_run_id: _p, root_run_id: _o, depth: _d, agent: _a, ...fields } = input as AuditEventInput;
  return fields;
}

const isHighSurrogate = (c: number) => c >= 0xd800 && c <= 0xdbff;
