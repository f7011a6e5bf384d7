// Approvals across the queue: an `ask` rule's question, from the worker running the run to the client
// of the front that started it, and the answer back. The front marks the job (`ask: true`, `from` names
// it); the worker's gate asks through WorkerApprovals, which publishes the question on that front's
// channel; FrontApprovals calls the run's own asker (the same session and form as an embedded run:
// once / run / deny, bounded by the ask timeout and the run's end) and publishes the answer on the
// asking worker's channel. The worker's gate decides, remembers `allow_run` and audits, as ever.
//
// Every message is signed with the queue key (signing.ts: kind, prefix and run id bound in) and checked,
// since whoever can write to Redis can publish and whoever can read it sees the question ids: a front
// asks only for runs it started that are still running, only for their agent and once per question; a
// worker takes a signed answer only for a question it is waiting on, of the same run.
// A front that is gone (crashed, restarted: nothing listens on its channel) fails the ask at once, or
// within a probe interval when it goes while the question waits; Redis away fails it at once, or by the
// ask timeout when it goes while the question waits (an answer lost with it is a deny, never a hang).
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { log, throttledWarn } from '../log.js';
import type { AskAnswer, AskFn } from '../orchestrator/tool-gate.js';
import { safeRedisUrl } from '../net/redis-url.js';
import { withTimeout } from '../time/with-timeout.js';
import { keys } from './jobs.js';
import type { QueueSettings } from './connection.js';
import type { QueueAuth } from './signing.js';

/** How often a worker checks that the front it waits on still listens (a crashed front's subscription is gone). */
const FRONT_PROBE_MS = 1000;
/** How long a publish or probe may take before Redis counts as not answering. */
const REDIS_CALL_MS = 3000;

const RUN_ID = z.string().regex(/^run_[0-9a-f-]{36}$/);
/** A node id names a channel only (hostnames vary): any short string. */
const NODE_ID = z.string().min(1).max(300);

/** Worker → front: a question for a run's client, or the worker giving it up (the run was cancelled, or it timed out there). */
const ToFrontSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('ask'),
    id: z.uuid(),
    runId: RUN_ID,
    worker: NODE_ID,
    agent: z.string().min(1).max(200),
    tool: z.string().min(1).max(300),
    summary: z.string().max(4000),
    rule: z.string().max(2000),
  }),
  z.object({ kind: z.literal('withdraw'), id: z.uuid(), runId: RUN_ID }),
]);
type ToFront = z.infer<typeof ToFrontSchema>;

/** Front → worker: the question is with the client; its answer; or why nobody can answer it. */
const ToWorkerSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('asked'), id: z.uuid(), runId: RUN_ID }),
  z.object({ kind: z.literal('answer'), id: z.uuid(), runId: RUN_ID, answer: z.enum(['once', 'run', 'deny']) }),
  z.object({ kind: z.literal('failed'), id: z.uuid(), runId: RUN_ID, reason: z.string().max(2000) }),
]);
type ToWorker = z.infer<typeof ToWorkerSchema>;

/** A message heard on an approval channel, or why it is ignored (unsigned, another key, changed, not ours). */
function open<T>(a: QueueAuth, kind: 'approval' | 'approval-answer', schema: z.ZodType<T>, raw: string): { ok: true; m: T } | { ok: false; reason: string } {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  const runId = (value as { runId?: unknown } | null)?.runId;
  if (typeof runId !== 'string' || !RUN_ID.safeParse(runId).success) return { ok: false, reason: 'no run id' };
  const opened = a.key.open(kind, a.prefix, runId, value);
  if (!opened.ok) return opened;
  const r = schema.safeParse(opened.body);
  return r.success ? { ok: true, m: r.data } : { ok: false, reason: `not an ${kind} message: ${r.error.issues[0]?.path.join('.')}: ${r.error.issues[0]?.message}` };
}

const seal = (a: QueueAuth, kind: 'approval' | 'approval-answer', m: { runId: string }) => JSON.stringify(a.key.seal(kind, a.prefix, m.runId, m));

/** A front's end: the runs it started whose client can be asked, and the questions their workers send. */
export class FrontApprovals {
  /** By run id; a question is removed when it is answered or withdrawn (a withdrawn one gets no reply). */
  private readonly runs = new Map<string, { agent: string; ask: AskFn; questions: Map<string, AbortController>; seen: Set<string> }>();

  private constructor(
    private readonly conn: Redis,
    private readonly sub: Redis,
    private readonly settings: QueueSettings,
    private readonly askTimeoutMs: number,
  ) {}

  /** Listens on this front's channel before any run is enqueued (a worker finding nobody there fails the ask at once). */
  static async open(conn: Redis, settings: QueueSettings, askTimeoutMs: number): Promise<FrontApprovals> {
    const sub = settings.link.watch(conn.duplicate());
    const desk = new FrontApprovals(conn, sub, settings, askTimeoutMs);
    const channel = keys.askChannel(settings.prefix, settings.nodeId);
    const ignored = throttledWarn();
    sub.on('message', (ch: string, raw: string) => {
      if (ch !== channel) return;
      const o = open(settings, 'approval', ToFrontSchema, raw);
      if (o.ok) desk.heard(o.m);
      else ignored(`queue front ${settings.nodeId}: ignored a message on ${channel}: ${o.reason}`);
    });
    await sub.subscribe(channel);
    return desk;
  }

  /** A run this front started: its worker's questions are put to `ask` until `done`; false when it cannot ask. */
  hold(runId: string, agent: string, ask: AskFn | undefined, done: Promise<unknown>): boolean {
    if (!ask) return false;
    const held = { agent, ask, questions: new Map<string, AbortController>(), seen: new Set<string>() };
    this.runs.set(runId, held);
    void done.then(() => {
      this.runs.delete(runId);
      for (const c of held.questions.values()) c.abort(new Error(`the run ended on the front that started it (${this.settings.nodeId})`));
    });
    return true;
  }

  private heard(m: ToFront): void {
    const held = this.runs.get(m.runId);
    if (m.kind === 'withdraw') {
      const c = held?.questions.get(m.id);
      held?.questions.delete(m.id);
      c?.abort(new Error('withdrawn by the worker'));
      return;
    }
    const reply = (r: ToWorker) =>
      void this.conn.publish(keys.answerChannel(this.settings.prefix, m.worker), seal(this.settings, 'approval-answer', r)).catch((err: Error) => {
        // The worker's own timeout denies the call; said here so the operator sees why.
        log.warn(`queue front ${this.settings.nodeId}: could not send the approval answer for run ${m.runId} to ${m.worker}: ${err.message}`);
      });
    const refuse = (reason: string) => reply({ kind: 'failed', id: m.id, runId: m.runId, reason });
    if (!held) return refuse(`the front that started this run (${this.settings.nodeId}) holds no run ${m.runId} that can ask (it ended, or another front started it)`);
    if (held.agent !== m.agent) return refuse(`run ${m.runId} is a run of ${held.agent}, not ${m.agent}`);
    if (held.seen.has(m.id)) return; // heard again (a copy put back on the channel): asked once
    held.seen.add(m.id);
    const abort = new AbortController();
    held.questions.set(m.id, abort);
    reply({ kind: 'asked', id: m.id, runId: m.runId });
    void this.put(held.ask, m, abort.signal).then((r) => {
      if (held.questions.delete(m.id)) reply(r);
    });
  }

  /** The run's asker, bounded as the gate bounds it: the ask timeout, and the run (or the worker) giving up. */
  private async put(ask: AskFn, m: Extract<ToFront, { kind: 'ask' }>, signal: AbortSignal): Promise<ToWorker> {
    const ms = this.askTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      const answer = await Promise.race([
        ask({ agent: m.agent, tool: m.tool, summary: m.summary, rule: m.rule, runId: m.runId, signal }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms);
          onAbort = () => reject(signal.reason as Error);
          signal.addEventListener('abort', onAbort, { once: true });
        }),
      ]);
      if (answer !== 'once' && answer !== 'run' && answer !== 'deny') throw new Error(`unexpected answer ${JSON.stringify(answer)}`);
      return { kind: 'answer', id: m.id, runId: m.runId, answer };
    } catch (err) {
      return { kind: 'failed', id: m.id, runId: m.runId, reason: (err as Error).message };
    } finally {
      clearTimeout(timer);
      if (onAbort) signal.removeEventListener('abort', onAbort);
    }
  }

  /** Questions still with a client fail ("shutting down"); nothing is heard after this. */
  async close(): Promise<void> {
    for (const held of this.runs.values()) for (const c of held.questions.values()) c.abort(new Error(`the front that started this run (${this.settings.nodeId}) is shutting down`));
    this.runs.clear();
    this.sub.disconnect();
  }
}

interface Waiting {
  runId: string;
  front: string;
  /** The front said the question is with its client. */
  asked: boolean;
  /** What went wrong with Redis meanwhile, for the reason a timeout gives. */
  trouble?: string;
  /** `fromFront`: the front's own answer (nothing to withdraw there). */
  settle(a: AskAnswer | Error, fromFront?: boolean): void;
}

/** A worker's end: its runs' questions to the fronts that started them, and their answers. */
export class WorkerApprovals {
  private readonly waiting = new Map<string, Waiting>();
  private probe?: NodeJS.Timeout;
  /** Anyone who can publish on the channel can repeat a bad message: logged at most every 10 s. */
  private readonly ignored = throttledWarn();

  constructor(
    private readonly conn: Redis,
    private readonly settings: QueueSettings,
    private readonly askTimeoutMs: number,
  ) {}

  /** Where answers to this worker's questions come. */
  get channel(): string {
    return keys.answerChannel(this.settings.prefix, this.settings.nodeId);
  }

  /** A message on `channel`: settles the question it answers; anything else is ignored. */
  heard(raw: string): void {
    const o = open(this.settings, 'approval-answer', ToWorkerSchema, raw);
    if (!o.ok) {
      this.ignored(`queue worker ${this.settings.nodeId}: ignored a message on ${this.channel}: ${o.reason}`);
      return;
    }
    const m = o.m;
    const w = this.waiting.get(m.id);
    if (!w || w.runId !== m.runId) return; // no question of ours (answered, given up, or another run's)
    if (m.kind === 'asked') w.asked = true;
    else if (m.kind === 'answer') w.settle(m.answer, true);
    else w.settle(new Error(m.reason), true);
  }

  /** The asker of a run the front `front` started and marked as one that can ask. */
  askFor(runId: string, front: string): AskFn {
    return (q) =>
      new Promise<AskAnswer>((resolve, reject) => {
        const id = randomUUID();
        const s = this.askTimeoutMs / 1000;
        const notAnswering = (why: string) => new Error(`the front that started this run (${front}) is not answering: ${why}`);
        let published = false;
        const onAbort = () => w.settle(new Error('the run was cancelled while waiting for approval'));
        // Started before the gate's own timer of the same length: this one's reason is the one reported.
        const timer = setTimeout(() => w.settle(w.asked ? new Error(`no answer within ${s} s`) : notAnswering(`no answer within ${s} s${w.trouble ? ` (${w.trouble})` : ''}`)), this.askTimeoutMs);
        timer.unref();
        const w: Waiting = {
          runId,
          front,
          asked: false,
          settle: (a, fromFront) => {
            if (!this.waiting.delete(id)) return;
            clearTimeout(timer);
            q.signal?.removeEventListener('abort', onAbort);
            if (!this.waiting.size) this.stopProbe();
            if (a instanceof Error) {
              // The front may still be asking its client: withdraw the form (best effort: it ends with the run anyway).
              if (published && !fromFront) void this.send(front, { kind: 'withdraw', id, runId }).catch(() => {}); // see above: best effort
              reject(a);
            } else resolve(a);
          },
        };
        this.waiting.set(id, w);
        if (q.signal?.aborted) return onAbort();
        q.signal?.addEventListener('abort', onAbort, { once: true });
        if (this.conn.status !== 'ready') return w.settle(notAnswering(`Redis at ${safeRedisUrl(this.settings.url)} is unreachable (connection ${this.conn.status})`));
        // Within the limits the front checks (a question it cannot read would wait out the timeout).
        const question: ToFront = { kind: 'ask', id, runId, worker: this.settings.nodeId, agent: q.agent.slice(0, 200), tool: q.tool.slice(0, 300), summary: q.summary.slice(0, 4000), rule: q.rule.slice(0, 2000) };
        this.send(front, question).then(
          (listeners) => {
            published = listeners > 0;
            if (!published) w.settle(notAnswering('nothing listens on its channel (it stopped or restarted)'));
            else if (this.waiting.has(id)) this.startProbe(); // (not when already answered)
          },
          (err: Error) => w.settle(notAnswering(`Redis at ${safeRedisUrl(this.settings.url)}: ${err.message}`)),
        );
      });
  }

  private send(front: string, m: ToFront): Promise<number> {
    return withTimeout(this.conn.publish(keys.askChannel(this.settings.prefix, front), seal(this.settings, 'approval', m)), REDIS_CALL_MS, `no answer within ${REDIS_CALL_MS / 1000} s`);
  }

  /** While questions wait: a front whose channel nobody listens on any more is gone, and its questions fail now. */
  private startProbe(): void {
    this.probe ??= setInterval(() => void this.checkFronts(), FRONT_PROBE_MS);
    this.probe.unref();
  }

  private stopProbe(): void {
    clearInterval(this.probe);
    this.probe = undefined;
  }

  private async checkFronts(): Promise<void> {
    const fronts = new Set([...this.waiting.values()].map((w) => w.front));
    for (const front of fronts) {
      const mine = () => [...this.waiting.values()].filter((w) => w.front === front);
      if (this.conn.status !== 'ready') {
        for (const w of mine()) w.trouble = `Redis at ${safeRedisUrl(this.settings.url)} unreachable (connection ${this.conn.status})`;
        continue;
      }
      let listeners: number;
      try {
        const r = (await withTimeout(this.conn.pubsub('NUMSUB', keys.askChannel(this.settings.prefix, front)), REDIS_CALL_MS)) as [string, number | string];
        listeners = Number(r[1]);
      } catch (err) {
        for (const w of mine()) w.trouble = `Redis at ${safeRedisUrl(this.settings.url)}: ${(err as Error).message}`;
        continue;
      }
      if (listeners === 0) for (const w of mine()) w.settle(new Error(`the front that started this run (${front}) is not answering: it stopped listening on Redis (it stopped or restarted)`));
    }
  }

  /** Closing: questions still waiting fail with the reason. */
  close(): void {
    for (const w of [...this.waiting.values()]) w.settle(new Error('the worker is shutting down'));
    this.stopProbe();
  }
}
