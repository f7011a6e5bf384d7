// Queue mode rows of `npm run bench` (also alone: `node --import tsx bench/queue.ts [--quick]`):
// - per-call overhead of the queue hop: sequential agent calls (mock model 0 ms) through an embedded
//   server vs a queue front with one worker process, in blocks that alternate between the two (both
//   sides see the same moments of a shared machine), p50 of each and the difference (target ≤ +5 ms);
// - 128 delegate_parallel tasks with a 1 s model across 2 worker processes: wall time and efficiency =
//   model latency / wall (target ≥ 0.85), the median of 3 after a first ×128 (reported too: the second
//   worker is cold), next to the same batch on the embedded server and BullMQ alone
//   (bullmq-floor.ts), both measured in the same run.
// Needs Redis (REDIS_URL, default redis://127.0.0.1:6379); uses its own key prefix and deletes it after.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { Redis } from 'ioredis';
import { localRedisPid, machineCpuMs, processCpuMs } from './proc.js';
import { startMockModel, type MockModel } from '../tests/mock-model/server.js';
import { CLI, mockEnv, tempDir, writeTree } from '../tests/helpers.js';
import { dropPrefix, REDIS_URL, redisUp } from '../tests/redis-check.js';
import { bullmqFloor } from './bullmq-floor.js';

const AGENT = 'bench-agent';
const MODEL_LATENCY_MS = 1000;

export interface QueueBench {
  seqEmbeddedP50: number;
  seqQueueP50: number;
  /** CPU of an idle second front (ms) per sequential call on the first, during them. */
  idleFrontCpuPerCall: number;
  fanWorkers: number;
  fanTasks: number;
  fanWall: number;
  efficiency: number;
  /** The same fan-out on the embedded server, same moment (how much of the wall is this machine's load). */
  fanWallEmbedded: number;
  /** BullMQ alone, the same number of 1 s jobs over 2 worker processes (bullmq-floor.ts): the floor under fanWall. */
  fanWallBullmq: number;
  /**
   * CPU ms per ×128 batch (median) of every process in it: queue (front, workers), embedded (server),
   * BullMQ alone (its workers); each with the bench process (MCP client, mock model) and a local Redis.
   * On 2 cores, the part of it spent while runs start or end is what the wall pays past 1 s.
   */
  fanCpu: { queue: number; embedded: number; bullmq: number; redisCounted: boolean };
  /** The first call on a fresh server (its first tools/call): embedded, and a front with its worker just started. */
  firstCallEmbedded: number;
  firstCallQueue: number;
  /** delegate_parallel ×16 right after the second worker started, and the next one. */
  firstFan16: number;
  nextFan16: number;
  /** The first ×128 (right after the ×16s: the second worker's code not yet optimised), embedded and queue; the rows above are the median of the batches after it. */
  firstFan128Embedded: number;
  firstFan128Queue: number;
  /** How many ×128 batches after the first each median is of. */
  fanReps: number;
}

function p50(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
}

async function connect(args: string[], env: Record<string, string>, cwd: string): Promise<Client & { pid: number }> {
  const client = new Client({ name: 'delegate-mcp-bench-queue', version: '1.0.0' });
  const transport = new StdioClientTransport({ command: process.execPath, args: [CLI, 'serve', ...args], env, cwd, stderr: 'pipe' });
  await client.connect(transport);
  return Object.assign(client, { pid: transport.pid! });
}

/** The queue benches' workspace, and each node's environment. */
export interface QueueWorkspace {
  /** The workspace: the bench agent, and a pool that takes 64 runs per thread. */
  ws: string;
  /** A node's environment: its own state dir (as on its own machine), the shared queue prefix and key. */
  env: (node: string) => Record<string, string>;
  /** Deletes the workspace and every node's state dir. */
  remove: () => void;
}

export function queueWorkspace(mockUrl: string, prefix: string, tag: string): QueueWorkspace {
  const ws = tempDir(`dmcp-${tag}-`);
  writeTree(ws, {
    [`agents/${AGENT}.yaml`]: `name: ${AGENT}\ndescription: Bench agent.\ninstructions: Answer.\nmodel: anthropic/claude-sonnet-5-5\nmax_turns: 2\n`,
    'mcp.json': JSON.stringify({ delegate: { watch: false, pool: { maxThreads: 2, concurrentTasksPerWorker: 64, maxQueue: 256 } } }),
  });
  const queueKey = randomBytes(32).toString('base64url');
  const stateDirs = new Set<string>();
  const env = (node: string) => {
    const stateDir = `${ws}-${node}`;
    stateDirs.add(stateDir);
    return mockEnv(mockUrl, { XDG_STATE_HOME: stateDir, DELEGATE_MCP_QUEUE_PREFIX: prefix, DELEGATE_MCP_QUEUE_KEY: queueKey, DELEGATE_MCP_LOG_LEVEL: 'info' });
  };
  const remove = () => {
    for (const dir of [ws, ...stateDirs]) fs.rmSync(dir, { recursive: true, force: true });
  };
  return { ws, env, remove };
}

/** A worker process, resolved once it takes runs; `cli`: another build, `nodeArgs`: e.g. --cpu-prof flags. */
export async function startWorker(ws: string, env: Record<string, string>, concurrency: number, cli = CLI, nodeArgs: string[] = []): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...nodeArgs, cli, 'worker', '--queue', REDIS_URL, '--workspace', ws, '--concurrency', String(concurrency)], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker did not start:\n${err}`)), 15_000);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (/taking runs from/.test(err)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return child;
}

/** One agent call's wall time (mock model 0 ms). */
export async function timedCall(client: Client, i: number): Promise<number> {
  const t0 = performance.now();
  const res = await client.callTool({ name: AGENT, arguments: { task: `seq ${i}` } });
  if (res.isError) throw new Error(JSON.stringify(res.content).slice(0, 300));
  return performance.now() - t0;
}

/**
 * `n` timed sequential calls on each server after `warm` on each, in blocks of `block` that alternate
 * between them, every other round in the other order: a shared machine's slow and fast spells fall on
 * every side, where runs one after the other put a spell on one side only (seen: the queue hop at +4.7
 * and +9.4 ms on the same code). The times per server, in its order.
 */
export async function alternatingCalls(clients: Client[], n: number, warm: number, block = 20): Promise<number[][]> {
  const out = clients.map(() => [] as number[]);
  let i = 0;
  for (const c of clients) for (let k = 0; k < warm; k++) await timedCall(c, i++);
  for (let round = 0; out[0].length < n; round++) {
    const order = clients.map((_, k) => k);
    if (round % 2) order.reverse();
    for (const k of order) for (let b = 0; b < block && out[k].length < n; b++) out[k].push(await timedCall(clients[k], i++));
  }
  return out;
}

const FAN_TASKS = 128;

/**
 * delegate_parallel ×128 with a 1 s model after two ×16 (timed: the first warms the pools) and a first
 * ×128 (timed, reported apart: as bench.ts warms its ×128 rows, so the embedded server, warm from the
 * sequential calls, and the queue's second worker, started just before, are compared warm): the median
 * wall of `reps` after it.
 */
async function fanOut(client: Client, reps: number, pids: number[]): Promise<{ p50: number; cpuP50: number; first16: number; next16: number; first128: number }> {
  mockRef!.setHandler((req) => ({ text: `answer: ${req.lastUserText.slice(0, 40)}`, delayMs: MODEL_LATENCY_MS }));
  const tasks = (k: number) => Array.from({ length: k }, (_, i) => ({ agent: AGENT, task: `fan ${i}` }));
  const timed = async (k: number) => {
    const t0 = performance.now();
    await client.callTool({ name: 'delegate_parallel', arguments: { tasks: tasks(k) } });
    return performance.now() - t0;
  };
  const first16 = await timed(16);
  const next16 = await timed(16);
  const walls: number[] = [];
  const cpus: number[] = [];
  let first128 = 0;
  for (let rep = -1; rep < reps; rep++) {
    const t0 = performance.now();
    const { value: res, cpuMs } = await machineCpuMs(pids, () => client.callTool({ name: 'delegate_parallel', arguments: { tasks: tasks(FAN_TASKS) } }, { timeout: 60_000 }));
    const sc = res.structuredContent as { ok: number } | undefined;
    if (sc?.ok !== FAN_TASKS) throw new Error(`delegate_parallel: ${sc?.ok}/${FAN_TASKS} ok`);
    if (rep < 0) first128 = performance.now() - t0;
    else {
      walls.push(performance.now() - t0);
      cpus.push(cpuMs);
    }
  }
  return { p50: p50(walls), cpuP50: p50(cpus), first16, next16, first128 };
}

let mockRef: MockModel | undefined;

/** Runs the queue rows; undefined (with the reason on stderr) when Redis is not there. */
export async function benchQueue(opts: { quick: boolean; mock?: MockModel }): Promise<QueueBench | undefined> {
  if (!(await redisUp())) {
    process.stderr.write(`queue mode: skipped (no Redis at ${REDIS_URL}; set REDIS_URL)\n`);
    return undefined;
  }
  const mock = opts.mock ?? (await startMockModel());
  mockRef = mock;
  const prefix = `dmcp-bench-${randomBytes(4).toString('hex')}`;
  const { ws, env, remove } = queueWorkspace(mock.url, prefix, 'bench-queue');
  const procs: ChildProcess[] = [];
  const clients: Client[] = [];
  const n = opts.quick ? 60 : 300;
  const warm = opts.quick ? 20 : 50;
  const reps = opts.quick ? 1 : 3;
  try {
    mock.setHandler((req) => ({ text: `answer: ${req.lastUserText.slice(0, 40)}` }));
    const embedded = await connect(['--workspace', ws], env('embedded'), ws);
    clients.push(embedded);
    const firstCallEmbedded = await timedCall(embedded, 0);
    procs.push(await startWorker(ws, env('w1'), 64));
    const front = await connect(['--queue', REDIS_URL, '--workspace', ws], env('front'), ws);
    clients.push(front);
    const firstCallQueue = await timedCall(front, 0);
    // A second front of the queue, idle: what the first front's runs cost it (nothing to read, if each front hears only its own).
    const idle = await connect(['--queue', REDIS_URL, '--workspace', ws], env('front-idle'), ws);
    clients.push(idle);
    const idleCpu0 = processCpuMs(idle.pid);
    const [seqEmbedded, seqQueue] = await alternatingCalls([embedded, front], n, warm);
    const idleFrontCpuPerCall = (processCpuMs(idle.pid) - idleCpu0) / (n + warm);
    await idle.close();
    const redisPid = localRedisPid(REDIS_URL);
    const redis = redisPid ? [redisPid] : [];
    const fanEmbedded = await fanOut(embedded, reps, [embedded.pid, ...redis]);
    mock.setHandler((req) => ({ text: `answer: ${req.lastUserText.slice(0, 40)}` }));
    await embedded.close();
    procs.push(await startWorker(ws, env('w2'), 64));
    const fan = await fanOut(front, reps, [front.pid, ...procs.map((p) => p.pid!), ...redis]);
    const floor = await bullmqFloor(reps);
    return {
      seqEmbeddedP50: p50(seqEmbedded),
      seqQueueP50: p50(seqQueue),
      idleFrontCpuPerCall,
      fanWorkers: 2,
      fanTasks: FAN_TASKS,
      fanWall: fan.p50,
      efficiency: MODEL_LATENCY_MS / fan.p50,
      fanWallEmbedded: fanEmbedded.p50,
      fanWallBullmq: floor.wall,
      fanCpu: { queue: fan.cpuP50, embedded: fanEmbedded.cpuP50, bullmq: floor.cpuMs, redisCounted: redisPid !== undefined },
      firstCallEmbedded,
      firstCallQueue,
      firstFan16: fan.first16,
      nextFan16: fan.next16,
      firstFan128Embedded: fanEmbedded.first128,
      firstFan128Queue: fan.first128,
      fanReps: reps,
    };
  } finally {
    for (const c of clients) await c.close().catch(() => {});
    for (const p of procs) p.kill('SIGTERM');
    await Promise.all(procs.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : p.on('exit', r)))));
    const r = new Redis(REDIS_URL);
    await dropPrefix(r, prefix);
    r.disconnect();
    if (!opts.mock) await mock.close();
    remove();
  }
}

/** The queue rows of the report table: [metric, value, target with PASS/FAIL]. */
export function queueRows(q: QueueBench): [string, string, string][] {
  const delta = q.seqQueueP50 - q.seqEmbeddedP50;
  const pf = (pass: boolean) => (pass ? 'PASS' : 'FAIL');
  return [
    ['queue hop: per-call p50, embedded → front + 1 worker (model 0 ms), blocks alternating', `${q.seqEmbeddedP50.toFixed(1)} → ${q.seqQueueP50.toFixed(1)} ms (${delta >= 0 ? '+' : ''}${delta.toFixed(1)} ms)`, `≤ +5 ms ${pf(delta <= 5)}`],
    ['an idle second front during those calls: its CPU per call on the first (its own runs only reach a front)', `${(q.idleFrontCpuPerCall * 1000).toFixed(0)} µs`, ''],
    [`queue: delegate_parallel ×${q.fanTasks}, 1 s model, ${q.fanWorkers} workers: wall (eff.), median of ${q.fanReps} after the first`, `${q.fanWall.toFixed(0)} ms (${q.efficiency.toFixed(3)})`, `≥ 0.85 ${pf(q.efficiency >= 0.85)}`],
    [`first ×${q.fanTasks} of each (before the batches above): queue, then embedded`, `${q.firstFan128Queue.toFixed(0)} ms (${(MODEL_LATENCY_MS / q.firstFan128Queue).toFixed(3)}), embedded ${q.firstFan128Embedded.toFixed(0)} ms (${(MODEL_LATENCY_MS / q.firstFan128Embedded).toFixed(3)})`, ''],
    [`reference: the same ×${q.fanTasks} on the embedded server, same moment`, `${q.fanWallEmbedded.toFixed(0)} ms (${(MODEL_LATENCY_MS / q.fanWallEmbedded).toFixed(3)})`, ''],
    [`floor: BullMQ alone, ${q.fanTasks} jobs that wait 1 s, 2 worker processes, same moment`, `${q.fanWallBullmq.toFixed(0)} ms (${(MODEL_LATENCY_MS / q.fanWallBullmq).toFixed(3)})`, ''],
    [
      `CPU per ×${q.fanTasks} batch, every process in it (the bench's MCP client and mock model included${q.fanCpu.redisCounted ? ', and Redis' : '; Redis not local, not counted'}): queue · embedded · BullMQ alone`,
      `${q.fanCpu.queue.toFixed(0)} · ${q.fanCpu.embedded.toFixed(0)} · ${q.fanCpu.bullmq.toFixed(0)} ms (queue − the other two: ${(q.fanCpu.queue - q.fanCpu.embedded - q.fanCpu.bullmq).toFixed(0)} ms)`,
      '',
    ],
    ['first call after start: embedded → front + 1 worker (model 0 ms)', `${q.firstCallEmbedded.toFixed(1)} → ${q.firstCallQueue.toFixed(1)} ms`, ''],
    ['first fan-out: delegate_parallel ×16 (1 s model) right after the 2nd worker started, then the next', `${q.firstFan16.toFixed(0)} ms, then ${q.nextFan16.toFixed(0)} ms (${(q.firstFan16 / q.nextFan16).toFixed(2)}×)`, ''],
  ];
}

/** The queue section of the report (a markdown table), or the reason it is missing. */
export async function queueSection(quick: boolean): Promise<string> {
  const q = await benchQueue({ quick });
  if (!q) return `queue mode: skipped (no Redis at ${REDIS_URL})\n`;
  return ['| queue mode | value | target |', '| --- | --- | --- |', ...queueRows(q).map((r) => `| ${r.join(' | ')} |`), ''].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(await queueSection(process.argv.includes('--quick') || process.env.BENCH_QUICK === '1'));
}
