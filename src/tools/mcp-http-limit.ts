// The read limit for HTTP (`url`) downstream MCP servers. The stdio transport has a read buffer with a
// maximum size; the Streamable HTTP client transport reads whatever a server sends (`response.json()`
// of a JSON answer, an SSE stream's events) with no bound. So its fetch is wrapped: every response
// body passes through a counter that errors the body, and stops reading it, once one message (a JSON
// body, or one SSE event) passes the limit. Memory stays bounded by the limit whatever the server sends.

/** Bytes one message may have, and what to do when a response passes it (exact: its declared size; else the limit it passed). */
export interface MessageLimit {
  maxBytes: number;
  onOverLimit(size: number, exact: boolean): void;
}

export class MessageTooLargeError extends Error {}

/** A fetch whose response bodies error once one message passes `limit.maxBytes`. */
export function limitedFetch(limit: MessageLimit, base: typeof fetch = fetch): typeof fetch {
  return async (input, init) => {
    const res = await base(input, init);
    if (!res.body) return res;
    const max = limit.maxBytes;
    const tooLarge = (size: number, exact: boolean) => {
      limit.onOverLimit(size, exact);
      return new MessageTooLargeError(`the MCP server sent a message of ${exact ? '' : 'more than '}${size} bytes, over the limit of ${max} bytes (delegate.tools.mcpMaxMessageBytes)`);
    };
    const sse = (res.headers.get('content-type') ?? '').includes('text/event-stream');
    const declared = Number(res.headers.get('content-length') ?? NaN);
    if (!sse && declared > max) {
      // Refused before reading a byte of it.
      const err = tooLarge(declared, true);
      void res.body.cancel(err).catch(() => {}); // nothing to wait for: the body is being thrown away
      return new Response(errorStream(err), { status: res.status, statusText: res.statusText, headers: res.headers });
    }
    const count = sse ? sseEventCounter() : (n: Uint8Array, total: number) => total + n.length;
    let total = 0;
    const body = res.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          total = count(chunk, total);
          if (total > max) controller.error(tooLarge(max, false));
          else controller.enqueue(chunk);
        },
      }),
    );
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}

function errorStream(err: Error): ReadableStream<Uint8Array> {
  return new ReadableStream({ start: (c) => c.error(err) });
}

/**
 * Bytes of the SSE event being read: a blank line ends an event and starts the count again, so a long
 * stream of small messages is never counted as one.
 */
function sseEventCounter(): (chunk: Uint8Array, total: number) => number {
  let lineLen = 0;
  let lastWasCr = false;
  return (chunk, total) => {
    let i = 0;
    for (;;) {
      const nl = chunk.indexOf(10, i);
      const end = nl < 0 ? chunk.length : nl;
      const n = end - i;
      if (n > 0) lastWasCr = chunk[end - 1] === 13;
      total += n;
      lineLen += n;
      if (nl < 0) return total;
      // An empty line ("\n" or "\r\n") ends the event.
      if (lineLen === 0 || (lineLen === 1 && lastWasCr)) total = 0;
      else total += 1;
      lineLen = 0;
      lastWasCr = false;
      i = nl + 1;
    }
  };
}
