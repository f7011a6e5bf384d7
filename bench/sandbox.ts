// run_command's sandbox overhead: the same commands through the tool implementation, under bubblewrap
// and with the sandbox off, alternating call by call so both see the same machine load.
//   node --import tsx bench/sandbox.ts [--quick]      (also run at the end of `npm run bench`)
// Commands: `true` (pure start-up cost) and `git status` in a small repository. Reports p50/p95 per mode
// and the difference of the medians. Needs bwrap (skipped with a line saying so when missing).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { commandTools } from '../src/tools/run-command.js';
import type { CommandSandbox, SandboxMode } from '../src/sandbox/index.js';
import { tempDir } from '../tests/helpers.js';

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  return s[Math.floor(pos)] + (s[Math.ceil(pos)] - s[Math.floor(pos)]) * (pos - Math.floor(pos));
};

export async function benchSandbox(opts: { quick?: boolean } = {}): Promise<string> {
  if (spawnSync('bwrap', ['--version']).status !== 0) return 'run_command sandbox overhead: skipped (bubblewrap is not installed)\n';
  const n = opts.quick ? 15 : 60;
  const ws = path.join(tempDir('dmcp-bench-sbx-'), 'ws');
  mkdirSync(path.join(ws, 'src'), { recursive: true });
  for (let i = 0; i < 50; i++) writeFileSync(path.join(ws, 'src', `f${i}.txt`), `file ${i}\n`);
  execFileSync('git', ['init', '-q'], { cwd: ws });
  execFileSync('git', ['-c', 'user.name=b', '-c', 'user.email=b@b', 'add', '.'], { cwd: ws });
  execFileSync('git', ['-c', 'user.name=b', '-c', 'user.email=b@b', 'commit', '-qm', 'init'], { cwd: ws });
  const sandbox = (mode: SandboxMode): CommandSandbox => ({
    settings: { mode, readOnly: [], protected: { dirs: [path.join(ws, 'agents')], paths: [path.join(ws, '.git')], hidden: [], noCreate: [] } },
    rules: { layers: [{ deny: [], ask: [], allow: ['Edit(src/**)'] }] },
  });
  const rows: string[][] = [];
  for (const argv of [['true'], ['git', 'status', '--short']]) {
    const times: Record<SandboxMode, number[]> = { bwrap: [], off: [] };
    for (let i = 0; i < n + 3; i++) {
      for (const mode of ['bwrap', 'off'] as const) {
        const t0 = performance.now();
        const r = await commandTools.run_command.run({ argv }, { workspaceRoot: ws, sandbox: sandbox(mode) });
        const ms = performance.now() - t0;
        if (r.isError || !r.content.startsWith('exit code 0')) throw new Error(`${mode} ${argv.join(' ')}: ${r.content}`);
        if (i >= 3) times[mode].push(ms); // the first calls warm caches (and the bwrap probe)
      }
    }
    const f = (x: number) => `${x.toFixed(1)} ms`;
    const [b50, o50] = [quantile(times.bwrap, 0.5), quantile(times.off, 0.5)];
    rows.push([argv.join(' '), `${f(b50)} / ${f(quantile(times.bwrap, 0.95))}`, `${f(o50)} / ${f(quantile(times.off, 0.95))}`, `+${f(b50 - o50)}`]);
  }
  const header = ['command', 'bwrap p50 / p95', 'off p50 / p95', 'overhead (p50)'];
  const out = [`run_command sandbox overhead (${n} calls per mode, alternating; node ${process.version}):`, '', `| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`];
  for (const r of rows) out.push(`| ${r.join(' | ')} |`);
  return out.join('\n') + '\n';
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  benchSandbox({ quick: process.argv.includes('--quick') }).then(
    (s) => process.stdout.write(s),
    (err) => {
      process.stderr.write(`bench/sandbox.ts failed: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
