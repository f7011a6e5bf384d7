// `delegate-mcp run` on a terminal and off it: the answer on stdout, one summary line on stderr, colour
// only when asked for (TTY, FORCE_COLOR, never with NO_COLOR), and a provider SDK's deprecation warning
// logged once, above the live progress line instead of inside it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { startMockModel, type MockModel } from './mock-model/server.js';
import { CLI, agentYaml, mockEnv, tempDir, writeTree } from './helpers.js';
import { colourEnabled, displayWidth, truncateToWidth, LiveLine } from '../src/cli/terminal.js';

const execFileP = promisify(execFile);
const ESC = '\x1b';

async function run(args: string[], env: Record<string, string>, cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, [CLI, 'run', ...args], { env, cwd, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err: any) {
    if (typeof err.code !== 'number') throw err;
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe('run: summary line, colour, SDK warnings', () => {
  let mock: MockModel;
  let ws: string;
  let env: Record<string, string>;

  before(async () => {
    mock = await startMockModel({
      handler: (req) =>
        req.toolResults.length
          ? { text: 'the answer, after reading', usage: { input_tokens: 120, output_tokens: 30 } }
          : req.lastUserText.includes('read')
            ? { toolCalls: [{ name: 'read_file', arguments: { path: 'a.txt' } }], usage: { input_tokens: 100, output_tokens: 10 } }
            : { text: 'plain answer', usage: { input_tokens: 50, output_tokens: 5 } },
    });
    ws = tempDir('dmcp-run-');
    writeTree(ws, {
      'a.txt': 'hello\n',
      'agents/helper.yaml': agentYaml('helper', 'anthropic/claude-sonnet-5-5'),
      // A model the installed SDK lists as deprecated: it prints a warning on every request.
      'agents/old.yaml': agentYaml('old', 'anthropic/claude-opus-4-5'),
    });
    env = mockEnv(mock.url, { XDG_STATE_HOME: tempDir('dmcp-run-state-') });
  });
  after(async () => {
    await mock.close();
  });

  it('prints the answer on stdout and one summary line on stderr (no colour off a TTY, NO_COLOR wins over FORCE_COLOR)', async () => {
    const r = await run(['helper', 'say', 'hi'], { ...env, NO_COLOR: '1', FORCE_COLOR: '1' }, ws);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'plain answer\n');
    const summary = r.stderr.trim().split('\n').at(-1)!;
    assert.match(summary, /^ok · 1 turn · 50 in \/ 5 out tokens · \$0\.0001 · \d+\.\ds · run_[0-9a-f-]{36}$/);
    assert.ok(!r.stderr.includes(ESC), 'no escape codes with NO_COLOR');
  });

  it('FORCE_COLOR colours the status even when stderr is not a TTY; --json prints no summary', async () => {
    const r = await run(['helper', 'read', 'it'], { ...env, FORCE_COLOR: '1' }, ws);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'the answer, after reading\n');
    assert.match(r.stderr, new RegExp(`${ESC}\\[32mok${ESC}\\[0m · 2 turns · 220 in / 40 out tokens`));
    const j = await run(['helper', 'say', 'hi', '--json'], env, ws);
    assert.equal(JSON.parse(j.stdout).status, 'ok');
    assert.doesNotMatch(j.stderr, /· run_/);
  });

  it("a deprecated model's SDK warning is logged once per process, as a log line", async () => {
    const r = await run(['old', 'read', 'twice'], env, ws);
    assert.equal(r.code, 0, r.stderr);
    const warnings = r.stderr.split('\n').filter((l) => l.includes("The model 'claude-opus-4-5' is deprecated"));
    assert.equal(warnings.length, 1, r.stderr);
    assert.match(warnings[0], /^\S+ delegate-mcp warn: The model 'claude-opus-4-5' is deprecated/);
  });

  it('on a pseudo-terminal the warning lands above the progress line, whole', async (t) => {
    try {
      execFileSync('script', ['--version'], { stdio: 'ignore' });
    } catch {
      if (process.env.CI === 'true') assert.fail('script (util-linux) is needed for the pseudo-terminal test in CI');
      t.skip('script (util-linux) not installed: no pseudo-terminal');
      return;
    }
    const cmd = [process.execPath, CLI, 'run', 'old', 'read', 'twice'].map((a) => `'${a}'`).join(' ');
    // Async: the mock model answers from this process, so it must not be blocked.
    const child = execFile('script', ['-qec', `${cmd} 2>&1`, '/dev/null'], { env: { ...env, COLUMNS: '60', TERM: 'xterm' }, cwd: ws, encoding: 'utf8', timeout: 60_000 });
    child.stdin?.end();
    let out = '';
    child.stdout?.on('data', (d: string) => (out += d));
    await new Promise((resolve) => child.on('close', resolve));
    // Each redraw of the live line starts with "\r ESC[2K"; the warning must be a line of its own.
    const pieces = out.split(/\r\x1b\[2K/);
    const warning = pieces.filter((p) => p.includes('is deprecated'));
    assert.equal(warning.length, 1, JSON.stringify(out));
    assert.match(warning[0], /^\S+ delegate-mcp warn: The model 'claude-opus-4-5' is deprecated[^\r]*\r?\n/);
    assert.doesNotMatch(warning[0], /turn \d\/\d/, 'no progress text inside the warning line');
    assert.ok(out.includes(`${ESC}[32mok${ESC}[0m · 2 turns`), 'coloured summary on a TTY');
  });
});

/** Runs argv under a pseudo-terminal (util-linux `script`); undefined when `script` is missing outside CI. */
async function inPty(argv: string[], env: Record<string, string>, cwd: string): Promise<string | undefined> {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
  } catch {
    if (process.env.CI === 'true') assert.fail('script (util-linux) is needed for the pseudo-terminal tests in CI');
    return undefined;
  }
  const cmd = argv.map((a) => `'${a}'`).join(' ');
  // Async: the mock model answers from this process, so it must not be blocked.
  const child = execFile('script', ['-qec', `${cmd} 2>&1`, '/dev/null'], { env: { ...env, COLUMNS: '60', LINES: '30', TERM: 'xterm' }, cwd, encoding: 'utf8', timeout: 60_000 });
  child.stdin?.end();
  let out = '';
  child.stdout?.on('data', (d: string) => (out += d));
  await new Promise((resolve) => child.on('close', resolve));
  return out;
}

describe('fanout board and SDK warnings', () => {
  it('on a pseudo-terminal the warning is erased-above the board, whole, once', async (t) => {
    const mock = await startMockModel({ handler: () => ({ text: 'fine', usage: { input_tokens: 10, output_tokens: 2 }, delayMs: 300 }) });
    try {
      const ws = tempDir('dmcp-fan-pty-');
      writeTree(ws, { 'agents/old.yaml': agentYaml('old', 'anthropic/claude-opus-4-5') });
      const out = await inPty([process.execPath, CLI, 'fanout', 'old:one', 'old:two', 'old:three'], mockEnv(mock.url, { XDG_STATE_HOME: tempDir('dmcp-fan-pty-state-') }), ws);
      if (out === undefined) return t.skip('script (util-linux) not installed: no pseudo-terminal');
      const at = out.indexOf("delegate-mcp warn: The model 'claude-opus-4-5' is deprecated");
      assert.ok(at > 0, JSON.stringify(out));
      assert.equal(out.split("The model 'claude-opus-4-5' is deprecated").length, 2, 'logged once');
      // The board was erased (cursor up, clear to the end of the screen) right before the log line.
      const before = out.slice(0, at);
      assert.match(before, /\x1b\[\d+A\r\x1b\[J\S+ $/, JSON.stringify(before.slice(-80)));
      const line = out.slice(at, out.indexOf('\n', at));
      assert.doesNotMatch(line, /old|queued|running/, 'no board text inside the warning line');
      assert.match(out, /total: 3 tasks · 3 ok/);
    } finally {
      await mock.close();
    }
  });
});

describe('terminal helpers', () => {
  it('cuts by display width: wide CJK and emoji count two columns, escapes none', () => {
    assert.equal(displayWidth('abc'), 3);
    assert.equal(displayWidth('日本語'), 6);
    assert.equal(displayWidth('👍🏽x'), 3);
    assert.equal(displayWidth(`${ESC}[32mok${ESC}[0m`), 2);
    assert.equal(truncateToWidth('日本語のテキスト', 7), '日本語…');
    assert.equal(displayWidth(truncateToWidth('日本語のテキスト', 7)), 7);
    assert.equal(truncateToWidth('a👍🏽b👍🏽c', 4), 'a👍🏽…');
    assert.equal(truncateToWidth('short', 10), 'short');
    assert.equal(truncateToWidth('abcdef', 4), 'abc…');
  });

  it('colour follows NO_COLOR, FORCE_COLOR and the TTY', () => {
    assert.equal(colourEnabled({ isTTY: true }, {}), true);
    assert.equal(colourEnabled({ isTTY: false }, {}), false);
    assert.equal(colourEnabled({ isTTY: true }, { NO_COLOR: '1' }), false);
    assert.equal(colourEnabled({ isTTY: false }, { FORCE_COLOR: '1' }), true);
    assert.equal(colourEnabled({ isTTY: true }, { FORCE_COLOR: '0' }), false);
    assert.equal(colourEnabled({ isTTY: true }, { TERM: 'dumb' }), false);
  });

  it('LiveLine: a foreign write clears the line, goes above it, and the line is redrawn cut to the width', () => {
    const chunks: string[] = [];
    const stream = { columns: 11, write: (c: string) => (chunks.push(c), true) } as unknown as NodeJS.WriteStream;
    const live = new LiveLine(stream);
    live.set('progress 日本語 more');
    stream.write('a log line\n');
    live.close();
    stream.write('after\n');
    assert.deepEqual(chunks, [
      '\r\x1b[2Kprogress …',
      '\r\x1b[2K',
      'a log line\n',
      '\r\x1b[2Kprogress …',
      '\r\x1b[2K',
      'after\n',
    ]);
  });
});
