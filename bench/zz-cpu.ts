// temp probe: CPU per process for one delegate_parallel x128 (embedded vs queue)
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { startMockModel } from '../tests/mock-model/server.js';
import { CLI, mockEnv, tempDir, writeTree } from '../tests/helpers.js';
import { REDIS_URL } from '../tests/redis-check.js';
const AGENT = 'bench-agent';
const prof = (d: string) => [...(process.env.PROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/prof/' + d] : []), ...(process.env.XARGS ? process.env.XARGS.split(' ') : [])];
const threads = (pid: number) => Object.fromEntries(fs.readdirSync(`/proc/${pid}/task`).map((t) => { const st = fs.readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8'); const name = st.slice(st.indexOf('(') + 1, st.indexOf(')')); const f = st.split(') ')[1].split(' '); return [`${name}#${t}`, (Number(f[11]) + Number(f[12])) * 10]; }));
const cpu = (pid: number) => { const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) * 10; };
import { execSync } from 'node:child_process';
const redisPid = Number(execSync('pidof redis-server').toString().trim().split(' ')[0]);
async function connect(args: string[], env: Record<string, string>, cwd: string) {
  const client = new Client({ name: 'p', version: '1' });
  const t = new StdioClientTransport({ command: process.execPath, args: [...prof(args.includes('--queue') ? 'front' : 'emb'), CLI, 'serve', ...args], env, cwd, stderr: 'pipe' });
  await client.connect(t);
  return { client, pid: t.pid! };
}
async function startWorker(ws: string, env: Record<string, string>) {
  const child = spawn(process.execPath, [...prof('w' + Math.random().toString(36).slice(2,5)), CLI, 'worker', '--queue', REDIS_URL, '--workspace', ws, '--concurrency', '64'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  await new Promise<void>((res) => child.stderr!.on('data', (d: Buffer) => { err += d; if (/taking runs from/.test(err)) res(); }));
  return child;
}
const mock = await startMockModel();
mock.setHandler((req) => ({ text: `answer: ${req.lastUserText.slice(0, 40)}`, delayMs: 1000 }));
const prefix = `dmcp-probe-${randomBytes(4).toString('hex')}`;
const ws = tempDir('dmcp-probe-');
writeTree(ws, { [`agents/${AGENT}.yaml`]: `name: ${AGENT}\ndescription: B.\ninstructions: Answer.\nmodel: anthropic/claude-sonnet-5-5\nmax_turns: 2\n`, 'mcp.json': JSON.stringify({ delegate: { watch: false, pool: { maxThreads: 2, concurrentTasksPerWorker: 64, maxQueue: 256 } } }) });
const env = (node: string) => mockEnv(mock.url, { XDG_STATE_HOME: path.join(ws, '..', `${path.basename(ws)}-${node}`), DELEGATE_MCP_QUEUE_PREFIX: prefix, DELEGATE_MCP_LOG_LEVEL: 'info', ...(process.env.NODEOPTS ? { NODE_OPTIONS: process.env.NODEOPTS } : {}) });
const tasks = (k: number) => Array.from({ length: k }, (_, i) => ({ agent: AGENT, task: `fan ${i}` }));
async function measure(label: string, client: Client, pids: Record<string, number>) {
  await client.callTool({ name: 'delegate_parallel', arguments: { tasks: tasks(16) } });
  for (let rep = 0; rep < Number(process.env.REPS ?? 3); rep++) {
    const before: any = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpu(p)])); for (const [k, p] of Object.entries(pids)) if (k !== 'redis') before['t' + k] = threads(p);
    const selfB = process.cpuUsage(); const opens = () => Number(execSync('nstat -az TcpActiveOpens').toString().split('\n').find((l) => l.startsWith('TcpActiveOpens'))!.split(/\s+/)[1]); const o0 = opens();
    const t0 = performance.now();
    const res = await client.callTool({ name: 'delegate_parallel', arguments: { tasks: tasks(128) } }, { timeout: 60000 });
    const wall = performance.now() - t0;
    const self = process.cpuUsage(selfB);
    if (process.env.THREADS) for (const [k, p] of Object.entries(pids)) { if (k === 'redis') continue; const tb = (before as any)['t' + k]; const ta = threads(p); console.log('   ', k, Object.entries(ta).map(([n, v]) => [n, v - (tb?.[n] ?? 0)]).filter(([, v]) => (v as number) > 0).map(([n, v]) => `${n}=${v}`).join(' ')); }
    const d = Object.entries(pids).map(([k, p]) => `${k}=${cpu(p) - before[k]}`).join(' ');
    console.log(`${label} wall=${wall.toFixed(0)} ok=${(res.structuredContent as any)?.ok} cpu ms: ${d} opens=${opens() - o0} bench=${((self.user + self.system) / 1000).toFixed(0)}`);
  }
}
const e = await connect(['--workspace', ws], env('emb'), ws);
await measure('embedded', e.client, { server: e.pid, redis: redisPid });
await e.client.close();
const w1 = await startWorker(ws, env('w1'));
const w2 = await startWorker(ws, env('w2'));
const f = await connect(['--queue', REDIS_URL, '--workspace', ws], env('front'), ws);
await measure('queue', f.client, { front: f.pid, w1: w1.pid!, w2: w2.pid!, redis: redisPid });
await f.client.close(); w1.kill(); w2.kill(); await mock.close();
process.exit(0);
