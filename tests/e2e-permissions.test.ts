// Permissions and tools end to end: the built server over stdio, a real MCP client, the mock model.
// The model's tool calls come from `[[tool:NAME {json}]]` directives in the task (or a scripted
// handler); every assertion is on what the model is fed back (the tool result in its next request),
// on the file system, or on what the client was asked.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { startMockModel, type MockModel, type MockToolResult } from './mock-model/server.js';
import { CLI, ROOT, mockEnv, tempDir, writeTree } from './helpers.js';

const execFileP = promisify(execFile);
const FIXTURE = path.join(ROOT, 'tests', 'fixtures', 'mcp-echo-server.mjs');

interface Srv {
  client: Client;
  stderr: () => string;
  close: () => Promise<void>;
}

/** Like helpers.startServer, but with the client's capabilities (elicitation) under the test's control. */
async function start(opts: {
  args: string[];
  env: Record<string, string>;
  cwd: string;
  elicit?: (params: any) => Promise<any>;
  era?: 'legacy' | 'modern';
}): Promise<Srv> {
  const transport = new StdioClientTransport({ command: process.execPath, args: [CLI, 'serve', ...opts.args], env: opts.env, cwd: opts.cwd, stderr: 'pipe' });
  let stderr = '';
  transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const client = new Client(
    { name: 'permissions-tests', version: '1.0.0' },
    {
      ...(opts.elicit && { capabilities: { elicitation: { form: {} } } }),
      ...(opts.era === 'modern' && { versionNegotiation: { mode: { pin: '2026-07-28' } } }),
    },
  );
  if (opts.elicit) {
    const elicit = opts.elicit;
    client.setRequestHandler('elicitation/create', async (req: any) => elicit(req.params));
  }
  await client.connect(transport);
  return { client, stderr: () => stderr, close: () => client.close().catch(() => {}) };
}

describe('permissions and tools end to end', () => {
  let mock: MockModel;
  let ws: string;
  let outside: string;
  let sibling: string;
  let agentsDir: string;
  let configFile: string;
  let web: http.Server;
  let webPort: number;
  let srv: Srv;

  /** Runs `agent` on `task` and returns the tool results the model was fed in its second request. */
  async function toolResultsOf(agent: string, task: string, client = srv.client): Promise<{ fed: MockToolResult[]; res: any }> {
    const before = mock.requests.length;
    const res: any = await client.callTool({ name: agent, arguments: { task } });
    const reqs = mock.requests.slice(before);
    assert.ok(reqs.length >= 2, `expected a second model request with tool results; got ${reqs.length}: ${JSON.stringify(res.content)}`);
    return { fed: reqs[1].toolResults, res };
  }
  const directive = (tool: string, args: unknown) => `[[tool:${tool} ${JSON.stringify(args)}]]`;

  before(async () => {
    mock = await startMockModel();
    ws = tempDir('dmcp-perm-ws-');
    outside = tempDir('dmcp-perm-outside-');
    // A sibling whose name starts with the workspace's own name: `/tmp/ws` must not admit `/tmp/ws-evil`.
    sibling = `${ws}-evil`;
    mkdirSync(sibling);
    writeTree(outside, { 'secret.txt': 'TOP-SECRET-OUTSIDE' });
    writeTree(sibling, { 'secret.txt': 'TOP-SECRET-SIBLING' });
    writeTree(ws, {
      'src/app.ts': 'export const answer = 42; // MARKER-APP\n',
      '.env': 'API_TOKEN=SECRET-ENV-VALUE\n',
      'docs/readme.md': '# docs MARKER-DOCS\n',
    });
    symlinkSync(path.join(outside, 'secret.txt'), path.join(ws, 'leak.txt'));
    symlinkSync(outside, path.join(ws, 'linkdir'));

    // 127.0.0.1 is allowed by an exact rule; /redir sends the fetch on to a host no rule allows.
    web = http.createServer((req, res) => {
      if (req.url === '/redir') {
        res.writeHead(302, { location: 'http://evil.example.com/steal' });
        res.end();
      } else {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('LOCAL-WEB-OK');
      }
    });
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    webPort = (web.address() as AddressInfo).port;

    agentsDir = tempDir('dmcp-perm-agents-');
    writeTree(agentsDir, {
      // Claude-Code-style rules only: no seed `tools`, the rules are the grant.
      'worker.yaml': `name: worker
description: Test agent with Claude-Code-style permission rules.
model: anthropic/claude-test-1
max_turns: 4
permissions:
  allow:
    - Read(**)
    - Edit(out/**)
    - Bash(echo:*)
    - Bash(bash:*)
    - Bash(find:*)
    - WebFetch(domain:127.0.0.1)
  deny:
    - Read(**/.env*)
`,
      // Seed format: translated to rules; may use the downstream "echo" server.
      'seed-runner.yaml': `name: seed-runner
goal: Test agent in the seed format with a downstream MCP server.
model: openai-chat/llama-test
max_turns: 6
tools:
  fs: {read: true, write: [out/**]}
  shell: {exec: ["echo seed-ok"]}
  mcp: [echo]
`,
      'asker.yaml': `name: asker
description: Test agent whose echo commands need approval.
model: anthropic/claude-test-1
max_turns: 6
permissions:
  allow: [Read(**)]
  ask: ["Bash(echo:*)"]
`,
    });
    configFile = path.join(tempDir('dmcp-perm-cfg-'), 'mcp.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        mcpServers: { echo: { command: process.execPath, args: [FIXTURE], env: { FIXTURE_TOKEN: 'fixture-token' } } },
        delegate: { tools: { mcpCallTimeoutS: 3, mcpMaxOutputBytes: 4096, askTimeoutS: 5 } },
      }),
    );
    srv = await start({ args: ['--config', configFile, '--agents', agentsDir, '--workspace', ws], env: mockEnv(mock.url), cwd: ws });
  });
  after(async () => {
    await srv?.close();
    await mock.close();
    await new Promise<void>((r) => web.close(() => r()));
  });

  describe('escape attempts are denied, and the cause reaches the model', () => {
    const cases: [string, string, unknown, RegExp][] = [
      ['symlink out', 'read_file', { path: 'leak.txt' }, /permission denied: .*symlink that leads outside the workspace/],
      ['prefix sibling', 'read_file', { path: '../PLACEHOLDER-evil/secret.txt' }, /permission denied: .*resolves outside the workspace/],
      ['`..`', 'read_file', { path: '../../../../../../etc/passwd' }, /permission denied: .*resolves outside the workspace/],
      ['absolute path', 'read_file', { path: '/etc/passwd' }, /permission denied: .*resolves outside the workspace/],
      ['write through a symlinked parent', 'write_file', { path: 'linkdir/pwned.txt', content: 'x' }, /permission denied: .*symlink that leads outside/],
      ['`;` in argv', 'run_command', { argv: ['echo', 'hi; cat /etc/passwd'] }, /permission denied: argv\[1\] .* shell metacharacter ";"/],
      ['`$()` in argv', 'run_command', { argv: ['echo', '$(id)'] }, /permission denied: argv\[1\] .* shell metacharacter "\$"/],
      ['backtick in argv', 'run_command', { argv: ['echo', '`id`'] }, /permission denied: argv\[1\] .* shell metacharacter "`"/],
      ['newline in argv', 'run_command', { argv: ['echo', 'a\nid'] }, /permission denied: argv\[1\] .* shell metacharacter newline/],
      ['bash -c', 'run_command', { argv: ['bash', '-c', 'id'] }, /permission denied: "bash -c" \(inline code via -c\) is refused unless a rule names that form.*rule "Bash\(bash:\*\)" matches but does not spell it out/],
      ['find -exec', 'run_command', { argv: ['find', '.', '-exec', 'cat', '{}', '+'] }, /permission denied: "find -exec" \(runs commands or changes files\) is refused/],
      ['userinfo host', 'fetch_url', { url: 'http://127.0.0.1@evil.example.com/' }, /permission denied: URL contains credentials before "@" \(the host is actually evil\.example\.com\)/],
      ['private IP', 'fetch_url', { url: 'http://169.254.169.254/latest/meta-data/' }, /permission denied: 169\.254\.169\.254 is a private, loopback, link-local or reserved address \(linkLocal\): allowed only by a rule naming it exactly/],
      ['a Read deny rule', 'read_file', { path: '.env' }, /permission denied: denied by rule "Read\(\*\*\/\.env\*\)" \[agent worker\]/],
      ['an Edit outside its glob', 'write_file', { path: 'src/app.ts', content: 'pwned' }, /permission denied: no allow rule matches Edit\(src\/app\.ts\) \[agent worker\]/],
      ['a command no rule allows', 'run_command', { argv: ['rm', '-rf', '.'] }, /permission denied: no allow rule matches Bash\(rm -rf \.\)/],
      ['a tool the agent may not use', 'mcp__echo__echo', { text: 'x' }, /permission denied: agent worker may not use mcp__echo__echo: no allow rule matches mcp__echo__echo/],
    ];
    for (const [name, tool, args, expected] of cases) {
      it(name, async () => {
        const a = JSON.parse(JSON.stringify(args).replace('PLACEHOLDER', path.basename(ws)));
        const { fed, res } = await toolResultsOf('worker', directive(tool, a));
        assert.equal(res.structuredContent?.status, 'ok', 'a denial never ends the run');
        assert.equal(fed.length, 1);
        assert.equal(fed[0].isError, true);
        assert.match(fed[0].content, expected);
        assert.doesNotMatch(res.structuredContent.output, /TOP-SECRET|SECRET-ENV-VALUE|root:/);
      });
    }

    it('a write through a symlinked parent is denied and leaves nothing outside', async () => {
      const target = path.join(outside, 'pwned-here.txt');
      const { fed } = await toolResultsOf('worker', directive('write_file', { path: 'linkdir/pwned-here.txt', content: 'x' }));
      assert.equal(fed.length, 1);
      assert.equal(fed[0].isError, true);
      assert.match(fed[0].content, /permission denied: .*symlink that leads outside/);
      assert.equal(existsSync(target), false);
    });

    it('a redirect to a host no rule allows is refused at the hop, naming the cause', async () => {
      const { fed } = await toolResultsOf('worker', directive('fetch_url', { url: `http://127.0.0.1:${webPort}/redir` }));
      assert.equal(fed[0].isError, true);
      assert.match(fed[0].content, /refused http:\/\/evil\.example\.com\/steal \(redirect 1 from http:\/\/127\.0\.0\.1:\d+\/redir\): permission denied: no allow rule matches WebFetch\(domain:evil\.example\.com\)/);
    });

    it('list_dir and search_files hide what a Read deny rule covers', async () => {
      const list = await toolResultsOf('worker', directive('list_dir', { path: '.' }));
      assert.match(list.fed[0].content, /src\//);
      assert.doesNotMatch(list.fed[0].content, /\.env/);
      assert.match(list.fed[0].content, /\[1 entry hidden by permission rules\]/);
      const search = await toolResultsOf('worker', directive('search_files', { pattern: 'SECRET-ENV|MARKER-APP' }));
      assert.match(search.fed[0].content, /src\/app\.ts:1: .*MARKER-APP/);
      assert.doesNotMatch(search.fed[0].content, /SECRET-ENV-VALUE/);
      assert.match(search.fed[0].content, /excluded by permission rules/);
    });
  });

  describe('allowed calls run', () => {
    it('an allowed command runs and its output reaches the model', async () => {
      const { fed, res } = await toolResultsOf('worker', directive('run_command', { argv: ['echo', 'hello-from-echo'] }));
      assert.equal(fed[0].isError, false, fed[0].content);
      assert.match(fed[0].content, /exit code 0[\s\S]*hello-from-echo/);
      assert.match(res.structuredContent.output, /hello-from-echo/);
    });

    it('an allowed write lands in the file', async () => {
      const { fed } = await toolResultsOf('worker', directive('write_file', { path: 'out/result.txt', content: 'WRITTEN-BY-AGENT' }));
      assert.equal(fed[0].isError, false, fed[0].content);
      assert.equal(readFileSync(path.join(ws, 'out', 'result.txt'), 'utf8'), 'WRITTEN-BY-AGENT');
    });

    it('a fetch of a private host that a rule names exactly works', async () => {
      const { fed } = await toolResultsOf('worker', directive('fetch_url', { url: `http://127.0.0.1:${webPort}/ok` }));
      assert.equal(fed[0].isError, false, fed[0].content);
      assert.match(fed[0].content, /HTTP 200[\s\S]*LOCAL-WEB-OK/);
    });

    it('seed-format grants: the exact command runs, a longer one does not; the model is offered what it may use', async () => {
      const before = mock.requests.length;
      const { fed } = await toolResultsOf('seed-runner', directive('run_command', { argv: ['echo', 'seed-ok'] }) + directive('run_command', { argv: ['echo', 'seed-ok', 'more'] }));
      assert.match(fed[0].content, /exit code 0[\s\S]*seed-ok/);
      assert.match(fed[1].content, /permission denied: no allow rule matches Bash\(echo seed-ok more\)/);
      const offered = mock.requests[before].toolNames;
      for (const t of ['read_file', 'list_dir', 'search_files', 'write_file', 'edit_file', 'run_command', 'mcp__echo__echo', 'mcp__echo__crash']) {
        assert.ok(offered.includes(t), `${t} not offered: ${offered}`);
      }
      assert.ok(!offered.includes('fetch_url'), 'fetch_url is not offered without a grant');
    });
  });

  describe('downstream MCP servers from mcp.json', () => {
    it('an agent calls mcp__echo__echo; the server gets only its own env, never our API keys', async () => {
      const { fed } = await toolResultsOf('seed-runner', directive('mcp__echo__echo', { text: 'hi there' }) + directive('mcp__echo__env', {}));
      assert.equal(fed[0].isError, false, fed[0].content);
      assert.match(fed[0].content, /^echo: hi there \(pid \d+\)$/);
      const visible = JSON.parse(fed[1].content);
      assert.deepEqual(visible.sort(), ['FIXTURE_TOKEN', 'PATH']);
    });

    it('killing the server mid-run gives a tool error naming it, and the next call in the same run works', async () => {
      mock.setHandler((req) => {
        const last = req.toolResults[0];
        if (!last) return { toolCalls: [{ name: 'mcp__echo__echo', arguments: { text: 'before' } }] };
        if (last.content.startsWith('echo: before')) return { toolCalls: [{ name: 'mcp__echo__crash', arguments: {} }] };
        if (/MCP server "echo"/.test(last.content)) return { toolCalls: [{ name: 'mcp__echo__echo', arguments: { text: 'after' } }] };
        return { text: `final: ${last.content}` };
      });
      try {
        const before = mock.requests.length;
        const res: any = await srv.client.callTool({ name: 'seed-runner', arguments: { task: 'crash test' } });
        assert.equal(res.structuredContent?.status, 'ok', JSON.stringify(res.content));
        const fed = mock.requests.slice(before).map((r) => r.toolResults[0]).filter(Boolean);
        assert.equal(fed.length, 3);
        const pidBefore = /pid (\d+)/.exec(fed[0].content)![1];
        assert.equal(fed[1].isError, true);
        assert.match(fed[1].content, /^(\[tool error\] )?mcp__echo__crash: MCP server "echo" exited or closed the connection during the call; it will be restarted on the next call/);
        assert.equal(fed[2].isError, false, fed[2].content);
        const pidAfter = /^echo: after \(pid (\d+)\)$/.exec(fed[2].content)?.[1];
        assert.ok(pidAfter && pidAfter !== pidBefore, `restarted: ${pidBefore} → ${pidAfter}`);
        assert.match(res.structuredContent.output, /final: echo: after/);
      } finally {
        mock.setHandler(undefined);
      }
    });

    it('a server that hangs past the per-call timeout yields an error naming it; the next call gets a fresh server', async () => {
      const t0 = Date.now();
      const { fed } = await toolResultsOf('seed-runner', directive('mcp__echo__sleep', { ms: 60_000 }));
      assert.ok(Date.now() - t0 < 10_000, 'bounded by the 3 s timeout');
      assert.match(fed[0].content, /^(\[tool error\] )?mcp__echo__sleep: MCP server "echo" did not answer within 3 s; it was stopped and will be restarted on the next call$/);
      const next = await toolResultsOf('seed-runner', directive('mcp__echo__echo', { text: 'again' }));
      assert.match(next.fed[0].content, /^echo: again/);
    });

    it('output over the size cap is truncated with a note', async () => {
      const { fed } = await toolResultsOf('seed-runner', directive('mcp__echo__big', { bytes: 10_000 }));
      assert.equal(fed[0].isError, false);
      assert.match(fed[0].content, /^x{4096}\n\[output truncated: the tool returned 10000 bytes; only the first 4 KiB are shown\]$/);
    });

    it('a tool the server does not have is an error listing what the agent may use', async () => {
      const { fed } = await toolResultsOf('seed-runner', directive('mcp__echo__nope', {}));
      assert.match(fed[0].content, /unknown tool "mcp__echo__nope" for agent seed-runner: MCP server "echo" has no tool "nope" \(available: .*mcp__echo__echo/);
    });
  });

  it('a rule that does not parse is a load error with file:line:col', async () => {
    const dir = tempDir('dmcp-perm-bad-');
    writeTree(dir, { 'bad.yaml': 'name: bad\ndescription: bad rules\npermissions:\n  allow:\n    - Read(src/**)\n    - Bash(npm test\n  deny: [Shell(rm)]\n' });
    await assert.rejects(execFileP(process.execPath, [CLI, 'agents', 'validate', dir]), (err: any) => {
      assert.equal(err.code, 1);
      assert.match(err.stderr, /bad\.yaml:6:7: permissions\.allow\[1\]: invalid permission rule "Bash\(npm test": missing "\)"/);
      assert.match(err.stderr, /bad\.yaml:7:10: permissions\.deny\[0\]: invalid permission rule "Shell\(rm\)": unknown tool "Shell" \(did you mean Bash\?\)/);
      return true;
    });
  });

  describe('ask rules → MCP elicitation', () => {
    const askArgs = () => ['--config', configFile, '--agents', agentsDir, '--workspace', ws];
    const cmd = (word: string) => directive('run_command', { argv: ['echo', word] });

    it('approved once: the command runs; the client saw who wants what, and the rule', async () => {
      const asked: any[] = [];
      const s = await start({ args: askArgs(), env: mockEnv(mock.url), cwd: ws, elicit: async (p) => (asked.push(p), { action: 'accept', content: { decision: 'allow_once' } }) });
      try {
        const { fed } = await toolResultsOf('asker', cmd('approved-once'), s.client);
        assert.equal(fed[0].isError, false, fed[0].content);
        assert.match(fed[0].content, /approved-once/);
        assert.equal(asked.length, 1);
        assert.match(asked[0].message, /^agent asker wants to run `echo approved-once`\. Rule "Bash\(echo:\*\)" requires your approval/);
        assert.deepEqual(asked[0].requestedSchema.properties.decision.enum, ['allow_once', 'allow_run', 'deny']);
      } finally {
        await s.close();
      }
    });

    it('denied by the user: a tool error says so; declining counts as deny', async () => {
      const answers = [{ action: 'accept', content: { decision: 'deny' } }, { action: 'decline' }];
      const s = await start({ args: askArgs(), env: mockEnv(mock.url), cwd: ws, elicit: async () => answers.shift() });
      try {
        for (let i = 0; i < 2; i++) {
          const { fed, res } = await toolResultsOf('asker', cmd('never-runs'), s.client);
          assert.equal(res.structuredContent.status, 'ok');
          assert.equal(fed[0].isError, true);
          assert.equal(fed[0].content, 'permission denied: the user denied the request to run `echo never-runs` (rule "Bash(echo:*)" requires approval)');
        }
      } finally {
        await s.close();
      }
    });

    it('allow_run is remembered for the rest of that run only', async () => {
      let asked = 0;
      const s = await start({ args: askArgs(), env: mockEnv(mock.url), cwd: ws, elicit: async () => (asked++, { action: 'accept', content: { decision: 'allow_run' } }) });
      try {
        const { fed } = await toolResultsOf('asker', cmd('first') + cmd('second'), s.client);
        assert.equal(fed.length, 2);
        assert.equal(fed[0].isError, false, fed[0].content);
        assert.match(fed[0].content, /^exit code 0[\s\S]*first/);
        assert.equal(fed[1].isError, false, fed[1].content);
        assert.match(fed[1].content, /^exit code 0[\s\S]*second/);
        // Two parallel calls may both ask before either answer is in; a later call in the run never does.
        const firstRun = asked;
        assert.ok(firstRun >= 1 && firstRun <= 2, `asked ${firstRun} times`);
        mock.setHandler((req) => {
          if (req.toolResults.length === 0) return { toolCalls: [{ name: 'run_command', arguments: { argv: ['echo', 'one'] } }] };
          if (req.toolResults[0].content.includes('one') && !req.toolResults[0].content.includes('two')) {
            return { toolCalls: [{ name: 'run_command', arguments: { argv: ['echo', 'two'] } }] };
          }
          return { text: 'done' };
        });
        const before = asked;
        const reqsBefore = mock.requests.length;
        const res: any = await s.client.callTool({ name: 'asker', arguments: { task: 'two in a row' } });
        assert.equal(res.structuredContent?.status, 'ok', JSON.stringify(res.content));
        assert.equal(res.structuredContent.output, 'done');
        // Both sequential calls ran: the second was allowed by the remembered answer, not asked again.
        const second = mock.requests.slice(reqsBefore).map((r) => r.toolResults[0]).filter(Boolean);
        assert.equal(second.length, 2);
        assert.equal(second[0].isError, false, second[0].content);
        assert.match(second[0].content, /^exit code 0[\s\S]*one/);
        assert.equal(second[1].isError, false, second[1].content);
        assert.match(second[1].content, /^exit code 0[\s\S]*two/);
        assert.equal(asked - before, 1, 'asked once for two sequential calls in one run (and again in a new run)');
      } finally {
        mock.setHandler(undefined);
        await s.close();
      }
    });

    it('runs started by `delegate` ask the session too (approve and deny)', async () => {
      const answers = ['allow_once', 'deny'];
      const s = await start({ args: askArgs(), env: mockEnv(mock.url), cwd: ws, elicit: async () => ({ action: 'accept', content: { decision: answers.shift() } }) });
      try {
        for (const expected of [/^exit code 0[\s\S]*via-delegate/, /^permission denied: the user denied/]) {
          const before = mock.requests.length;
          const res: any = await s.client.callTool({ name: 'delegate', arguments: { agent: 'asker', task: cmd('via-delegate') } });
          assert.equal(res.isError, undefined, JSON.stringify(res.content));
          assert.match(mock.requests.slice(before)[1].toolResults[0].content, expected);
        }
      } finally {
        await s.close();
      }
    });

    it('without the elicitation capability the call is denied at once, with the reason', async () => {
      const t0 = Date.now();
      const { fed, res } = await toolResultsOf('asker', cmd('no-client'));
      assert.ok(Date.now() - t0 < 3000, 'no waiting for an answer that cannot come');
      assert.equal(res.structuredContent.status, 'ok');
      assert.equal(
        fed[0].content,
        'permission denied: approval needed but no client could answer (the client did not declare the elicitation capability); rule "Bash(echo:*)" requires approval to run `echo no-client`',
      );
    });

    it('a client that never answers: denied after the ask timeout, never a hang', async () => {
      const s = await start({ args: askArgs(), env: mockEnv(mock.url), cwd: ws, elicit: () => new Promise(() => {}) });
      try {
        const t0 = Date.now();
        const { fed } = await toolResultsOf('asker', cmd('too-late'), s.client);
        const took = Date.now() - t0;
        assert.ok(took >= 4500 && took < 9000, `took ${took} ms for a 5 s ask timeout`);
        assert.match(fed[0].content, /^permission denied: approval needed but no client could answer \(no answer within 5 s\)/);
      } finally {
        await s.close();
      }
    });

    it('2026-07-28 era: the approval travels as an input_required result and the run continues on the answer', async () => {
      const asked: any[] = [];
      const s = await start({ args: askArgs(), env: mockEnv(mock.url), cwd: ws, era: 'modern', elicit: async (p) => (asked.push(p), { action: 'accept', content: { decision: 'allow_once' } }) });
      try {
        const { fed } = await toolResultsOf('asker', cmd('modern'), s.client);
        assert.equal(asked.length, 1);
        assert.equal(fed[0].isError, false, fed[0].content);
        assert.match(fed[0].content, /modern/);
      } finally {
        await s.close();
      }
    });
  });
});
