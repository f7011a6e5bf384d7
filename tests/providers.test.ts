// Provider adapters driven through the REAL SDKs against the local mock model server.
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { createAdapter } from '../src/providers/index.js';
import { parseModelRef } from '../src/config/model-ref.js';
import { AnthropicAdapter } from '../src/providers/anthropic.js';
import { ProviderError, type ModelEvent, type ModelRequest } from '../src/providers/types.js';
import type { ProviderEndpoint, WireApi } from '../src/contract/endpoint.js';
import type { Message } from '../src/contract/message.js';
import { startMockModel, type MockModel } from './mock-model/server.js';

const APIS: { api: WireApi; provider: string; keyEnv: string }[] = [
  { api: 'anthropic', provider: 'anthropic', keyEnv: 'ANTHROPIC_API_KEY' },
  { api: 'openai-responses', provider: 'openai', keyEnv: 'OPENAI_API_KEY' },
  { api: 'openai-chat', provider: 'openai-chat', keyEnv: 'OPENAI_API_KEY' },
];

let mock: MockModel;
before(async () => {
  mock = await startMockModel();
});
after(async () => {
  await mock.close();
});
beforeEach(() => mock.reset());

function endpoint(api: WireApi, over: Partial<ProviderEndpoint> = {}): ProviderEndpoint {
  const { provider, keyEnv } = APIS.find((a) => a.api === api)!;
  return {
    provider,
    wireApi: api,
    // Anthropic's SDK appends /v1/messages; OpenAI's baseURL conventionally ends in /v1.
    baseURL: api === 'anthropic' ? mock.url : `${mock.url}/v1`,
    apiKey: 'test-key',
    apiKeyEnv: keyEnv,
    maxRetries: 0,
    requestTimeoutMs: 5000,
    streamIdleTimeoutMs: 5000,
    ...over,
  };
}

function request(over: Partial<ModelRequest> = {}): ModelRequest {
  return {
    model: 'test-model-1',
    system: 'You are a test.',
    messages: [{ role: 'user', content: 'hello' }],
    tools: [],
    maxOutputTokens: 256,
    ...over,
  };
}

const READ_FILE = {
  name: 'read_file',
  description: 'Read a file',
  inputSchema: { type: 'object', properties: { path: { type: 'string' } }, required: ['path'] },
};

async function collect(ep: ProviderEndpoint, req: ModelRequest): Promise<ModelEvent[]> {
  const events: ModelEvent[] = [];
  for await (const e of createAdapter(ep).stream(req)) events.push(e);
  return events;
}

function done(events: ModelEvent[]) {
  const last = events[events.length - 1];
  assert.equal(last?.type, 'done', `last event should be done: ${JSON.stringify(events)}`);
  return last as Extract<ModelEvent, { type: 'done' }>;
}

async function rejectsWith(p: Promise<unknown>, check: (e: ProviderError) => void): Promise<ProviderError> {
  let caught: unknown;
  await assert.rejects(p, (e) => {
    caught = e;
    return true;
  });
  assert.ok(caught instanceof ProviderError, `expected ProviderError, got ${String(caught)}`);
  check(caught);
  return caught;
}

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

for (const { api, provider, keyEnv } of APIS) {
  describe(`${api} adapter`, () => {
    it('streams a plain text answer', async () => {
      const events = await collect(endpoint(api), request());
      assert.equal(events[0].type, 'stream_start');
      const d = done(events);
      const streamed = events.flatMap((e) => (e.type === 'text_delta' ? [e.text] : [])).join('');
      assert.equal(streamed, 'mock answer to: hello');
      assert.equal(d.text, 'mock answer to: hello');
      assert.equal(d.stopReason, 'end_turn');
      assert.deepEqual(d.toolCalls, []);
      assert.ok(d.usage && d.usage.input_tokens > 0 && d.usage.output_tokens > 0);

      const r = mock.requests[0];
      assert.equal(r.api, api);
      assert.equal(r.model, 'test-model-1');
      assert.equal(r.system, 'You are a test.');
      assert.equal(r.body.stream, true);
      if (api === 'anthropic') {
        assert.equal(r.body.max_tokens, 256);
        // The pinned SDK (1.x) sends the key as a bearer token.
        assert.equal(r.headers['authorization'], 'Bearer test-key');
      }
      if (api === 'openai-responses') {
        assert.equal(r.body.store, false);
        assert.equal(r.body.max_output_tokens, 256);
        assert.equal(r.body.instructions, 'You are a test.');
      }
      if (api !== 'anthropic') assert.equal(r.headers['authorization'], 'Bearer test-key');
      if (api === 'openai-chat') {
        assert.deepEqual(r.body.stream_options, { include_usage: true });
        assert.equal(r.body.max_tokens, 256);
        assert.equal(r.body.tools, undefined, 'no empty tools array');
      }
    });

    it('a tool call turn, then an answer turn that uses the tool result', async () => {
      const first = await collect(
        endpoint(api),
        request({ tools: [READ_FILE], messages: [{ role: 'user', content: 'look [[tool:read_file {"path":"a.txt"}]]' }] }),
      );
      const d1 = done(first);
      assert.equal(d1.stopReason, 'tool_use');
      assert.equal(d1.toolCalls.length, 1);
      const call = d1.toolCalls[0];
      assert.equal(call.name, 'read_file');
      assert.deepEqual(call.arguments, { path: 'a.txt' });
      assert.equal(call.parseError, undefined);
      assert.ok(call.id.length > 0);
      const toolEvents = first.filter((e) => e.type === 'tool_call');
      assert.deepEqual(toolEvents, [{ type: 'tool_call', call }]);
      assert.deepEqual(mock.requests[0].toolNames, ['read_file']);

      const messages: Message[] = [
        { role: 'user', content: 'look [[tool:read_file {"path":"a.txt"}]]' },
        { role: 'assistant', text: 'let me look', toolCalls: [call] },
        { role: 'tool', results: [{ callId: call.id, name: 'read_file', content: 'FILE-CONTENTS-42', isError: false }] },
      ];
      const second = await collect(endpoint(api), request({ tools: [READ_FILE], messages }));
      const d2 = done(second);
      assert.equal(d2.text, 'done: FILE-CONTENTS-42');
      assert.equal(d2.stopReason, 'end_turn');

      const r = mock.requests[1];
      assert.deepEqual(r.toolResults, [{ name: 'read_file', callId: call.id, content: 'FILE-CONTENTS-42', isError: false }]);
      // The exact wire shape each API expects.
      if (api === 'anthropic') {
        assert.deepEqual(r.body.messages[1], {
          role: 'assistant',
          content: [
            { type: 'text', text: 'let me look' },
            { type: 'tool_use', id: call.id, name: 'read_file', input: { path: 'a.txt' } },
          ],
        });
        assert.deepEqual(r.body.messages[2], {
          role: 'user',
          content: [{ type: 'tool_result', tool_use_id: call.id, content: 'FILE-CONTENTS-42', is_error: false }],
        });
        assert.deepEqual(r.body.tools[0].input_schema, READ_FILE.inputSchema);
      } else if (api === 'openai-responses') {
        assert.deepEqual(r.body.input.slice(1), [
          { type: 'message', role: 'assistant', content: 'let me look' },
          { type: 'function_call', call_id: call.id, name: 'read_file', arguments: '{"path":"a.txt"}' },
          { type: 'function_call_output', call_id: call.id, output: 'FILE-CONTENTS-42' },
        ]);
        assert.deepEqual(r.body.tools[0], { type: 'function', name: 'read_file', description: 'Read a file', parameters: READ_FILE.inputSchema, strict: false });
      } else {
        assert.deepEqual(r.body.messages.slice(2), [
          {
            role: 'assistant',
            content: 'let me look',
            tool_calls: [{ id: call.id, type: 'function', function: { name: 'read_file', arguments: '{"path":"a.txt"}' } }],
          },
          { role: 'tool', tool_call_id: call.id, content: 'FILE-CONTENTS-42' },
        ]);
        assert.equal(r.body.tools[0].function.name, 'read_file');
      }
    });

    it('marks failed tool results in the wire format', async () => {
      const messages: Message[] = [
        { role: 'user', content: 'go' },
        { role: 'assistant', text: '', toolCalls: [{ id: 'c1', name: 'read_file', arguments: { path: '/etc' } }] },
        { role: 'tool', results: [{ callId: 'c1', name: 'read_file', content: 'outside the workspace', isError: true }] },
      ];
      await collect(endpoint(api), request({ tools: [READ_FILE], messages }));
      const [res] = mock.requests[0].toolResults;
      assert.equal(res.isError, true);
      assert.equal(res.name, 'read_file');
      assert.match(res.content, /outside the workspace/);
    });

    it('several tool calls in one turn arrive in order with their own ids', async () => {
      const events = await collect(
        endpoint(api),
        request({ tools: [READ_FILE], messages: [{ role: 'user', content: '[[tool:read_file {"path":"a"}]] [[tool:read_file {"path":"b/c.ts","n":{"x":[1,2]}}]]' }] }),
      );
      const d = done(events);
      assert.deepEqual(d.toolCalls.map((c) => c.arguments), [{ path: 'a' }, { path: 'b/c.ts', n: { x: [1, 2] } }]);
      assert.notEqual(d.toolCalls[0].id, d.toolCalls[1].id);
    });

    it('maps usage including cache tokens (one usage event, equal to done.usage)', async () => {
      mock.setHandler(() => ({ text: 'cached', usage: { input_tokens: 100, output_tokens: 50, cache_read: 30, cache_write: 20 } }));
      const events = await collect(endpoint(api), request());
      const expected = { input_tokens: 100, output_tokens: 50, cache_read_input_tokens: 30, cache_creation_input_tokens: 20 };
      assert.deepEqual(done(events).usage, expected);
      const usageEvents = events.filter((e) => e.type === 'usage');
      assert.deepEqual(usageEvents, [{ type: 'usage', usage: expected }]);
    });

    it('retries a 429 honouring retry-after, reporting a retry event, then succeeds', async () => {
      mock.setHandler(() => (mock.requests.length === 1 ? { error: { status: 429, message: 'slow down', retryAfterS: 0.2 } } : { text: 'ok now' }));
      const t0 = Date.now();
      const events = await collect(endpoint(api, { maxRetries: 2 }), request());
      assert.ok(Date.now() - t0 >= 180, 'waited for retry-after');
      assert.equal(done(events).text, 'ok now');
      assert.equal(mock.requests.length, 2);
      const retries = events.filter((e) => e.type === 'retry');
      assert.equal(retries.length, 1);
      assert.deepEqual(retries[0], { type: 'retry', attempt: 1, delayMs: 200, reason: 'HTTP 429 (rate limited)' });
      assert.equal(events[0].type, 'retry', 'retry is reported before the stream starts');
    });

    it('a 500 that persists after retries is a server error with status and the server message', async () => {
      mock.setHandler(() => ({ error: { status: 500, message: 'mock overloaded', retryAfterS: 0.05 } }));
      const err = await rejectsWith(collect(endpoint(api, { maxRetries: 1 }), request()), (e) => {
        assert.equal(e.kind, 'server');
        assert.equal(e.status, 500);
      });
      assert.match(err.message, new RegExp(`^${provider}: HTTP 500 .*mock overloaded \\(after 1 retry\\)$`));
      assert.equal(mock.requests.length, 2);
    });

    it('non-retryable HTTP errors map to their kind without retrying', async () => {
      mock.setHandler(() => ({ error: { status: 401, message: 'bad key' } }));
      await rejectsWith(collect(endpoint(api, { maxRetries: 3 }), request()), (e) => {
        assert.equal(e.kind, 'auth');
        assert.equal(e.status, 401);
        assert.match(e.message, /bad key/);
      });
      mock.setHandler(() => ({ error: { status: 400, message: 'messages: field required' } }));
      await rejectsWith(collect(endpoint(api, { maxRetries: 3 }), request()), (e) => {
        assert.equal(e.kind, 'bad_request');
        assert.match(e.message, /HTTP 400 .*messages: field required/);
      });
      assert.equal(mock.requests.length, 2);
    });

    it('a missing API key is an auth error before any request', async () => {
      const ep = endpoint(api, { apiKey: undefined });
      const check = (e: ProviderError) => {
        assert.equal(e.kind, 'auth');
        assert.ok(
          e.message.startsWith(`${provider}: ${keyEnv} is not set (set it in the environment or in mcp.json delegate.providers.${provider}.apiKey)`),
          e.message,
        );
      };
      assert.throws(() => createAdapter(ep), (e) => (check(e as ProviderError), true));
      // Adapters built directly re-check on stream().
      if (api === 'anthropic') await rejectsWith(drain(new AnthropicAdapter(ep).stream(request())), check);
      assert.equal(mock.requests.length, 0);
    });

    it('aborting mid-stream throws aborted, keeps partial text, and closes the connection', async () => {
      mock.setHandler(() => ({ text: 'x'.repeat(600), chunkDelayMs: 15 }));
      const ac = new AbortController();
      const seen: ModelEvent[] = [];
      const err = await rejectsWith(
        (async () => {
          for await (const e of createAdapter(endpoint(api)).stream(request({ signal: ac.signal }))) {
            seen.push(e);
            if (e.type === 'text_delta') ac.abort();
          }
        })(),
        (e) => assert.equal(e.kind, 'aborted'),
      );
      assert.match(err.message, new RegExp(`^${provider}: request aborted`));
      assert.ok(err.partialText && err.partialText.length > 0 && err.partialText.length < 600);
      await until(() => mock.closedEarly === 1);
      assert.equal(mock.inFlight, 0);
    });

    it('aborting while waiting for the response (before any data) is prompt', async () => {
      mock.setHandler(() => ({ text: 'late', delayMs: 3000 }));
      const ac = new AbortController();
      setTimeout(() => ac.abort(new Error('budget exhausted')), 100);
      const t0 = Date.now();
      await rejectsWith(collect(endpoint(api), request({ signal: ac.signal })), (e) => {
        assert.equal(e.kind, 'aborted');
        assert.match(e.message, /request aborted: budget exhausted/);
      });
      assert.ok(Date.now() - t0 < 1500);
      await until(() => mock.closedEarly === 1);
    });

    it('an already-aborted signal makes no request', async () => {
      await rejectsWith(collect(endpoint(api), request({ signal: AbortSignal.abort() })), (e) => assert.equal(e.kind, 'aborted'));
      assert.equal(mock.requests.length, 0);
    });

    it('a stream that goes silent hits the stream-idle timeout', async () => {
      mock.setHandler(() => ({ text: 'never seen', hangMs: 5000 }));
      const t0 = Date.now();
      await rejectsWith(collect(endpoint(api, { streamIdleTimeoutMs: 300 }), request()), (e) => {
        assert.equal(e.kind, 'timeout');
        assert.equal(e.message, `no data from ${provider} for 0.3s (stream idle timeout)`);
      });
      assert.ok(Date.now() - t0 < 2000);
      await until(() => mock.closedEarly === 1); // the hung request was actually cancelled
    });

    it('a stream dropped midway is a network error carrying the partial text (and usage when known)', async () => {
      const full = 'The quick brown fox jumps over the lazy dog. '.repeat(4);
      mock.setHandler(() => ({ text: full, dropAfterEvents: 6 }));
      const err = await rejectsWith(collect(endpoint(api), request()), (e) => assert.equal(e.kind, 'network'));
      assert.match(err.message, new RegExp(`^${provider}: `));
      assert.ok(err.partialText && err.partialText.length > 0 && full.startsWith(err.partialText), err.partialText);
      if (api === 'anthropic') assert.ok(err.partialUsage && err.partialUsage.input_tokens > 0, 'message_start usage survives');
      else assert.equal(err.partialUsage, null);
    });

    it('no response within requestTimeoutMs is a timeout', async () => {
      mock.setHandler(() => ({ text: 'slow', delayMs: 2000 }));
      await rejectsWith(collect(endpoint(api, { requestTimeoutMs: 200 }), request()), (e) => {
        assert.equal(e.kind, 'timeout');
        assert.match(e.message, /no response within 200ms \(request timeout\)/);
      });
    });
  });
}

describe('connection failures and odd streams', () => {
  it('connection refused is a network error naming the endpoint and cause', async () => {
    const dead = await startMockModel();
    const url = dead.url;
    await dead.close();
    for (const { api } of APIS) {
      const base = api === 'anthropic' ? url : `${url}/v1`;
      await rejectsWith(collect(endpoint(api, { baseURL: base }), request()), (e) => {
        assert.equal(e.kind, 'network');
        assert.match(e.message, new RegExp(`cannot reach ${base.replace(/[./]/g, '\\$&')}: .*ECONNREFUSED`));
      });
    }
  });

  it('chat: a server that never sends usage yields usage: null; endpoint headers are sent', async () => {
    mock.setHandler(() => ({ text: 'no usage here', noUsage: true }));
    const events = await collect(endpoint('openai-chat', { headers: { 'x-test': '1' } }), request());
    assert.equal(done(events).text, 'no usage here');
    assert.equal(done(events).usage, null);
    assert.equal(events.filter((e) => e.type === 'usage').length, 0);
    assert.equal(mock.requests[0].headers['x-test'], '1');
  });

  it('an anthropic error event inside a 200 stream maps by its type', async () => {
    const http = await import('node:http');
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`event: message_start\ndata: ${JSON.stringify({ type: 'message_start', message: { id: 'm', type: 'message', role: 'assistant', model: 'x', content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 7, output_tokens: 1 } } })}\n\n`);
      res.end(`event: error\ndata: ${JSON.stringify({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } })}\n\n`);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as { port: number }).port;
      const err = await rejectsWith(collect(endpoint('anthropic', { baseURL: `http://127.0.0.1:${port}` }), request()), (e) => assert.equal(e.kind, 'server'));
      assert.equal(err.message, 'anthropic: error event in stream (overloaded_error): Overloaded');
      assert.equal(err.partialUsage?.input_tokens, 7);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it('without baseURL the SDKs read ANTHROPIC_BASE_URL / OPENAI_BASE_URL', async () => {
    const saved = { a: process.env.ANTHROPIC_BASE_URL, o: process.env.OPENAI_BASE_URL };
    process.env.ANTHROPIC_BASE_URL = mock.url;
    process.env.OPENAI_BASE_URL = `${mock.url}/v1`;
    try {
      for (const { api } of APIS) assert.equal(done(await collect(endpoint(api, { baseURL: undefined }), request())).text, 'mock answer to: hello');
      assert.deepEqual(mock.requests.map((r) => r.api), APIS.map((a) => a.api));
    } finally {
      for (const [k, v] of [['ANTHROPIC_BASE_URL', saved.a], ['OPENAI_BASE_URL', saved.o]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it('a consumer that stops iterating early releases the HTTP request', async () => {
    mock.setHandler(() => ({ text: 'y'.repeat(600), chunkDelayMs: 10 }));
    for (const { api } of APIS) {
      for await (const e of createAdapter(endpoint(api)).stream(request())) if (e.type === 'text_delta') break;
    }
    await until(() => mock.closedEarly === 3);
  });

  it('an unknown wireApi is rejected clearly', () => {
    assert.throws(() => createAdapter({ ...endpoint('anthropic'), wireApi: 'grpc' as WireApi }), /unknown wireApi "grpc"/);
  });
});

describe('mock model server', () => {
  it('serves non-streaming Anthropic JSON and count_tokens to the real SDK', async () => {
    const client = new Anthropic({ apiKey: 'k', baseURL: mock.url, maxRetries: 0 });
    const msg = await client.messages.create({ model: 'm', max_tokens: 10, messages: [{ role: 'user', content: 'ping' }] });
    assert.equal(msg.content[0].type === 'text' && msg.content[0].text, 'mock answer to: ping');
    assert.ok(msg.usage.input_tokens > 0);
    const count = await client.messages.countTokens({ model: 'm', messages: [{ role: 'user', content: 'abcdefgh' }] });
    assert.ok(count.input_tokens > 0);
    assert.equal(mock.countTokensCalls, 1);
    assert.equal(mock.requests.length, 1, 'count_tokens is not a model request');
  });

  it('tracks concurrency', async () => {
    mock.setHandler(() => ({ text: 'slow', delayMs: 150 }));
    await Promise.all([0, 1, 2].map(() => collect(endpoint('openai-chat'), request())));
    assert.equal(mock.maxInFlight, 3);
    assert.equal(mock.inFlight, 0);
  });
});

describe('parseModelRef', () => {
  it('splits at the first slash', () => {
    assert.deepEqual(parseModelRef('anthropic/claude-sonnet-4-5'), { provider: 'anthropic', model: 'claude-sonnet-4-5' });
    assert.deepEqual(parseModelRef('openrouter/meta-llama/llama-3-70b'), { provider: 'openrouter', model: 'meta-llama/llama-3-70b' });
  });
  it('rejects refs without a provider or model', () => {
    assert.throws(() => parseModelRef('claude-x'), /invalid model "claude-x": expected "<provider>\/<model>"/);
    assert.throws(() => parseModelRef('/claude-x'), /provider before "\/" is empty/);
    assert.throws(() => parseModelRef('anthropic/'), /model id after "anthropic\/" is empty/);
  });
});

async function drain(it: AsyncIterable<ModelEvent>): Promise<void> {
  for await (const _ of it);
}
