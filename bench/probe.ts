// Start-up probe for experiments (not part of the bench): for each given build of dist/cli.js, interleaved,
// two starts each: spawn → tools/list → 1 s idle → VmRSS (MB) of the server; spawn → tools/list → first tools/call (ms). Usage:
//   node --import tsx bench/probe.ts [--samples N] [--calls N] [--delegate JSON] CLI...
// --calls N: then N more calls 8 at a time and VmRSS again (retention per call). --delegate JSON: the
// workspace mcp.json's "delegate" section. Env: PROBE_NODE_ARGS (node flags for the server, e.g.
// "--cpu-prof --cpu-prof-dir=/tmp/prof"), PROBE_STDERR=1 (show the server's stderr), PROBE_THREADS=1.
// A build copied under this repository (e.g. ./.scratch/x/cli.js) finds its runtime deps in node_modules.
import { performance } from 'node:perf_hooks';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { startMockModel } from '../tests/mock-model/server.js';
import { tempDir, writeTree, mockEnv } from '../tests/helpers.js';

const argv = process.argv.slice(2);
const opt = (n: string, d: number) => { const i = argv.indexOf(n); if (i < 0) return d; const v = Number(argv[i + 1]); argv.splice(i, 2); return v; };
const SAMPLES = opt('--samples', 3);
const CALLS = opt('--calls', 0);
const di = argv.indexOf('--delegate');
const DELEGATE = di >= 0 ? argv.splice(di, 2)[1] : undefined;
const clis = argv.map((p) => path.resolve(p));
const rssMb = (pid: number) => Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const mock = await startMockModel();
mock.setHandler(() => ({ text: 'ok' }));
const ws = tempDir('dmcp-probe-');
const agentsDir = path.join(ws, 'agents');
writeTree(agentsDir, { 'bench-agent.yaml': 'name: bench-agent\ndescription: probe\ninstructions: Answer.\nmodel: anthropic/claude-bench\nmax_turns: 2\n' });
if (DELEGATE) writeFileSync(path.join(ws, 'mcp.json'), JSON.stringify({ delegate: JSON.parse(DELEGATE) }));
const out: Record<string, { first: number[]; rss: number[]; rssCalls: number[] }> = {};
for (const c of clis) out[c] = { first: [], rss: [], rssCalls: [] };
for (let s = 0; s < SAMPLES; s++) {
  for (const cli of s % 2 ? [...clis].reverse() : clis) {
    const transport = new StdioClientTransport({ command: process.execPath, args: [...(process.env.PROBE_NODE_ARGS?.split(' ') ?? []), cli, 'serve', '--agents', agentsDir, '--workspace', ws], env: { ...mockEnv(mock.url), ...(process.env.PROBE_NODE_OPTIONS ? { NODE_OPTIONS: process.env.PROBE_NODE_OPTIONS } : {}) }, cwd: ws, stderr: process.env.PROBE_STDERR ? 'inherit' : 'ignore' });
    const client = new Client({ name: 'probe', version: '1.0.0' });
    await client.connect(transport);
    await client.listTools();
    await sleep(1000);
    out[cli].rss.push(rssMb(transport.pid!));
    if (process.env.PROBE_THREADS) console.log(cli, 'threads', /^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${transport.pid}/status`, 'utf8'))![1]);
    if (CALLS) {
      for (let i = 0; i < CALLS; i += 8) await Promise.all(Array.from({ length: 8 }, (_, j) => client.callTool({ name: 'bench-agent', arguments: { task: `t${i + j}` } })));
      await sleep(1000);
      out[cli].rssCalls.push(rssMb(transport.pid!));
    }
    await client.close();
    // A second start: the first tools/call right after tools/list.
    const t2 = new StdioClientTransport({ command: process.execPath, args: [...(process.env.PROBE_NODE_ARGS?.split(' ') ?? []), cli, 'serve', '--agents', agentsDir, '--workspace', ws], env: { ...mockEnv(mock.url), ...(process.env.PROBE_NODE_OPTIONS ? { NODE_OPTIONS: process.env.PROBE_NODE_OPTIONS } : {}) }, cwd: ws, stderr: process.env.PROBE_STDERR ? 'inherit' : 'ignore' });
    const c2 = new Client({ name: 'probe', version: '1.0.0' });
    await c2.connect(t2);
    await c2.listTools();
    const t0 = performance.now();
    await c2.callTool({ name: 'bench-agent', arguments: { task: 'first' } });
    out[cli].first.push(performance.now() - t0);
    await c2.close();
  }
}
for (const [cli, r] of Object.entries(out)) {
  const f = (xs: number[]) => xs.map((x) => x.toFixed(0)).join('/');
  console.log(`${cli}: first call median ${median(r.first).toFixed(0)} ms (${f(r.first)}) · RSS idle median ${median(r.rss).toFixed(1)} MB (${f(r.rss)})${CALLS ? ` · after ${CALLS} calls ${f(r.rssCalls)} MB` : ''}`);
}
await mock.close();
