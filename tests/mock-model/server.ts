// A local HTTP server that speaks the three model wire formats (Anthropic Messages, OpenAI
// Responses, OpenAI Chat Completions) closely enough for the REAL SDK clients to parse it.
//
// Point the SDKs at it with baseURL = mock.url (Anthropic) or `${mock.url}/v1` (OpenAI), or via
// ANTHROPIC_BASE_URL / OPENAI_BASE_URL for a server under test running in a child process.
//
// The default handler answers "mock answer to: <last user text>", and can be driven from the
// prompt alone (useful across processes):
//   - `[[tool:NAME {"json":"args"}]]` in the latest user text → the model calls tool NAME with those
//     arguments (several directives → several parallel calls; the JSON is optional → `{}`);
//   - when the latest message carries tool results → text "done: " + their contents joined by "\n".

import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type MockApi = 'anthropic' | 'openai-responses' | 'openai-chat';

export interface MockToolResult {
  name?: string;
  callId: string;
  content: string;
  /** Anthropic: `is_error`. OpenAI wire formats have no flag: true when content starts with "[tool error]". */
  isError?: boolean;
}

export interface MockRequestInfo {
  api: MockApi;
  model: string;
  body: any;
  headers: Record<string, string | string[] | undefined>;
  system: string;
  /** Text of the latest user message that has text (tool-result-only messages are skipped). */
  lastUserText: string;
  /** Tool results in the LATEST message (Anthropic) / trailing items (Responses) / trailing tool messages (Chat). */
  toolResults: MockToolResult[];
  /** Names of the tools offered. */
  toolNames: string[];
  /** Number of messages (Anthropic, Chat incl. system) or input items (Responses). */
  messageCount: number;
  /** Text of the first user message (the task; a repair turn's latest text is the repair request). */
  firstUserText: string;
  /** Structured output asked for: Anthropic output_config.format, Responses text.format, Chat response_format. */
  responseFormat?: { schema: any; name?: string; strict?: boolean };
}

export interface MockReply {
  text?: string;
  toolCalls?: { name: string; arguments: Record<string, unknown>; id?: string }[];
  /** Our normalised meaning: input_tokens is UNcached input; the mock adds cache counts into OpenAI totals. */
  usage?: { input_tokens?: number; output_tokens?: number; cache_read?: number; cache_write?: number };
  /** Before the first byte (on top of the server-wide latencyMs). */
  delayMs?: number;
  /** Between SSE events. */
  chunkDelayMs?: number;
  /** Reply with this HTTP error in the API's own error shape. */
  error?: { status: number; message?: string; retryAfterS?: number };
  /** Close the socket mid-stream after this many SSE events (0 = right after the headers). */
  dropAfterEvents?: number;
  /** Send the response headers, then nothing for this long, then continue. */
  hangMs?: number;
  /** Chat only: leave out the usage chunk even when include_usage is asked for (some servers do). */
  noUsage?: boolean;
  /** Anthropic only: usage only in message_start (1 output token); message_delta carries none. */
  startUsageOnly?: boolean;
}

export type MockHandler = (req: MockRequestInfo) => MockReply | Promise<MockReply>;

export interface MockModel {
  /** http://127.0.0.1:PORT (no /v1). */
  url: string;
  requests: MockRequestInfo[];
  inFlight: number;
  maxInFlight: number;
  /** Requests whose client disconnected before the response finished (not counting dropAfterEvents). */
  closedEarly: number;
  /** Calls to /v1/messages/count_tokens (not recorded in `requests`). */
  countTokensCalls: number;
  onClosedEarly(cb: (req: MockRequestInfo) => void): void;
  /** Replace the handler; `undefined` restores the default one. */
  setHandler(h: MockHandler | undefined): void;
  /** Default handler, and clears requests and counters. */
  reset(): void;
  close(): Promise<void>;
}

const DIRECTIVE = /\[\[tool:([A-Za-z0-9_.:-]+)(?:\s+(\{[\s\S]*?\}))?\s*\]\]/g;

const JSON_DIRECTIVE = /\[\[json (\{[\s\S]*?\})\]\]/;
const REPAIR_DIRECTIVE = /\[\[repair (\{[\s\S]*?\})\]\]/;

/**
 * A structured-output request (a response format was sent) is answered with JSON: `[[json {...}]]` in
 * the task gives the first answer verbatim (valid or not); on a repair turn (the latest user text asks
 * for a correction) `[[repair {...}]]` gives the corrected one, else the first answer again; with no
 * directive, {"answer": "mock answer to: <task>"}.
 */
function structuredAnswer(req: MockRequestInfo): string {
  const repairing = req.lastUserText !== req.firstUserText && /does not match the required JSON Schema/.test(req.lastUserText);
  const repair = REPAIR_DIRECTIVE.exec(req.firstUserText);
  if (repairing && repair) return repair[1];
  const first = JSON_DIRECTIVE.exec(req.firstUserText);
  return first ? first[1] : JSON.stringify({ answer: `mock answer to: ${req.firstUserText}` });
}

export const defaultHandler: MockHandler = (req) => {
  if (req.toolResults.length) return { text: 'done: ' + req.toolResults.map((r) => r.content).join('\n') };
  if (req.responseFormat && !DIRECTIVE.test(req.lastUserText)) return { text: structuredAnswer(req) };
  DIRECTIVE.lastIndex = 0;
  const toolCalls: NonNullable<MockReply['toolCalls']> = [];
  for (const m of req.lastUserText.matchAll(DIRECTIVE)) {
    try {
      toolCalls.push({ name: m[1], arguments: m[2] ? JSON.parse(m[2]) : {} });
    } catch (err) {
      return { text: `mock: invalid JSON in directive for tool ${m[1]}: ${(err as Error).message}` };
    }
  }
  if (toolCalls.length) return { toolCalls };
  return { text: `mock answer to: ${req.lastUserText}` };
};

export async function startMockModel(opts: {
  handler?: MockHandler;
  latencyMs?: number;
  /** How long an idle keep-alive connection stays open (Node's default: 5 s). */
  keepAliveTimeoutMs?: number;
} = {}): Promise<MockModel> {
  let handler: MockHandler = opts.handler ?? defaultHandler;
  const closedEarlyCallbacks: ((req: MockRequestInfo) => void)[] = [];
  let ids = 0;
  const nextId = () => (++ids).toString().padStart(4, '0');

  const model: MockModel = {
    url: '',
    requests: [],
    inFlight: 0,
    maxInFlight: 0,
    closedEarly: 0,
    countTokensCalls: 0,
    onClosedEarly: (cb) => void closedEarlyCallbacks.push(cb),
    setHandler: (h) => {
      handler = h ?? defaultHandler;
    },
    reset: () => {
      handler = opts.handler ?? defaultHandler;
      model.requests.length = 0;
      model.maxInFlight = model.inFlight;
      model.closedEarly = 0;
      model.countTokensCalls = 0;
    },
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://mock').pathname.replace(/\/+$/, '');
    const api: MockApi | 'count_tokens' | null =
      req.method !== 'POST' ? null
      : path === '/v1/messages' ? 'anthropic'
      : path === '/v1/messages/count_tokens' ? 'count_tokens'
      : path === '/v1/responses' ? 'openai-responses'
      : path === '/v1/chat/completions' ? 'openai-chat'
      : null;
    if (!api) {
      sendJson(res, 404, { error: { message: `mock model: no route for ${req.method} ${path}`, type: 'not_found_error' } });
      return;
    }
    let body: any;
    try {
      body = JSON.parse(await readBody(req));
    } catch (err) {
      const message = `mock model: request body is not JSON: ${(err as Error).message}`;
      sendJson(res, 400, api === 'anthropic' || api === 'count_tokens' ? anthropicError(400, message) : openAIError(400, message));
      return;
    }
    if (api === 'count_tokens') {
      model.countTokensCalls++;
      sendJson(res, 200, { input_tokens: estimateTokens(JSON.stringify(body.messages ?? []) + systemText(body.system)) });
      return;
    }

    const info = describeRequest(api, body, req.headers);
    model.requests.push(info);
    model.inFlight++;
    model.maxInFlight = Math.max(model.maxInFlight, model.inFlight);
    let dropped = false;
    let isClosed = false;
    const closed = new Promise<void>((resolve) =>
      res.on('close', () => {
        isClosed = true;
        model.inFlight--;
        if (!res.writableFinished && !dropped) {
          model.closedEarly++;
          for (const cb of closedEarlyCallbacks) cb(info);
        }
        resolve();
      }),
    );
    const wait = (ms: number) => sleep(ms, closed);

    let reply: MockReply;
    try {
      reply = await handler(info);
    } catch (err) {
      reply = { error: { status: 500, message: `mock handler threw: ${(err as Error).message}` } };
    }
    await wait((opts.latencyMs ?? 0) + (reply.delayMs ?? 0));
    if (isClosed) return;

    if (reply.error) {
      const { status, message = `mock error ${reply.error.status}`, retryAfterS } = reply.error;
      const headers: Record<string, string> = {};
      if (retryAfterS !== undefined) headers['retry-after'] = String(retryAfterS);
      sendJson(res, status, api === 'anthropic' ? anthropicError(status, message) : openAIError(status, message), headers);
      return;
    }

    const plan = planReply(api, info, reply, nextId);
    if (!body.stream) {
      if (reply.hangMs) await wait(reply.hangMs);
      if (isClosed) return;
      if (reply.dropAfterEvents !== undefined) {
        dropped = true;
        res.socket?.destroy();
        return;
      }
      sendJson(res, 200, plan.json, requestIdHeader(api, plan.id));
      return;
    }

    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      ...requestIdHeader(api, plan.id),
    });
    res.flushHeaders();
    if (reply.hangMs) await wait(reply.hangMs);
    let sent = 0;
    for (const ev of plan.events) {
      if (isClosed) return;
      if (sent > 0 && reply.chunkDelayMs) {
        await wait(reply.chunkDelayMs);
        if (isClosed) return;
      }
      if (reply.dropAfterEvents !== undefined && sent >= reply.dropAfterEvents) {
        dropped = true;
        // Flush what was written, then cut the connection without ending the chunked body.
        res.socket?.destroySoon();
        return;
      }
      res.write(`${ev.event ? `event: ${ev.event}\n` : ''}data: ${typeof ev.data === 'string' ? ev.data : JSON.stringify(ev.data)}\n\n`);
      sent++;
    }
    if (!isClosed) res.end();
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      if (!res.headersSent) sendJson(res, 500, { error: { message: `mock model crashed: ${(err as Error).stack}` } });
      else res.destroy();
    });
  });
  if (opts.keepAliveTimeoutMs !== undefined) server.keepAliveTimeout = opts.keepAliveTimeoutMs;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  model.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return model;
}

// ---------- request parsing ----------

function describeRequest(api: MockApi, body: any, headers: http.IncomingHttpHeaders): MockRequestInfo {
  const base = { api, model: String(body.model ?? ''), body, headers: { ...headers } };
  if (api === 'anthropic') {
    const messages: any[] = Array.isArray(body.messages) ? body.messages : [];
    const toolNames = new Map<string, string>();
    for (const m of messages) {
      if (m.role === 'assistant' && Array.isArray(m.content)) {
        for (const b of m.content) if (b.type === 'tool_use') toolNames.set(b.id, b.name);
      }
    }
    const last = messages[messages.length - 1];
    const toolResults: MockToolResult[] =
      last?.role === 'user' && Array.isArray(last.content)
        ? last.content
            .filter((b: any) => b.type === 'tool_result')
            .map((b: any) => ({ name: toolNames.get(b.tool_use_id), callId: b.tool_use_id, content: contentText(b.content), isError: b.is_error }))
        : [];
    return {
      ...base,
      system: systemText(body.system),
      lastUserText: lastText(messages.filter((m) => m.role === 'user').map((m) => m.content)),
      firstUserText: firstText(messages.filter((m) => m.role === 'user').map((m) => m.content)),
      toolResults,
      toolNames: (body.tools ?? []).map((t: any) => t.name),
      messageCount: messages.length,
      ...(body.output_config?.format?.type === 'json_schema' && { responseFormat: { schema: body.output_config.format.schema } }),
    };
  }
  if (api === 'openai-responses') {
    const items: any[] = typeof body.input === 'string' ? [{ type: 'message', role: 'user', content: body.input }] : (body.input ?? []);
    const isMessage = (i: any) => i.type === 'message' || (i.type === undefined && 'role' in i);
    const names = new Map<string, string>(items.filter((i) => i.type === 'function_call').map((i) => [i.call_id, i.name]));
    const toolResults: MockToolResult[] = [];
    for (let i = items.length - 1; i >= 0 && items[i].type === 'function_call_output'; i--) {
      const content = contentText(items[i].output);
      toolResults.unshift({ name: names.get(items[i].call_id), callId: items[i].call_id, content, isError: content.startsWith('[tool error]') });
    }
    const system = [body.instructions ?? '', ...items.filter((i) => isMessage(i) && (i.role === 'system' || i.role === 'developer')).map((i) => contentText(i.content))]
      .filter(Boolean)
      .join('\n');
    return {
      ...base,
      system,
      lastUserText: lastText(items.filter((i) => isMessage(i) && i.role === 'user').map((i) => i.content)),
      firstUserText: firstText(items.filter((i) => isMessage(i) && i.role === 'user').map((i) => i.content)),
      toolResults,
      toolNames: (body.tools ?? []).filter((t: any) => t.type === 'function').map((t: any) => t.name),
      messageCount: items.length,
      ...(body.text?.format?.type === 'json_schema' && {
        responseFormat: { schema: body.text.format.schema, name: body.text.format.name, strict: body.text.format.strict },
      }),
    };
  }
  const messages: any[] = body.messages ?? [];
  const names = new Map<string, string>();
  for (const m of messages) for (const c of m.tool_calls ?? []) names.set(c.id, c.function?.name);
  const toolResults: MockToolResult[] = [];
  for (let i = messages.length - 1; i >= 0 && messages[i].role === 'tool'; i--) {
    const content = contentText(messages[i].content);
    toolResults.unshift({ name: names.get(messages[i].tool_call_id), callId: messages[i].tool_call_id, content, isError: content.startsWith('[tool error]') });
  }
  return {
    ...base,
    system: messages.filter((m) => m.role === 'system' || m.role === 'developer').map((m) => contentText(m.content)).join('\n'),
    lastUserText: lastText(messages.filter((m) => m.role === 'user').map((m) => m.content)),
    firstUserText: firstText(messages.filter((m) => m.role === 'user').map((m) => m.content)),
    toolResults,
    toolNames: (body.tools ?? []).map((t: any) => t.function?.name ?? t.name),
    messageCount: messages.length,
    ...(body.response_format?.type === 'json_schema' && {
      responseFormat: { schema: body.response_format.json_schema?.schema, name: body.response_format.json_schema?.name, strict: body.response_format.json_schema?.strict },
    }),
  };
}

/** Text of a string or an array of content parts (text / input_text / output_text). */
function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .filter((p: any) => typeof p?.text === 'string' && (p.type === 'text' || p.type === 'input_text' || p.type === 'output_text'))
    .map((p: any) => p.text)
    .join('');
}

function lastText(contents: unknown[]): string {
  for (let i = contents.length - 1; i >= 0; i--) {
    const t = contentText(contents[i]);
    if (t) return t;
  }
  return '';
}

function firstText(contents: unknown[]): string {
  for (const c of contents) {
    const t = contentText(c);
    if (t) return t;
  }
  return '';
}

function systemText(system: unknown): string {
  return typeof system === 'string' ? system : contentText(system);
}

const estimateTokens = (s: string) => Math.max(1, Math.ceil(s.length / 4));

// ---------- reply planning ----------

interface SseEvent {
  event: string | null;
  data: unknown;
}

interface Plan {
  id: string;
  events: SseEvent[];
  json: unknown;
}

function planReply(api: MockApi, info: MockRequestInfo, reply: MockReply, nextId: () => string): Plan {
  const text = reply.text ?? '';
  const calls = (reply.toolCalls ?? []).map((c) => ({
    id: c.id ?? (api === 'anthropic' ? `toolu_mock_${nextId()}` : `call_mock_${nextId()}`),
    name: c.name,
    args: JSON.stringify(c.arguments ?? {}),
  }));
  const promptChars = JSON.stringify(info.body.messages ?? info.body.input ?? '') + info.system;
  const u = {
    input: reply.usage?.input_tokens ?? estimateTokens(promptChars),
    output: reply.usage?.output_tokens ?? estimateTokens(text + calls.map((c) => c.name + c.args).join('')),
    cacheRead: reply.usage?.cache_read ?? 0,
    cacheWrite: reply.usage?.cache_write ?? 0,
  };
  const model = info.model;
  const id = nextId();
  if (api === 'anthropic') return planAnthropic(`msg_mock_${id}`, model, text, calls, u, reply.startUsageOnly === true);
  if (api === 'openai-responses') return planResponses(`resp_mock_${id}`, info, text, calls, u);
  return planChat(`chatcmpl-mock-${id}`, model, text, calls, u, !!info.body.stream_options?.include_usage && !reply.noUsage);
}

type Call = { id: string; name: string; args: string };
type U = { input: number; output: number; cacheRead: number; cacheWrite: number };

function chunks(s: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < s.length; i += size) out.push(s.slice(i, i + size));
  return out;
}

function planAnthropic(id: string, model: string, text: string, calls: Call[], u: U, startUsageOnly = false): Plan {
  const usage = { input_tokens: u.input, cache_creation_input_tokens: u.cacheWrite, cache_read_input_tokens: u.cacheRead };
  const stopReason = calls.length ? 'tool_use' : 'end_turn';
  const content: any[] = [];
  if (text || !calls.length) content.push({ type: 'text', text });
  for (const c of calls) content.push({ type: 'tool_use', id: c.id, name: c.name, input: JSON.parse(c.args) });

  const ev = (data: any): SseEvent => ({ event: data.type, data });
  const events: SseEvent[] = [
    // message_start carries input + cache counts and a tiny output count; message_delta repeats them
    // CUMULATIVELY with the final output count, as the real API does.
    ev({ type: 'message_start', message: { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } }),
  ];
  content.forEach((block, index) => {
    if (block.type === 'text') {
      events.push(ev({ type: 'content_block_start', index, content_block: { type: 'text', text: '' } }));
      for (const piece of chunks(block.text, 12)) events.push(ev({ type: 'content_block_delta', index, delta: { type: 'text_delta', text: piece } }));
    } else {
      events.push(ev({ type: 'content_block_start', index, content_block: { type: 'tool_use', id: block.id, name: block.name, input: {} } }));
      const args = calls.find((c) => c.id === block.id)!.args;
      for (const piece of chunks(args, Math.max(1, Math.ceil(args.length / 3)))) {
        events.push(ev({ type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: piece } }));
      }
    }
    events.push(ev({ type: 'content_block_stop', index }));
  });
  events.push(ev({ type: 'message_delta', delta: { stop_reason: stopReason, stop_sequence: null }, ...(startUsageOnly ? {} : { usage: { ...usage, output_tokens: u.output } }) }));
  events.push(ev({ type: 'message_stop' }));
  const json = { id, type: 'message', role: 'assistant', model, content, stop_reason: stopReason, stop_sequence: null, usage: { ...usage, output_tokens: u.output } };
  return { id, events, json };
}

function planResponses(id: string, info: MockRequestInfo, text: string, calls: Call[], u: U): Plan {
  const body = info.body;
  const response = (status: string, output: unknown[], usage: unknown) => ({
    id,
    object: 'response',
    created_at: Math.floor(Date.now() / 1000),
    status,
    error: null,
    incomplete_details: null,
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    model: info.model,
    output,
    parallel_tool_calls: true,
    previous_response_id: null,
    store: body.store ?? false,
    temperature: body.temperature ?? 1,
    tool_choice: body.tool_choice ?? 'auto',
    tools: body.tools ?? [],
    top_p: 1,
    truncation: 'disabled',
    usage,
    metadata: {},
  });
  const usage = {
    input_tokens: u.input + u.cacheRead + u.cacheWrite, // OpenAI totals include cached input
    input_tokens_details: { cached_tokens: u.cacheRead, ...(u.cacheWrite ? { cache_write_tokens: u.cacheWrite } : {}) },
    output_tokens: u.output,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: u.input + u.cacheRead + u.cacheWrite + u.output,
  };
  let seq = 0;
  const events: SseEvent[] = [];
  const ev = (data: any) => events.push({ event: data.type, data: { ...data, sequence_number: seq++ } });
  const output: any[] = [];

  ev({ type: 'response.created', response: response('in_progress', [], null) });
  ev({ type: 'response.in_progress', response: response('in_progress', [], null) });
  if (text || !calls.length) {
    const output_index = output.length;
    const item_id = `msg_${id}`;
    const done = { id: item_id, type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text, annotations: [], logprobs: [] }] };
    ev({ type: 'response.output_item.added', output_index, item: { ...done, status: 'in_progress', content: [] } });
    ev({ type: 'response.content_part.added', item_id, output_index, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } });
    for (const delta of chunks(text, 12)) ev({ type: 'response.output_text.delta', item_id, output_index, content_index: 0, delta, logprobs: [] });
    ev({ type: 'response.output_text.done', item_id, output_index, content_index: 0, text, logprobs: [] });
    ev({ type: 'response.content_part.done', item_id, output_index, content_index: 0, part: { type: 'output_text', text, annotations: [] } });
    ev({ type: 'response.output_item.done', output_index, item: done });
    output.push(done);
  }
  for (const c of calls) {
    const output_index = output.length;
    const item_id = `fc_${c.id}`;
    const done = { id: item_id, type: 'function_call', status: 'completed', call_id: c.id, name: c.name, arguments: c.args };
    ev({ type: 'response.output_item.added', output_index, item: { ...done, status: 'in_progress', arguments: '' } });
    for (const delta of chunks(c.args, Math.max(1, Math.ceil(c.args.length / 3)))) {
      ev({ type: 'response.function_call_arguments.delta', item_id, output_index, delta });
    }
    ev({ type: 'response.function_call_arguments.done', item_id, output_index, name: c.name, arguments: c.args });
    ev({ type: 'response.output_item.done', output_index, item: done });
    output.push(done);
  }
  const final = response('completed', output, usage);
  ev({ type: 'response.completed', response: final });
  return { id, events, json: { ...final, output_text: text } };
}

function planChat(id: string, model: string, text: string, calls: Call[], u: U, includeUsage: boolean): Plan {
  const created = Math.floor(Date.now() / 1000);
  const finish = calls.length ? 'tool_calls' : 'stop';
  const usage = {
    prompt_tokens: u.input + u.cacheRead + u.cacheWrite, // OpenAI totals include cached input
    completion_tokens: u.output,
    total_tokens: u.input + u.cacheRead + u.cacheWrite + u.output,
    prompt_tokens_details: { cached_tokens: u.cacheRead, ...(u.cacheWrite ? { cache_write_tokens: u.cacheWrite } : {}) },
    completion_tokens_details: { reasoning_tokens: 0 },
  };
  const events: SseEvent[] = [];
  const chunk = (delta: any, finish_reason: string | null = null) =>
    events.push({
      event: null,
      data: {
        id,
        object: 'chat.completion.chunk',
        created,
        model,
        system_fingerprint: null,
        choices: [{ index: 0, delta, logprobs: null, finish_reason }],
        ...(includeUsage ? { usage: null } : {}),
      },
    });
  chunk({ role: 'assistant', content: '' });
  for (const piece of chunks(text, 12)) chunk({ content: piece });
  calls.forEach((c, index) => {
    chunk({ tool_calls: [{ index, id: c.id, type: 'function', function: { name: c.name, arguments: '' } }] });
    for (const piece of chunks(c.args, Math.max(1, Math.ceil(c.args.length / 3)))) {
      chunk({ tool_calls: [{ index, function: { arguments: piece } }] });
    }
  });
  chunk({}, finish);
  if (includeUsage) {
    events.push({ event: null, data: { id, object: 'chat.completion.chunk', created, model, system_fingerprint: null, choices: [], usage } });
  }
  events.push({ event: null, data: '[DONE]' });
  const message = {
    role: 'assistant',
    content: text || null,
    refusal: null,
    ...(calls.length ? { tool_calls: calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.args } })) } : {}),
  };
  const json = { id, object: 'chat.completion', created, model, choices: [{ index: 0, message, logprobs: null, finish_reason: finish }], usage };
  return { id, events, json };
}

// ---------- errors & plumbing ----------

function anthropicError(status: number, message: string) {
  const type =
    status === 400 ? 'invalid_request_error'
    : status === 401 ? 'authentication_error'
    : status === 403 ? 'permission_error'
    : status === 404 ? 'not_found_error'
    : status === 413 ? 'request_too_large'
    : status === 429 ? 'rate_limit_error'
    : status === 529 ? 'overloaded_error'
    : 'api_error';
  return { type: 'error', error: { type, message }, request_id: `req_mock_${status}` };
}

function openAIError(status: number, message: string) {
  const [type, code] =
    status === 401 ? ['invalid_request_error', 'invalid_api_key']
    : status === 404 ? ['invalid_request_error', 'model_not_found']
    : status === 429 ? ['requests', 'rate_limit_exceeded']
    : status >= 500 ? ['server_error', null]
    : ['invalid_request_error', null];
  return { error: { message, type, param: null, code } };
}

function requestIdHeader(api: MockApi, id: string): Record<string, string> {
  return api === 'anthropic' ? { 'request-id': `req_${id}` } : { 'x-request-id': `req_${id}` };
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), ...headers });
  res.end(data);
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

/** Resolves after `ms`, or as soon as `cancel` settles (the client went away). */
function sleep(ms: number, cancel: Promise<void>): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))), cancel]).finally(() => clearTimeout(timer));
}
