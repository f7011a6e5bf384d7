// Processes below a pid, from /proc (Linux): how a timeout or cancel reaches the processes inside a
// sandbox with SIGTERM first. bwrap does not forward signals, and killing it ends the namespace at once
// (SIGKILL for everything in it), which is the fallback after the grace period.
import { readdirSync, readFileSync } from 'node:fs';

/** Every live descendant of `root` (not `root` itself), parents before children. */
export function descendantPids(root: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${e}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // pid (comm) state ppid …: comm may contain spaces and parentheses, so parse after the last ")".
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const list = children.get(ppid);
    if (list) list.push(Number(e));
    else children.set(ppid, [Number(e)]);
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const c of children.get(queue.shift()!) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}
