// OpenAI Chat Completions adapter (streaming). Mostly for OpenAI-compatible servers
// (Ollama, vLLM, OpenRouter, ...), so it is lenient about what the stream contains.

import OpenAI from 'openai';
import type {
  ChatCompletionChunk,
  ChatCompletionCreateParamsStreaming,
  ChatCompletionFunctionTool,
  ChatCompletionMessageParam,
} from 'openai/resources/chat/completions';
import type { CompletionUsage } from 'openai/resources/completions';
import { StreamDriver, sdkClientOptions, missingKey, openAIUsage, parseToolArguments } from './shared.js';
import { ProviderError, type ModelEvent, type ModelRequest, type ProviderAdapter } from './types.js';
import type { ProviderEndpoint } from '../contract/endpoint.js';
import type { Message, StopReason } from '../contract/message.js';
import type { ToolCall } from '../contract/tool.js';
import type { Usage } from '../contract/usage.js';

export class OpenAIChatAdapter implements ProviderAdapter {
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
      const params = toChatParams(request, isOfficialOpenAI(this.endpoint.baseURL));
      const stream = yield* driver.open(() => client.chat.completions.create(params, { signal: driver.signal, fetchOptions: driver.fetchOptions }));

      const slots: { id: string; name: string; args: string }[] = [];
      const toolCalls: ToolCall[] = [];
      let started = false;
      let refused = false;
      let finishReason: string | null = null;
      let responseModel: string | undefined;

      for await (const chunk of driver.iterate<ChatCompletionChunk>(stream)) {
        // The usage chunk has empty `choices`; some servers put usage on the last content chunk instead.
        if (chunk.usage) usage = fromChatUsage(chunk.usage);
        if (chunk.model) responseModel = chunk.model;
        const choice = chunk.choices?.[0];
        if (!choice) continue;
        const delta = choice.delta ?? {};
        const hasContent = !!(delta.content || delta.refusal || delta.tool_calls?.length);
        if (!started && (hasContent || choice.finish_reason)) {
          started = true;
          yield { type: 'stream_start' };
        }
        if (delta.content) {
          text += delta.content;
          yield { type: 'text_delta', text: delta.content };
        }
        if (delta.refusal) {
          refused = true;
          text += delta.refusal;
          yield { type: 'text_delta', text: delta.refusal };
        }
        for (const frag of delta.tool_calls ?? []) {
          // Arguments arrive as fragments keyed by `index`; a few servers omit it, so fall back to ids.
          let index = typeof frag.index === 'number' ? frag.index : -1;
          if (index < 0) {
            const known = frag.id ? slots.findIndex((s) => s?.id === frag.id) : -1;
            index = known >= 0 ? known : frag.id ? slots.length : Math.max(0, slots.length - 1);
          }
          const slot = (slots[index] ??= { id: '', name: '', args: '' });
          if (frag.id) slot.id = frag.id;
          if (frag.function?.name && !slot.name) slot.name = frag.function.name;
          if (frag.function?.arguments) slot.args += frag.function.arguments;
        }
        if (choice.finish_reason && finishReason === null) {
          finishReason = choice.finish_reason;
          // Chat has no per-call "done" event: all calls are complete once the choice finishes.
          for (const [i, slot] of slots.entries()) {
            if (!slot) continue;
            const call: ToolCall = {
              id: slot.id || `call_${i}_${Date.now().toString(36)}`,
              name: slot.name,
              ...parseToolArguments(slot.args),
            };
            toolCalls.push(call);
            yield { type: 'tool_call', call };
          }
        }
      }

      if (finishReason === null) {
        throw new ProviderError('network', `${p}: stream ended before finish_reason (connection closed early)`);
      }
      // Servers that ignore stream_options.include_usage never send usage: report null, not zeros.
      if (usage) yield { type: 'usage', usage };
      yield { type: 'done', stopReason: mapFinishReason(finishReason, refused, toolCalls.length > 0), text, toolCalls, usage, model: responseModel };
    } catch (err) {
      throw driver.toProviderError(err, usage, text);
    } finally {
      driver.dispose();
    }
  }
}

/** api.openai.com rejects `max_tokens` for newer models; compatible servers often only know `max_tokens`. */
function isOfficialOpenAI(baseURL: string | undefined): boolean {
  const url = baseURL ?? process.env['OPENAI_BASE_URL'] ?? 'https://api.openai.com/v1';
  try {
    return new URL(url).hostname === 'api.openai.com';
  } catch {
    return false;
  }
}

function toChatParams(req: ModelRequest, official: boolean): ChatCompletionCreateParamsStreaming {
  const params: ChatCompletionCreateParamsStreaming = {
    model: req.model,
    messages: toChatMessages(req.system, req.messages),
    stream: true,
    stream_options: { include_usage: true },
  };
  if (official) params.max_completion_tokens = req.maxOutputTokens;
  else params.max_tokens = req.maxOutputTokens;
  if (req.temperature !== undefined) params.temperature = req.temperature;
  if (req.responseFormat) {
    const f = req.responseFormat;
    params.response_format = { type: 'json_schema', json_schema: { name: f.name, schema: f.schema, strict: f.strict } };
  }
  // Some compatible servers reject an empty `tools` array, so only send it when there are tools.
  if (req.tools.length) {
    params.tools = req.tools.map(
      (t): ChatCompletionFunctionTool => ({
        type: 'function',
        function: { name: t.name, description: t.description, parameters: t.inputSchema },
      }),
    );
  }
  return params;
}

export function toChatMessages(system: string, messages: Message[]): ChatCompletionMessageParam[] {
  const out: ChatCompletionMessageParam[] = [];
  if (system) out.push({ role: 'system', content: system });
  for (const m of messages) {
    if (m.role === 'user') {
      out.push({ role: 'user', content: m.content });
    } else if (m.role === 'assistant') {
      if (!m.text && !m.toolCalls.length) continue; // empty turns are rejected by several servers
      out.push({
        role: 'assistant',
        content: m.text || null,
        ...(m.toolCalls.length
          ? {
              tool_calls: m.toolCalls.map((c) => ({
                id: c.id,
                type: 'function' as const,
                function: { name: c.name, arguments: JSON.stringify(c.arguments) },
              })),
            }
          : {}),
      });
    } else {
      for (const r of m.results) {
        // No error flag on the wire, so say it in the content the model reads.
        out.push({ role: 'tool', tool_call_id: r.callId, content: r.isError ? `[tool error] ${r.content}` : r.content });
      }
    }
  }
  return out;
}

function fromChatUsage(u: CompletionUsage): Usage {
  return openAIUsage(
    u.prompt_tokens ?? 0,
    u.prompt_tokens_details?.cached_tokens ?? 0,
    u.prompt_tokens_details?.cache_write_tokens ?? 0,
    u.completion_tokens ?? 0,
  );
}

function mapFinishReason(reason: string, refused: boolean, hasToolCalls: boolean): StopReason {
  if (refused) return 'refusal';
  switch (reason) {
    case 'tool_calls':
    case 'function_call':
      return 'tool_use';
    case 'length':
      return 'max_tokens';
    case 'content_filter':
      return 'refusal';
    case 'stop':
      // Some compatible servers report "stop" even when they emitted tool calls.
      return hasToolCalls ? 'tool_use' : 'end_turn';
    default:
      return hasToolCalls ? 'tool_use' : 'other';
  }
}
