// `delegate-mcp fanout` end to end: the built CLI, the real provider SDKs and the mock model server.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { startMockModel, type MockModel } from './mock-model/server.js';
import { CLI, agentYaml, mockEnv, tempDir, writeTree } from './helpers.js';

const execFileP = promisify(execFile);

interface Exec {
  code: number;
  stdout: string;
  stderr: string;
}

async function fanout(args: string[], env: Record<string, string>, cwd: string): Promise<Exec> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, [CLI, 'fanout', ...args], { env, cwd, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err: any) {
    if (typeof err.code !== 'number') throw err;
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe('CLI fanout', () => {
  let mock: MockModel;
  let ws: string;
  let agentsDir: string;
  let env: Record<string, string>;

  before(async () => {
    mock = await startMockModel({
      handler: (req) =>
        req.lastUserText.includes('boom')
          ? { error: { status: 400, message: 'bad request from mock' } }
          : { text: `answer to ${req.lastUserText.replace(/\s+/g, ' ').trim()}\nsecond line`, usage: { input_tokens: 11, output_tokens: 7 } },
    });
    ws = tempDir('dmcp-cli-fan-');
    agentsDir = path.join(ws, 'agents');
    writeTree(agentsDir, {
      'alpha.yaml': agentYaml('alpha', 'anthropic/claude-test-1'),
      'beta.yaml': agentYaml('beta', 'openai-chat/llama-test'),
    });
    writeTree(ws, {
      'tasks.json': JSON.stringify([
        { agent: 'alpha', task: 'first task' },
        { agent: 'beta', task: 'please boom now' },
        { agent: 'beta', task: 'third task', context: 'some context' },
      ]),
    });
    env = mockEnv(mock.url);
  });
  after(async () => {
    await mock.close();
  });

  it('runs three tasks (one failing), prints the summary table and exits 1', async () => {
    const r = await fanout(
      ['--agents', agentsDir, '--workspace', ws, '--concurrency', '2', 'alpha:first task', 'beta:please boom now', 'beta:third task'],
      env,
      ws,
    );
    assert.equal(r.code, 1, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.match(lines[0], /^#\s+agent\s+status\s+duration\s+tokens in\s+tokens out\s+output \/ error$/);
    const row = (i: number) => lines[i].trim().split(/\s{2,}/);
    const [r1, r2, r3] = [row(1), row(2), row(3)];
    assert.deepEqual(r1.slice(0, 3), ['1', 'alpha', 'ok']);
    assert.match(r1[3], /^\d+(ms|\.\ds)$/);
    assert.ok(Number(r1[4]) > 0 && Number(r1[5]) > 0, lines[1]);
    assert.match(r1[6], /^answer to .*first task$/, 'first line of the output only');
    assert.deepEqual(r2.slice(0, 3), ['2', 'beta', 'error']);
    assert.match(r2[r2.length - 1], /400/);
    assert.deepEqual(r3.slice(0, 3), ['3', 'beta', 'ok']);
    assert.match(lines[lines.length - 1], /^total: 3 tasks · 2 ok · 1 failed · wall \S+ · tokens \d+ in \/ \d+ out/);
    // Not a TTY: plain progress lines on stderr, one per event, naming the task.
    assert.match(r.stderr, /\[#1 alpha\]/);
    assert.match(r.stderr, /\[#2 beta\] error: .*400/);
    assert.match(r.stderr, /fanout: 2\/3 ok/);
    assert.doesNotMatch(r.stderr, /\x1b\[/, 'no ANSI escapes when stderr is not a TTY');
  });

  it('--json prints the array of results in input order (tasks from --file)', async () => {
    const r = await fanout(['--json', '--agents', agentsDir, '--workspace', ws, '--file', path.join(ws, 'tasks.json')], env, ws);
    assert.equal(r.code, 1, r.stderr);
    const results = JSON.parse(r.stdout);
    assert.ok(Array.isArray(results));
    assert.equal(results.length, 3);
    assert.deepEqual(results.map((x: any) => [x.index, x.agent, x.status]), [
      [0, 'alpha', 'ok'],
      [1, 'beta', 'error'],
      [2, 'beta', 'ok'],
    ]);
    for (const x of results) {
      assert.match(x.run_id, /^run_/);
      assert.equal(typeof x.duration_ms, 'number');
      assert.equal(typeof x.turns, 'number');
      assert.deepEqual(Object.keys(x.usage).sort(), ['cache_creation_input_tokens', 'cache_read_input_tokens', 'input_tokens', 'output_tokens']);
    }
    assert.match(results[0].output, /first task/);
    assert.match(results[2].output, /third task/);
    assert.match(results[1].error, /400/);
  });

  it('exits 0 when every task is ok, and 2 on malformed task arguments', async () => {
    const ok = await fanout(['--agents', agentsDir, '--workspace', ws, 'alpha:one', 'beta:two'], env, ws);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /total: 2 tasks · 2 ok · 0 failed/);
    const bad = await fanout(['--agents', agentsDir, '--workspace', ws, 'no colon here'], env, ws);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /agent:task text/);
  });
});
