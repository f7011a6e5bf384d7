// A scripted model for unit tests (like openai-agents-js src/testing/): a ProviderAdapter that plays
// back turns — text answers, tool calls, usage, provider errors, retries, or a request that hangs until
// it is aborted — and records every request it was sent. Use it with InProcessPool to drive a whole
// run (session, budget gate, tool gate, audit) in this thread, with no HTTP, no worker and no CLI.
import { ProviderError, type ModelEvent, type ModelRequest, type ProviderAdapter } from '../src/providers/types.js';
import type { ToolCall } from '../src/contract/tool.js';
import type { Usage } from '../src/contract/usage.js';
import { emptyUsage } from '../src/contract/usage-sum.js';

export type ScriptedTurn =
  /** An answer: text (streamed in `chunks` deltas), tool calls, and the usage reported at the end. */
  | { text?: string; toolCalls?: Omit<ToolCall, 'id'>[]; usage?: Partial<Usage> | null; chunks?: number; retries?: number }
  /** The request fails with this error (after `partialText` streamed, when given). */
  | { error: Error; partialText?: string }
  /** The model starts answering (`partialText`) and then waits until the request is aborted. */
  | { hang: true; partialText?: string; ignoreAbort?: boolean };

export interface RecordedRequest {
  request: ModelRequest;
  /** Whether this request's AbortSignal fired while the model was answering. */
  aborted: boolean;
}

export class ScriptedModel implements ProviderAdapter {
  readonly requests: RecordedRequest[] = [];
  private next = 0;
  /** Resolves when a request starts to hang (a test can cancel at that moment). */
  private hangWaiters: (() => void)[] = [];
  hanging = 0;

  constructor(private readonly script: ScriptedTurn[] | ((req: ModelRequest, n: number) => ScriptedTurn)) {}

  /** Waits until a request is hanging (started answering and waiting). */
  whenHanging(): Promise<void> {
    if (this.hanging > 0) return Promise.resolve();
    return new Promise((r) => this.hangWaiters.push(r));
  }

  private turn(req: ModelRequest): ScriptedTurn {
    const n = this.next++;
    if (typeof this.script === 'function') return this.script(req, n);
    const t = this.script[n];
    if (!t) throw new Error(`scripted model: no turn ${n + 1} scripted (the script has ${this.script.length})`);
    return t;
  }

  async *stream(req: ModelRequest): AsyncIterable<ModelEvent> {
    const rec: RecordedRequest = { request: structuredClone({ ...req, signal: undefined }), aborted: false };
    this.requests.push(rec);
    const onAbort = () => (rec.aborted = true);
    req.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const t = this.turn(req);
      if ('error' in t) {
        yield { type: 'stream_start' };
        if (t.partialText) yield { type: 'text_delta', text: t.partialText };
        throw t.error;
      }
      if ('hang' in t) {
        yield { type: 'stream_start' };
        if (t.partialText) yield { type: 'text_delta', text: t.partialText };
        this.hanging++;
        for (const w of this.hangWaiters.splice(0)) w();
        // A real adapter throws when its request is aborted; ignoreAbort plays a stuck one (for the hard kill).
        await new Promise<void>((resolve) => {
          if (t.ignoreAbort) return;
          if (req.signal?.aborted) resolve();
          req.signal?.addEventListener('abort', () => resolve(), { once: true });
        });
        this.hanging--;
        throw new ProviderError('aborted', 'request aborted', undefined, null, t.partialText ?? '');
      }
      for (let i = 1; i <= (t.retries ?? 0); i++) yield { type: 'retry', attempt: i, delayMs: 0, reason: 'scripted 529' };
      yield { type: 'stream_start' };
      const text = t.text ?? '';
      const chunks = Math.max(1, t.chunks ?? 1);
      const size = Math.ceil(text.length / chunks);
      for (let i = 0; i < text.length; i += size) yield { type: 'text_delta', text: text.slice(i, i + size) };
      const toolCalls: ToolCall[] = (t.toolCalls ?? []).map((c, i) => ({ id: `call_${this.requests.length}_${i}`, ...c }));
      for (const call of toolCalls) yield { type: 'tool_call', call };
      const usage = t.usage === null ? null : { ...emptyUsage(), input_tokens: 10, output_tokens: 5, ...t.usage };
      if (usage) yield { type: 'usage', usage };
      yield { type: 'done', stopReason: toolCalls.length ? 'tool_use' : 'end_turn', text, toolCalls, usage };
    } finally {
      req.signal?.removeEventListener('abort', onAbort);
    }
  }
}
