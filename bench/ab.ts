// A/B comparison of server variants under the same noise: every variant is up at once and they are
// measured alternately, round after round (sequential calls with a 0 ms model, then fan-outs of 32
// and 128 calls with a 1 s model). Use it to check a fix on a shared, noisy machine, where two
// separate `npm run bench` runs differ by more than most fixes gain.
//
//   node --import tsx bench/ab.ts '[{"name":"bare","bare":true},
//     {"name":"now"},
//     {"name":"no audit","delegate":{"audit":{"enabled":false}}},
//     {"name":"patched","cli":"/tmp/copy/dist/cli.js"}]' [rounds=8]
//
// A variant is {name, bare?: true (bench/bare-server.mjs), cli?: path to another build's dist/cli.js,
// delegate?: settings written to that server's mcp.json "delegate" section}.
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { writeFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { startMockModel } from '../tests/mock-model/server.js';
import { CLI, ROOT, tempDir, writeTree, mockEnv } from '../tests/helpers.js';

interface Variant {
  name: string;
  bare?: boolean;
  cli?: string;
  delegate?: Record<string, unknown>;
}

const variants: Variant[] = JSON.parse(process.argv[2] ?? '[{"name":"bare","bare":true},{"name":"delegate-mcp"}]');
const ROUNDS = Number(process.argv[3] ?? 8);
const SEQ_PER_ROUND = 40;
const AGENT = 'bench-agent';

const quantile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) * p)];
};

const mock = await startMockModel();
const env = mockEnv(mock.url, { BARE_TOOL: AGENT });

interface Running {
  v: Variant;
  client: Client;
  seq: number[];
  f32: number[];
  f128: number[];
}
const running: Running[] = [];
for (const v of variants) {
  const ws = tempDir('dmcp-ab-');
  writeTree(path.join(ws, 'agents'), {
    [`${AGENT}.yaml`]: `name: ${AGENT}\ndescription: Benchmark agent that answers in one model call, with no tools.\ninstructions: Answer the task.\nmodel: anthropic/claude-bench\nmax_turns: 2\n`,
  });
  if (v.delegate) writeFileSync(path.join(ws, 'mcp.json'), JSON.stringify({ delegate: v.delegate }));
  const args = v.bare
    ? [path.join(ROOT, 'bench', 'bare-server.mjs')]
    : [path.resolve(v.cli ?? CLI), 'serve', '--agents', path.join(ws, 'agents'), '--workspace', ws];
  const transport = new StdioClientTransport({ command: process.execPath, args, env, cwd: ws, stderr: 'inherit' });
  const client = new Client({ name: 'delegate-mcp-ab', version: '1.0.0' });
  await client.connect(transport);
  running.push({ v, client, seq: [], f32: [], f128: [] });
}

const call = async (c: Client, task: string) => {
  const r = await c.callTool({ name: AGENT, arguments: { task } });
  if (r.isError) throw new Error(JSON.stringify(r.content));
};
const fan = async (c: Client, n: number) => {
  mock.setHandler(() => ({ text: 'answer', delayMs: 1000 }));
  const t0 = performance.now();
  await Promise.all(Array.from({ length: n }, (_, i) => call(c, `fan ${i}`)));
  mock.setHandler(undefined);
  return performance.now() - t0;
};

// Warm every variant (both pool threads exist and are JIT-warm), then alternate.
for (const r of running) {
  for (let i = 0; i < 50; i++) await call(r.client, `warm ${i}`);
  await fan(r.client, 128);
  await fan(r.client, 128);
}
for (let round = 0; round < ROUNDS; round++) {
  for (const r of running) {
    for (let i = 0; i < SEQ_PER_ROUND; i++) {
      const t = performance.now();
      await call(r.client, `seq ${i}`);
      r.seq.push(performance.now() - t);
    }
    r.f32.push(await fan(r.client, 32));
    r.f128.push(await fan(r.client, 128));
  }
  process.stderr.write(`round ${round + 1}/${ROUNDS}\n`);
}
const width = Math.max(...variants.map((v) => v.name.length));
for (const r of running) {
  const m32 = quantile(r.f32, 0.5);
  const m128 = quantile(r.f128, 0.5);
  process.stdout.write(
    `${r.v.name.padEnd(width)}  per-call p50 ${quantile(r.seq, 0.5).toFixed(2)} ms p95 ${quantile(r.seq, 0.95).toFixed(2)} ms` +
      ` | N=32 ${m32.toFixed(0)} ms (eff ${(1000 / m32).toFixed(3)})` +
      ` | N=128 ${m128.toFixed(0)} ms (eff ${(1000 / m128).toFixed(3)}, range ${Math.min(...r.f128).toFixed(0)}–${Math.max(...r.f128).toFixed(0)})\n`,
  );
}
for (const r of running) await r.client.close();
await mock.close();
