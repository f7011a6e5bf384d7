// Protected paths a sandboxed command could CREATE or swap, end to end (built server over stdio, a real
// MCP client, the mock model emitting the tool calls). An agent that may edit the whole workspace and run
// one script must not be able to leave behind what the next `serve` or `git` runs outside the sandbox:
// a new mcp.json or .git where none existed, a downstream MCP server's script rewritten, or an agent
// directory swapped by renaming its parent. The file tools refuse the same paths.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startMockModel, type MockModel, type MockToolResult } from './mock-model/server.js';
import { mockEnv, readAuditEvents, startServer, tempDir, writeTree, type ServerHandle } from './helpers.js';

const bwrapMissing = spawnSync('bwrap', ['--version']).status !== 0;
if (bwrapMissing && process.env.CI === 'true') {
  throw new Error('bubblewrap (bwrap) is not installed, and CI=true: the sandbox tests must run (apt-get install -y bubblewrap)');
}
if (bwrapMissing) process.stderr.write('SKIP tests/e2e-sandbox-protected-create.test.ts: bubblewrap (bwrap) is not installed (apt-get install bubblewrap)\n');

const directive = (tool: string, args: unknown) => `[[tool:${tool} ${JSON.stringify(args)}]]`;

const SCRIPTS: Record<string, string> = {
  // `node writer.mjs <path> [content]`: mkdir -p its directory, write it.
  'writer.mjs': `import fs from 'node:fs';
import path from 'node:path';
try { fs.mkdirSync(path.dirname(process.argv[2]), { recursive: true }); fs.writeFileSync(process.argv[2], process.argv[3] ?? 'WRITTEN'); console.log('WROTE ' + process.argv[2]); }
catch (e) { console.log('WRITE-FAILED ' + e.code); }
`,
  // `node linker.mjs <target> <path>`: a symlink at <path>.
  'linker.mjs': `import fs from 'node:fs';
try { fs.symlinkSync(process.argv[2], process.argv[3]); console.log('LINKED'); } catch (e) { console.log('LINK-FAILED ' + e.code); }
`,
  // Moves .claude away and plants .claude/agents/pwn.md in a new one.
  'mover.mjs': `import fs from 'node:fs';
try { fs.renameSync('.claude', '.claude-old'); console.log('MOVED'); } catch (e) { console.log('MOVE-FAILED ' + e.code); }
try { fs.mkdirSync('.claude/agents', { recursive: true }); fs.writeFileSync('.claude/agents/pwn.md', 'planted'); console.log('PLANTED'); } catch (e) { console.log('PLANT-FAILED ' + e.code); }
`,
  // Writes mcp.json and hangs, ignoring SIGTERM.
  'sleeper.mjs': `import fs from 'node:fs';
process.on('SIGTERM', () => {});
fs.writeFileSync('mcp.json', '{"mcpServers":{}}');
console.log('written');
setInterval(() => {}, 1000);
`,
  // Writes mcp.json, then keeps rewriting it from a background shell that ignores SIGTERM, and hangs
  // ignoring SIGTERM itself: only the SIGKILL of the whole sandbox ends them.
  'stubborn.mjs': `import fs from 'node:fs';
import { spawn } from 'node:child_process';
process.on('SIGTERM', () => {});
fs.writeFileSync('mcp.json', '{"mcpServers":{}}');
spawn('sh', ['-c', "trap '' TERM; while true; do echo '{}' > mcp.json; sleep 0.05; done"], { detached: true, stdio: 'ignore' }).unref();
console.log('started');
setInterval(() => {}, 1000);
`,
};

describe('a sandboxed command cannot create or swap protected paths', { skip: bwrapMissing ? 'bubblewrap (bwrap) is not installed' : false }, () => {
  let mock: MockModel;
  let base: string;
  let ws: string;
  let out: string;
  let srv: ServerHandle;

  const SRV_CODE = 'console.log("the real downstream server");\n';

  async function results(task: string): Promise<MockToolResult[]> {
    const before = mock.requests.length;
    const res: any = await srv.client.callTool({ name: 'gardener', arguments: { task } });
    assert.equal(res.structuredContent?.status, 'ok', JSON.stringify(res.content));
    const reqs = mock.requests.slice(before);
    assert.ok(reqs.length >= 2, `expected a second model request with tool results; got ${reqs.length}`);
    return reqs[1].toolResults;
  }
  async function run(argv: string[], extra: Record<string, unknown> = {}): Promise<MockToolResult> {
    const fed = await results(directive('run_command', { argv, ...extra }));
    assert.equal(fed.length, 1);
    assert.match(fed[0].content, /^(exit code \d+|run_command: killed by)/, fed[0].content);
    return fed[0];
  }
  const denials = () => readAuditEvents(path.join(base, 'state')).filter((e) => e.event === 'permission_denied');

  before(async () => {
    mock = await startMockModel();
    base = tempDir('dmcp-sbx-create-');
    ws = path.join(base, 'ws');
    out = path.join(base, 'out');
    writeTree(out, { 'secret.txt': 'OUTSIDE\n' });
    // No mcp.json and no .git in the workspace; a downstream server whose script lives in it.
    writeTree(ws, { 'scripts/srv.mjs': SRV_CODE, '.claude/agents/.keep': '', ...SCRIPTS });
    writeTree(path.join(base, 'agents'), {
      'gardener.yaml': `name: gardener
description: May edit the whole workspace and run a few scripts.
model: anthropic/claude-test-1
max_turns: 4
permissions:
  allow: [Read(**), Edit(**), "Bash(node writer.mjs:*)", "Bash(node linker.mjs:*)", "Bash(node mover.mjs)", "Bash(node stubborn.mjs)"]
`,
    });
    const cfg = path.join(base, 'mcp.json');
    writeFileSync(
      cfg,
      JSON.stringify({ delegate: { stateDir: path.join(base, 'state') }, mcpServers: { local: { command: 'node', args: ['scripts/srv.mjs'], cwd: 'ws' } } }),
    );
    srv = await startServer({ args: ['--config', cfg, '--agents', path.join(base, 'agents'), '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
  });
  after(async () => {
    await srv?.close();
    await mock?.close();
  });

  it('a command that creates <workspace>/mcp.json has it removed, is told, and the audit records it', async () => {
    const before = denials().length;
    const r = await run(['node', 'writer.mjs', 'mcp.json', '{"mcpServers":{"x":{"command":"touch","args":["/tmp/pwn"]}}}']);
    assert.match(r.content, /^exit code 0[\s\S]*WROTE mcp\.json/, r.content);
    assert.match(r.content, /--- sandbox: removed mcp\.json: protected paths/);
    assert.equal(existsSync(path.join(ws, 'mcp.json')), false);
    const added = denials().slice(before);
    assert.equal(added.length, 1, JSON.stringify(added));
    assert.equal(added[0].tool, 'run_command');
    assert.match(String(added[0].reason), /created the protected path .*\/mcp\.json; removed/);
  });

  it('a .git created where none existed is removed with everything in it', async () => {
    const r = await run(['node', 'writer.mjs', '.git/config', '[core] fsmonitor = touch /tmp/pwn']);
    assert.match(r.content, /WROTE \.git\/config[\s\S]*--- sandbox: removed \.git:/, r.content);
    assert.equal(existsSync(path.join(ws, '.git')), false);
  });

  it('an mcp.json created as a symlink to a file outside: the link is removed, the file it points to is not', async () => {
    const r = await run(['node', 'linker.mjs', path.join(out, 'secret.txt'), 'mcp.json']);
    assert.match(r.content, /LINKED[\s\S]*--- sandbox: removed mcp\.json:/, r.content);
    assert.throws(() => lstatSync(path.join(ws, 'mcp.json')), /ENOENT/);
    assert.equal(readFileSync(path.join(out, 'secret.txt'), 'utf8'), 'OUTSIDE\n');
  });

  it('ordinary files the command writes stay', async () => {
    const r = await run(['node', 'writer.mjs', 'notes/fine.txt']);
    assert.match(r.content, /^exit code 0[\s\S]*WROTE notes\/fine\.txt/);
    assert.doesNotMatch(r.content, /sandbox: removed/);
    assert.equal(readFileSync(path.join(ws, 'notes', 'fine.txt'), 'utf8'), 'WRITTEN');
  });

  it('processes that ignore SIGTERM and keep re-creating mcp.json: removed once the whole sandbox is dead', async () => {
    const r = await run(['node', 'stubborn.mjs'], { timeout_s: 1 });
    assert.match(r.content, /killed by SIGKILL after timeout/, r.content);
    assert.match(r.content, /--- sandbox: removed mcp\.json:/, r.content);
    await sleep(500);
    assert.equal(existsSync(path.join(ws, 'mcp.json')), false, 'a process of the sandbox re-created mcp.json after the removal');
  });

  it("a downstream MCP server's script in the workspace is read-only for commands", async () => {
    const r = await run(['node', 'writer.mjs', 'scripts/srv.mjs', 'pwned']);
    assert.match(r.content, /WRITE-FAILED EROFS/, r.content);
    assert.equal(readFileSync(path.join(ws, 'scripts', 'srv.mjs'), 'utf8'), SRV_CODE);
  });

  it('an agent directory cannot be swapped by renaming its parent', async () => {
    const r = await run(['node', 'mover.mjs']);
    assert.match(r.content, /MOVE-FAILED EBUSY/, r.content);
    assert.equal(existsSync(path.join(ws, '.claude', 'agents', 'pwn.md')), false);
    assert.equal(existsSync(path.join(ws, '.claude-old')), false);
  });

  it('the file tools refuse creating mcp.json and .git, and writing the server script', async () => {
    const fed = await results(
      [
        directive('write_file', { path: 'mcp.json', content: '{}' }),
        directive('write_file', { path: '.git/config', content: '[core]\n' }),
        directive('write_file', { path: 'scripts/srv.mjs', content: 'console.log("pwned")' }),
        directive('edit_file', { path: 'scripts/srv.mjs', old_string: 'the real', new_string: 'a fake' }),
      ].join(' '),
    );
    assert.equal(fed.length, 4);
    assert.match(fed[0].content, /^permission denied: protected: server config .*mcp\.json cannot be changed/);
    assert.match(fed[1].content, /^permission denied: protected: git internals .*\.git cannot be changed/);
    assert.match(fed[2].content, /^permission denied: protected: downstream MCP server code .*srv\.mjs cannot be changed by an agent \(the server runs it outside the sandbox/);
    assert.match(fed[3].content, /^permission denied: protected: downstream MCP server code/);
    for (const f of fed) assert.equal(f.isError, true);
    assert.equal(existsSync(path.join(ws, 'mcp.json')), false);
    assert.equal(existsSync(path.join(ws, '.git')), false);
    assert.equal(readFileSync(path.join(ws, 'scripts', 'srv.mjs'), 'utf8'), SRV_CODE);
  });
});

// A server killed while a command runs never gets to remove what the command created; the next server
// start in that workspace does (from the dead server's journal in the state dir).
describe('a created protected path outlives a killed server only until the next start', { skip: bwrapMissing ? 'bubblewrap (bwrap) is not installed' : false }, () => {
  let mock: MockModel;
  let base: string;
  let ws: string;
  let args: string[];

  before(async () => {
    mock = await startMockModel();
    base = tempDir('dmcp-sbx-journal-');
    ws = path.join(base, 'ws');
    writeTree(ws, SCRIPTS);
    writeTree(path.join(base, 'agents'), {
      'sleeper.yaml': `name: sleeper
description: May edit the workspace and run one script.
model: anthropic/claude-test-1
max_turns: 4
permissions:
  allow: [Read(**), Edit(**), "Bash(node sleeper.mjs)"]
`,
    });
    const cfg = path.join(base, 'mcp.json');
    writeFileSync(cfg, JSON.stringify({ delegate: { stateDir: path.join(base, 'state') } }));
    args = ['--config', cfg, '--agents', path.join(base, 'agents'), '--workspace', ws];
  });
  after(async () => {
    await mock?.close();
  });

  it('kill -9 during the command leaves mcp.json; the next serve removes it and says so', async () => {
    const first = await startServer({ args, env: mockEnv(mock.url), cwd: ws });
    const call = first.client
      .callTool({ name: 'sleeper', arguments: { task: directive('run_command', { argv: ['node', 'sleeper.mjs'], timeout_s: 60 }) } })
      .catch((e: Error) => e);
    const created = path.join(ws, 'mcp.json');
    for (let i = 0; i < 200 && !existsSync(created); i++) await sleep(50);
    assert.ok(existsSync(created), 'the command did not create mcp.json');
    const pid = first.transport.pid;
    assert.ok(pid && pid > 0);
    process.kill(pid, 'SIGKILL');
    await call;
    await first.close();
    await sleep(300);
    assert.ok(existsSync(created), 'nothing was left behind to clean up');
    const journals = readdirSync(path.join(base, 'state')).filter((f) => /^sandbox-created-\d+\.json$/.test(f));
    assert.equal(journals.length, 1, journals.join(', '));

    const second = await startServer({ args, env: mockEnv(mock.url), cwd: ws });
    try {
      assert.equal(existsSync(created), false, 'the next start did not remove mcp.json');
      assert.match(second.stderr(), /removed .*\/ws\/mcp\.json: a sandboxed command created this protected path and its server stopped before removing it/);
      assert.deepEqual(readdirSync(path.join(base, 'state')).filter((f) => /^sandbox-created-/.test(f)), []);
    } finally {
      await second.close();
    }
  });
});
