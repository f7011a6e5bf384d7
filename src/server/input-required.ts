// Approvals for 2026-07-28 clients (SEP-2322, multi-round-trip requests). That era has no
// server→client push: a server asks by ENDING the tool call with an `input_required` result that
// embeds an elicitation; the client answers by calling the tool again with `inputResponses` and the
// opaque `requestState` we minted. A run, though, is mid-loop when a rule asks: so the run is started
// detached from any one request and held in a RunConversation. Each round (the first call, each
// retry) waits for the run to either end (→ its result) or ask (→ input_required naming the question
// by a random id); the retry's answer settles the question and the run goes on.
//
// requestState is attacker-controlled input: it is only a key, `approval_<uuid>` (unguessable, known
// only to the client that was asked), that must name a question still waiting; it grants nothing
// else. A client that never retries gets its question denied after delegate.tools.askTimeoutS.
import { randomUUID } from 'node:crypto';
import { CLIENT_CAPABILITIES_META_KEY, inputRequired, inputResponse, type CallToolResult, type InputRequiredResult, type ServerContext } from '@modelcontextprotocol/server';
import type { RunRecord, RunResult } from '../orchestrator/runs.js';
import type { AskAnswer, AskFn, AskQuestion } from '../orchestrator/tool-gate.js';
import { approvalAnswer, approvalForm } from './approval.js';

/** The key of the embedded request in `inputRequests` / `inputResponses`. */
const APPROVAL_KEY = 'approval';
const STATE_PREFIX = 'approval_';

interface PendingAsk {
  id: string;
  q: AskQuestion;
  settle(answer: AskAnswer | Error): void;
}

/** Questions waiting for a retried call, by their requestState. */
const waiting = new Map<string, { conv: RunConversation; ask: PendingAsk }>();

export class RunConversation {
  rec?: RunRecord;
  /** Aborted when the client cancels a round: the run is cancelled with it. */
  private readonly abort = new AbortController();
  private readonly queue: PendingAsk[] = [];
  private wake?: () => void;
  private open?: { report?: (m: string) => void };

  constructor(
    private readonly timeoutMs: number,
    /** Whether the client declared it can answer elicitations (its envelope's capabilities). */
    private readonly canElicit: boolean,
  ) {}

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** Progress goes to whichever round is open (nowhere between rounds). */
  readonly onProgress = (message: string): void => this.open?.report?.(message);

  readonly ask: AskFn = (q) =>
    new Promise<AskAnswer>((resolve, reject) => {
      if (!this.canElicit) return reject(new Error('the client did not declare the elicitation capability'));
      const id = `${STATE_PREFIX}${randomUUID()}`;
      const timer = setTimeout(() => ask.settle(new Error(`no answer within ${this.timeoutMs / 1000} s`)), this.timeoutMs);
      timer.unref();
      const onAbort = () => ask.settle(new Error('the run was cancelled'));
      const ask: PendingAsk = {
        id,
        q,
        settle: (answer) => {
          clearTimeout(timer);
          q.signal?.removeEventListener('abort', onAbort);
          waiting.delete(id);
          const i = this.queue.indexOf(ask);
          if (i >= 0) this.queue.splice(i, 1);
          if (answer instanceof Error) reject(answer);
          else resolve(answer);
        },
      };
      q.signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(ask);
      waiting.set(id, { conv: this, ask });
      this.wake?.();
    });

  /** One round: waits for the run to end (its tool result) or to ask (an input_required result). */
  async round(
    ctx: ServerContext,
    report: ((m: string) => void) | undefined,
    toResult: (r: RunResult) => CallToolResult,
    /** Starts the run (first round): called once this round can take its progress lines. */
    start?: () => RunRecord,
  ): Promise<CallToolResult | InputRequiredResult> {
    const onAbort = () => this.abort.abort(ctx.mcpReq.signal.reason);
    if (ctx.mcpReq.signal.aborted) onAbort();
    else ctx.mcpReq.signal.addEventListener('abort', onAbort, { once: true });
    this.open = { report };
    if (start) this.rec = start();
    try {
      const rec = this.rec!;
      for (;;) {
        const ask = this.queue[0];
        if (ask) return inputRequired({ inputRequests: { [APPROVAL_KEY]: inputRequired.elicit(approvalForm(ask.q)) }, requestState: ask.id });
        if (rec.result) return toResult(rec.result);
        await new Promise<void>((res) => {
          this.wake = res;
          void rec.done.then(() => res());
        });
        this.wake = undefined;
      }
    } finally {
      ctx.mcpReq.signal.removeEventListener('abort', onAbort);
      this.open = undefined;
    }
  }
}

/** A 2026-07-28 client's capabilities, from the request's `_meta` envelope. */
export function clientCanElicit(ctx: ServerContext): boolean {
  const caps = (ctx.mcpReq.envelope as Record<string, unknown> | undefined)?.[CLIENT_CAPABILITIES_META_KEY] as { elicitation?: unknown } | undefined;
  return Boolean(caps?.elicitation);
}

/**
 * A retried call: settles the question its requestState names with the client's answer and returns
 * the conversation to continue, or an error result when the state names no waiting question.
 */
export function answerRetry(ctx: ServerContext): { conv: RunConversation } | { error: CallToolResult } | undefined {
  const state = ctx.mcpReq.requestState<unknown>();
  if (state === undefined) return undefined;
  const entry = typeof state === 'string' && state.startsWith(STATE_PREFIX) ? waiting.get(state) : undefined;
  if (!entry) {
    return {
      error: {
        isError: true,
        content: [{ type: 'text', text: 'unknown approval request: it was answered already, timed out (delegate.tools.askTimeoutS), or its run ended' }],
      },
    };
  }
  const view = inputResponse(ctx.mcpReq.inputResponses, APPROVAL_KEY);
  entry.ask.settle(view.kind === 'elicit' ? approvalAnswer(view.action, view.content) : 'deny');
  return { conv: entry.conv };
}
