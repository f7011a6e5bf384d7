// CPU per process for one delegate_parallel ×128 (1 s mock model): the embedded server, then a queue front
// with 2 worker processes, and Redis. On a shared 2-core machine the wall follows the total CPU per run,
// and CPU ms per batch is far less noisy than the wall: compare builds with it.
//   node --import tsx bench/queue-cpu.ts
// REPS=n batches per mode (3); MODES=queue (or embedded) for one; THREADS=1 per thread; PROF=1 writes
// --cpu-prof profiles to /tmp/prof/<role>; CLI=/other/dist/cli.js measures another build (A/B);
// NODEARGS='--flag …' starts the queue nodes (front, workers) with those Node options (A/B of a flag).
// Linux only (/proc); needs Redis (REDIS_URL) on this host; uses its own key prefix and deletes it after.
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
import { queueWorkspace, startWorker as startQueueWorker } from './queue.js';

const AGENT = 'bench-agent';
const TASKS = 128;
const CLI = process.env.CLI ? path.resolve(process.env.CLI) : OWN_CLI;
const REPS = Number(process.env.REPS ?? 3);
const MODES = (process.env.MODES ?? 'embedded,queue').split(',');

/** CPU ms (user + system) of a process, or of each of its threads, from /proc. */
function statMs(file: string): { name: string; ms: number } {
  const st = fs.readFileSync(file, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return { name: st.slice(st.indexOf('(') + 1, st.lastIndexOf(')')), ms: (Number(f[11]) + Number(f[12])) * 10 };
}
const cpu = (pid: number) => statMs(`/proc/${pid}/stat`).ms;
function threads(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    const s = statMs(`/proc/${pid}/task/${t}/stat`);
    out[`${s.name}#${t}`] = s.ms;
  }
  return out;
}
/** Read and write system calls of a process (socket and pipe I/O: a noise-free count of round trips). */
function syscalls(pid: number): number {
  const io = fs.readFileSync(`/proc/${pid}/io`, 'utf8');
  return Number(/^syscr: (\d+)/m.exec(io)![1]) + Number(/^syscw: (\d+)/m.exec(io)![1]);
}
const prof = (role: string) => [...(process.env.NODEARGS && role !== 'embedded' ? process.env.NODEARGS.split(' ') : []), ...(process.env.PROF ? ['--cpu-prof', `--cpu-prof-dir=/tmp/prof/${role}`] : [])];

if (!(await redisUp())) {
  process.stderr.write(`no Redis at ${REDIS_URL} (set REDIS_URL)\n`);
  process.exit(1);
}
const redisPid = Number(execSync('pidof redis-server').toString().trim().split(' ')[0]);
const mock = await startMockModel();
// When each model request arrived (ms since the batch's call): how long the batch took to start, and
// what came after the last answer (wall − last arrival − 1 s) is the tail.
let arrivals: number[] = [];
let batchT0 = 0;
mock.setHandler((req) => {
  arrivals.push(performance.now() - batchT0);
  return { text: `answer: ${req.lastUserText.slice(0, 40)}`, delayMs: 1000 };
});
const prefix = `dmcp-cpu-${randomBytes(4).toString('hex')}`;
const { ws, env, remove } = queueWorkspace(mock.url, prefix, 'cpu');
const tasks = (k: number) => Array.from({ length: k }, (_, i) => ({ agent: AGENT, task: `fan ${i}` }));

async function connect(args: string[], role: string): Promise<{ client: Client; pid: number }> {
  const client = new Client({ name: 'delegate-mcp-bench-queue-cpu', version: '1.0.0' });
  const t = new StdioClientTransport({ command: process.execPath, args: [...prof(role), CLI, 'serve', ...args], env: env(role), cwd: ws, stderr: 'pipe' });
  let err = '';
  t.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  client.onclose = () => {
    if (!closing) process.stderr.write(`${role} closed; its stderr ended with:\n${err}\n`);
  };
  await client.connect(t);
  return { client, pid: t.pid! };
}

function startWorker(role: string): Promise<ChildProcess> {
  return startQueueWorker(ws, env(role), 64, CLI, prof(role));
}

/** Redis's per-command call counts (INFO commandstats): what a batch asks of Redis, whatever the noise. */
async function commandCalls(r: Redis): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const m of (await r.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1], Number(m[2]));
  return out;
}

async function measure(label: string, client: Client, pids: Record<string, number>): Promise<void> {
  await client.callTool({ name: 'delegate_parallel', arguments: { tasks: tasks(16) } }); // pools warm
  for (let rep = 0; rep < REPS; rep++) {
    const before = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpu(p)]));
    const sysBefore = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, syscalls(p)]));
    const threadsBefore = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, threads(p)]));
    const callsBefore = await commandCalls(stats);
    const self = process.cpuUsage();
    const t0 = performance.now();
    batchT0 = t0;
    arrivals = [];
    const res = await client.callTool({ name: 'delegate_parallel', arguments: { tasks: tasks(TASKS) } }, { timeout: 60_000 });
    const wall = performance.now() - t0;
    const at = (q: number) => arrivals[Math.min(arrivals.length - 1, Math.floor(q * arrivals.length))].toFixed(0);
    const timeline = `model requests arrived at +${at(0)} / +${at(0.5)} / +${at(1)} ms (first / median / last); tail after the last answer ${(wall - arrivals[arrivals.length - 1] - 1000).toFixed(0)} ms`;
    const bench = process.cpuUsage(self);
    const ok = (res.structuredContent as { ok?: number } | undefined)?.ok;
    if (ok !== TASKS) throw new Error(`delegate_parallel: ${ok}/${TASKS} ok: ${JSON.stringify(res.content).slice(0, 600)}`);
    const callsAfter = await commandCalls(stats);
    const calls = [...callsAfter].map(([k, v]) => [k, v - (callsBefore.get(k) ?? 0)] as const).filter(([k, v]) => v > 0 && k !== 'info').sort((a, b) => b[1] - a[1]);
    if (process.env.THREADS) {
      for (const [k, p] of Object.entries(pids)) {
        if (k === 'redis') continue;
        const d = Object.entries(threads(p)).map(([n, v]) => [n, v - (threadsBefore[k][n] ?? 0)] as const).filter(([, v]) => v > 0);
        console.log(`    ${k} ${d.map(([n, v]) => `${n}=${v}`).join(' ')}`);
      }
    }
    const per = Object.entries(pids).map(([k, p]) => `${k}=${cpu(p) - before[k]}`).join(' ');
    const sys = Object.entries(pids).map(([k, p]) => `${k}=${syscalls(p) - sysBefore[k]}`).join(' ');
    console.log(`${label} wall=${wall.toFixed(0)} ok=${ok}/${TASKS} cpu ms: ${per} bench+mock=${((bench.user + bench.system) / 1000).toFixed(0)}`);
    console.log(`    ${timeline}`);
    console.log(`    read+write syscalls: ${sys}`);
    // Every client of this Redis counts (other runs on the machine too): read it as an upper bound.
    console.log(`    redis calls=${calls.reduce((n, [, v]) => n + v, 0)}: ${calls.filter(([k], i) => i < 8 || ['xread', 'evalsha', 'bzpopmin'].includes(k)).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  }
}

const stats = new Redis(REDIS_URL);
let closing = false;
const procs: ChildProcess[] = [];
try {
  if (MODES.includes('embedded')) {
    const e = await connect(['--workspace', ws], 'embedded');
    await measure('embedded', e.client, { server: e.pid, redis: redisPid });
    closing = true;
    await e.client.close();
    closing = false;
  }
  if (MODES.includes('queue')) {
    procs.push(await startWorker('w1'), await startWorker('w2'));
    const f = await connect(['--queue', REDIS_URL, '--workspace', ws], 'front');
    await measure('queue', f.client, { front: f.pid, w1: procs[0].pid!, w2: procs[1].pid!, redis: redisPid });
    closing = true;
    await f.client.close();
  }
} finally {
  for (const p of procs) p.kill('SIGTERM');
  await Promise.all(procs.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : p.on('exit', r)))));
  await dropPrefix(stats, prefix);
  stats.disconnect();
  await mock.close();
  remove();
}
