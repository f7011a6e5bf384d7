// A/B of the queue hop: each variant (a build) as a queue front with one worker process, all up at once,
// blocks of sequential calls (mock model 0 ms) alternating between them round after round, so every
// variant sees the same machine noise. On a shared 2-core machine, two `npm run bench` runs differ by
// more than most changes to the hop gain.
//
//   node --import tsx bench/queue-hop-ab.ts '[{"name":"base","cli":"/tmp/base/dist/cli.js"},{"name":"now"}]' [rounds=20] [block=20]
//
// A variant is {name, cli?: another build's dist/cli.js (default: this one)}. Reports p25/p50/p75 per
// variant. Needs Redis (REDIS_URL); each variant uses its own key prefix, deleted after.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { Redis } from 'ioredis';
import { startMockModel } from '../tests/mock-model/server.js';
import { CLI } from '../tests/helpers.js';
import { dropPrefix, REDIS_URL, redisUp } from '../tests/redis-check.js';
import { alternatingCalls, queueWorkspace, startWorker } from './queue.js';

const WARM = 50;
const variants = JSON.parse(process.argv[2] ?? '[{"name":"now"}]') as { name: string; cli?: string }[];
const ROUNDS = Number(process.argv[3] ?? 20);
const BLOCK = Number(process.argv[4] ?? 20);

if (!(await redisUp())) {
  process.stderr.write(`no Redis at ${REDIS_URL} (set REDIS_URL)\n`);
  process.exit(1);
}
const mock = await startMockModel();
mock.setHandler((req) => ({ text: `answer: ${req.lastUserText.slice(0, 40)}` }));
const procs: ChildProcess[] = [];
const prefixes: string[] = [];
const removals: (() => void)[] = [];
const setups: { name: string; client: Client }[] = [];

const p = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * q)];
try {
  for (const v of variants) {
    const cli = v.cli ? path.resolve(v.cli) : CLI;
    const prefix = `dmcp-hop-${randomBytes(4).toString('hex')}`;
    prefixes.push(prefix);
    const { ws, env, remove } = queueWorkspace(mock.url, prefix, 'hop');
    removals.push(remove);
    procs.push(await startWorker(ws, env('worker'), 64, cli));
    const client = new Client({ name: 'delegate-mcp-bench-hop-ab', version: '1.0.0' });
    await client.connect(new StdioClientTransport({ command: process.execPath, args: [cli, 'serve', '--queue', REDIS_URL, '--workspace', ws], env: env('front'), cwd: ws, stderr: 'pipe' }));
    setups.push({ name: v.name, client });
  }
  const times = await alternatingCalls(setups.map((s) => s.client), ROUNDS * BLOCK, WARM, BLOCK);
  setups.forEach((s, k) => console.log(`${s.name.padEnd(12)} p25 ${p(times[k], 0.25).toFixed(2)} ms  p50 ${p(times[k], 0.5).toFixed(2)} ms  p75 ${p(times[k], 0.75).toFixed(2)} ms  (n=${times[k].length})`));
} finally {
  for (const s of setups) await s.client.close().catch(() => {});
  for (const pr of procs) pr.kill('SIGTERM');
  await Promise.all(procs.map((pr) => new Promise((r) => (pr.exitCode !== null ? r(null) : pr.on('exit', r)))));
  const r = new Redis(REDIS_URL);
  for (const x of prefixes) await dropPrefix(r, x);
  r.disconnect();
  await mock.close();
  for (const remove of removals) remove();
}
