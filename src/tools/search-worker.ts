// The worker thread search_files matches lines in. RE2 (re2-wasm) runs in time linear in the input, but
// its constant grows with the pattern (a 1 MB line against `[a-z]{1000}` takes most of a second), so the
// matching never runs on the main thread: the MCP transport keeps answering, and the main side
// (line-search.ts) terminates this thread when a search overruns its deadline.
import { parentPort } from 'node:worker_threads';
import { createRequire } from 'node:module';
import type { SearchReply, SearchRequest } from './line-search.js';
import { errorMessage } from '../describe-cause.js';

// re2-wasm is CommonJS and loads its .wasm next to itself.
const { RE2 } = createRequire(import.meta.url)('re2-wasm') as typeof import('re2-wasm');

let compiled: { source: string; re: InstanceType<typeof RE2> } | null = null;

function handle(msg: SearchRequest): SearchReply {
  if (!compiled || compiled.source !== msg.source) {
    try {
      compiled = { source: msg.source, re: new RE2(msg.source, 'u') };
    } catch (err) {
      return { id: msg.id, kind: 'invalid', message: errorMessage(err) };
    }
  }
  if (msg.text === undefined) return { id: msg.id, kind: 'matches', lines: [] };
  const re = compiled.re;
  const text = Buffer.from(msg.text).toString('utf8');
  const lines: { n: number; text: string }[] = [];
  let start = 0;
  for (let n = 1; start <= text.length; n++) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    let line = text.slice(start, end);
    if (line.endsWith('\r')) line = line.slice(0, -1);
    start = end + 1;
    if (!re.test(line)) continue;
    // One more than asked for tells the caller that the cap was hit.
    lines.push({ n, text: line.length > msg.maxChars ? `${line.slice(0, msg.maxChars)}…` : line });
    if (lines.length > msg.maxMatches) break;
  }
  return { id: msg.id, kind: 'matches', lines };
}

parentPort!.on('message', (msg: SearchRequest) => parentPort!.postMessage(handle(msg)));
