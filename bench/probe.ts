// Start-up probe for experiments (not part of the bench): for each given build of dist/cli.js (and the
// bare baseline server with --bare), interleaved, per sample: spawn → tools/list → 1 s idle → VmRSS (MB)
// of the server; spawn → tools/list (ms) → first tools/call (ms); with --fanout, spawn → tools/list → the
// first N=32 fan-out at 1 s model latency (ours: one delegate_parallel; bare: 32 concurrent calls) and,
// on the same server, two more (the "warm" ones). Usage:
//   node --import tsx bench/probe.ts [--samples N] [--calls N] [--bare] [--no-rss] [--fanout] [--delegate JSON] CLI...
// --calls N: then N more calls 8 at a time and VmRSS again (retention per call). --delegate JSON: the
// workspace mcp.json's "delegate" section. --no-rss: skip the RSS start (faster). Env: PROBE_NODE_ARGS
// (node flags for our server, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"), PROBE_STDERR=1 (show the
// server's stderr), PROBE_THREADS=1. A build copied under this repository (e.g. ./.scratch/x/cli.js)
// finds its runtime deps in node_modules.
import { performance } from 'node:perf_hooks';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { startMockModel } from '../tests/mock-model/server.js';
import { ROOT, tempDir, writeTree, mockEnv } from '../tests/helpers.js';

const argv = process.argv.slice(2);
const opt = (n: string, d: number) => { const i = argv.indexOf(n); if (i < 0) return d; const v = Number(argv[i + 1]); argv.splice(i, 2); return v; };
const flag = (n: string) => { const i = argv.indexOf(n); if (i >= 0) argv.splice(i, 1); return i >= 0; };
const SAMPLES = opt('--samples', 3);
const CALLS = opt('--calls', 0);
const BARE = flag('--bare');
const NO_RSS = flag('--no-rss');
const FANOUT = flag('--fanout');
const di = argv.indexOf('--delegate');
const DELEGATE = di >= 0 ? argv.splice(di, 2)[1] : undefined;
const BARE_SERVER = path.join(ROOT, 'bench', 'bare-server.mjs');
const clis = [...argv.map((p) => path.resolve(p)), ...(BARE ? [BARE_SERVER] : [])];
/** utime + stime of the whole process (all threads), ms (CLK_TCK 100). */
const cpuMs = (pid: number) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8'); const x = f.slice(f.lastIndexOf(')') + 2).split(' '); return (Number(x[11]) + Number(x[12])) * 10; };
const rssMb = (pid: number) => Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const mock = await startMockModel();
const ws = tempDir('dmcp-probe-');
const agentsDir = path.join(ws, 'agents');
writeTree(agentsDir, { 'bench-agent.yaml': 'name: bench-agent\ndescription: probe\ninstructions: Answer.\nmodel: anthropic/claude-bench\nmax_turns: 2\n' });
if (DELEGATE) writeFileSync(path.join(ws, 'mcp.json'), JSON.stringify({ delegate: JSON.parse(DELEGATE) }));

async function start(cli: string): Promise<{ client: Client; pid: number }> {
  const bare = cli === BARE_SERVER;
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: bare ? [cli] : [...(process.env.PROBE_NODE_ARGS?.split(' ') ?? []), cli, 'serve', '--agents', agentsDir, '--workspace', ws],
    env: { ...mockEnv(mock.url), ...(bare ? { BARE_TOOL: 'bench-agent' } : {}), ...(process.env.PROBE_NODE_OPTIONS && !bare ? { NODE_OPTIONS: process.env.PROBE_NODE_OPTIONS } : {}) },
    cwd: ws,
    stderr: process.env.PROBE_STDERR ? 'inherit' : 'ignore',
  });
  const client = new Client({ name: 'probe', version: '1.0.0' });
  await client.connect(transport);
  await client.listTools();
  return { client, pid: transport.pid! };
}

async function fanOut(client: Client, bare: boolean): Promise<number> {
  mock.setHandler(() => ({ text: 'ok', delayMs: 1000 }));
  const t0 = performance.now();
  if (bare) await Promise.all(Array.from({ length: 32 }, (_, i) => client.callTool({ name: 'bench-agent', arguments: { task: `fan ${i}` } })));
  else {
    const res = await client.callTool({ name: 'delegate_parallel', arguments: { tasks: Array.from({ length: 32 }, (_, i) => ({ agent: 'bench-agent', task: `fan ${i}` })) } });
    const ok = (res.structuredContent as { ok?: number } | undefined)?.ok;
    if (ok !== 32) throw new Error(`delegate_parallel: ${ok}/32 ok`);
  }
  const wall = performance.now() - t0;
  mock.setHandler(() => ({ text: 'ok' }));
  return wall;
}

const out: Record<string, { first: number[]; cpu: number[]; list: number[]; rss: number[]; rssCalls: number[]; fan1: number[]; fanWarm: number[] }> = {};
for (const c of clis) out[c] = { first: [], cpu: [], list: [], rss: [], rssCalls: [], fan1: [], fanWarm: [] };
mock.setHandler(() => ({ text: 'ok' }));
for (let s = 0; s < SAMPLES; s++) {
  for (const cli of s % 2 ? [...clis].reverse() : clis) {
    if (!NO_RSS) {
      const { client, pid } = await start(cli);
      await sleep(1000);
      out[cli].rss.push(rssMb(pid));
      if (process.env.PROBE_THREADS) console.log(cli, 'threads', /^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
      if (CALLS) {
        for (let i = 0; i < CALLS; i += 8) await Promise.all(Array.from({ length: 8 }, (_, j) => client.callTool({ name: 'bench-agent', arguments: { task: `t${i + j}` } })));
        await sleep(1000);
        out[cli].rssCalls.push(rssMb(pid));
      }
      await client.close();
    }
    // A second start: the first tools/call right after tools/list.
    const tl = performance.now();
    const { client: c2, pid: pid2 } = await start(cli);
    const t0 = performance.now();
    out[cli].list.push(t0 - tl);
    await c2.callTool({ name: 'bench-agent', arguments: { task: 'first' } });
    out[cli].first.push(performance.now() - t0);
    out[cli].cpu.push(cpuMs(pid2));
    await c2.close();
    if (FANOUT) {
      const { client: c3 } = await start(cli);
      out[cli].fan1.push(await fanOut(c3, cli === BARE_SERVER));
      for (let i = 0; i < 2; i++) out[cli].fanWarm.push(await fanOut(c3, cli === BARE_SERVER));
      await c3.close();
    }
  }
}
for (const [cli, r] of Object.entries(out)) {
  const f = (xs: number[]) => xs.map((x) => x.toFixed(0)).join('/');
  const name = cli === BARE_SERVER ? 'bare' : path.relative(process.cwd(), cli);
  console.log(
    `${name}: first call median ${median(r.first).toFixed(1)} ms (${f(r.first)}) · server CPU spawn → first result median ${median(r.cpu).toFixed(0)} ms · spawn → tools/list median ${median(r.list).toFixed(0)} ms (${f(r.list)})` +
      (NO_RSS ? '' : ` · RSS idle median ${median(r.rss).toFixed(1)} MB (${f(r.rss)})`) +
      (CALLS ? ` · after ${CALLS} calls ${f(r.rssCalls)} MB` : '') +
      (FANOUT ? ` · first fan-out median ${median(r.fan1).toFixed(0)} ms (${f(r.fan1)}), warm median ${median(r.fanWarm).toFixed(0)} ms → ${(median(r.fan1) / median(r.fanWarm)).toFixed(3)}×` : ''),
  );
  // Paired with the bare server's start of the same sample: the machine's noise of the moment cancels.
  if (BARE && cli !== BARE_SERVER) console.log(`  − bare, paired per sample: first call median +${median(r.first.map((x, i) => x - out[BARE_SERVER].first[i])).toFixed(1)} ms · tools/list ${median(r.list.map((x, i) => x / out[BARE_SERVER].list[i])).toFixed(2)}× bare's · spawn → first result +${median(r.list.map((x, i) => x + r.first[i] - out[BARE_SERVER].list[i] - out[BARE_SERVER].first[i])).toFixed(0)} ms`);
}
await mock.close();
