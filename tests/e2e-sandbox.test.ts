// The OS sandbox around run_command, end to end: the built server over stdio, a real MCP client, the
// mock model emitting the tool calls. Each case is an escape that allowed argv rules let through before
// the sandbox (issue #12 items 1-2): an allowed program reaching outside through its own options, a
// planted repository config run by an exact `git status` rule, the server's environment, the network,
// and processes outliving their call. Allowed work must still work.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startMockModel, type MockModel, type MockToolResult } from './mock-model/server.js';
import { mockEnv, readAuditEvents, startServer, tempDir, writeTree, type ServerHandle } from './helpers.js';

/** bubblewrap is a system component: skip visibly without it, but never under CI. */
const bwrapMissing = spawnSync('bwrap', ['--version']).status !== 0;
if (bwrapMissing && process.env.CI === 'true') {
  throw new Error('bubblewrap (bwrap) is not installed, and CI=true: the sandbox tests must run (apt-get install -y bubblewrap)');
}
if (bwrapMissing) process.stderr.write('SKIP tests/e2e-sandbox.test.ts: bubblewrap (bwrap) is not installed (apt-get install bubblewrap)\n');

const directive = (tool: string, args: unknown) => `[[tool:${tool} ${JSON.stringify(args)}]]`;

const SCRIPTS: Record<string, string> = {
  // Tries a TCP connection to 127.0.0.1:<port>.
  'probe.mjs': `import net from 'node:net';
const s = net.connect({ host: '127.0.0.1', port: Number(process.argv[2]) });
s.on('connect', () => { console.log('NET-CONNECTED'); s.end(); });
s.on('error', (e) => console.log('NET-BLOCKED ' + e.code));
`,
  // Leaves a double-forked, session-leading process behind that writes a file a second later.
  'late.mjs': `import { spawn } from 'node:child_process';
spawn('sh', ['-c', '(sleep 1; echo late > out/late.txt) &'], { detached: true, stdio: 'ignore' }).unref();
console.log('spawned');
`,
  // The same, then hangs until the timeout.
  'hang.mjs': `import { spawn } from 'node:child_process';
spawn('sh', ['-c', '(sleep 1.5; echo late > out/hang-late.txt) &'], { detached: true, stdio: 'ignore' }).unref();
console.log('spawned');
setInterval(() => {}, 1000);
`,
  // Writes argv[2] (an npm-test-style command producing a file).
  'writer.mjs': `import fs from 'node:fs';
try { fs.writeFileSync(process.argv[2], 'WRITTEN'); console.log('WROTE ' + process.argv[2]); }
catch (e) { console.log('WRITE-FAILED ' + e.code); }
`,
};

describe('run_command runs in an OS sandbox (bubblewrap)', { skip: bwrapMissing ? 'bubblewrap (bwrap) is not installed' : false }, () => {
  let mock: MockModel;
  let base: string;
  let ws: string;
  let out: string;
  let srv: ServerHandle;
  let tcp: net.Server;
  let tcpPort: number;
  let connections = 0;

  async function toolResults(client: ServerHandle['client'], agent: string, task: string): Promise<MockToolResult[]> {
    const before = mock.requests.length;
    const res: any = await client.callTool({ name: agent, arguments: { task } });
    const reqs = mock.requests.slice(before);
    assert.equal(res.structuredContent?.status, 'ok', JSON.stringify(res.content));
    assert.ok(reqs.length >= 2, `expected a second model request with tool results; got ${reqs.length}`);
    return reqs[1].toolResults;
  }
  const run = async (argv: string[], extra: Record<string, unknown> = {}): Promise<MockToolResult> => {
    const fed = await toolResults(srv.client, 'prober', directive('run_command', { argv, ...extra }));
    assert.equal(fed.length, 1);
    // The command ran (in its sandbox): a refusal would make every escape below look contained.
    assert.match(fed[0].content, /^(exit code \d+|run_command: killed by)/, fed[0].content);
    return fed[0];
  };

  before(async () => {
    mock = await startMockModel();
    // base/ws is the workspace (a git repository); base/out is "outside", next to it.
    base = tempDir('dmcp-sbx-');
    ws = path.join(base, 'ws');
    out = path.join(base, 'out');
    writeTree(out, { 'secret.txt': 'TOP-SECRET-OUTSIDE\n' });
    writeTree(ws, {
      'src/a.txt': 'alpha\n',
      'src/b.txt': 'beta\n',
      'out/.keep': '',
      'package.json': JSON.stringify({ name: 'ws', version: '1.0.0', private: true, scripts: { test: 'node writer.mjs out/npm-test.txt' } }),
      ...SCRIPTS,
    });
    execFileSync('git', ['init', '-q'], { cwd: ws });
    tcp = net.createServer((s) => {
      connections++;
      s.end('HELLO-FROM-HOST\n');
    });
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    tcpPort = (tcp.address() as net.AddressInfo).port;

    const agents = path.join(base, 'agents');
    writeTree(agents, {
      'prober.yaml': `name: prober
description: Runs the commands its rules allow.
model: anthropic/claude-test-1
max_turns: 4
permissions:
  allow:
    - Read(**)
    - Edit(out/**)
    - Bash(git diff:*)
    - Bash(git status)
    - Bash(sed -n:*)
    - Bash(sed -n "1e touch ${out}/pwn-sed-e" src/a.txt)
    - Bash(sed -n "w ${out}/pwn-sed-w" src/a.txt)
    - Bash(git diff --no-index --output=${out}/pwn-diff src/a.txt src/b.txt)
    - Bash(ls:*)
    - Bash(cat:*)
    - Bash(node probe.mjs:*)
    - Bash(node late.mjs)
    - Bash(node hang.mjs)
    - Bash(node writer.mjs:*)
    - Bash(npm test)
`,
      'sedder.yaml': `name: sedder
description: May run sed -n and git diff (any arguments).
model: anthropic/claude-test-1
max_turns: 4
permissions:
  allow: [Read(**), "Bash(sed -n:*)", "Bash(git diff:*)"]
`,
      'gardener.yaml': `name: gardener
description: May edit the whole workspace and run one script.
model: anthropic/claude-test-1
max_turns: 4
permissions:
  allow: [Read(**), Edit(**), "Bash(node writer.mjs:*)"]
`,
      'netter.yaml': `name: netter
description: May use the network from its commands.
model: anthropic/claude-test-1
max_turns: 4
sandbox: {network: true}
permissions:
  allow: ["Bash(node probe.mjs:*)"]
`,
    });
    const state = path.join(base, 'state');
    const cfg = path.join(base, 'mcp.json');
    writeFileSync(cfg, JSON.stringify({ delegate: { stateDir: state } }));
    srv = await startServer({ args: ['--config', cfg, '--agents', agents, '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
  });
  after(async () => {
    await srv?.close();
    await mock?.close();
    await new Promise<void>((r) => (tcp ? tcp.close(() => r()) : r()));
  });

  it('the argv rules refuse sed e/w and git diff --output unless a rule names them (the sandbox is the second layer)', async () => {
    const calls = [
      ['sed', '-n', `w ${out}/pwn-sed-w2`, 'src/a.txt'],
      ['sed', '-n', `1e touch ${out}/pwn-sed-e2`, 'src/a.txt'],
      ['sed', '-i', 's/alpha/pwned/', 'src/a.txt'],
      ['git', 'diff', '--no-index', `--output=${out}/pwn-diff2`, 'src/a.txt', 'src/b.txt'],
      ['sed', '-n', '1p', 'src/a.txt'],
    ];
    const fed = await toolResults(srv.client, 'sedder', calls.map((argv) => directive('run_command', { argv })).join(' '));
    assert.equal(fed.length, calls.length);
    for (const f of fed.slice(0, 4)) {
      assert.equal(f.isError, true, f.content);
      assert.match(f.content, /^permission denied: .* is refused unless a rule names that form/);
    }
    assert.match(fed[0].content, /"sed w .*" \(its e\/w\/W command/);
    assert.match(fed[2].content, /"sed -i" \(edits files in place\)/);
    assert.match(fed[3].content, /"git diff --output=.*" \(writes the file it names\)/);
    assert.match(fed[4].content, /^exit code 0[\s\S]*alpha/);
    assert.equal(readFileSync(path.join(ws, 'src', 'a.txt'), 'utf8'), 'alpha\n');
  });

  describe('escapes through allowed programs stay inside', () => {
    it('git diff --no-index --output=<outside> writes nothing outside', async () => {
      const r = await run(['git', 'diff', '--no-index', `--output=${out}/pwn-diff`, 'src/a.txt', 'src/b.txt']);
      assert.equal(existsSync(path.join(out, 'pwn-diff')), false, r.content);
    });

    it('git diff --no-index ../out/secret.txt does not return the outside file', async () => {
      const r = await run(['git', 'diff', '--no-index', '../out/secret.txt', 'src/a.txt']);
      assert.doesNotMatch(r.content, /TOP-SECRET-OUTSIDE/);
      assert.match(r.content, /Could not access|No such file/);
    });

    it("sed -n '1e touch <outside>' runs nothing that reaches outside", async () => {
      const r = await run(['sed', '-n', `1e touch ${out}/pwn-sed-e`, 'src/a.txt']);
      assert.equal(existsSync(path.join(out, 'pwn-sed-e')), false, r.content);
    });

    it("sed -n 'w <outside>' writes nothing outside", async () => {
      const r = await run(['sed', '-n', `w ${out}/pwn-sed-w`, 'src/a.txt']);
      assert.equal(existsSync(path.join(out, 'pwn-sed-w')), false, r.content);
    });

    it('ls ../out lists nothing outside', async () => {
      const r = await run(['ls', '../out']);
      assert.doesNotMatch(r.content, /secret\.txt/);
      assert.match(r.content, /No such file or directory/);
    });

    it('cat /proc/<server pid>/environ does not return the server environment (its API key)', async () => {
      const pid = srv.transport.pid;
      assert.ok(pid && pid > 0);
      const r = await run(['cat', `/proc/${pid}/environ`]);
      assert.doesNotMatch(r.content, /sk-ant-test-key/);
      const self = await run(['cat', '/proc/1/environ']);
      assert.doesNotMatch(self.content, /sk-ant-test-key|ANTHROPIC/);
    });

    it('no network: a TCP connection to a host port fails', async () => {
      const before = connections;
      const r = await run(['node', 'probe.mjs', String(tcpPort)]);
      assert.match(r.content, /NET-BLOCKED/);
      assert.equal(connections, before);
    });

    it('an agent with sandbox.network: true reaches the same port', async () => {
      const before = connections;
      const fed = await toolResults(srv.client, 'netter', directive('run_command', { argv: ['node', 'probe.mjs', String(tcpPort)] }));
      assert.match(fed[0].content, /NET-CONNECTED/);
      assert.equal(connections, before + 1);
    });

    it('a write outside the Edit-covered directories fails; inside them it works', async () => {
      const denied = await run(['node', 'writer.mjs', 'src/pwned.txt']);
      assert.match(denied.content, /WRITE-FAILED (EROFS|EACCES)/);
      assert.equal(existsSync(path.join(ws, 'src', 'pwned.txt')), false);
      const allowed = await run(['node', 'writer.mjs', 'out/result.txt']);
      assert.match(allowed.content, /exit code 0[\s\S]*WROTE out\/result\.txt/);
      assert.equal(readFileSync(path.join(ws, 'out', 'result.txt'), 'utf8'), 'WRITTEN');
    });

    it('npm test writing into an Edit-covered directory works', async () => {
      const r = await run(['npm', 'test']);
      assert.match(r.content, /^exit code 0[\s\S]*WROTE out\/npm-test\.txt/, r.content);
      assert.equal(readFileSync(path.join(ws, 'out', 'npm-test.txt'), 'utf8'), 'WRITTEN');
    });

    it('git status works in a real repository', async () => {
      const r = await run(['git', 'status']);
      assert.match(r.content, /exit code 0[\s\S]*(No commits yet|On branch)/);
    });
  });

  it('with Edit(**), a command still cannot write .git or plant an agent file', async () => {
    const results: string[] = [];
    for (const target of ['.git/config', '.git/hooks/pre-commit', '.claude/agents/pwned.md', 'fine.txt']) {
      const fed = await toolResults(srv.client, 'gardener', directive('run_command', { argv: ['node', 'writer.mjs', target] }));
      results.push(fed[0].content);
    }
    assert.match(results[0], /WRITE-FAILED EROFS/);
    assert.match(results[1], /WRITE-FAILED (EROFS|ENOENT)/);
    assert.match(results[2], /WRITE-FAILED (EROFS|ENOENT)/);
    assert.match(results[3], /WROTE fine\.txt/);
    assert.equal(existsSync(path.join(ws, '.claude', 'agents', 'pwned.md')), false);
    assert.equal(existsSync(path.join(ws, '.git', 'hooks', 'pre-commit')), false);
    assert.doesNotMatch(readFileSync(path.join(ws, '.git', 'config'), 'utf8'), /WRITTEN/);
  });

  describe('nothing a command starts outlives its call', () => {
    it('a double-forked, setsid process is gone when the command exits', async () => {
      const r = await run(['node', 'late.mjs']);
      assert.match(r.content, /exit code 0[\s\S]*spawned/);
      await sleep(2500);
      assert.equal(existsSync(path.join(ws, 'out', 'late.txt')), false, 'the background process wrote its file');
    });

    it('and after a timeout', async () => {
      const r = await run(['node', 'hang.mjs'], { timeout_s: 1 });
      assert.match(r.content, /killed by SIG(TERM|KILL) after timeout/);
      await sleep(2500);
      assert.equal(existsSync(path.join(ws, 'out', 'hang-late.txt')), false, 'the background process wrote its file');
    });
  });

  it('the audit records the sandbox of every run', () => {
    const starts = readAuditEvents(path.join(base, 'state')).filter((e) => e.event === 'run_start');
    assert.ok(starts.length >= 10, String(starts.length));
    for (const e of starts) assert.equal(e.sandbox, 'bwrap', JSON.stringify(e));
  });
});

// The planted bare repository: a workspace without .git, an agent that may write anywhere and run exactly
// `git status`. Run with the sandbox OFF, so what stops the planted fsmonitor is git's own hardening
// (safe.bareRepository=explicit, core.fsmonitor=false, no hooks) and not the sandbox.
describe('git never runs a planted repository config', () => {
  let mock: MockModel;
  let base: string;
  let ws: string;
  let out: string;
  let srv: ServerHandle;

  before(async () => {
    mock = await startMockModel();
    base = tempDir('dmcp-sbx-git-');
    ws = path.join(base, 'ws');
    out = path.join(base, 'out');
    mkdirSync(ws);
    mkdirSync(out);
    writeTree(path.join(base, 'agents'), {
      'planter.yaml': `name: planter
description: Writes anywhere in the workspace and runs git status.
model: anthropic/claude-test-1
max_turns: 4
permissions:
  allow: [Read(**), Edit(**), Bash(git status)]
`,
    });
    const cfg = path.join(base, 'mcp.json');
    writeFileSync(cfg, JSON.stringify({ delegate: { stateDir: path.join(base, 'state'), sandbox: { mode: 'off' } } }));
    srv = await startServer({ args: ['--config', cfg, '--agents', path.join(base, 'agents'), '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
  });
  after(async () => {
    await srv?.close();
    await mock?.close();
  });

  it('"off" is warned about at start', () => {
    assert.match(srv.stderr(), /sandbox\.mode is "off"/);
  });

  it('git status does not run core.fsmonitor from a bare repository the agent wrote into the root', async () => {
    const fsmonitor = `touch ${out}/pwn ${ws}/fsmonitor-ran`;
    const plant = [
      directive('write_file', { path: 'HEAD', content: 'ref: refs/heads/main\n' }),
      directive('write_file', { path: 'config', content: `[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tworktree = .\n\tfsmonitor = "${fsmonitor}"\n` }),
      directive('write_file', { path: 'objects/info/.keep', content: '' }),
      directive('write_file', { path: 'refs/heads/.keep', content: '' }),
    ].join(' ');
    const before = mock.requests.length;
    const res: any = await srv.client.callTool({ name: 'planter', arguments: { task: plant } });
    assert.equal(res.structuredContent?.status, 'ok');
    const fed = mock.requests.slice(before)[1].toolResults;
    assert.equal(fed.length, 4);
    for (const f of fed) assert.equal(f.isError, false, f.content);
    const before2 = mock.requests.length;
    const st = await srv.client.callTool({ name: 'planter', arguments: { task: directive('run_command', { argv: ['git', 'status'] }) } });
    assert.equal((st as any).structuredContent?.status, 'ok');
    const ran = mock.requests.slice(before2)[1].toolResults[0].content;
    assert.match(ran, /^exit code 128[\s\S]*cannot use bare repository/, ran);
    await sleep(300);
    assert.equal(existsSync(path.join(out, 'pwn')), false, 'fsmonitor wrote outside');
    assert.equal(existsSync(path.join(ws, 'fsmonitor-ran')), false, 'fsmonitor ran');
  });

  it('the audit records sandbox "off" on the run', () => {
    const starts = readAuditEvents(path.join(base, 'state')).filter((e) => e.event === 'run_start');
    assert.equal(starts.length, 2);
    for (const e of starts) assert.equal(e.sandbox, 'off', JSON.stringify(e));
  });
});

// Without bubblewrap (here: not on the server's PATH), commands are refused with what to install —
// never run without a sandbox — and the server says so when it starts.
describe('without bubblewrap, run_command is refused, naming the package', () => {
  let mock: MockModel;
  let srv: ServerHandle;

  before(async () => {
    mock = await startMockModel();
    const base = tempDir('dmcp-sbx-nobwrap-');
    const ws = path.join(base, 'ws');
    mkdirSync(ws);
    writeTree(path.join(base, 'agents'), {
      'echoer.yaml': `name: echoer
description: Echoes.
model: anthropic/claude-test-1
max_turns: 4
permissions:
  allow: ["Bash(echo:*)"]
`,
    });
    const cfg = path.join(base, 'mcp.json');
    writeFileSync(cfg, JSON.stringify({ delegate: { stateDir: path.join(base, 'state') } }));
    srv = await startServer({
      args: ['--config', cfg, '--agents', path.join(base, 'agents'), '--workspace', ws],
      env: mockEnv(mock.url, { PATH: path.join(base, 'no-bin') }),
      cwd: ws,
    });
  });
  after(async () => {
    await srv?.close();
    await mock?.close();
  });

  it('warns at start and refuses the command with the install line', async () => {
    assert.match(srv.stderr(), /run_command will refuse every command: its bubblewrap sandbox is not available here \(bwrap not found; apt-get install bubblewrap or dnf install bubblewrap\)/);
    const before = mock.requests.length;
    const res: any = await srv.client.callTool({ name: 'echoer', arguments: { task: directive('run_command', { argv: ['echo', 'ran-anyway'] }) } });
    assert.equal(res.structuredContent?.status, 'ok');
    const fed = mock.requests.slice(before)[1].toolResults;
    assert.equal(fed.length, 1);
    assert.equal(fed[0].isError, true);
    assert.match(fed[0].content, /^run_command: refused: commands run in a bubblewrap sandbox, and bwrap was not found; install bubblewrap \(Debian\/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap.*or set delegate\.sandbox\.mode to "off"/);
    assert.doesNotMatch(fed[0].content, /ran-anyway/);
  });
});
