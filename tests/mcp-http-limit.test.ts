// The read limit of HTTP downstream MCP servers (src/tools/mcp-http-limit.ts): a JSON body or one SSE
// event over the limit errors the body; many small SSE events never add up to one.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { limitedFetch, MessageTooLargeError } from '../src/tools/mcp-http-limit.js';

/** A base fetch answering with `chunks` and `headers`. */
const answering = (chunks: string[], headers: Record<string, string>): typeof fetch => async () =>
  new Response(
    new ReadableStream({
      start(c) {
        for (const ch of chunks) c.enqueue(new TextEncoder().encode(ch));
        c.close();
      },
    }),
    { headers },
  );

const overs: [number, boolean][] = [];
const limit = { maxBytes: 1000, onOverLimit: (size: number, exact: boolean) => void overs.push([size, exact]) };

describe('limitedFetch', () => {
  it('passes a JSON body within the limit unchanged', async () => {
    const res = await limitedFetch(limit, answering(['{"a":', '"' + 'x'.repeat(900) + '"}'], { 'content-type': 'application/json' }))('http://x');
    assert.equal((await res.json()).a.length, 900);
  });

  it('errors a JSON body past the limit, and refuses a declared content-length over it before reading', async () => {
    overs.length = 0;
    const res = await limitedFetch(limit, answering(['x'.repeat(600), 'x'.repeat(600)], { 'content-type': 'application/json' }))('http://x');
    await assert.rejects(res.text(), (e: Error) => e instanceof MessageTooLargeError && /over the limit of 1000 bytes \(delegate\.tools\.mcpMaxMessageBytes\)/.test(e.message));
    const declared = await limitedFetch(limit, answering(['x'.repeat(5000)], { 'content-type': 'application/json', 'content-length': '5000' }))('http://x');
    await assert.rejects(declared.text(), /a message of 5000 bytes, over the limit of 1000 bytes/);
    assert.deepEqual(overs, [
      [1000, false],
      [5000, true],
    ]);
  });

  it('counts an SSE stream per event: many small events pass, one large event errors', async () => {
    const small = Array.from({ length: 50 }, (_, i) => `event: message\r\ndata: ${'y'.repeat(100)}${i}\r\n\r\n`);
    const ok = await limitedFetch(limit, answering(small, { 'content-type': 'text/event-stream' }))('http://x');
    assert.equal((await ok.text()).split('\r\n\r\n').length, 51);
    // One event split across chunks, its blank line never coming before the limit.
    const big = ['data: ', 'z'.repeat(700), '\n', 'data: ', 'z'.repeat(700), '\n\n'];
    const bad = await limitedFetch(limit, answering(big, { 'content-type': 'text/event-stream' }))('http://x');
    await assert.rejects(bad.text(), MessageTooLargeError);
  });
});
