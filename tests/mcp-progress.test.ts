// The MCP tool surface's progress lines (src/mcp/tool-results.ts): a call's result goes out only after its
// progress notifications did (a client drops a line that comes after the result).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { progressReporter } from '../src/mcp/tool-results.js';

test('progress lines: sent() resolves once every line sent so far is out (a caller awaits it before its result)', async () => {
  const written: string[] = [];
  const ctx = {
    mcpReq: {
      _meta: { progressToken: 't1' },
      // A transport that writes a little later, as an HTTP response stream can.
      notify: (n: { params: { message: string; progress: number } }) => new Promise<void>((res) => setTimeout(() => (written.push(`${n.params.progress} ${n.params.message}`), res()), 5)),
    },
  } as unknown as Parameters<typeof progressReporter>[0];
  const report = progressReporter(ctx)!;
  void report('thinking');
  void report('model responding');
  assert.deepEqual(written, []);
  await report.sent();
  assert.deepEqual(written, ['1 thinking', '2 model responding']);
  const failing = { mcpReq: { _meta: { progressToken: 't2' }, notify: () => Promise.reject(new Error('client gone')) } } as unknown as Parameters<typeof progressReporter>[0];
  const r2 = progressReporter(failing)!;
  void r2('x');
  await r2.sent(); // a client that went away: best effort, never an error for the caller
  assert.equal(progressReporter({ mcpReq: { _meta: {} } } as unknown as Parameters<typeof progressReporter>[0]), undefined, 'no token, no progress');
});
