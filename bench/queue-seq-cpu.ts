// CPU per sequential call (mock model 0 ms), per process and thread: the embedded server, then a queue
// front with one worker process, and Redis. Where the queue hop's time goes, in CPU rather than in a
// noisy wall: on a shared 2-core machine, compare builds with it (CLI=…/dist/cli.js, runs alternating).
//   node --import tsx bench/queue-seq-cpu.ts
// N=calls measured (400, after 100 warm ones); NOEMB=1 skips the embedded server; PROF=1 writes
// --cpu-prof profiles of the front and the worker to /tmp/seq-prof/<role>. Linux only (/proc); needs
// Redis (REDIS_URL) on this host; uses its own key prefix and deletes it after.
import { execSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { Redis } from 'ioredis';
import { startMockModel } from '../tests/mock-model/server.js';
import { CLI as OWN_CLI } from '../tests/helpers.js';
import { dropPrefix, REDIS_URL, redisUp } from '../tests/redis-check.js';
import { queueWorkspace, startWorker, timedCall } from './queue.js';

const CLI = process.env.CLI ? path.resolve(process.env.CLI) : OWN_CLI;
const N = Number(process.env.N ?? 400);
const WARM = 100;
const prof = (role: string) => (process.env.PROF ? ['--cpu-prof', `--cpu-prof-dir=/tmp/seq-prof/${role}`] : []);

/** CPU ms (user + system) in a /proc stat file (10 ms ticks: read over hundreds of calls). */
function statMs(file: string): number {
  const st = fs.readFileSync(file, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}
const threads = (pid: number): Record<string, number> => Object.fromEntries(fs.readdirSync(`/proc/${pid}/task`).map((t) => [t, statMs(`/proc/${pid}/task/${t}/stat`)]));

if (!(await redisUp())) {
  process.stderr.write(`no Redis at ${REDIS_URL} (set REDIS_URL)\n`);
  process.exit(1);
}
const redisPid = Number(execSync('pidof redis-server').toString().trim().split(' ')[0]);
const mock = await startMockModel();
mock.setHandler((req) => ({ text: `answer: ${req.lastUserText.slice(0, 40)}` }));
const prefix = `dmcp-seq-cpu-${randomBytes(4).toString('hex')}`;
const { ws, env, remove } = queueWorkspace(mock.url, prefix, 'seq-cpu');

async function connect(args: string[], role: string): Promise<{ client: Client; pid: number }> {
  const client = new Client({ name: 'delegate-mcp-bench-queue-seq-cpu', version: '1.0.0' });
  const t = new StdioClientTransport({ command: process.execPath, args: [...(role === 'embedded' ? [] : prof(role)), CLI, 'serve', ...args], env: env(role), cwd: ws, stderr: 'pipe' });
  await client.connect(t);
  return { client, pid: t.pid! };
}

/** N sequential calls after WARM: wall per call, and CPU per call of each process's main thread, its busiest other thread and the rest. */
async function measure(client: Client, pids: Record<string, number>): Promise<void> {
  const call = (i: number) => timedCall(client, i);
  for (let i = 0; i < WARM; i++) await call(i);
  const before = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, k === 'redis' ? { [p]: statMs(`/proc/${p}/stat`) } : threads(p)]));
  const t0 = performance.now();
  for (let i = 0; i < N; i++) await call(i);
  const wall = (performance.now() - t0) / N;
  const per = (ms: number) => `${((ms / N) * 1000).toFixed(0)} µs`;
  const out: string[] = [];
  for (const [k, p] of Object.entries(pids)) {
    if (k === 'redis') {
      out.push(`redis ${per(statMs(`/proc/${p}/stat`) - before[k][p])}`);
      continue;
    }
    const now = threads(p);
    const others = Object.entries(now).filter(([t]) => t !== String(p)).map(([t, v]) => v - (before[k][t] ?? 0));
    const busiest = Math.max(0, ...others);
    out.push(`${k}: main ${per(now[p] - before[k][p])}, busiest thread ${per(busiest)}, others ${per(others.reduce((a, b) => a + b, 0) - busiest)}`);
  }
  console.log(`wall ${wall.toFixed(2)} ms per call | ${out.join(' | ')}`);
}

const procs: ChildProcess[] = [];
try {
  if (!process.env.NOEMB) {
    const e = await connect(['--workspace', ws], 'embedded');
    process.stdout.write('embedded        ');
    await measure(e.client, { server: e.pid });
    await e.client.close();
  }
  procs.push(await startWorker(ws, env('worker'), 64, CLI, prof('worker')));
  const f = await connect(['--queue', REDIS_URL, '--workspace', ws], 'front');
  process.stdout.write('front + worker  ');
  await measure(f.client, { front: f.pid, worker: procs[0].pid!, redis: redisPid });
  await f.client.close();
} finally {
  for (const p of procs) p.kill('SIGTERM');
  await Promise.all(procs.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : p.on('exit', r)))));
  const r = new Redis(REDIS_URL);
  await dropPrefix(r, prefix);
  r.disconnect();
  await mock.close();
  remove();
}
