// What the benches read of a process from /proc (Linux only).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const CLK_TCK = 100; // getconf CLK_TCK on Linux

/** utime + stime of the whole process (all threads), in ms (10 ms ticks: read over hundreds of calls). */
export function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

/** The local redis-server's pid, when the URL names this host and one runs here; undefined otherwise. */
export function localRedisPid(url: string): number | undefined {
  if (!/^rediss?:\/\/(?:[^@/]*@)?(?:127\.0\.0\.1|localhost|\[::1\])(?::\d+)?(?:\/|$)/.test(url)) return undefined;
  try {
    const pids = execFileSync('pidof', ['redis-server'], { encoding: 'utf8' }).trim().split(/\s+/).map(Number);
    return pids.length === 1 ? pids[0] : undefined; // several servers: which one is unknown
  } catch {
    return undefined; // no pidof, or no redis-server here
  }
}

/**
 * CPU ms that these processes and this one (the bench: its MCP client, the mock model) spent while `fn`
 * ran: what a batch costs the whole machine.
 */
export async function machineCpuMs<T>(pids: number[], fn: () => Promise<T>): Promise<{ value: T; cpuMs: number }> {
  const before = pids.map(processCpuMs);
  const self = process.cpuUsage();
  const value = await fn();
  const own = process.cpuUsage(self);
  const cpuMs = pids.reduce((sum, pid, i) => sum + processCpuMs(pid) - before[i], 0) + (own.user + own.system) / 1000;
  return { value, cpuMs };
}
