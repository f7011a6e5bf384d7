// Tamper evidence end to end: after real runs, `audit verify` names the file and line of an edited,
// deleted or truncated audit line (exit 1, no stack trace), `audit` warns, and a server refuses to start
// on a budget ledger that was emptied or edited, saying which file and line and how to recover.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startMockModel, type MockModel } from './mock-model/server.js';
import { CLI, agentYaml, mockEnv, startServer, tempDir, writeTree } from './helpers.js';

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: Record<string, string>, cwd: string): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env, cwd, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

const noStack = (s: string) => assert.doesNotMatch(s, /\n\s+at .+:\d+:\d+/, `a stack trace reached the user:\n${s}`);

describe('tamper-evident audit log and budget ledger', () => {
  let mock: MockModel;
  let ws: string;
  let stateDir: string;
  let args: string[];
  let env: Record<string, string>;
  let auditFile: string;
  let ledgerFile: string;

  before(async () => {
    mock = await startMockModel();
    ws = tempDir('dmcp-chain-e2e-');
    stateDir = path.join(tempDir('dmcp-chain-state-'), 'state');
    const agentsDir = path.join(ws, 'agents');
    writeTree(agentsDir, { 'worker.yaml': agentYaml('worker', 'anthropic/claude-sonnet-4-5') });
    const cfg = path.join(ws, 'mcp.json');
    writeFileSync(cfg, JSON.stringify({ delegate: { stateDir } }));
    args = ['--config', cfg, '--agents', agentsDir, '--workspace', ws];
    env = mockEnv(mock.url);
    const srv = await startServer({ args, env, cwd: ws });
    try {
      for (const task of ['one', 'two', 'three']) {
        const r = await srv.client.callTool({ name: 'worker', arguments: { task } });
        assert.equal((r.structuredContent as any).status, 'ok');
      }
    } finally {
      await srv.close();
    }
    const only = (dir: string, prefix: string) => {
      const files = readdirSync(dir).filter((f) => f.startsWith(prefix) && f.endsWith('.jsonl'));
      assert.equal(files.length, 1, `${dir}: ${files.join(', ')}`);
      return path.join(dir, files[0]);
    };
    auditFile = only(path.join(stateDir, 'audit'), 'audit-');
    ledgerFile = only(path.join(stateDir, 'budget'), 'ledger-');
  });
  after(async () => {
    await mock.close();
  });

  /** Runs `check` on a tampered copy of `file`, then puts the original back. */
  async function tampered(file: string, change: (lines: string[]) => string[], check: () => Promise<void>): Promise<void> {
    const saved = `${file}.orig`;
    copyFileSync(file, saved);
    const lines = readFileSync(file, 'utf8').split('\n').slice(0, -1);
    assert.ok(lines.length >= 3, `${file} has ${lines.length} lines`);
    writeFileSync(file, change(lines).map((l) => l + '\n').join(''));
    try {
      await check();
    } finally {
      copyFileSync(saved, file);
    }
  }

  it('an untouched state dir verifies', async () => {
    const r = await cli(['audit', 'verify', ...args], env, ws);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`^ok {6}${auditFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(\\d+ lines\\)$`, 'm'));
    assert.match(r.stdout, /^ok {6}.*ledger-\d{4}-\d{2}-\d{2}\.jsonl \(3 lines\)$/m);
    assert.match(r.stdout.trimEnd(), /\n2 file\(s\) verified, no break$/);
  });

  it('audit verify names the file and line of an edited, deleted or truncated audit line, and audit warns', async () => {
    const cases: [string, (l: string[]) => string[], number][] = [
      ['edited', (l) => l.map((x, i) => (i === 1 ? x.replace(/"ts":"[^"]+"/, '"ts":"2020-01-01T00:00:00.000Z"') : x)), 3],
      ['deleted', (l) => l.filter((_, i) => i !== 2), 3],
      ['truncated', (l) => l.map((x, i) => (i === 3 ? x.slice(0, 40) : x)), 4],
    ];
    for (const [what, change, line] of cases) {
      await tampered(auditFile, change, async () => {
        const r = await cli(['audit', 'verify', ...args], env, ws);
        assert.equal(r.code, 1, `${what}: ${r.stdout}${r.stderr}`);
        assert.ok(r.stdout.includes(`BROKEN  ${auditFile}:${line}: `), `${what}:\n${r.stdout}`);
        noStack(r.stdout + r.stderr);
        const dir = await cli(['audit', 'verify', '--dir', path.dirname(auditFile)], env, ws);
        assert.equal(dir.code, 1);
        assert.ok(dir.stdout.includes(`BROKEN  ${auditFile}:${line}: `), dir.stdout);
        const summary = await cli(['audit', ...args], env, ws);
        assert.equal(summary.code, 0, summary.stderr);
        assert.ok(summary.stderr.includes(`warning: the audit log was tampered with: ${auditFile}:${line}: `), `${what}:\n${summary.stderr}`);
      });
    }
    assert.equal(cases.length, 3);
    assert.equal((await cli(['audit', 'verify', ...args], env, ws)).code, 0, 'restored');
  });

  it('a server refuses to start on an emptied or edited ledger, naming file, line and the way out', async () => {
    const cases: [string, (l: string[]) => string[], number, RegExp][] = [
      ['emptied', () => [], 1, /the file is empty: every line was removed/],
      ['edited', (l) => l.map((x, i) => (i === 0 ? x.replace(/"tokens":\d+/, '"tokens":1') : x)), 2, /does not chain to the line before it/],
    ];
    for (const [what, change, line, why] of cases) {
      await tampered(ledgerFile, change, async () => {
        const r = await cli(['serve', ...args], env, ws);
        assert.notEqual(r.code, 0, `${what}: the server started`);
        assert.ok(r.stderr.includes(`delegate-mcp: budget ledger ${ledgerFile}:${line}: `), `${what}:\n${r.stderr}`);
        assert.match(r.stderr, why);
        assert.match(r.stderr, /move it aside knowingly \(mv /);
        noStack(r.stderr);
        const v = await cli(['audit', 'verify', ...args], env, ws);
        assert.equal(v.code, 1);
        assert.ok(v.stdout.includes(`BROKEN  ${ledgerFile}:${line}: `), v.stdout);
      });
    }
    assert.equal(cases.length, 2);
  });
});
