// Per-call A/B: sequential calls (model 0 ms) alternate between server variants, one call or one
// block of calls at a time, so every variant sees the same machine noise. Finer than bench/ab.ts for
// per-call work: on a shared 2-core machine two separate runs differ by more than most fixes gain.
//
//   node --import tsx bench/ab-calls.ts '[{"name":"bare","bare":true},
//     {"name":"now"},
//     {"name":"patched","cli":"/tmp/copy/dist/cli.js"}]' [calls=1000] [block=50]
//
// A variant is {name, bare?: true (bench/bare-server.mjs), cli?: another build's dist/cli.js,
// delegate?: settings for that server's mcp.json "delegate" section, nodeFlags?: e.g. ["--cpu-prof"]}.
// block=50 is what `npm run bench` does (a server's calls back to back); block=1 alternates every call.
// Reports p25/p50/p75 per variant and the p50 difference against the first one.
import path from 'node:path';
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
  nodeFlags?: string[];
}

const variants: Variant[] = JSON.parse(process.argv[2] ?? '[{"name":"bare","bare":true},{"name":"delegate-mcp"}]');
const CALLS = Number(process.argv[3] ?? 1000);
const BLOCK = Math.max(1, Number(process.argv[4] ?? 50));
const AGENT = 'bench-agent';
const WARMUP = 60;

const mock = await startMockModel();
const env = mockEnv(mock.url, { BARE_TOOL: AGENT });
const running: { name: string; client: Client; ms: number[] }[] = [];
for (const v of variants) {
  const ws = tempDir('dmcp-abcalls-');
  writeTree(path.join(ws, 'agents'), {
    [`${AGENT}.yaml`]: `name: ${AGENT}\ndescription: Benchmark agent that answers in one model call, with no tools.\ninstructions: Answer the task.\nmodel: anthropic/claude-bench\nmax_turns: 2\n`,
  });
  if (v.delegate) writeFileSync(path.join(ws, 'mcp.json'), JSON.stringify({ delegate: v.delegate }));
  const entry = v.bare ? [path.join(ROOT, 'bench', 'bare-server.mjs')] : [v.cli ?? CLI, 'serve', '--agents', path.join(ws, 'agents'), '--workspace', ws];
  const transport = new StdioClientTransport({ command: process.execPath, args: [...(v.nodeFlags ?? []), ...entry], env, cwd: ws, stderr: 'inherit' });
  const client = new Client({ name: 'delegate-mcp-ab-calls', version: '1.0.0' });
  await client.connect(transport);
  for (let i = 0; i < WARMUP; i++) await client.callTool({ name: AGENT, arguments: { task: `warm ${i}` } });
  running.push({ name: v.name, client, ms: [] });
}

for (let done = 0, round = 0; done < CALLS; done += BLOCK, round++) {
  // Alternate the order too, so no variant always follows the same one.
  for (const r of round % 2 ? [...running].reverse() : running) {
    for (let i = done; i < Math.min(CALLS, done + BLOCK); i++) {
      const t0 = performance.now();
      const res = await r.client.callTool({ name: AGENT, arguments: { task: `call ${i}` } });
      if (res.isError) throw new Error(`${r.name}: ${JSON.stringify(res.content)}`);
      r.ms.push(performance.now() - t0);
    }
  }
}

const quantile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)];
const first = quantile(running[0].ms, 0.5);
const width = Math.max(...running.map((r) => r.name.length));
for (const r of running) {
  const [p25, p50, p75] = [0.25, 0.5, 0.75].map((p) => quantile(r.ms, p));
  process.stdout.write(`${r.name.padEnd(width)}  p25 ${p25.toFixed(3)}  p50 ${p50.toFixed(3)}  p75 ${p75.toFixed(3)} ms  Δp50 ${(p50 - first).toFixed(3)} ms\n`);
}
for (const r of running) await r.client.close();
await mock.close();
