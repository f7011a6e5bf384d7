// `npm run bench`: delegate-mcp against a bare MCP server doing the same single model call, in one
// run, both over stdio with the real MCP client and a local mock model (tests/mock-model/server.ts).
//
// Both servers are plain `node` processes (ours: dist/cli.js serve; baseline: bench/bare-server.mjs),
// so no tsx loader cost lands in either. Measured, for each: cold start (spawn → initialize →
// tools/list), per-call overhead (sequential calls, mock latency 0), fan-out wall time at N concurrent
// calls with a 1 s model (after a warm-up; the first fan-out after start is reported separately),
// server CPU per call (/proc/<pid>/stat, all threads), RSS idle and peak (/proc/<pid>/status).
// At the edges: the first tools/call after start (spawn → initialize → tools/list → the call), the
// first N=32 fan-out right after start (ours: one delegate_parallel, against our warm ones), RSS after
// 10,000 calls, and (ours only) the budget-burst admission figure: after a few runs of history, 100
// concurrent runs against a daily cap that fits 10. Then the sandbox's and the queue mode's rows
// (bench/sandbox.ts, bench/queue.ts; the queue rows need Redis).
//
// Options (after `npm run bench --`):
//   --quick                 fewer samples (a smoke run, not for the README); also BENCH_QUICK=1
//   --pool '{"minThreads":2}'  delegate.pool overrides for OUR server (written to an mcp.json)
//   --delegate '{"audit":{"enabled":false}}'  other delegate.* settings for OUR server (same mcp.json)
//   --cpu-prof DIR          run our server with --cpu-prof (profiles of the main thread and workers)
//   --cli PATH              another build of dist/cli.js to measure as "ours" (for experiments)
import { performance } from 'node:perf_hooks';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { startMockModel, type MockModel } from '../tests/mock-model/server.js';
import { CLI, ROOT, tempDir, writeTree, mockEnv } from '../tests/helpers.js';
import { benchSandbox } from './sandbox.js';
import { queueSection } from './queue.js';
import { processCpuMs } from './proc.js';

// ---------------------------------------------------------------------------------------------- args
const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(name);
const option = (name: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const QUICK = flag('--quick') || process.env.BENCH_QUICK === '1';
const POOL = option('--pool');
const DELEGATE = option('--delegate');
const CPU_PROF = option('--cpu-prof');
const OUR_CLI = option('--cli') ?? CLI;

const COLD_STARTS = QUICK ? 3 : 7;
const FIRST_FANOUTS = QUICK ? 1 : 3;
/** Calls made (all phases) before RSS is read again. */
const LONG_RUN_CALLS = QUICK ? 2000 : 10_000;
const BURST = 100;
const SEQ_CALLS = QUICK ? 60 : 300;
const SEQ_WARMUP = QUICK ? 20 : 50;
const FAN_NS = [1, 8, 32, 128];
const FAN_REPS = QUICK ? 1 : 3;
const FAN_REPS_BIG = QUICK ? 1 : 5; // N = 32 and 128: the targets
const SEQ_BLOCK = 50;
const MODEL_LATENCY_MS = 1000;
const AGENT = 'bench-agent';

// ------------------------------------------------------------------------------------------- helpers
const log = (s: string) => process.stderr.write(s + '\n');
const median = (xs: number[]) => quantile(xs, 0.5);
function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}
/** VmRSS and VmHWM in MB. */
function memMb(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}
const threadsOf = (pid: number) => Number(/^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
/** What was measured: the commit, and whether the working tree had changes on top of it. */
function revision(): string {
  try {
    return execFileSync('git', ['describe', '--always', '--dirty'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown revision';
  }
}
const ms = (x: number) => (Number.isFinite(x) ? `${x.toFixed(x < 10 ? 2 : x < 100 ? 1 : 0)} ms` : 'n/a');
const mb = (x: number) => `${x.toFixed(1)} MB`;
const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}×` : 'n/a');

// ----------------------------------------------------------------------------------------- targets
interface Target {
  name: 'ours' | 'baseline';
  args: string[];
  cwd: string;
  env: Record<string, string>;
}

interface Handle {
  client: Client;
  transport: StdioClientTransport;
  pid: number;
  stderr: () => string;
  connectMs: number;
  listMs: number;
  /** Agent calls made through this handle (delegate_parallel tasks included). */
  calls?: number;
  close(): Promise<void>;
}

async function start(t: Target): Promise<Handle> {
  const t0 = performance.now();
  const transport = new StdioClientTransport({ command: process.execPath, args: t.args, env: t.env, cwd: t.cwd, stderr: 'pipe' });
  let stderr = '';
  transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const client = new Client({ name: 'delegate-mcp-bench', version: '1.0.0' });
  await client.connect(transport);
  const connectMs = performance.now() - t0;
  const { tools } = await client.listTools();
  const listMs = performance.now() - t0;
  if (!tools.some((x) => x.name === AGENT)) throw new Error(`${t.name}: tool ${AGENT} missing (${tools.map((x) => x.name)}); stderr:\n${stderr}`);
  const pid = transport.pid!;
  return {
    client,
    transport,
    pid,
    stderr: () => stderr,
    connectMs,
    listMs,
    close: async () => {
      const exited = new Promise<void>((resolve) => {
        const check = setInterval(() => {
          try {
            process.kill(pid, 0);
          } catch {
            clearInterval(check);
            resolve();
          }
        }, 20);
      });
      await client.close().catch(() => {});
      await Promise.race([exited, sleep(5000)]);
    },
  };
}

async function callAgent(h: Handle, task: string): Promise<void> {
  h.calls = (h.calls ?? 0) + 1;
  const res = await h.client.callTool({ name: AGENT, arguments: { task } });
  if (res.isError) throw new Error(`tool error: ${JSON.stringify(res.content).slice(0, 300)}`);
}

async function fanOut(h: Handle, mode: 'direct' | 'parallel', n: number, mock: MockModel): Promise<number> {
  mock.reset();
  mock.setHandler((req) => ({ text: `answer: ${req.lastUserText.slice(0, 40)}`, delayMs: MODEL_LATENCY_MS }));
  const t0 = performance.now();
  h.calls = (h.calls ?? 0) + (mode === 'parallel' ? n : 0);
  if (mode === 'parallel') {
    const tasks = Array.from({ length: n }, (_, i) => ({ agent: AGENT, task: `fan ${i}` }));
    const res = await h.client.callTool({ name: 'delegate_parallel', arguments: { tasks } });
    const sc = res.structuredContent as { ok: number; results: { status: string; error?: string }[] } | undefined;
    if (!sc || sc.ok !== n) throw new Error(`delegate_parallel: ${sc?.ok}/${n} ok: ${JSON.stringify(sc?.results.find((r) => r.status !== 'ok') ?? res.content).slice(0, 300)}`);
  } else {
    await Promise.all(Array.from({ length: n }, (_, i) => callAgent(h, `fan ${i}`)));
  }
  const wall = performance.now() - t0;
  if (mock.maxInFlight !== n) log(`  note: mock saw at most ${mock.maxInFlight} of ${n} requests in flight`);
  mock.reset();
  return wall;
}

// ------------------------------------------------------------------------------------------ results
interface FanRow {
  walls: number[];
}
interface Result {
  coldConnect: number[];
  coldList: number[];
  /** tools/list answered → first tools/call answered (model 0 ms), on a fresh server. */
  firstCall: number[];
  /** Right after start: N=32 fan-out (ours: delegate_parallel; baseline: 32 concurrent calls). */
  firstFanOuts: number[];
  rssLongRun: number;
  longRunCalls: number;
  burst?: { admitted: number; completed: number; modelRequests: number; spent: number; cap: number; capFits: number; perRun: number };
  seq: number[];
  cpuSeqMs: number;
  cpuFanMs: number;
  rssIdle: number;
  rssPeakSampled: number;
  hwm: number;
  threadsIdle: number;
  threadsPeak: number;
  firstFanOut: number;
  fan: Record<string, Record<number, FanRow>>; // mode → N → walls
}
const emptyResult = (): Result => ({
  coldConnect: [],
  coldList: [],
  firstCall: [],
  firstFanOuts: [],
  rssLongRun: NaN,
  longRunCalls: 0,
  seq: [],
  cpuSeqMs: NaN,
  cpuFanMs: NaN,
  rssIdle: NaN,
  rssPeakSampled: 0,
  hwm: NaN,
  threadsIdle: NaN,
  threadsPeak: 0,
  firstFanOut: NaN,
  fan: {},
});

// --------------------------------------------------------------------------------------------- main
async function main(): Promise<void> {
  const benchStart = performance.now();
  const mock = await startMockModel();
  const ws = tempDir('dmcp-bench-');
  const agentsDir = path.join(ws, 'agents');
  writeTree(agentsDir, {
    [`${AGENT}.yaml`]: `name: ${AGENT}
description: Benchmark agent that answers in one model call, with no tools.
instructions: Answer the task.
model: anthropic/claude-bench
max_turns: 2
`,
  });
  if (POOL || DELEGATE) {
    const delegate = { ...(DELEGATE ? JSON.parse(DELEGATE) : {}), ...(POOL ? { pool: JSON.parse(POOL) } : {}) };
    writeFileSync(path.join(ws, 'mcp.json'), JSON.stringify({ delegate }, null, 2));
  }
  const env = mockEnv(mock.url);
  const nodeFlags: string[] = [];
  if (CPU_PROF) {
    mkdirSync(path.resolve(CPU_PROF), { recursive: true });
    nodeFlags.push('--cpu-prof', '--cpu-prof-dir', path.resolve(CPU_PROF));
  }
  const ours: Target = { name: 'ours', args: [...nodeFlags, path.resolve(OUR_CLI), 'serve', '--agents', agentsDir, '--workspace', ws], cwd: ws, env };
  const bare: Target = { name: 'baseline', args: [path.join(ROOT, 'bench', 'bare-server.mjs')], cwd: ws, env: { ...env, BARE_TOOL: AGENT } };
  const results: Record<Target['name'], Result> = { ours: emptyResult(), baseline: emptyResult() };

  log(`delegate-mcp bench · ${revision()} · node ${process.version} · ${cpus().length} CPUs · ${QUICK ? 'QUICK · ' : ''}pool ${POOL ?? 'defaults'}${DELEGATE ? ` · delegate ${DELEGATE}` : ''} · mock ${mock.url}`);

  // Cold start, interleaved so that machine noise hits both alike.
  log(`cold start: ${COLD_STARTS} spawns each`);
  for (let i = 0; i < COLD_STARTS; i++) {
    for (const t of i % 2 ? [bare, ours] : [ours, bare]) {
      const h = await start(t);
      results[t.name].coldConnect.push(h.connectMs);
      results[t.name].coldList.push(h.listMs);
      // The first tools/call right after start: what a client that starts a server per session sees.
      mock.reset();
      const t0 = performance.now();
      await callAgent(h, 'first call');
      results[t.name].firstCall.push(performance.now() - t0);
      await h.close();
    }
  }

  // The first fan-out right after start (no idle time to warm up in).
  log(`first fan-out after start: ${FIRST_FANOUTS} spawns each`);
  for (let i = 0; i < FIRST_FANOUTS; i++) {
    for (const t of i % 2 ? [bare, ours] : [ours, bare]) {
      const h = await start(t);
      results[t.name].firstFanOuts.push(await fanOut(h, t.name === 'ours' ? 'parallel' : 'direct', 32, mock));
      await h.close();
    }
  }
  for (const [name, r] of Object.entries(results)) log(`${name}: first call ${r.firstCall.map((x) => ms(x)).join(', ')} · first fan-out ${r.firstFanOuts.map((x) => ms(x)).join(', ')}`);

  // Both servers stay up for the rest of the run and are measured alternately, so that the noise of
  // a shared machine lands on both alike.
  const targets = [ours, bare];
  const handles = new Map<Target['name'], Handle>();
  try {
    for (const t of targets) {
      const h = await start(t);
      handles.set(t.name, h);
      await sleep(1000);
      results[t.name].rssIdle = memMb(h.pid).rss;
      results[t.name].threadsIdle = threadsOf(h.pid);
    }
    const each = async (fn: (t: Target, h: Handle, r: Result) => Promise<void>) => {
      for (const t of targets) await fn(t, handles.get(t.name)!, results[t.name]);
    };

    // The first fan-out after start and 1 s idle: cold worker code (JIT) unless warmed in that second.
    await each(async (t, h, r) => {
      r.firstFanOut = await fanOut(h, 'direct', 32, mock);
      log(`${t.name}: first fan-out after 1 s idle (N=32 direct): ${ms(r.firstFanOut)}`);
    });

    // Warm-up: sequential calls, then full-width fan-outs so every pool thread exists and is warm.
    await each(async (t, h) => {
      mock.reset();
      for (let i = 0; i < SEQ_WARMUP; i++) await callAgent(h, `warm ${i}`);
      await fanOut(h, 'direct', 128, mock);
      if (t.name === 'ours') await fanOut(h, 'parallel', 128, mock);
    });

    // Per-call overhead: mock latency 0, sequential, the whole round trip; blocks alternate.
    mock.reset();
    const cpuSeq = { ours: 0, baseline: 0 };
    for (let done = 0; done < SEQ_CALLS; done += SEQ_BLOCK) {
      await each(async (t, h, r) => {
        const cpu0 = processCpuMs(h.pid);
        for (let i = done; i < Math.min(SEQ_CALLS, done + SEQ_BLOCK); i++) {
          const t0 = performance.now();
          await callAgent(h, `seq ${i}`);
          r.seq.push(performance.now() - t0);
        }
        cpuSeq[t.name] += processCpuMs(h.pid) - cpu0;
      });
    }
    await each(async (t, _h, r) => {
      r.cpuSeqMs = cpuSeq[t.name] / r.seq.length;
      log(`${t.name}: per-call p50 ${ms(quantile(r.seq, 0.5))} p95 ${ms(quantile(r.seq, 0.95))} · CPU ${ms(r.cpuSeqMs)}/call`);
    });

    // Fan-out: 1 s model, N concurrent calls; repetitions alternate between the servers and modes.
    const cpuFan = { ours: 0, baseline: 0 };
    for (const n of FAN_NS) {
      const reps = n >= 32 ? FAN_REPS_BIG : FAN_REPS;
      for (let rep = 0; rep < reps; rep++) {
        await each(async (t, h, r) => {
          for (const mode of t.name === 'ours' ? (['parallel', 'direct'] as const) : (['direct'] as const)) {
            const row = ((r.fan[mode] ??= {})[n] ??= { walls: [] });
            let sampler: NodeJS.Timeout | undefined;
            const cpu0 = processCpuMs(h.pid);
            if (n === 128) {
              sampler = setInterval(() => {
                r.rssPeakSampled = Math.max(r.rssPeakSampled, memMb(h.pid).rss);
                r.threadsPeak = Math.max(r.threadsPeak, threadsOf(h.pid));
              }, 25);
            }
            try {
              row.walls.push(await fanOut(h, mode, n, mock));
            } finally {
              if (sampler) clearInterval(sampler);
            }
            if (n === 128 && mode === 'direct') cpuFan[t.name] += (processCpuMs(h.pid) - cpu0) / n / reps;
          }
        });
      }
      await each(async (t, _h, r) => {
        for (const mode of Object.keys(r.fan)) log(`${t.name}: fan-out N=${n} ${mode}: ${r.fan[mode][n].walls.map((w) => ms(w)).join(', ')}`);
      });
    }
    await each(async (t, h, r) => {
      r.cpuFanMs = cpuFan[t.name];
      r.hwm = memMb(h.pid).hwm;
    });

    // RSS after many calls (what finished runs leave behind): calls 8 at a time up to LONG_RUN_CALLS.
    mock.reset();
    await each(async (t, h, r) => {
      const t0 = performance.now();
      while ((h.calls ?? 0) < LONG_RUN_CALLS) {
        const batch = Math.min(8, LONG_RUN_CALLS - (h.calls ?? 0));
        await Promise.all(Array.from({ length: batch }, (_, i) => callAgent(h, `long ${i}`)));
      }
      await sleep(1000);
      r.rssLongRun = memMb(h.pid).rss;
      r.longRunCalls = h.calls ?? 0;
      log(`${t.name}: RSS after ${r.longRunCalls} calls ${mb(r.rssLongRun)} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    });
  } catch (err) {
    for (const [name, h] of handles) log(`${name} stderr:\n${h.stderr()}`);
    throw err;
  } finally {
    for (const h of handles.values()) await h.close();
  }
  results.ours.burst = await budgetBurst(ours, mock, ws);
  await mock.close();
  rmSync(ws, { recursive: true, force: true });

  report(results, (performance.now() - benchStart) / 1000);
  // run_command's sandbox overhead (bench/sandbox.ts, also runnable on its own).
  process.stdout.write('\n' + (await benchSandbox({ quick: QUICK })));
  // Queue mode (bench/queue.ts, also runnable on its own): the queue hop and 128 tasks on 2 workers.
  process.stdout.write('\n' + (await queueSection(QUICK)));
}

/**
 * The budget-burst figure (ours only): a few runs give the agent a history; then, after a restart,
 * BURST concurrent runs against a daily cap that fits 10 of them. Reports how many were admitted and
 * completed, how many reached the model, and what was committed against the cap.
 */
async function budgetBurst(ours: Target, mock: MockModel, ws: string): Promise<NonNullable<Result['burst']>> {
  const stateDir = tempDir('dmcp-bench-burst-');
  const cfg = (cap?: number) => {
    const file = path.join(ws, `burst-${cap ?? 'none'}.json`);
    writeFileSync(file, JSON.stringify({ delegate: { stateDir, ...(DELEGATE ? JSON.parse(DELEGATE) : {}), ...(cap ? { budget: { daily_tokens: cap } } : {}) } }));
    return { ...ours, args: [...ours.args, '--config', file] };
  };
  mock.reset();
  mock.setHandler(() => ({ text: 'ok', delayMs: 300, usage: { input_tokens: 300, output_tokens: 30 } }));
  const history = await start(cfg());
  let perRun = 0;
  try {
    for (let i = 0; i < 4; i++) {
      const r = (await history.client.callTool({ name: AGENT, arguments: { task: 'the same job' } })).structuredContent as { usage: { input_tokens: number; output_tokens: number } };
      perRun = r.usage.input_tokens + r.usage.output_tokens;
    }
  } finally {
    await history.close();
  }
  const spentBefore = 4 * perRun;
  const capFits = 10;
  const cap = spentBefore + capFits * perRun + Math.floor(perRun / 2);
  const h = await start(cfg(cap));
  try {
    mock.reset();
    mock.setHandler(() => ({ text: 'ok', delayMs: 300, usage: { input_tokens: 300, output_tokens: 30 } }));
    const results = await Promise.all(Array.from({ length: BURST }, () => h.client.callTool({ name: AGENT, arguments: { task: 'the same job' } })));
    const completed = results.filter((r) => !r.isError).length;
    const refused = results.filter((r) => r.isError && /budget refused/.test(JSON.stringify(r.content))).length;
    const st = (await h.client.callTool({ name: 'budget_status', arguments: {} })).structuredContent as { server: { spent: { tokens: number } } };
    const out = { admitted: BURST - refused, completed, modelRequests: mock.requests.length, spent: st.server.spent.tokens - spentBefore, cap: cap - spentBefore, capFits, perRun };
    log(`ours: budget burst: ${completed}/${BURST} completed, ${out.modelRequests} model requests, committed ${out.spent} of ${out.cap} tokens (fits ${capFits} runs of ${perRun})`);
    return out;
  } finally {
    mock.reset();
    await h.close();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------------------- report
function report(res: Record<'ours' | 'baseline', Result>, seconds: number): void {
  const o = res.ours;
  const b = res.baseline;
  const rows: string[][] = [];
  const checks: { name: string; pass: boolean; detail: string }[] = [];
  const pf = (pass: boolean) => (pass ? 'PASS' : 'FAIL');
  const add = (metric: string, ov: string, bv: string, rt: string, target = '') => rows.push([metric, ov, bv, rt, target]);

  const coldO = median(o.coldList);
  const coldB = median(b.coldList);
  const coldPass = coldO <= 1.2 * coldB;
  checks.push({ name: 'cold start ≤ 1.2× baseline', pass: coldPass, detail: `${ms(coldO)} vs ${ms(coldB)} (${ratio(coldO, coldB)})` });
  add('cold start: spawn → initialize (median)', ms(median(o.coldConnect)), ms(median(b.coldConnect)), ratio(median(o.coldConnect), median(b.coldConnect)));
  add(`cold start: spawn → tools/list (median of ${o.coldList.length})`, ms(coldO), ms(coldB), ratio(coldO, coldB), `≤ 1.2× ${pf(coldPass)}`);
  const fcO = median(o.firstCall);
  const fcB = median(b.firstCall);
  const fcPass = fcO <= fcB + 30;
  checks.push({ name: 'first tools/call after start ≤ baseline + 30 ms', pass: fcPass, detail: `${ms(fcO)} vs ${ms(fcB)} (+${ms(fcO - fcB)})` });
  add(`first tools/call after start (tools/list → result, median of ${o.firstCall.length})`, ms(fcO), ms(fcB), `+${ms(fcO - fcB)}`, `≤ +30 ms ${pf(fcPass)}`);

  const p50O = quantile(o.seq, 0.5);
  const p50B = quantile(b.seq, 0.5);
  const p50Pass = p50O <= p50B + 2;
  checks.push({ name: 'per-call p50 ≤ baseline + 2 ms', pass: p50Pass, detail: `${ms(p50O)} vs ${ms(p50B)} (+${ms(p50O - p50B)})` });
  add(`per-call round trip p50 (${o.seq.length} sequential, model 0 ms)`, ms(p50O), ms(p50B), `+${ms(p50O - p50B)}`, `≤ +2 ms ${pf(p50Pass)}`);
  add('per-call round trip p95', ms(quantile(o.seq, 0.95)), ms(quantile(b.seq, 0.95)), `+${ms(quantile(o.seq, 0.95) - quantile(b.seq, 0.95))}`);

  const ffO = median(o.firstFanOuts);
  const warmParallel32 = median(o.fan.parallel?.[32]?.walls ?? []);
  const ffPass = ffO <= 1.1 * warmParallel32;
  checks.push({ name: 'first delegate_parallel ×32 after start ≤ 1.10× warm ones', pass: ffPass, detail: `${ms(ffO)} vs warm ${ms(warmParallel32)} (${ratio(ffO, warmParallel32)})` });
  // Like for like: the bare server's first fan-out against its own warm ones (32 new connections to the
  // model and cold SDK code there too), beside ours against ours.
  const warmDirect32B = median(b.fan.direct?.[32]?.walls ?? []);
  add(`first fan-out right after start, N=32 (ours: delegate_parallel; median of ${o.firstFanOuts.length})`, ms(ffO), ms(median(b.firstFanOuts)), `${ratio(ffO, warmParallel32)} of warm (bare ${ratio(median(b.firstFanOuts), warmDirect32B)} of its warm)`, `≤ 1.10× warm ${pf(ffPass)}`);
  add('first fan-out after start + 1 s idle (N=32 direct)', ms(o.firstFanOut), ms(b.firstFanOut), ratio(o.firstFanOut, b.firstFanOut));
  const eff = (walls: number[] | undefined) => (walls?.length ? MODEL_LATENCY_MS / median(walls) : NaN);
  for (const n of FAN_NS) {
    const bw = b.fan.direct?.[n]?.walls;
    for (const mode of ['parallel', 'direct'] as const) {
      const ow = o.fan[mode]?.[n]?.walls;
      const e = eff(ow);
      const need = n === 32 ? 0.93 : n === 128 ? 0.85 : undefined;
      let target = '';
      if (need !== undefined) {
        const pass = e >= need;
        target = `≥ ${need} ${pf(pass)}`;
        checks.push({ name: `fan-out efficiency N=${n} (${mode === 'parallel' ? 'delegate_parallel' : 'direct calls'}) ≥ ${need}`, pass, detail: `${e.toFixed(3)} (wall ${ms(median(ow!))}; baseline ${eff(bw).toFixed(3)})` });
      }
      const label = mode === 'parallel' ? `delegate_parallel ×${n}` : `${n} concurrent calls`;
      add(`fan-out N=${n}: ${label}, wall (eff.)`, `${ms(median(ow!))} (${e.toFixed(3)})`, `${ms(median(bw!))} (${eff(bw).toFixed(3)})`, ratio(median(ow!), median(bw!)), target);
    }
  }
  add('server CPU per call (sequential)', ms(o.cpuSeqMs), ms(b.cpuSeqMs), ratio(o.cpuSeqMs, b.cpuSeqMs));
  add('server CPU per call (128 concurrent)', ms(o.cpuFanMs), ms(b.cpuFanMs), ratio(o.cpuFanMs, b.cpuFanMs));
  const rssPass = o.rssIdle <= 120;
  checks.push({ name: 'RSS idle ≤ 120 MB (default pool)', pass: rssPass, detail: `${mb(o.rssIdle)} (baseline ${mb(b.rssIdle)})` });
  add('RSS idle (after tools/list + 1 s)', mb(o.rssIdle), mb(b.rssIdle), ratio(o.rssIdle, b.rssIdle), `≤ 120 MB ${pf(rssPass)}`);
  add(`RSS after ${o.longRunCalls} calls (+ 1 s)`, mb(o.rssLongRun), mb(b.rssLongRun), ratio(o.rssLongRun, b.rssLongRun));
  add('RSS peak during N=128 (VmRSS sampled every 25 ms)', mb(o.rssPeakSampled), mb(b.rssPeakSampled), ratio(o.rssPeakSampled, b.rssPeakSampled));
  add('RSS high-water mark (VmHWM, whole run)', mb(o.hwm), mb(b.hwm), ratio(o.hwm, b.hwm));
  add('OS threads idle → during N=128', `${o.threadsIdle} → ${o.threadsPeak}`, `${b.threadsIdle} → ${b.threadsPeak}`, '');
  if (o.burst) {
    const x = o.burst;
    const burstPass = x.completed >= 8 && x.spent <= x.cap + 256 && x.modelRequests === x.completed;
    checks.push({ name: 'budget burst: ≥ 8 of 100 complete under a cap that fits 10, within cap + 256, refused runs reach no model', pass: burstPass, detail: `${x.completed} completed, ${x.modelRequests} model requests, committed ${x.spent} of ${x.cap}` });
    add(`budget burst: ${BURST} concurrent runs, daily cap fits ${x.capFits} (after 4 runs of history)`, `${x.completed} completed, ${x.modelRequests} model requests, ${x.spent}/${x.cap} tokens`, '—', '', `≥ 8, ≤ cap + 256 ${pf(burstPass)}`);
  }

  const header = ['metric', 'delegate-mcp', 'bare baseline', 'ratio / diff', 'target'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
  const out: string[] = [];
  out.push('');
  out.push(line(header));
  out.push(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) out.push(line(r));
  out.push('');
  for (const c of checks) out.push(`${c.pass ? 'PASS' : 'FAIL'}  ${c.name}: ${c.detail}`);
  out.push('');
  out.push(`Markdown (${revision()}, node ${process.version}, ${process.env.BENCH_MACHINE ?? 'this machine'}, pool ${POOL ?? 'defaults'}${DELEGATE ? `, delegate ${DELEGATE}` : ''}, bench took ${seconds.toFixed(0)} s):`);
  out.push('');
  out.push(`| ${header.join(' | ')} |`);
  out.push(`| ${header.map(() => '---').join(' | ')} |`);
  for (const r of rows) out.push(`| ${r.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`);
  out.push('');
  process.stdout.write(out.join('\n') + '\n');
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
