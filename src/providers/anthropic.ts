// Anthropic Messages API adapter (streaming).

import Anthropic from '@anthropic-ai/sdk';
import type {
  ContentBlockParam,
  MessageCreateParamsStreaming,
  MessageDeltaUsage,
  MessageParam,
  RawMessageStreamEvent,
  StopReason as AnthropicStopReason,
  Tool,
  Usage as AnthropicUsage,
} from '@anthropic-ai/sdk/resources/messages';
import { StreamDriver, sdkClientOptions, missingKey, parseToolArguments } from './shared.js';
import { ProviderError, type ModelEvent, type ModelRequest, type ProviderAdapter } from './types.js';
import type { ProviderEndpoint } from '../contract/endpoint.js';
import type { Message, StopReason } from '../contract/message.js';
import type { ToolCall } from '../contract/tool.js';
import type { Usage } from '../contract/usage.js';
import { emptyUsage } from '../contract/usage-sum.js';

export class AnthropicAdapter implements ProviderAdapter {
  constructor(private readonly endpoint: ProviderEndpoint) {}

  // One client per adapter (adapters are cached per endpoint), reused by every call (see sdkClientOptions).
  private cachedClient?: Anthropic;

  private client(): Anthropic {
    // The SDK's own OpenTelemetry tracing is off: a worker thread registers no tracer (the server traces
    // model calls on the main thread, from what the loop reports), so it only ever made no-op spans,
    // which cost ~0.1 ms of CPU per request (span attributes, headers rebuilt, contexts).
    return (this.cachedClient ??= new Anthropic({ ...sdkClientOptions(this.endpoint), openTelemetry: false }));
  }

  async *stream(request: ModelRequest): AsyncGenerator<ModelEvent, void, undefined> {
    const driver = new StreamDriver(this.endpoint, request.signal);
    let usage: Usage | null = null;
    let text = '';
    try {
      if (!this.endpoint.apiKey) throw missingKey(this.endpoint);
      const client = this.client();
      const params = toAnthropicParams(request);
      const stream = yield* driver.open(() => client.messages.create(params, { signal: driver.signal, fetchOptions: driver.fetchOptions }));

      const toolCalls: ToolCall[] = [];
      const blocks = new Map<number, { id: string; name: string; json: string }>();
      let started = false;
      let stopReason: AnthropicStopReason | null = null;
      let sawStop = false;
      // message_start's usage counts the input and ONE output token: only a message_delta's is final.
      let sawFinalUsage = false;
      let responseModel: string | undefined;

      for await (const event of driver.iterate<RawMessageStreamEvent>(stream)) {
        switch (event.type) {
          case 'message_start':
            usage = fromStartUsage(event.message.usage);
            responseModel = event.message.model;
            break;
          case 'content_block_start':
            if (!started) {
              started = true;
              yield { type: 'stream_start' };
            }
            if (event.content_block.type === 'tool_use') {
              blocks.set(event.index, { id: event.content_block.id, name: event.content_block.name, json: '' });
            } else if (event.content_block.type === 'text' && event.content_block.text) {
              text += event.content_block.text;
              yield { type: 'text_delta', text: event.content_block.text };
            }
            break;
          case 'content_block_delta':
            if (event.delta.type === 'text_delta') {
              text += event.delta.text;
              yield { type: 'text_delta', text: event.delta.text };
            } else if (event.delta.type === 'input_json_delta') {
              const block = blocks.get(event.index);
              if (block) block.json += event.delta.partial_json;
            }
            break;
          case 'content_block_stop': {
            const block = blocks.get(event.index);
            if (block) {
              blocks.delete(event.index);
              const call: ToolCall = { id: block.id, name: block.name, ...parseToolArguments(block.json) };
              toolCalls.push(call);
              yield { type: 'tool_call', call };
            }
            break;
          }
          case 'message_delta':
            if (event.delta.stop_reason) stopReason = event.delta.stop_reason;
            // Usage here is cumulative for the whole message: overwrite, never add.
            if (event.usage) {
              usage = mergeDeltaUsage(usage, event.usage);
              sawFinalUsage = true;
            }
            break;
          case 'message_stop':
            sawStop = true;
            break;
        }
      }

      if (!sawStop) {
        throw new ProviderError('network', `${this.endpoint.provider}: stream ended before message_stop (connection closed early)`);
      }
      if (usage) yield { type: 'usage', usage };
      yield { type: 'done', stopReason: mapStopReason(stopReason, toolCalls.length > 0), text, toolCalls, usage, ...(usage && !sawFinalUsage ? { usagePartial: true } : {}), model: responseModel };
    } catch (err) {
      throw driver.toProviderError(err, usage, text);
    } finally {
      driver.dispose();
    }
  }
}

function toAnthropicParams(req: ModelRequest): MessageCreateParamsStreaming {
  const params: MessageCreateParamsStreaming = {
    model: req.model,
    max_tokens: req.maxOutputTokens,
    messages: toAnthropicMessages(req.messages),
    stream: true,
  };
  if (req.system) params.system = req.system;
  if (req.responseFormat) params.output_config = { format: { type: 'json_schema', schema: req.responseFormat.schema } };
  // No temperature: SDK 1.x sends anthropic-version 2026-10-21, which rejects temperature/top_p/top_k
  // with a 400 (even 1.0), and the SDK types no longer have them. Agents' temperature is ignored here.
  if (req.tools.length) {
    params.tools = req.tools.map(
      (t): Tool => ({
        name: t.name,
        description: t.description,
        input_schema: { ...t.inputSchema, type: 'object' },
      }),
    );
  }
  return params;
}

export function toAnthropicMessages(messages: Message[]): MessageParam[] {
  const out: MessageParam[] = [];
  // Consecutive user-side turns (tool results followed by a user note) are merged into one
  // user message; tool_result blocks then come first, as the API requires.
  const pushUser = (blocks: ContentBlockParam[]) => {
    const last = out[out.length - 1];
    if (last && last.role === 'user') {
      const prev: ContentBlockParam[] =
        typeof last.content === 'string' ? [{ type: 'text', text: last.content }] : [...(last.content as ContentBlockParam[])];
      last.content = [...prev, ...blocks];
    } else {
      out.push({ role: 'user', content: blocks });
    }
  };
  for (const m of messages) {
    if (m.role === 'user') {
      pushUser([{ type: 'text', text: m.content || '(empty message)' }]);
    } else if (m.role === 'assistant') {
      const content: ContentBlockParam[] = [];
      if (m.text) content.push({ type: 'text', text: m.text });
      for (const c of m.toolCalls) content.push({ type: 'tool_use', id: c.id, name: c.name, input: c.arguments });
      if (content.length) out.push({ role: 'assistant', content }); // the API rejects empty assistant turns
    } else {
      pushUser(
        m.results.map((r) => ({
          type: 'tool_result' as const,
          tool_use_id: r.callId,
          // An error result must carry some text.
          content: r.content || (r.isError ? '(tool failed without a message)' : ''),
          is_error: r.isError,
        })),
      );
    }
  }
  // Collapse single-text user messages back to plain strings: smaller and easier to read in logs.
  for (const m of out) {
    if (m.role === 'user' && Array.isArray(m.content) && m.content.length === 1 && m.content[0].type === 'text') {
      m.content = m.content[0].text;
    }
  }
  return out;
}

function fromStartUsage(u: AnthropicUsage): Usage {
  return {
    input_tokens: u.input_tokens ?? 0,
    output_tokens: u.output_tokens ?? 0,
    cache_read_input_tokens: u.cache_read_input_tokens ?? 0,
    cache_creation_input_tokens: u.cache_creation_input_tokens ?? 0,
  };
}

function mergeDeltaUsage(prev: Usage | null, u: MessageDeltaUsage): Usage {
  const base = prev ?? emptyUsage();
  return {
    input_tokens: u.input_tokens ?? base.input_tokens,
    output_tokens: u.output_tokens ?? base.output_tokens,
    cache_read_input_tokens: u.cache_read_input_tokens ?? base.cache_read_input_tokens,
    cache_creation_input_tokens: u.cache_creation_input_tokens ?? base.cache_creation_input_tokens,
  };
}

function mapStopReason(r: AnthropicStopReason | null, hasToolCalls: boolean): StopReason {
  switch (r) {
    case 'end_turn':
    case 'tool_use':
    case 'max_tokens':
    case 'stop_sequence':
    case 'refusal':
      return r;
    case 'model_context_window_exceeded':
      return 'max_tokens';
    case null:
      return hasToolCalls ? 'tool_use' : 'end_turn';
    default:
      return 'other'; // pause_turn and future values
  }
}
