// What the benches read of a process from /proc (Linux only).
import { readFileSync } from 'node:fs';

const CLK_TCK = 100; // getconf CLK_TCK on Linux

/** utime + stime of the whole process (all threads), in ms (10 ms ticks: read over hundreds of calls). */
export function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}
