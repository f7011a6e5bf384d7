// Built-in tool fetch_url: one HTTP(S) GET or POST, redirects followed by hand. WHETHER a URL may be
// fetched is policy (ctx.checkUrl, from the permission engine); this tool enforces it on EVERY hop
// and adds the mechanical SSRF defences:
//   - http and https only; no credentials in URLs;
//   - ctx.checkUrl(url) before the first request and before each redirect hop (at most 5 redirects);
//   - every address the request would reach goes through ctx.checkAddress(url, address) (the permission
//     engine's checkResolvedAddress: non-public addresses only for a host a rule names exactly; without a
//     gate, non-public addresses are refused). The check happens INSIDE the connection's
//     DNS lookup (dns.lookup(host, {all: true}); refuse if ANY address is refused) and the socket
//     connects to exactly the addresses that were checked, so a DNS-rebinding answer between "check"
//     and "connect" is impossible. (This is why the tool uses node:http/https with a `lookup` hook
//     rather than global fetch, which resolves the name again on its own.) IP-literal hosts are checked
//     directly. No connection pooling (agent: false): a kept-alive socket could bypass the lookup;
//   - a total deadline (default 30 s) and ctx.signal; a response size cap (default 512 KiB, the body
//     stream is read up to the cap and then dropped; compressed bodies are capped after decompression).
// HTTP error statuses are normal results (isError: false); refusals and network failures are errors.
import dns from 'node:dns';
import http from 'node:http';
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import type { LookupFunction } from 'node:net';
import type { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { z } from 'zod';
import { classifyAddress } from '../net/address.js';
import { defineTool } from './define-tool.js';
import { formatSize, utf8SafeEnd } from './file-io.js';
import { abortedOutcome, fail, ok } from './outcome.js';
import type { BuiltinTool, ToolContext } from './types.js';
import type { ToolOutcome } from '../contract/tool.js';
import { errorMessage } from '../describe-cause.js';

/** Limits of fetch_url, given to createNetTools (never a mutable global). */
export interface NetLimits {
  /** Deadline for the whole call (all hops and the body), in milliseconds. */
  timeoutMs: number;
  /** Maximum response body bytes read (after decompression). */
  maxResponseBytes: number;
  /** Maximum redirects followed. */
  maxRedirects: number;
  /** Maximum request body bytes (POST). */
  maxRequestBodyBytes: number;
  /** Maximum URL length. */
  maxUrlChars: number;
}

export const NET_LIMITS: Readonly<NetLimits> = Object.freeze({
  timeoutMs: 30_000,
  maxResponseBytes: 512 * 1024,
  maxRedirects: 5,
  maxRequestBodyBytes: 1024 * 1024,
  maxUrlChars: 8192,
});

const USER_AGENT = 'delegate-mcp-fetch_url/1';
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/** Thrown (through the socket) when a name resolves to an address the call may not reach. */
class PrivateHostError extends Error {
  readonly code = 'EDELEGATE_PRIVATE_HOST';
  constructor(
    readonly host: string,
    readonly address: string,
    reason: string,
  ) {
    super(reason);
  }
}

type AddressCheck = (address: string) => { ok: boolean; reason: string };

/** Without a permission gate: public addresses only. */
function publicOnly(url: string, address: string): { ok: boolean; reason: string } {
  const c = classifyAddress(address);
  if (c.public) return { ok: true, reason: `${address} is a public address` };
  const host = bareHost(new URL(url));
  const what = `a private, loopback, link-local or reserved address (${c.range})`;
  return { ok: false, reason: host === address ? `${address} is ${what}` : `${host} resolved to ${address}, ${what}` };
}

/** A `lookup` for http.request: resolves all addresses, refuses if ANY is refused, connects only to those. */
function guardedLookup(check: AddressCheck): LookupFunction {
  return (hostname, options, callback) => {
    dns.lookup(hostname, { all: true, family: options.family ?? 0, hints: options.hints }, (err, addresses) => {
      if (err) {
        callback(err, '');
        return;
      }
      if (addresses.length === 0) {
        callback(Object.assign(new Error(`no addresses for ${hostname}`), { code: 'ENOTFOUND' }), '');
        return;
      }
      for (const a of addresses) {
        const c = check(a.address);
        if (!c.ok) {
          callback(new PrivateHostError(hostname, a.address, c.reason), '');
          return;
        }
      }
      if (options.all) callback(null, addresses);
      else callback(null, addresses[0].address, addresses[0].family);
    });
  };
}

function isPrivateHostError(e: unknown): e is PrivateHostError {
  return e instanceof PrivateHostError || (typeof e === 'object' && e !== null && (e as { code?: unknown }).code === 'EDELEGATE_PRIVATE_HOST');
}

/** The URL's hostname: lower-case, IPv6 without brackets. */
function bareHost(u: URL): string {
  const h = u.hostname.toLowerCase();
  return h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
}

function sendRequest(
  url: URL,
  method: string,
  body: Buffer | undefined,
  contentType: string | undefined,
  check: AddressCheck,
  signal: AbortSignal,
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const headers: OutgoingHttpHeaders = {
      'user-agent': USER_AGENT,
      accept: '*/*',
      'accept-encoding': 'gzip, deflate, br',
      connection: 'close',
    };
    if (body !== undefined) {
      headers['content-type'] = contentType ?? 'text/plain; charset=utf-8';
      headers['content-length'] = String(body.length);
    }
    const mod = url.protocol === 'https:' ? https : http;
    const req = mod.request(url, { method, headers, signal, agent: false, lookup: guardedLookup(check) }, resolve);
    req.once('error', reject);
    req.end(body);
  });
}

function decodedStream(res: IncomingMessage): { stream: Readable; note?: string } {
  const enc = String(res.headers['content-encoding'] ?? '').trim().toLowerCase();
  if (enc === '' || enc === 'identity') return { stream: res };
  let z: zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress | undefined;
  if (enc === 'gzip' || enc === 'x-gzip') z = zlib.createGunzip();
  else if (enc === 'deflate') z = zlib.createInflate();
  else if (enc === 'br') z = zlib.createBrotliDecompress();
  if (!z) return { stream: res, note: `[content-encoding "${enc}" not decoded]` };
  res.pipe(z);
  res.once('error', (e) => z!.destroy(e));
  return { stream: z };
}

interface BodyResult {
  buf: Buffer;
  truncated: boolean;
}

async function readCapped(stream: Readable, cap: number): Promise<BodyResult> {
  const chunks: Buffer[] = [];
  let n = 0;
  let truncated = false;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    const c = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    if (n + c.length > cap) {
      chunks.push(c.subarray(0, cap - n));
      n = cap;
      truncated = true;
      break; // leaving the loop destroys the stream
    }
    chunks.push(c);
    n += c.length;
  }
  return { buf: Buffer.concat(chunks, n), truncated };
}

const TEXT_TYPES = new Set([
  'application/json',
  'application/xml',
  'application/javascript',
  'application/x-javascript',
  'application/ecmascript',
  'application/x-www-form-urlencoded',
  'application/yaml',
  'application/x-yaml',
  'application/toml',
  'application/x-ndjson',
  'application/graphql',
  'application/x-sh',
  'application/sql',
]);

function isTextType(mime: string): boolean {
  return mime.startsWith('text/') || TEXT_TYPES.has(mime) || mime.endsWith('+json') || mime.endsWith('+xml');
}

function decodeText(buf: Buffer, charset: string | undefined, truncated: boolean): string {
  const label = (charset ?? 'utf-8').toLowerCase();
  if (label === 'utf-8' || label === 'utf8' || label === 'us-ascii' || label === 'ascii') {
    return buf.subarray(0, truncated ? utf8SafeEnd(buf, buf.length) : buf.length).toString('utf8');
  }
  try {
    return new TextDecoder(label).decode(buf);
  } catch {
    return buf.toString('utf8');
  }
}

// ---------------------------------------------------------------------------------------------
// fetch_url

const fetchUrlInput = () =>
  z
    .strictObject({
      url: z.string().describe('Absolute http:// or https:// URL.'),
      // Any case is accepted ("get"); the schema offered to the model names the canonical spelling.
      method: z
        .preprocess(
          // Only a valid method is upper-cased, so an invalid one is quoted back as the model wrote it.
          (v) => (typeof v === 'string' && /^(?:get|post)$/i.test(v) ? v.toUpperCase() : v),
          z.enum(['GET', 'POST'], { error: (iss) => `"method" must be "GET" or "POST", got ${JSON.stringify(iss.input)}` }),
        )
        .optional()
        .describe('HTTP method. Default "GET".'),
      body: z.string().optional().describe('Request body (POST only).'),
    })
    .refine((a) => a.body === undefined || a.method === 'POST', { error: '"body" is only allowed with method "POST"' });

async function runFetchUrl(args: z.output<ReturnType<typeof fetchUrlInput>>, ctx: ToolContext, netLimits: NetLimits): Promise<ToolOutcome> {
  const T = 'fetch_url';
  const urlText = args.url.trim();
  let method: 'GET' | 'POST' = args.method ?? 'GET';
  const bodyText = args.body;
  if (urlText.length > netLimits.maxUrlChars) return fail(`${T}: URL is longer than ${netLimits.maxUrlChars} characters`);
  let body = bodyText === undefined ? (method === 'POST' ? Buffer.alloc(0) : undefined) : Buffer.from(bodyText, 'utf8');
  if (body && body.length > netLimits.maxRequestBodyBytes) {
    return fail(`${T}: "body" is ${body.length} bytes; the limit is ${formatSize(netLimits.maxRequestBodyBytes)}`);
  }
  let contentType: string | undefined;
  if (bodyText !== undefined) {
    try {
      JSON.parse(bodyText);
      contentType = 'application/json';
    } catch {
      contentType = 'text/plain; charset=utf-8';
    }
  }
  let url: URL;
  try {
    url = new URL(urlText);
  } catch {
    return fail(`${T}: invalid URL ${JSON.stringify(urlText)} (give an absolute http:// or https:// URL)`);
  }
  if (ctx.signal?.aborted) return abortedOutcome(T);

  // One deadline for the whole call; ctx.signal cancels too.
  const ac = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ac.abort();
  }, netLimits.timeoutMs);
  const onAbort = (): void => ac.abort();
  ctx.signal?.addEventListener('abort', onAbort, { once: true });

  const startUrl = url.href;
  let redirects = 0;
  let res: IncomingMessage | undefined;
  try {
    for (;;) {
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        const what = redirects === 0 ? 'URL' : `redirect target ${url.href}`;
        return fail(`${T}: only http:// and https:// URLs can be fetched; the ${what} uses "${url.protocol}"`);
      }
      if (url.username !== '' || url.password !== '') {
        return fail(`${T}: URLs with embedded credentials (user:password@) are not allowed`);
      }
      url.hash = '';
      const check = ctx.checkUrl?.(url.href);
      if (check && !check.ok) {
        const hop = redirects === 0 ? '' : ` (redirect ${redirects} from ${startUrl})`;
        return fail(`${T}: refused ${url.href}${hop}: ${check.reason}`);
      }
      const host = bareHost(url);
      const hop = url.href;
      const checkAddress: AddressCheck = (address) => (ctx.checkAddress ?? publicOnly)(hop, address);
      // An IP-literal host is never looked up: it is checked here, like a resolved address.
      if (isIP(host) !== 0) {
        const c = checkAddress(host);
        if (!c.ok) return fail(`${T}: refused ${url.href}: ${c.reason} (not allowed for this agent)`);
      }

      res = await sendRequest(url, method, body, contentType, checkAddress, ac.signal);
      const status = res.statusCode ?? 0;
      const location = res.headers.location;
      if (!REDIRECT_STATUSES.has(status) || typeof location !== 'string' || location === '') break;

      res.destroy();
      res = undefined;
      if (redirects >= netLimits.maxRedirects) {
        return fail(`${T}: too many redirects (more than ${netLimits.maxRedirects}) starting from ${startUrl}`);
      }
      redirects++;
      let next: URL;
      try {
        next = new URL(location, url);
      } catch {
        return fail(`${T}: redirect ${redirects} from ${url.href} has an invalid Location ${JSON.stringify(location)}`);
      }
      // Browser semantics: 303 always, and 301/302 after a POST, become a GET without a body.
      if (status === 303 || ((status === 301 || status === 302) && method === 'POST')) {
        method = 'GET';
        body = undefined;
        contentType = undefined;
      }
      url = next;
    }

    const status = res.statusCode ?? 0;
    const mimeFull = String(res.headers['content-type'] ?? '');
    const mime = mimeFull.split(';')[0].trim().toLowerCase();
    const charset = /charset\s*=\s*"?([^";\s]+)/i.exec(mimeFull)?.[1];
    const decoded = decodedStream(res);
    const cap = netLimits.maxResponseBytes;
    const { buf, truncated } = await readCapped(decoded.stream, cap);
    res.destroy();

    const head: string[] = [`HTTP ${status} ${res.statusMessage ?? ''}`.trimEnd()];
    head.push(`content-type: ${mimeFull || '(none)'}`);
    if (redirects > 0) head.push(`final URL: ${url.href} (after ${redirects} redirect${redirects === 1 ? '' : 's'})`);
    if (decoded.note) head.push(decoded.note);

    const size = truncated ? `more than ${formatSize(cap)}` : `${buf.length} bytes`;
    const sniffBinary = buf.subarray(0, 8192).includes(0);
    if (sniffBinary || (mime !== '' && !isTextType(mime))) {
      return ok(`${head.join('\n')}\n\n[binary body (${mime || 'unknown type'}), ${size}; not shown]`);
    }
    if (buf.length === 0) return ok(`${head.join('\n')}\n\n[empty body]`);
    let text = decodeText(buf, charset, truncated);
    if (truncated) {
      if (!text.endsWith('\n')) text += '\n';
      text += `[body truncated at ${formatSize(cap)}]`;
    }
    return ok(`${head.join('\n')}\n\n${text}`);
  } catch (e) {
    if (timedOut) return fail(`${T}: timed out after ${netLimits.timeoutMs / 1000} s fetching ${url.href}`);
    if (ctx.signal?.aborted) return abortedOutcome(T);
    if (isPrivateHostError(e)) {
      return fail(`${T}: refused ${url.href}: ${e.message} (not allowed for this agent)`);
    }
    const code = typeof e === 'object' && e !== null ? (e as NodeJS.ErrnoException).code : undefined;
    const msg = errorMessage(e);
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return fail(`${T}: could not resolve host ${url.hostname} (${code})`);
    return fail(`${T}: request to ${url.href} failed: ${msg}`);
  } finally {
    clearTimeout(timer);
    ctx.signal?.removeEventListener('abort', onAbort);
    res?.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// Registry

/** Network built-in tools keyed by tool name, with `limits` over the defaults. */
export function createNetTools(limits: Partial<NetLimits> = {}): Record<string, BuiltinTool> {
  const l: NetLimits = { ...NET_LIMITS, ...limits };
  return {
    fetch_url: defineTool({
      name: 'fetch_url',
      description:
        'Fetch an http:// or https:// URL and return the status, content type and body as text. GET by ' +
        'default; POST sends `body` (as application/json if it parses as JSON, else text/plain). Redirects are ' +
        `followed (at most ${l.maxRedirects}), each hop subject to the same permission checks. Private, ` +
        'loopback and link-local hosts are refused unless explicitly allowed. The body is cut at ' +
        `${formatSize(l.maxResponseBytes)}; binary bodies are reported by size only. Timeout ` +
        `${l.timeoutMs / 1000} s. HTTP error statuses (4xx/5xx) are returned as normal results.`,
      input: fetchUrlInput,
      run: (args, ctx) => runFetchUrl(args, ctx, l),
    }),
  };
}

/** fetch_url with the default limits. */
export const netTools: Record<string, BuiltinTool> = createNetTools();
