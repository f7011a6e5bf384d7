// Plumbing shared by the three adapters: abort/idle-timeout handling around an SDK stream,
// surfacing the SDKs' built-in retries as `retry` events, and SDK error → ProviderError mapping.

import {
  APIConnectionError as AnthropicConnectionError,
  APIConnectionTimeoutError as AnthropicConnectionTimeoutError,
  APIError as AnthropicAPIError,
  APIUserAbortError as AnthropicUserAbortError,
} from '@anthropic-ai/sdk';
import {
  APIConnectionError as OpenAIConnectionError,
  APIConnectionTimeoutError as OpenAIConnectionTimeoutError,
  APIError as OpenAIAPIError,
  APIUserAbortError as OpenAIUserAbortError,
} from 'openai';
import { ProviderError, type ModelEvent, type ProviderErrorKind } from './types.js';
import type { ProviderEndpoint } from '../contract/endpoint.js';
import type { ToolCall } from '../contract/tool.js';
import type { Usage } from '../contract/usage.js';
import { errorMessage, describeCause } from '../describe-cause.js';
import { httpFetch } from './http-fetch.js';

/** Thrown internally when our own controller fires; mapped to 'aborted' or 'timeout' by flags. */
class StreamStopped extends Error {}

/** Key under which a call's driver rides in the SDK request's fetchOptions (spread into fetch's init). */
const DRIVER_KEY = Symbol('delegate-mcp stream driver');

/**
 * `fetch` for a long-lived SDK client: one client per endpoint is reused by every call (building one
 * per call cost ~0.2 ms of CPU), and each call passes its driver in `fetchOptions`, so its attempts and
 * the SDK's retries still reach that call's driver. (AsyncLocalStorage would do the same, but its
 * promise hooks tax every promise in the worker.)
 */
export const routedFetch = (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
  const driver = (init as Record<symbol, StreamDriver | undefined> | undefined)?.[DRIVER_KEY];
  return driver ? driver.fetch(input, init) : httpFetch(input, init);
};

/**
 * Options for an endpoint's SDK client: Anthropic's and OpenAI's clients take the same names. An undefined
 * baseURL lets the SDK read ANTHROPIC_BASE_URL / OPENAI_BASE_URL itself.
 */
export function sdkClientOptions(e: ProviderEndpoint) {
  return { apiKey: e.apiKey, baseURL: e.baseURL, defaultHeaders: e.headers, maxRetries: e.maxRetries, timeout: e.requestTimeoutMs, fetch: routedFetch };
}

/** One request header, without copying them all into a new Headers (the SDKs pass a Headers). */
function headerValue(headers: HeadersInit | undefined, name: string): string | null {
  if (!headers) return null;
  if (headers instanceof Headers) return headers.get(name);
  return new Headers(headers).get(name);
}

/**
 * One per `stream()` call. Owns the AbortController handed to the SDK (linked to the caller's
 * signal), the stream-idle timer, and a queue of retry events reported by `fetch`.
 */
export class StreamDriver {
  private readonly controller = new AbortController();
  private readonly stopped: Promise<never>;
  private readonly unlinkUserSignal: () => void;
  private idleTimer: NodeJS.Timeout | undefined;
  private idleFired = false;
  private retries = 0;
  /** The SDK stream ended normally (its body was read to the end). */
  private drained = false;
  private readonly pending: ModelEvent[] = [];
  private wake: (() => void) | null = null;

  constructor(
    private readonly endpoint: ProviderEndpoint,
    private readonly userSignal: AbortSignal | undefined,
  ) {
    this.stopped = new Promise<never>((_, reject) => {
      this.controller.signal.addEventListener('abort', () => reject(new StreamStopped()), { once: true });
    });
    this.stopped.catch(() => {}); // only observed through Promise.race
    const onUserAbort = () => this.controller.abort(userSignal?.reason);
    userSignal?.addEventListener('abort', onUserAbort, { once: true });
    this.unlinkUserSignal = () => userSignal?.removeEventListener('abort', onUserAbort);
  }

  /** Pass as the SDK request's `fetchOptions`: it routes the SDK's fetch calls to this driver. */
  get fetchOptions(): Record<string, never> {
    // Typed empty for the SDKs: the driver rides under a symbol key they spread without reading.
    return { [DRIVER_KEY]: this } as unknown as Record<string, never>;
  }

  /** Pass as the SDK request's `signal`. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get provider(): string {
    return this.endpoint.provider;
  }

  throwIfAborted(): void {
    if (this.userSignal?.aborted) throw this.abortedError(null, '');
  }

  /**
   * `fetch` for the SDK client. The SDK retries internally (honouring retry-after); we only watch
   * each attempt so the agent loop can see that a retry is coming and why.
   */
  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const attempt = Number(headerValue(init?.headers, 'x-stainless-retry-count') ?? '0') || 0;
    const willRetry = attempt < this.endpoint.maxRetries;
    let response: Response;
    try {
      response = await httpFetch(input, init);
    } catch (err) {
      if (willRetry && !this.controller.signal.aborted) {
        // The SDK aborts its own fetch when `timeout` elapses; anything else is a connection failure.
        const reason = isAbortLike(err)
          ? `request timed out after ${this.endpoint.requestTimeoutMs}ms`
          : `connection error: ${describeCause(err)}`;
        this.noteRetry(attempt, defaultBackoffMs(attempt), reason);
      }
      throw err;
    }
    if (!response.ok && willRetry && sdkWillRetry(response)) {
      this.noteRetry(attempt, retryDelayMs(response.headers, attempt), `HTTP ${response.status}${statusHint(response.status)}`);
    }
    return response;
  };

  private noteRetry(attempt: number, delayMs: number, reason: string): void {
    this.retries++;
    this.pending.push({ type: 'retry', attempt: attempt + 1, delayMs: Math.round(delayMs), reason });
    this.wake?.();
  }

  /**
   * Await the SDK's request promise (which resolves once response headers arrive, after any
   * retries), yielding `retry` events meanwhile. Returns early with an error on abort, because
   * the openai SDK's retry sleep ignores the signal.
   */
  async *open<T>(start: () => Promise<T>): AsyncGenerator<ModelEvent, T, undefined> {
    this.throwIfAborted();
    let result: { value: T } | undefined;
    const settled = start().then((value) => {
      result = { value };
    });
    settled.catch(() => {}); // may be abandoned on abort; the error is then irrelevant
    for (;;) {
      while (this.pending.length) yield this.pending.shift()!;
      if (result) return result.value;
      const woken = new Promise<void>((resolve) => (this.wake = resolve));
      await Promise.race([settled, woken, this.stopped]);
      this.wake = null;
    }
  }

  /** Iterate an SDK stream; the idle timer runs only while we wait for the next event. */
  async *iterate<T>(stream: AsyncIterable<T>): AsyncGenerator<T, void, undefined> {
    const it = stream[Symbol.asyncIterator]();
    for (;;) {
      this.armIdle();
      const next = it.next();
      next.catch(() => {}); // observed through the race below; an abandoned next() after a stop is irrelevant
      let r: IteratorResult<T>;
      try {
        r = await Promise.race([next, this.stopped]);
      } finally {
        this.disarmIdle();
      }
      if (r.done) break;
      yield r.value;
    }
    // The SDKs end iteration silently when their signal aborts, so check why we stopped.
    if (this.controller.signal.aborted) throw new StreamStopped();
    this.drained = true;
  }

  // One timer per stream, refreshed per event (a new Timeout for every SSE event cost more than the
  // event). It only counts while we wait: fired while the consumer holds an event, it re-arms.
  private waiting = false;

  private armIdle(): void {
    const ms = this.endpoint.streamIdleTimeoutMs;
    if (!(ms > 0) || !Number.isFinite(ms)) return;
    this.waiting = true;
    if (this.idleTimer) {
      this.idleTimer.refresh();
      return;
    }
    this.idleTimer = setTimeout(() => {
      if (!this.waiting) return void this.idleTimer?.refresh();
      this.idleFired = true;
      this.controller.abort();
    }, ms);
  }

  private disarmIdle(): void {
    this.waiting = false;
  }

  /** Always call in `finally`: releases the HTTP request if the consumer stopped early. */
  dispose(): void {
    this.waiting = false;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.unlinkUserSignal();
    // A stream read to its end has released its connection already; aborting it anyway would only
    // cost an AbortError and a StreamStopped (two stack traces) on every call.
    if (!this.drained) this.controller.abort();
  }

  private abortedError(partialUsage: Usage | null, partialText: string): ProviderError {
    const reason = this.userSignal?.reason;
    let detail = '';
    if (typeof reason === 'string' && reason) detail = `: ${reason}`;
    else if (reason instanceof Error && reason.name !== 'AbortError' && reason.message) detail = `: ${reason.message}`;
    return new ProviderError('aborted', `${this.provider}: request aborted${detail}`, undefined, partialUsage, partialText);
  }

  /** Map anything thrown while streaming to a ProviderError carrying what was received so far. */
  toProviderError(err: unknown, partialUsage: Usage | null, partialText: string): ProviderError {
    const p = this.provider;
    if (err instanceof ProviderError) {
      if (err.partialUsage !== undefined || err.partialText !== undefined) return err;
      return new ProviderError(err.kind, err.message, err.status, partialUsage, partialText);
    }
    const make = (kind: ProviderErrorKind, message: string, status?: number) =>
      new ProviderError(kind, message, status, partialUsage, partialText);
    // Our own flags first: after an abort the SDK may surface it as almost any error class.
    if (this.userSignal?.aborted) return this.abortedError(partialUsage, partialText);
    if (this.idleFired) {
      return make('timeout', `no data from ${p} for ${secondsLabel(this.endpoint.streamIdleTimeoutMs)} (stream idle timeout)`);
    }
    const after = this.retries ? ` (after ${this.retries} ${this.retries === 1 ? 'retry' : 'retries'})` : '';
    if (err instanceof StreamStopped || err instanceof AnthropicUserAbortError || err instanceof OpenAIUserAbortError) {
      return make('aborted', `${p}: request aborted`);
    }
    if (err instanceof AnthropicConnectionTimeoutError || err instanceof OpenAIConnectionTimeoutError) {
      return make('timeout', `${p}: no response within ${this.endpoint.requestTimeoutMs}ms (request timeout)${after}`);
    }
    if (err instanceof AnthropicConnectionError || err instanceof OpenAIConnectionError) {
      return make('network', `${p}: cannot reach ${this.baseURLForMessages()}: ${describeCause(err)}${after}`);
    }
    if (err instanceof AnthropicAPIError || err instanceof OpenAIAPIError) {
      const { label, message } = serverError(err.error, err.message);
      if (typeof err.status === 'number') {
        return make(kindForStatus(err.status), `${p}: HTTP ${err.status}${label ? ` ${label}` : ''}: ${message}${after}`, err.status);
      }
      // No status: an error event inside an otherwise successful (200) stream.
      return make(kindForErrorType(label), `${p}: error event in stream${label ? ` (${label})` : ''}: ${message}`);
    }
    if (err instanceof SyntaxError) return make('protocol', `${p}: malformed data in stream: ${err.message}`);
    if (isNetworkError(err)) return make('network', `${p}: connection lost mid-stream: ${describeCause(err)}`);
    const msg = errorMessage(err);
    return make('protocol', `${p}: unexpected error while streaming: ${msg}`);
  }

  private baseURLForMessages(): string {
    return this.endpoint.baseURL ?? `the ${this.provider} API`;
  }
}

// ---------- retries ----------

function sdkWillRetry(res: Response): boolean {
  // Mirrors the SDKs' shouldRetry().
  const header = res.headers.get('x-should-retry');
  if (header === 'true') return true;
  if (header === 'false') return false;
  return res.status === 408 || res.status === 409 || res.status === 429 || res.status >= 500;
}

function statusHint(status: number): string {
  if (status === 429) return ' (rate limited)';
  if (status === 529) return ' (overloaded)';
  if (status >= 500) return ' (server error)';
  return '';
}

/** The SDKs' default backoff without jitter (jitter only shortens it). */
function defaultBackoffMs(attempt: number): number {
  return Math.min(0.5 * 2 ** attempt, 8) * 1000;
}

function retryDelayMs(headers: Headers, attempt: number): number {
  const ms = parseFloat(headers.get('retry-after-ms') ?? '');
  if (ms > 0) return ms;
  const after = headers.get('retry-after');
  if (after) {
    const secs = parseFloat(after);
    const fromHeader = Number.isNaN(secs) ? Date.parse(after) - Date.now() : secs * 1000;
    if (fromHeader > 0) return fromHeader;
  }
  return defaultBackoffMs(attempt);
}

// ---------- error helpers ----------

function kindForStatus(status: number): ProviderErrorKind {
  if (status === 401 || status === 403) return 'auth';
  if (status === 429) return 'rate_limit';
  if (status === 408) return 'timeout';
  if (status === 409 || status >= 500) return 'server';
  if (status >= 400) return 'bad_request';
  return 'protocol';
}

export function kindForErrorType(type: string): ProviderErrorKind {
  if (/rate_limit/i.test(type)) return 'rate_limit';
  if (/auth|permission|api_key/i.test(type)) return 'auth';
  if (/invalid_request|not_found|too_large|context_length|bad_request/i.test(type)) return 'bad_request';
  return 'server'; // overloaded_error, api_error, server_error, unknown
}

/**
 * Pull `type`/`code` and `message` out of an error body. Anthropic's APIError.error is the whole
 * body `{type:'error', error:{type,message}}`; OpenAI's is already the inner `{message,type,code}`.
 */
function serverError(body: unknown, fallback: string): { label: string; message: string } {
  const inner =
    body && typeof body === 'object' && 'error' in body && body.error && typeof body.error === 'object'
      ? (body.error as Record<string, unknown>)
      : (body as Record<string, unknown> | undefined);
  const str = (v: unknown) => (typeof v === 'string' && v ? v : undefined);
  const label = str(inner?.code) ?? str(inner?.type) ?? '';
  let message = str(inner?.message);
  if (!message) {
    // Non-JSON bodies (proxies, HTML error pages) only survive in the SDK's message: "<status> <text>".
    message = body !== undefined && body !== null ? JSON.stringify(body) : fallback.replace(/^\d{3} /, '');
  }
  return { label, message: truncate(message, 500) };
}

function truncate(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

function isAbortLike(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { name?: unknown }).name === 'AbortError';
}

function isNetworkError(err: unknown): boolean {
  for (let e: any = err, depth = 0; e && depth < 5; e = e.cause, depth++) {
    if (typeof e.code === 'string' && /^(E[A-Z]+|UND_ERR_\w+)$/.test(e.code)) return true;
    if (e instanceof TypeError && /terminated|fetch failed|socket|network/i.test(e.message)) return true;
  }
  return false;
}

// ---------- small shared mappers ----------

/** Checked before any request; the orchestrator prefixes the agent name. */
export function missingKey(endpoint: ProviderEndpoint): ProviderError {
  const p = endpoint.provider;
  const where = `set it in the environment or in mcp.json delegate.providers.${p}.apiKey`;
  const message = endpoint.apiKeyEnv
    ? `${p}: ${endpoint.apiKeyEnv} is not set (${where})`
    : `${p}: no API key configured (${where})`;
  return new ProviderError('auth', message);
}

/** Streamed tool-call arguments → object; invalid JSON becomes `{}` plus parseError, per the contract. */
export function parseToolArguments(json: string): Pick<ToolCall, 'arguments' | 'parseError'> {
  if (!json.trim()) return { arguments: {} };
  try {
    const value: unknown = JSON.parse(json);
    if (value && typeof value === 'object' && !Array.isArray(value)) return { arguments: value as Record<string, unknown> };
    return { arguments: {}, parseError: `tool arguments must be a JSON object, got ${Array.isArray(value) ? 'an array' : typeof value}` };
  } catch (err) {
    return { arguments: {}, parseError: `invalid JSON in tool arguments: ${errorMessage(err)}` };
  }
}

/** OpenAI counts cached (and cache-written) tokens inside the input total; we report them apart. */
export function openAIUsage(inputTotal: number, cached: number, cacheWrite: number, output: number): Usage {
  return {
    input_tokens: Math.max(0, inputTotal - cached - cacheWrite),
    output_tokens: output,
    cache_read_input_tokens: cached,
    cache_creation_input_tokens: cacheWrite,
  };
}

export function secondsLabel(ms: number): string {
  return `${+(ms / 1000).toFixed(1)}s`;
}
