// Approvals for 2026-07-28 clients (SEP-2322, multi-round-trip requests). That era has no
// server→client push: a server asks by ENDING the tool call with an `input_required` result that
// embeds elicitations; the client answers by calling the tool again with `inputResponses` and the
// opaque `requestState` we minted. A run, though, is mid-loop when a rule asks: so the work (one run
// of an agent tool or `delegate`, or the runs of a `delegate_parallel` batch) is started detached
// from any one request and held in a RunConversation. Each round (the first call, each retry) waits
// for the work to either end (→ its result) or ask (→ input_required carrying EVERY question then
// pending, each under its own key: a batch's tasks may ask at once); the retry's answers settle those
// questions (one left unanswered is denied) and the work goes on.
//
// requestState is attacker-controlled input: it is only a key, `approval_<uuid>` (unguessable, known
// only to the client that was asked), that must name a round still waiting, of the same tool; it
// grants nothing else. A client that never retries gets its questions denied after
// delegate.tools.askTimeoutS.
import { randomUUID } from 'node:crypto';
import { CLIENT_CAPABILITIES_META_KEY, inputRequired, inputResponse, type CallToolResult, type InputRequiredResult, type McpServer, type ServerContext } from '@modelcontextprotocol/server';
import type { AskAnswer, AskFn, AskQuestion } from '../orchestrator/tool-gate.js';
import { approvalAnswer, approvalForm } from './approval.js';
import type { ProgressReport } from './tool-results.js';

const STATE_PREFIX = 'approval_';

interface PendingAsk {
  /** Its key in inputRequests / inputResponses. */
  key: string;
  q: AskQuestion;
  settle(answer: AskAnswer | Error): void;
}

/** Rounds that ended with questions, by their requestState: the conversation and what it asked. */
const waiting = new Map<string, { conv: RunConversation; asks: PendingAsk[] }>();

export class RunConversation {
  /** Aborted when the client cancels a round: the work is cancelled with it. */
  private readonly abort = new AbortController();
  private readonly queue: PendingAsk[] = [];
  private asked = 0;
  private wake?: () => void;
  private open?: { report?: (m: string) => void };
  private work?: Promise<unknown>;
  private outcome?: { value: unknown } | { error: Error };
  private readonly states = new Set<string>();

  constructor(
    private readonly timeoutMs: number,
    /** Whether the client declared it can answer elicitations (its envelope's capabilities). */
    private readonly canElicit: boolean,
    /** The tool this conversation belongs to: a retry must call the same. (Not the session: a
     *  2026-07-28 HTTP request has none; the unguessable requestState is what binds the client.) */
    readonly tool: string,
  ) {}

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** Progress goes to whichever round is open (nowhere between rounds). */
  readonly onProgress = (message: string): void => this.open?.report?.(message);

  readonly ask: AskFn = (q) =>
    new Promise<AskAnswer>((resolve, reject) => {
      if (!this.canElicit) return reject(new Error('the client did not declare the elicitation capability'));
      const timer = setTimeout(() => ask.settle(new Error(`no answer within ${this.timeoutMs / 1000} s`)), this.timeoutMs);
      timer.unref();
      const onAbort = () => ask.settle(new Error('the run was cancelled'));
      const ask: PendingAsk = {
        key: `approval_${++this.asked}`,
        q,
        settle: (answer) => {
          clearTimeout(timer);
          q.signal?.removeEventListener('abort', onAbort);
          const i = this.queue.indexOf(ask);
          if (i >= 0) this.queue.splice(i, 1);
          if (answer instanceof Error) reject(answer);
          else resolve(answer);
        },
      };
      q.signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(ask);
      this.wake?.();
    });

  /**
   * One round: waits for the work to end (→ toResult of its value) or to ask (→ an input_required
   * result with every pending question). The first round passes `start`, called once this round can
   * take progress lines; its promise is the work.
   */
  async round<T>(
    ctx: ServerContext,
    report: ProgressReport | undefined,
    toResult: (value: T) => CallToolResult,
    start?: () => Promise<T>,
  ): Promise<CallToolResult | InputRequiredResult> {
    const onAbort = () => this.abort.abort(ctx.mcpReq.signal.reason);
    if (ctx.mcpReq.signal.aborted) onAbort();
    else ctx.mcpReq.signal.addEventListener('abort', onAbort, { once: true });
    this.open = { report };
    if (start) {
      const ended = (outcome: { value: unknown } | { error: Error }) => {
        this.outcome = outcome;
        // Nothing can be asked any more: rounds that were never retried are forgotten.
        for (const s of this.states) waiting.delete(s);
      };
      this.work = start().then(
        (value) => ended({ value }),
        (error: Error) => ended({ error }),
      );
    }
    try {
      const work = this.work!;
      for (;;) {
        if (this.queue.length || this.outcome) await report?.sent(); // lines on their way go out before the answer
        if (this.queue.length) {
          const asks = [...this.queue];
          // Handed to this round: a question is asked once (a later round carries only newer ones).
          this.queue.length = 0;
          const state = `${STATE_PREFIX}${randomUUID()}`;
          waiting.set(state, { conv: this, asks });
          this.states.add(state);
          return inputRequired({ inputRequests: Object.fromEntries(asks.map((a) => [a.key, inputRequired.elicit(approvalForm(a.q))])), requestState: state });
        }
        if (this.outcome) {
          if ('error' in this.outcome) return errorResult(`the run failed: ${this.outcome.error.message}`);
          return toResult(this.outcome.value as T);
        }
        await new Promise<void>((res) => {
          this.wake = res;
          void work.then(() => res());
        });
        this.wake = undefined;
      }
    } finally {
      ctx.mcpReq.signal.removeEventListener('abort', onAbort);
      this.open = undefined;
    }
  }

  /** Settles a round's questions with the retry's answers (a question it leaves out is denied). */
  settle(state: string, asks: PendingAsk[], ctx: ServerContext): void {
    waiting.delete(state);
    this.states.delete(state);
    for (const a of asks) {
      const view = inputResponse(ctx.mcpReq.inputResponses, a.key);
      a.settle(view.kind === 'elicit' ? approvalAnswer(view.action, view.content) : 'deny');
    }
  }
}

/** Whether this connection's protocol asks with input_required results (2026-07-28 on) instead of elicitation requests. */
export function asksWithInputRequired(server: McpServer): boolean {
  const version = server.server.getNegotiatedProtocolVersion();
  return Boolean(version && version >= '2026-07-28');
}

/** A 2026-07-28 client's capabilities, from the request's `_meta` envelope. */
export function clientCanElicit(ctx: ServerContext): boolean {
  const caps = (ctx.mcpReq.envelope as Record<string, unknown> | undefined)?.[CLIENT_CAPABILITIES_META_KEY] as { elicitation?: unknown } | undefined;
  return Boolean(caps?.elicitation);
}

const errorResult = (text: string): CallToolResult => ({ isError: true, content: [{ type: 'text', text }] });

/**
 * A retried call: settles the questions its requestState names with the client's answers and returns
 * the conversation to continue; an error result when the state names no waiting round of this tool
 * and session; undefined for a first call.
 */
export function answerRetry(ctx: ServerContext, tool: string): { conv: RunConversation } | { error: CallToolResult } | undefined {
  const state = ctx.mcpReq.requestState<unknown>();
  if (state === undefined) return undefined;
  const entry = typeof state === 'string' && state.startsWith(STATE_PREFIX) ? waiting.get(state) : undefined;
  if (!entry) {
    return { error: errorResult('unknown approval request: it was answered already, timed out (delegate.tools.askTimeoutS), or its run ended') };
  }
  if (entry.conv.tool !== tool) return { error: errorResult(`this approval belongs to a call of ${entry.conv.tool}, not ${tool}`) };
  entry.conv.settle(state as string, entry.asks, ctx);
  return { conv: entry.conv };
}

/**
 * One call of a tool whose work may ask on a 2026-07-28 connection: a first call starts the work
 * (`start` gets the conversation's signal, progress and asker), a retry continues it.
 */
export async function conversationCall<T>(
  ctx: ServerContext,
  opts: {
    tool: string;
    timeoutMs: number;
    report: ProgressReport | undefined;
    start: (conv: RunConversation) => Promise<T>;
    toResult: (value: T) => CallToolResult;
  },
): Promise<CallToolResult | InputRequiredResult> {
  const retry = answerRetry(ctx, opts.tool);
  if (retry && 'error' in retry) return retry.error;
  const conv = retry?.conv ?? new RunConversation(opts.timeoutMs, clientCanElicit(ctx), opts.tool);
  return conv.round(ctx, opts.report, opts.toResult, retry ? undefined : () => opts.start(conv));
}
