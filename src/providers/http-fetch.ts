// The provider SDKs' `fetch`, on node:http/https instead of Node's fetch (undici). Node's fetch costs
// about as much CPU as the rest of a run's model request together: Request and Headers copies, the
// fetch algorithm, and a web ReadableStream for the SSE body. Measured in one thread with the Anthropic
// SDK streaming from the mock model, 64 concurrent streams: 1.1-1.9 ms of CPU per request with fetch,
// 0.6-0.9 ms with this (GC included); see README "Performance".
//
// Only the common case takes this path: a string or byte body to an http(s) URL. A 2xx answer resolves
// at its headers, as fetch's does, with the body as an async iterable of bytes (what the SDKs read of a
// stream). It behaves as fetch does for the SDKs: failures before the answer reject with
// TypeError("fetch failed", {cause}) or, after an abort, with the signal's reason; a body read that
// fails rejects with TypeError("terminated", {cause}) or the abort reason; leaving the body early closes
// the connection. Everything else goes to Node's fetch itself (other inputs and bodies, redirects: fetch
// follows them), and an error answer is read whole and handed over as a real Response.
import http from 'node:http';
import https from 'node:https';
import { pipeline, type Readable } from 'node:stream';
import zlib from 'node:zlib';

// Kept-alive connections, shared by every request of this thread. Idle ones close after 4 s (undici's
// default for fetch) or earlier when the server's Keep-Alive header says so; `timeout` acts only on
// idle sockets here (a request in flight is timed by the SDK and the stream-idle timer).
const AGENT_OPTIONS = { keepAlive: true, timeout: 4_000, scheduling: 'lifo' } as const;
let agents: { http: http.Agent; https: https.Agent } | undefined;

/** Request headers fetch sets itself (or refuses); node:http sets host, connection and the length. */
const DROPPED = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'keep-alive']);

export function httpFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
  const body = init?.body;
  const url = typeof input === 'string' ? input : input instanceof URL ? input.href : null;
  const simpleBody = body === undefined || body === null || typeof body === 'string' || body instanceof Uint8Array;
  if (url === null || !simpleBody || (init?.redirect !== undefined && init.redirect !== 'follow')) return globalThis.fetch(input, init);
  const target = new URL(url);
  const secure = target.protocol === 'https:';
  if (!secure && target.protocol !== 'http:') return globalThis.fetch(input, init);
  agents ??= { http: new http.Agent(AGENT_OPTIONS), https: new https.Agent(AGENT_OPTIONS) };

  const signal = init?.signal ?? undefined;
  if (signal?.aborted) return Promise.reject(signal.reason);
  const headers: Record<string, string> = {};
  const given = init?.headers;
  (given instanceof Headers ? given : new Headers(given)).forEach((value, name) => {
    if (!DROPPED.has(name)) headers[name] = value;
  });
  const payload = typeof body === 'string' ? Buffer.from(body) : (body ?? undefined);
  if (payload) headers['content-length'] = String(payload.byteLength);
  const method = init?.method ?? 'GET';

  return new Promise<Response>((resolve, reject) => {
    const failed = (err: unknown) => reject(signal?.aborted ? signal.reason : new TypeError('fetch failed', { cause: err }));
    const req = (secure ? https : http).request(target, { method, headers, agent: secure ? agents!.https : agents!.http, signal }, (res) => {
      const status = res.statusCode ?? 0;
      const responseHeaders = new Headers();
      const raw = res.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) responseHeaders.append(raw[i], raw[i + 1]);
      if (status >= 300 && status < 400 && responseHeaders.has('location')) {
        // Redirects are fetch's business (method and body rules, limits): ask it.
        res.resume();
        return void globalThis.fetch(input, init).then(resolve, reject);
      }
      const source = decoded(res, responseHeaders.get('content-encoding'));
      if (status < 200 || status >= 300) {
        // An error: its (short) body is read whole and handed over as a real Response.
        void readAll(source, signal).then(
          (buf) => resolve(new Response(status === 204 || status === 205 || status === 304 ? null : (buf as unknown as BodyInit), { status, statusText: res.statusMessage ?? '', headers: responseHeaders })),
          reject,
        );
        return;
      }
      resolve(new StreamedResponse(status, res.statusMessage ?? '', responseHeaders, target.href, chunks(source, res, signal)) as unknown as Response);
    });
    req.on('error', failed);
    req.end(payload);
  });
}

/** The body as fetch would give it: decompressed (fetch asks for compression; this asks for none, but a server may still send it). */
function decoded(res: http.IncomingMessage, encoding: string | null): Readable {
  const codec = encoding?.trim().toLowerCase();
  const inflate =
    codec === 'gzip' || codec === 'x-gzip' ? zlib.createGunzip() : codec === 'deflate' ? zlib.createInflate() : codec === 'br' ? zlib.createBrotliDecompress() : null;
  if (!inflate) return res;
  return pipeline(res, inflate, () => {
    // an error ends the pipeline's last stream with it: the reader sees it there
  });
}

/** Reads a body to its end, with fetch's errors. */
async function readAll(source: Readable, signal: AbortSignal | undefined): Promise<Buffer> {
  const parts: Buffer[] = [];
  try {
    for await (const part of source) parts.push(part as Buffer);
  } catch (err) {
    throw signal?.aborted ? signal.reason : new TypeError('terminated', { cause: err });
  }
  return Buffer.concat(parts);
}

/**
 * The body's chunks with fetch's errors. Leaving early, or cancelling before the first read (the SDKs
 * call return() on a body they drop), closes the connection, as cancelling fetch's body does.
 */
function chunks(source: Readable, res: http.IncomingMessage, signal: AbortSignal | undefined): AsyncIterableIterator<Uint8Array> {
  const close = () => {
    res.destroy();
    if (source !== res) source.destroy();
  };
  async function* read(): AsyncGenerator<Uint8Array, void, undefined> {
    let ended = false;
    try {
      for await (const part of source) yield part as Uint8Array;
      ended = true;
    } catch (err) {
      throw signal?.aborted ? signal.reason : new TypeError('terminated', { cause: err });
    } finally {
      if (!ended) close();
    }
  }
  const gen = read();
  const body: AsyncIterableIterator<Uint8Array> = {
    [Symbol.asyncIterator]: () => body,
    next: () => gen.next(),
    return: (value?: unknown) => {
      if (!res.complete) close(); // a generator not started yet skips its finally
      return gen.return(value as undefined);
    },
  };
  return body;
}

/**
 * A 2xx answer as the SDKs read it (status, headers, the body as an async iterable of bytes): they
 * iterate `body` through its Symbol.asyncIterator, as they do a web ReadableStream's.
 */
class StreamedResponse {
  readonly ok: boolean;
  readonly redirected = false;
  readonly type = 'basic';
  bodyUsed = false;

  constructor(
    readonly status: number,
    readonly statusText: string,
    readonly headers: Headers,
    readonly url: string,
    readonly body: AsyncIterableIterator<Uint8Array>,
  ) {
    this.ok = status >= 200 && status < 300;
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    this.bodyUsed = true;
    const parts: Uint8Array[] = [];
    for await (const part of this.body) parts.push(part);
    const all = Buffer.concat(parts);
    return all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer;
  }

  async text(): Promise<string> {
    return new TextDecoder().decode(await this.arrayBuffer());
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }
}
