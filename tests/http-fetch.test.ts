// The provider SDKs' fetch (src/providers/http-fetch.ts): answers over node:http, redirects through Node's
// fetch, error answers as a real Response, with fetch's errors. The SDK-level behaviours (retries,
// timeouts, aborts, cut streams) are covered through the adapters in providers.test.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { httpFetch } from '../src/providers/http-fetch.js';

describe('httpFetch', () => {
  let server: http.Server;
  let base = '';
  before(async () => {
    server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (req.url === '/sse') {
          res.writeHead(200, { 'content-type': 'text/event-stream', 'x-seen-method': req.method ?? '', 'x-seen-length': req.headers['content-length'] ?? '' });
          res.write('data: one\n\n');
          res.end('data: two\n\n');
        } else if (req.url === '/moved') {
          res.writeHead(307, { location: '/sse' }).end();
        } else if (req.url === '/cut') {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write('data: partial\n\n', () => res.socket?.destroy());
        } else if (req.url === '/hang') {
          // never answers
        } else {
          res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"nope"}');
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  const read = async (res: Response) => {
    let text = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) text += Buffer.from(chunk).toString();
    return text;
  };

  it('reads an event stream over node:http, never calling fetch', async () => {
    const real = globalThis.fetch;
    globalThis.fetch = () => Promise.reject(new Error('fetch must not be used for an event stream'));
    try {
      const res = await httpFetch(`${base}/sse`, { method: 'POST', headers: new Headers({ 'content-type': 'application/json' }), body: '{"a":"é"}' });
      assert.equal(res.status, 200);
      assert.equal(res.ok, true);
      assert.equal(res.headers.get('x-seen-method'), 'POST');
      assert.equal(res.headers.get('x-seen-length'), String(Buffer.byteLength('{"a":"é"}')));
      assert.equal(await read(res), 'data: one\n\ndata: two\n\n');
    } finally {
      globalThis.fetch = real;
    }
  });

  it('hands an error answer over as a real Response', async () => {
    const res = await httpFetch(`${base}/missing`, { method: 'POST', body: '{}' });
    assert.ok(res instanceof Response);
    assert.equal(res.status, 404);
    assert.deepEqual(await res.json(), { error: 'nope' });
  });

  it('leaves redirects to fetch', async () => {
    const res = await httpFetch(`${base}/moved`, { method: 'POST', body: '{}' });
    assert.equal(res.status, 200);
    assert.equal(res.url, `${base}/sse`);
    assert.match(await res.text(), /data: two/);
  });

  it("fails as fetch does: a refused connection, a cut stream, an abort", async () => {
    const refused = await httpFetch('http://127.0.0.1:1/', { method: 'POST', body: '{}' }).catch((e: unknown) => e);
    assert.ok(refused instanceof TypeError && refused.message === 'fetch failed', String(refused));
    assert.equal((refused.cause as NodeJS.ErrnoException).code, 'ECONNREFUSED');

    const cut = await httpFetch(`${base}/cut`, { method: 'POST', body: '{}' });
    const lost = await read(cut).catch((e: unknown) => e);
    assert.ok(lost instanceof TypeError && lost.message === 'terminated', String(lost));

    const controller = new AbortController();
    const pending = httpFetch(`${base}/hang`, { method: 'POST', body: '{}', signal: controller.signal });
    setTimeout(() => controller.abort(), 20);
    const aborted = await pending.catch((e: unknown) => e);
    assert.equal((aborted as Error).name, 'AbortError');
    assert.equal(aborted, controller.signal.reason);
  });
});
