// CPU one agent run costs the embedded server, for A/B work on the run path: each build given is
// started as a server and they take turns at delegate_parallel ×N (1 s mock model); per batch it
// prints the wall and the server's CPU (from /proc), split by thread: main, piscina workers, V8 helpers.
// Builds alternate batch by batch, so both see the same noise from other processes on the machine.
//
//   node --import tsx bench/run-cpu.ts [cliA.js cliB.js ...]   (default: this build's dist/cli.js)
//   REPS=n (batches per build, default 6), N=tasks per batch (128), PROF=1 (--cpu-prof to /tmp/prof/<i>)
import { execSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { startMockModel } from '../tests/mock-model/server.js';
import { CLI, mockEnv, tempDir, writeTree } from '../tests/helpers.js';

const AGENT = 'bench-agent';
const N = Number(process.env.N ?? 128);
const REPS = Number(process.env.REPS ?? 6);
/** TCP connections this machine opened (every process): new connections to the model show here. */
const opens = () => Number(/TcpActiveOpens\s+(\d+)/.exec(execSync('nstat -az TcpActiveOpens').toString())?.[1] ?? NaN);
const clis = process.argv.slice(2).length ? process.argv.slice(2).map((p) => path.resolve(p)) : [CLI];

/** CPU ms of each thread of a process, by thread id, with its name. */
function threads(pid: number): Map<string, { name: string; ms: number }> {
  const out = new Map<string, { name: string; ms: number }>();
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    let st: string;
    try {
      st = fs.readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
    } catch {
      continue; // the thread ended between the listing and the read
    }
    const name = st.slice(st.indexOf('(') + 1, st.lastIndexOf(')'));
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    out.set(t, { name, ms: (Number(f[11]) + Number(f[12])) * 10 });
  }
  return out;
}
/**
 * Groups: the main thread (tid = pid), the piscina workers, the rest (V8's GC and compiler helpers, libuv).
 * Every thread is named "node": the workers are the two threads with the most CPU since the process
 * started (each loaded the worker bundle and runs every loop).
 */
function split(pid: number, before: Map<string, { name: string; ms: number }>, after: Map<string, { name: string; ms: number }>) {
  const others = [...after].filter(([tid]) => tid !== String(pid)).sort((a, b) => b[1].ms - a[1].ms);
  const workerTids = new Set(others.slice(0, 2).map(([tid]) => tid));
  let main = 0, workers = 0, other = 0;
  const names: string[] = [];
  for (const [tid, a] of after) {
    const d = a.ms - (before.get(tid)?.ms ?? 0);
    if (tid === String(pid)) main += d;
    else if (workerTids.has(tid)) workers += d;
    else other += d;
    if (d > 0 && tid !== String(pid)) names.push(`${workerTids.has(tid) ? 'W' : 'h'}${tid}=${d}`);
  }
  return { main, workers, other, total: main + workers + other, names: names.join(' ') };
}

const mock = await startMockModel();
mock.setHandler((req) => ({ text: `answer: ${req.lastUserText.slice(0, 40)}`, delayMs: 1000 }));
const ws = tempDir('dmcp-runcpu-');
writeTree(ws, {
  [`agents/${AGENT}.yaml`]: `name: ${AGENT}\ndescription: B.\ninstructions: Answer.\nmodel: anthropic/claude-sonnet-5-5\nmax_turns: 2\n`,
  'mcp.json': JSON.stringify({ delegate: { watch: false, pool: { maxThreads: 2, concurrentTasksPerWorker: 64, maxQueue: 256 } } }),
});
const tasks = (k: number) => Array.from({ length: k }, (_, i) => ({ agent: AGENT, task: `fan ${i}` }));

const servers: { cli: string; client: Client; pid: number; rows: { wall: number; main: number; workers: number; other: number; total: number }[] }[] = [];
for (const [i, cli] of clis.entries()) {
  const env = mockEnv(mock.url, { XDG_STATE_HOME: path.join(path.dirname(ws), `${path.basename(ws)}-${i}`), DELEGATE_MCP_LOG_LEVEL: 'info' });
  const prof = process.env.PROF ? ['--cpu-prof', `--cpu-prof-dir=/tmp/prof/${i}`] : [];
  const t = new StdioClientTransport({ command: process.execPath, args: [...prof, cli, 'serve', '--workspace', ws], env, cwd: ws, stderr: 'inherit' });
  const client = new Client({ name: 'run-cpu', version: '1' });
  await client.connect(t);
  await client.callTool({ name: 'delegate_parallel', arguments: { tasks: tasks(16) } });
  await client.callTool({ name: 'delegate_parallel', arguments: { tasks: tasks(N) } }, { timeout: 60000 }); // warm: connections opened, JIT
  servers.push({ cli, client, pid: t.pid!, rows: [] });
}
for (let rep = 0; rep < REPS; rep++) {
  for (const [i, s] of servers.entries()) {
    const before = threads(s.pid);
    const o0 = opens();
    const t0 = performance.now();
    const res = await s.client.callTool({ name: 'delegate_parallel', arguments: { tasks: tasks(N) } }, { timeout: 60000 });
    const wall = performance.now() - t0;
    const c = split(s.pid, before, threads(s.pid));
    const opened = opens() - o0;
    const ok = (res.structuredContent as { ok?: unknown } | undefined)?.ok;
    s.rows.push({ wall, ...c });
    console.log(`[${i}] wall=${wall.toFixed(0)} ok=${ok} cpu total=${c.total} main=${c.main} workers=${c.workers} other=${c.other} tcp-opens=${opened}${process.env.THREADS ? `  (${c.names})` : ''}`);
  }
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
for (const [i, s] of servers.entries()) {
  const col = (k: 'wall' | 'main' | 'workers' | 'other' | 'total') => `${k} med ${med(s.rows.map((r) => r[k])).toFixed(0)} mean ${mean(s.rows.map((r) => r[k])).toFixed(0)}`;
  console.log(`[${i}] ${s.cli}\n    ${col('total')} | ${col('main')} | ${col('workers')} | ${col('other')} | ${col('wall')}`);
}
for (const s of servers) await s.client.close();
await mock.close();
process.exit(0);
