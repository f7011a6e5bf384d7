// The one normalised shape every provider adapter speaks. The agent loop only sees these types;
// wire formats (Anthropic Messages, OpenAI Responses, OpenAI Chat Completions) stay inside adapters.
// The vocabulary shared with the rest of the server (messages, tools, usage, endpoints) is in src/contract/.
import type { ProviderEndpoint } from '../contract/endpoint.js';
import type { JsonSchema } from '../contract/json-schema.js';
import type { Message, StopReason } from '../contract/message.js';
import type { ToolCall, ToolSpec } from '../contract/tool.js';
import type { Usage } from '../contract/usage.js';

export interface ModelRequest {
  model: string; // provider-local model id, e.g. "claude-sonnet-4-5"
  system: string;
  messages: Message[];
  tools: ToolSpec[];
  maxOutputTokens: number;
  temperature?: number;
  signal?: AbortSignal;
  /**
   * The final answer must be JSON matching this schema (an agent's output_schema): sent as the API's
   * native structured output (Anthropic output_config.format, Responses text.format, Chat response_format).
   */
  responseFormat?: ResponseFormat;
}

export interface ResponseFormat {
  /** [A-Za-z0-9_-], at most 64: OpenAI requires a name. */
  name: string;
  schema: JsonSchema;
  /** OpenAI strict mode; only when the schema meets its rules (see strictCompatible in shared.ts). */
  strict: boolean;
}

/** Streamed events, in order; exactly one `done` or a thrown ProviderError ends the stream. */
export type ModelEvent =
  | { type: 'stream_start' }
  | { type: 'text_delta'; text: string }
  | { type: 'tool_call'; call: ToolCall }
  /** Final usage of this request, emitted once right before `done` (same value as done.usage). */
  | { type: 'usage'; usage: Usage }
  /** The SDK is about to retry (429/5xx/connection error); attempt 1 = first retry; may precede stream_start. */
  | { type: 'retry'; attempt: number; delayMs: number; reason: string }
  /**
   * `usagePartial`: the stream ended normally but its usage is not a final report (Anthropic sent usage
   * only in message_start, where output_tokens is 1): charge it like a stream cut short.
   */
  | { type: 'done'; stopReason: StopReason; text: string; toolCalls: ToolCall[]; usage: Usage | null; usagePartial?: boolean;
      /** The model that answered, as the API reports it. */
      model?: string };

export interface ProviderAdapter {
  stream(request: ModelRequest): AsyncIterable<ModelEvent>;
}

export type ProviderErrorKind =
  | 'auth' // 401/403, or missing key
  | 'rate_limit' // 429 after retries
  | 'server' // 5xx after retries
  | 'bad_request' // 400/404/422
  | 'network' // connection refused, DNS, reset
  | 'timeout' // request or stream-idle timeout
  | 'aborted' // our own AbortSignal fired
  | 'protocol'; // malformed stream

export class ProviderError extends Error {
  constructor(
    readonly kind: ProviderErrorKind,
    message: string,
    readonly status?: number,
    /** Usage seen on the stream before it failed, if any (budget charging needs it). */
    readonly partialUsage?: Usage | null,
    /** Output text streamed before it failed. */
    readonly partialText?: string,
  ) {
    super(message);
    this.name = 'ProviderError';
  }
}
