// Warm-up of a fresh worker thread, in the background as soon as it has loaded: one short canned stream
// through each provider adapter the configured agents use, served by a throw-away HTTP server on
// 127.0.0.1 inside this thread. It takes Node's HTTP client, its fetch classes (undici, loaded on first
// use), the SDK clients, their SSE parsers and our adapters through their first, slow, unoptimised run, so that the first
// real call does not pay it. No request leaves the machine. Loads the tokenizer too when a budget
// will need it.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdapter } from '../providers/index.js';
import type { ProviderEndpoint, WireApi } from '../contract/endpoint.js';
import type { WarmHint } from '../contract/worker-protocol.js';
import { loadTokenizer } from './tokens.js';


type Sse = { event?: string; data: unknown }[];

function canned(api: WireApi): Sse {
  const usage = { input_tokens: 8, output_tokens: 2 };
  if (api === 'anthropic') {
    return [
      { event: 'message_start', data: { type: 'message_start', message: { id: 'msg_warm', type: 'message', role: 'assistant', model: 'warm', content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } } },
      { event: 'content_block_start', data: { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } } },
      { event: 'content_block_delta', data: { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'warm' } } },
      { event: 'content_block_stop', data: { type: 'content_block_stop', index: 0 } },
      { event: 'message_delta', data: { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage } },
      { event: 'message_stop', data: { type: 'message_stop' } },
    ];
  }
  if (api === 'openai-responses') {
    const response = (status: string, output: unknown[], u: unknown) => ({ id: 'resp_warm', object: 'response', created_at: 0, status, model: 'warm', output, usage: u });
    const item = { id: 'msg_warm', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'warm', annotations: [] }] };
    const ev = (type: string, rest: object) => ({ event: type, data: { type, ...rest } });
    return [
      ev('response.created', { response: response('in_progress', [], null), sequence_number: 0 }),
      ev('response.output_item.added', { output_index: 0, item: { ...item, status: 'in_progress', content: [] }, sequence_number: 1 }),
      ev('response.output_text.delta', { item_id: 'msg_warm', output_index: 0, content_index: 0, delta: 'warm', sequence_number: 2 }),
      ev('response.output_item.done', { output_index: 0, item, sequence_number: 3 }),
      ev('response.completed', { response: response('completed', [item], { input_tokens: 8, output_tokens: 2, total_tokens: 10, input_tokens_details: { cached_tokens: 0 }, output_tokens_details: { reasoning_tokens: 0 } }), sequence_number: 4 }),
    ];
  }
  const chunk = (delta: object, finish: string | null, extra: object = {}) => ({
    data: { id: 'chatcmpl-warm', object: 'chat.completion.chunk', created: 0, model: 'warm', choices: [{ index: 0, delta, finish_reason: finish }], ...extra },
  });
  return [
    chunk({ role: 'assistant', content: 'warm' }, null),
    chunk({}, 'stop'),
    { data: { id: 'chatcmpl-warm', object: 'chat.completion.chunk', created: 0, model: 'warm', choices: [], usage: { prompt_tokens: 8, completion_tokens: 2, total_tokens: 10 } } },
    { data: '[DONE]' },
  ];
}

/** Loads Node's fetch implementation (undici), which Node loads on first touch of fetch's classes (the SDKs build Headers). */
export function preloadFetch(): void {
  void globalThis.Headers;
}

const PATHS: Record<string, WireApi> = { '/v1/messages': 'anthropic', '/v1/responses': 'openai-responses', '/v1/chat/completions': 'openai-chat' };

/**
 * `busy`: real runs are on this thread. The warm-up then stops between steps: a real call warms the
 * same code itself, and must not wait behind a canned one.
 */
export async function warmUp(hint: WarmHint, busy: () => boolean = () => false): Promise<void> {
  const tokenizer = hint.tokenizer ? loadTokenizer() : undefined;
  if (hint.wireApis.length && !busy()) {
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const api = PATHS[new URL(req.url ?? '/', 'http://warm').pathname];
        if (!api) return void res.writeHead(404).end();
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (const e of canned(api)) res.write(`${e.event ? `event: ${e.event}\n` : ''}data: ${typeof e.data === 'string' ? e.data : JSON.stringify(e.data)}\n\n`);
        res.end();
      });
    });
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      for (const wireApi of new Set(hint.wireApis)) {
        const endpoint: ProviderEndpoint = {
          provider: 'warm-up',
          wireApi,
          baseURL: wireApi === 'anthropic' ? base : `${base}/v1`,
          apiKey: 'warm-up',
          maxRetries: 0,
          requestTimeoutMs: 10_000,
          streamIdleTimeoutMs: 10_000,
        };
        // Once: a second pass was measured to add CPU before `tools/list` (the warm-up now runs while the
        // server starts) without making the first call faster (first call −12.9 vs −1.6 ms against the
        // bare server, server CPU to the first result 520 vs 540 ms; bench/probe.ts, 12 starts each).
        if (busy()) break;
        for await (const _ of createAdapter(endpoint).stream({ model: 'warm', system: 'warm', messages: [{ role: 'user', content: 'warm' }], tools: [], maxOutputTokens: 16 })) {
          // drained for its side effect: the code paths compiled
        }
      }
    } finally {
      server.closeAllConnections();
      server.close();
    }
  }
  await tokenizer;
}
