// OpenAI Responses API adapter (streaming, function tools, stateless: store=false).

import OpenAI from 'openai';
import type {
  FunctionTool,
  ResponseCreateParamsStreaming,
  ResponseInputItem,
  ResponseStreamEvent,
  ResponseUsage,
} from 'openai/resources/responses/responses';
import { StreamDriver, sdkClientOptions, kindForErrorType, missingKey, openAIUsage, parseToolArguments } from './shared.js';
import { ProviderError, type ModelEvent, type ModelRequest, type ProviderAdapter } from './types.js';
import type { ProviderEndpoint } from '../contract/endpoint.js';
import type { Message, StopReason } from '../contract/message.js';
import type { ToolCall } from '../contract/tool.js';
import type { Usage } from '../contract/usage.js';

export class OpenAIResponsesAdapter implements ProviderAdapter {
  constructor(private readonly endpoint: ProviderEndpoint) {}

  // One client per adapter (adapters are cached per endpoint), reused by every call (see sdkClientOptions).
  private cachedClient?: OpenAI;

  private client(): OpenAI {
    return (this.cachedClient ??= new OpenAI(sdkClientOptions(this.endpoint)));
  }

  async *stream(request: ModelRequest): AsyncGenerator<ModelEvent, void, undefined> {
    const driver = new StreamDriver(this.endpoint, request.signal);
    const p = this.endpoint.provider;
    let usage: Usage | null = null;
    let text = '';
    try {
      if (!this.endpoint.apiKey) throw missingKey(this.endpoint);
      const client = this.client();
      const params = toResponsesParams(request);
      const stream = yield* driver.open(() => client.responses.create(params, { signal: driver.signal, fetchOptions: driver.fetchOptions }));

      const toolCalls: ToolCall[] = [];
      const argBuffers = new Map<number, string>(); // by output_index
      let started = false;
      let refused = false;
      let finished: { stopReason: StopReason } | null = null;
      let responseModel: string | undefined;

      for await (const event of driver.iterate<ResponseStreamEvent>(stream)) {
        if (!started && (event.type === 'response.output_item.added' || event.type === 'response.output_text.delta')) {
          started = true;
          yield { type: 'stream_start' };
        }
        switch (event.type) {
          case 'response.output_item.added':
            if (event.item.type === 'function_call') argBuffers.set(event.output_index, event.item.arguments ?? '');
            break;
          case 'response.output_text.delta':
            text += event.delta;
            yield { type: 'text_delta', text: event.delta };
            break;
          case 'response.refusal.delta':
            refused = true;
            text += event.delta;
            yield { type: 'text_delta', text: event.delta };
            break;
          case 'response.function_call_arguments.delta':
            argBuffers.set(event.output_index, (argBuffers.get(event.output_index) ?? '') + event.delta);
            break;
          case 'response.function_call_arguments.done':
            argBuffers.set(event.output_index, event.arguments);
            break;
          case 'response.output_item.done':
            if (event.item.type === 'function_call') {
              // The finished item carries the complete arguments; the buffer covers servers that omit them.
              const args = event.item.arguments || argBuffers.get(event.output_index) || '';
              argBuffers.delete(event.output_index);
              const call: ToolCall = { id: event.item.call_id, name: event.item.name, ...parseToolArguments(args) };
              toolCalls.push(call);
              yield { type: 'tool_call', call };
            }
            break;
          case 'response.completed':
            usage = fromResponsesUsage(event.response.usage) ?? usage;
            responseModel = event.response.model;
            finished = { stopReason: refused ? 'refusal' : toolCalls.length ? 'tool_use' : 'end_turn' };
            break;
          case 'response.incomplete': {
            usage = fromResponsesUsage(event.response.usage) ?? usage;
            const reason = event.response.incomplete_details?.reason;
            finished = {
              stopReason: reason === 'max_output_tokens' ? 'max_tokens' : reason === 'content_filter' ? 'refusal' : 'other',
            };
            break;
          }
          case 'response.failed': {
            usage = fromResponsesUsage(event.response.usage) ?? usage;
            const e = event.response.error;
            const code = e?.code ?? 'unknown';
            throw new ProviderError(kindForErrorType(code), `${p}: response failed (${code}): ${e?.message ?? 'no error message'}`);
          }
          case 'error':
            throw new ProviderError(
              kindForErrorType(event.code ?? ''),
              `${p}: error event in stream${event.code ? ` (${event.code})` : ''}: ${event.message}`,
            );
        }
      }

      if (!finished) throw new ProviderError('network', `${p}: stream ended before response.completed (connection closed early)`);
      if (usage) yield { type: 'usage', usage };
      yield { type: 'done', stopReason: finished.stopReason, text, toolCalls, usage, model: responseModel };
    } catch (err) {
      throw driver.toProviderError(err, usage, text);
    } finally {
      driver.dispose();
    }
  }
}

function toResponsesParams(req: ModelRequest): ResponseCreateParamsStreaming {
  const params: ResponseCreateParamsStreaming = {
    model: req.model,
    input: toResponsesInput(req.messages),
    max_output_tokens: req.maxOutputTokens,
    store: false, // we resend the whole conversation each turn; nothing to keep server-side
    stream: true,
  };
  if (req.system) params.instructions = req.system;
  if (req.temperature !== undefined) params.temperature = req.temperature;
  if (req.responseFormat) {
    const f = req.responseFormat;
    params.text = { format: { type: 'json_schema', name: f.name, schema: f.schema, strict: f.strict } };
  }
  if (req.tools.length) {
    params.tools = req.tools.map(
      (t): FunctionTool => ({
        type: 'function',
        name: t.name,
        description: t.description,
        parameters: t.inputSchema,
        strict: false, // strict mode needs every property required; our schemas have optional ones
      }),
    );
  }
  return params;
}

export function toResponsesInput(messages: Message[]): ResponseInputItem[] {
  const items: ResponseInputItem[] = [];
  for (const m of messages) {
    if (m.role === 'user') {
      items.push({ type: 'message', role: 'user', content: m.content });
    } else if (m.role === 'assistant') {
      if (m.text) items.push({ type: 'message', role: 'assistant', content: m.text });
      for (const c of m.toolCalls) {
        items.push({ type: 'function_call', call_id: c.id, name: c.name, arguments: JSON.stringify(c.arguments) });
      }
    } else {
      for (const r of m.results) {
        // The wire format has no error flag, so say it in the output the model reads.
        items.push({ type: 'function_call_output', call_id: r.callId, output: r.isError ? `[tool error] ${r.content}` : r.content });
      }
    }
  }
  return items;
}

function fromResponsesUsage(u: ResponseUsage | null | undefined): Usage | null {
  if (!u) return null;
  return openAIUsage(
    u.input_tokens ?? 0,
    u.input_tokens_details?.cached_tokens ?? 0,
    u.input_tokens_details?.cache_write_tokens ?? 0,
    u.output_tokens ?? 0,
  );
}
