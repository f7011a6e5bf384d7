// The floor under queue mode's fan-out row, measured on the same machine at the same moment: BullMQ
// alone, 128 jobs that each wait 1 s (the mock model's latency) over 2 worker processes with the same
// takers as ours (4 × 16 each), results through QueueEvents as a front reads them. What queue mode adds
// on top of it is delegate-mcp's own work per run (the agent loop, a model request, books, audit),
// done by three Node processes and Redis on the same cores.
//   node --import tsx bench/bullmq-floor.ts
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Queue, QueueEvents, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { dropPrefix, REDIS_URL } from '../tests/redis-check.js';
import { localRedisPid, machineCpuMs } from './proc.js';

const JOBS = 128;
const WAIT_MS = 1000;
const self = fileURLToPath(import.meta.url);

/** A worker process: 4 takers of 16, each job waits WAIT_MS and answers with about a result's size. */
async function workerMain(prefix: string): Promise<void> {
  const conn = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const workers = Array.from({ length: 4 }, () =>
    new Worker('runs', async () => (await new Promise((r) => setTimeout(r, WAIT_MS)), { output: 'x'.repeat(600) }), { connection: conn.duplicate(), prefix, concurrency: 16, maxStalledCount: 0 }),
  );
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  process.send!('ready');
}

/**
 * The median wall of `reps` batches of JOBS jobs (after one warm batch), and the median CPU per batch of
 * the machine's processes in it (this one, the worker processes, a local Redis).
 */
export async function bullmqFloor(reps: number): Promise<{ wall: number; cpuMs: number }> {
  const prefix = `dmcp-floor-${randomBytes(4).toString('hex')}`;
  const conn = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const queue = new Queue('runs', { connection: conn, prefix });
  // Connections passed in are ours to close (BullMQ leaves a shared connection open).
  const eventsConn = conn.duplicate();
  const events = new QueueEvents('runs', { connection: eventsConn, prefix });
  const procs: ChildProcess[] = [];
  try {
    await events.waitUntilReady();
    for (let i = 0; i < 2; i++) procs.push(fork(self, ['worker', prefix], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }));
    await Promise.all(procs.map((p) => new Promise((r) => p.once('message', r))));
    const walls: number[] = [];
    const cpus: number[] = [];
    const redisPid = localRedisPid(REDIS_URL);
    const pids = [...procs.map((p) => p.pid!), ...(redisPid ? [redisPid] : [])];
    for (let rep = 0; rep <= reps; rep++) {
      const ids = Array.from({ length: JOBS }, (_, i) => `b${rep}-${i}`);
      const left = new Set(ids);
      const t0 = performance.now();
      const done = new Promise<void>((resolve) => {
        const onDone = ({ jobId }: { jobId: string }) => {
          if (left.delete(jobId) && left.size === 0) {
            events.off('completed', onDone);
            resolve();
          }
        };
        events.on('completed', onDone);
      });
      const { cpuMs } = await machineCpuMs(pids, async () => {
        await queue.addBulk(ids.map((id) => ({ name: 'run', data: { input: 'y'.repeat(300) }, opts: { jobId: id, removeOnComplete: { age: 600 } } })));
        await done;
      });
      if (rep > 0) {
        walls.push(performance.now() - t0);
        cpus.push(cpuMs);
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
    return { wall: median(walls), cpuMs: median(cpus) };
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await queue.close();
    await events.close();
    await dropPrefix(conn, prefix);
    eventsConn.disconnect();
    conn.disconnect();
  }
}

if (process.argv[2] === 'worker') await workerMain(process.argv[3]);
else if (process.argv[1] === self) {
  const { wall, cpuMs } = await bullmqFloor(3);
  process.stdout.write(`BullMQ alone: ${JOBS} jobs of ${WAIT_MS} ms over 2 workers: ${wall.toFixed(0)} ms (${(WAIT_MS / wall).toFixed(3)}), CPU ${cpuMs.toFixed(0)} ms per batch\n`);
}
