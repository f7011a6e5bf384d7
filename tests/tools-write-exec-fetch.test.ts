import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { createWriteTools, WRITE_LIMITS, writeTools } from '../src/tools/write-tools.js';
import { COMMAND_LIMITS, commandTools, createCommandTools } from '../src/tools/run-command.js';
import { buildChildEnv } from '../src/tools/command-env.js';
import type { CommandSandbox, SandboxMode } from '../src/sandbox/index.js';
import { createNetTools, NET_LIMITS, netTools } from '../src/tools/fetch-url.js';
import { classifyAddress, isPrivateAddress } from '../src/net/address.js';
import type { BuiltinTool, ToolContext } from '../src/tools/types.js';
import type { ToolOutcome } from '../src/contract/tool.js';

// Layout (base is a realpath'd temp dir):
//   base/ws        the workspace
//   base/outside   target for symlinks leading out
let base: string;
let ws: string;
let outside: string;
let ctx: ToolContext;

// Limits are given to the tools when they are made: tests that lower one change these copies, and
// every call makes its tools from them.
const writeLimits = { ...WRITE_LIMITS };
const commandLimits = { ...COMMAND_LIMITS };
const netLimits = { ...NET_LIMITS };
const call = (tool: string, args: unknown, c: ToolContext = ctx): Promise<ToolOutcome> => {
  const tools: Record<string, BuiltinTool> = { ...createWriteTools(writeLimits), ...createCommandTools(commandLimits), ...createNetTools(netLimits) };
  return tools[tool].run(args as Record<string, unknown>, c);
};

const wsPath = (rel: string): string => path.join(ws, rel);
const readWs = (rel: string): string => fs.readFileSync(wsPath(rel), 'utf8');

function write(rel: string, content: string): void {
  fs.mkdirSync(path.dirname(wsPath(rel)), { recursive: true });
  fs.writeFileSync(wsPath(rel), content);
}

/** Writes a script into base/scripts (outside the workspace) and returns its path. */
function script(name: string, code: string): string {
  const p = path.join(base, 'scripts', name);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, code);
  return p;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // A zombie (exited, not yet reaped by init in a container) counts as dead.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return true;
  }
}

async function waitDead(pid: number, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !isAlive(pid);
}

const noTempFiles = (dir: string): void => {
  const temps = fs.readdirSync(dir).filter((n) => n.endsWith('.tmp'));
  assert.deepEqual(temps, [], `temp files left in ${dir}`);
};

before(() => {
  base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'delegate-wef-')));
  ws = path.join(base, 'ws');
  outside = path.join(base, 'outside');
  fs.mkdirSync(ws);
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'secret.txt'), 'OUTSIDE SECRET\n');
  fs.symlinkSync(outside, path.join(ws, 'out-dir-link'));
  fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(ws, 'out-file-link'));
  fs.symlinkSync(path.join(outside, 'not-yet.txt'), path.join(ws, 'dangling-out'));
  write('target.txt', 'target\n');
  fs.symlinkSync('target.txt', path.join(ws, 'in-file-link'));
  ctx = { workspaceRoot: ws };
});

after(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------

describe('write_file', () => {
  it('writes the file, creating parent directories, and leaves no temp file', async () => {
    const r = await call('write_file', { path: 'a/b/c.txt', content: 'hello\n' });
    assert.deepEqual(r, { isError: false, content: 'wrote 6 bytes to a/b/c.txt' });
    assert.equal(readWs('a/b/c.txt'), 'hello\n');
    noTempFiles(wsPath('a/b'));
    // overwrite, multi-byte content counted in bytes, absolute path inside accepted
    const r2 = await call('write_file', { path: wsPath('a/b/c.txt'), content: 'héllo' });
    assert.deepEqual(r2, { isError: false, content: 'wrote 6 bytes to a/b/c.txt' });
    assert.equal(readWs('a/b/c.txt'), 'héllo');
    const empty = await call('write_file', { path: 'empty.txt', content: '' });
    assert.deepEqual(empty, { isError: false, content: 'wrote 0 bytes to empty.txt' });
  });

  it('replaces a file atomically: a new inode renamed over it; readers see the old or the new content, never a part', async () => {
    const oldContent = 'old\n'.repeat(1 << 18); // 1 MiB, the limit: an in-place write would take several steps
    const newContent = 'new\n'.repeat(1 << 18);
    write('atomic.txt', oldContent);
    const oldIno = fs.statSync(wsPath('atomic.txt')).ino;
    // A descriptor opened before the write keeps the old file: replaced by rename, not rewritten in place.
    const oldFd = fs.openSync(wsPath('atomic.txt'), 'r');
    const seen = { old: 0, new: 0, other: [] as number[] };
    let writing = true;
    const reader = (async () => {
      while (writing) {
        const text = fs.readFileSync(wsPath('atomic.txt'), 'utf8');
        if (text === oldContent) seen.old++;
        else if (text === newContent) seen.new++;
        else seen.other.push(text.length);
        await new Promise((r) => setImmediate(r));
      }
    })();
    try {
      const r = await call('write_file', { path: 'atomic.txt', content: newContent });
      assert.equal(r.isError, false, r.content);
    } finally {
      writing = false;
      await reader;
    }
    try {
      assert.deepEqual(seen.other, [], 'a reader saw a partial file');
      assert.ok(seen.old + seen.new >= 1, 'the reader ran while the tool wrote');
      assert.notEqual(fs.statSync(wsPath('atomic.txt')).ino, oldIno);
      assert.equal(fs.readFileSync(oldFd, 'utf8'), oldContent);
      assert.equal(readWs('atomic.txt'), newContent);
    } finally {
      fs.closeSync(oldFd);
    }
  });

  it('keeps the permission bits of a file it replaces', async () => {
    write('mode.sh', '#!/bin/sh\n');
    fs.chmodSync(wsPath('mode.sh'), 0o750);
    const r = await call('write_file', { path: 'mode.sh', content: '#!/bin/sh\necho hi\n' });
    assert.equal(r.isError, false);
    assert.equal(fs.statSync(wsPath('mode.sh')).mode & 0o777, 0o750);
  });

  it('refuses a symlinked parent directory that leads outside', async () => {
    const r = await call('write_file', { path: 'out-dir-link/new.txt', content: 'x' });
    assert.equal(r.isError, true);
    assert.match(r.content, /^write_file: path "out-dir-link\/new.txt" goes through a symlink that leads outside the workspace/);
    assert.ok(!fs.existsSync(path.join(outside, 'new.txt')));
    const deep = await call('write_file', { path: 'out-dir-link/sub/new.txt', content: 'x' });
    assert.equal(deep.isError, true);
    assert.ok(!fs.existsSync(path.join(outside, 'sub')));
  });

  it('refuses a final-component symlink (inside, outside or dangling)', async () => {
    const inLink = await call('write_file', { path: 'in-file-link', content: 'x' });
    assert.equal(inLink.isError, true);
    assert.match(inLink.content, /is a symlink; refusing to write through it/);
    assert.equal(readWs('target.txt'), 'target\n');
    for (const p of ['out-file-link', 'dangling-out']) {
      const r = await call('write_file', { path: p, content: 'x' });
      assert.equal(r.isError, true, p);
      assert.match(r.content, /symlink/);
    }
    assert.equal(fs.readFileSync(path.join(outside, 'secret.txt'), 'utf8'), 'OUTSIDE SECRET\n');
    assert.ok(!fs.existsSync(path.join(outside, 'not-yet.txt')));
  });

  it('refuses .. and absolute paths outside the workspace', async () => {
    const cases = ['../evil.txt', 'a/../../evil.txt', path.join(outside, 'evil.txt'), `${ws}-evil/x.txt`];
    for (const p of cases) {
      const r = await call('write_file', { path: p, content: 'x' });
      assert.equal(r.isError, true, p);
      assert.match(r.content, /resolves outside the workspace/);
    }
    assert.ok(!fs.existsSync(path.join(base, 'evil.txt')));
    assert.ok(!fs.existsSync(path.join(outside, 'evil.txt')));
    assert.ok(!fs.existsSync(`${ws}-evil`));
  });

  it('refuses directories, oversize content and bad arguments', async () => {
    assert.match((await call('write_file', { path: 'a', content: 'x' })).content, /^write_file: "a" is a directory/);
    assert.match((await call('write_file', { path: 'x/', content: 'x' })).content, /ends with "\/"/);
    assert.match((await call('write_file', { path: '.', content: 'x' })).content, /workspace root directory/);
    write('plain.txt', 'p');
    assert.match(
      (await call('write_file', { path: 'plain.txt/child.txt', content: 'x' })).content,
      /"plain.txt" exists and is not a directory/,
    );
    const old = writeLimits.writeMaxBytes;
    writeLimits.writeMaxBytes = 10;
    try {
      const big = await call('write_file', { path: 'big.txt', content: 'x'.repeat(11) });
      assert.deepEqual(big, { isError: true, content: 'write_file: content is 11 bytes; the limit is 10 bytes' });
      assert.ok(!fs.existsSync(wsPath('big.txt')));
    } finally {
      writeLimits.writeMaxBytes = old;
    }
    assert.deepEqual(await call('write_file', { path: 'x.txt' }), {
      isError: true,
      content: 'write_file: missing required argument "content" (a string)',
    });
    assert.deepEqual(await call('write_file', { path: 'x.txt', content: 'x', mode: 1 }), {
      isError: true,
      content: 'write_file: unknown argument "mode" (expected: path, content)',
    });
    assert.match((await call('write_file', { path: 'x\0.txt', content: 'x' })).content, /NUL byte/);
  });
});

describe('edit_file', () => {
  it('replaces text that occurs exactly once, literally', async () => {
    write('e.txt', 'x = 1\ny = 2\nz = 3\n');
    const r = await call('edit_file', { path: 'e.txt', old: 'y = 2', new: 'y = $&$1 42' });
    assert.deepEqual(r, { isError: false, content: 'edited e.txt: replaced 1 occurrence at line 2 (18 → 24 bytes)' });
    assert.equal(readWs('e.txt'), 'x = 1\ny = $&$1 42\nz = 3\n');
    noTempFiles(ws);
    const del = await call('edit_file', { path: 'e.txt', old: 'z = 3\n', new: '' });
    assert.equal(del.isError, false);
    assert.equal(readWs('e.txt'), 'x = 1\ny = $&$1 42\n');
  });

  it('old text not found', async () => {
    write('n.txt', 'alpha\nbeta\n');
    const r = await call('edit_file', { path: 'n.txt', old: 'gamma', new: 'delta' });
    assert.equal(r.isError, true);
    assert.match(r.content, /^edit_file: old text not found in "n.txt"/);
    assert.equal(readWs('n.txt'), 'alpha\nbeta\n');
    write('crlf.txt', 'one\r\ntwo\r\n');
    const c = await call('edit_file', { path: 'crlf.txt', old: 'one\ntwo', new: 'x' });
    assert.match(c.content, /old text not found .*CRLF/);
  });

  it('ambiguous old text is refused with the count and lines', async () => {
    write('amb.txt', 'foo()\nbar\nfoo()\n');
    const r = await call('edit_file', { path: 'amb.txt', old: 'foo()', new: 'baz()' });
    assert.equal(r.isError, true);
    assert.equal(
      r.content,
      'edit_file: old text occurs 2 times; include more context so it matches exactly once (in "amb.txt" at lines 1, 3)',
    );
    assert.equal(readWs('amb.txt'), 'foo()\nbar\nfoo()\n');
    // overlapping occurrences count as ambiguous too
    write('ovl.txt', 'aaa');
    assert.match((await call('edit_file', { path: 'ovl.txt', old: 'aa', new: 'b' })).content, /old text occurs 2 times/);
    // with more context it works
    const ok = await call('edit_file', { path: 'amb.txt', old: 'bar\nfoo()', new: 'bar\nbaz()' });
    assert.equal(ok.isError, false);
    assert.equal(readWs('amb.txt'), 'foo()\nbar\nbaz()\n');
  });

  it('refuses symlinks, outside paths, missing files, binaries, oversize files, bad args', async () => {
    assert.match((await call('edit_file', { path: 'in-file-link', old: 'target', new: 'x' })).content, /is a symlink/);
    assert.match((await call('edit_file', { path: 'out-file-link', old: 'OUTSIDE', new: 'x' })).content, /symlink/);
    assert.match((await call('edit_file', { path: 'out-dir-link/secret.txt', old: 'OUTSIDE', new: 'x' })).content, /symlink that leads outside/);
    assert.match((await call('edit_file', { path: '../outside/secret.txt', old: 'OUTSIDE', new: 'x' })).content, /resolves outside/);
    assert.equal(fs.readFileSync(path.join(outside, 'secret.txt'), 'utf8'), 'OUTSIDE SECRET\n');
    assert.equal(readWs('target.txt'), 'target\n');
    assert.match((await call('edit_file', { path: 'nope.txt', old: 'a', new: 'b' })).content, /file "nope.txt" not found/);
    fs.writeFileSync(wsPath('bin.dat'), Buffer.from([0x61, 0, 0x62]));
    assert.match((await call('edit_file', { path: 'bin.dat', old: 'a', new: 'b' })).content, /binary/);
    write('s.txt', 'abcdefghij');
    const old = writeLimits.editMaxFileBytes;
    writeLimits.editMaxFileBytes = 12;
    try {
      assert.match((await call('edit_file', { path: 's.txt', old: 'a', new: 'xyzw' })).content, /would be 13 bytes; the limit is 12 bytes/);
      writeLimits.editMaxFileBytes = 5;
      assert.match((await call('edit_file', { path: 's.txt', old: 'a', new: 'b' })).content, /is 10 bytes; edit_file handles files up to 5 bytes/);
    } finally {
      writeLimits.editMaxFileBytes = old;
    }
    assert.equal(readWs('s.txt'), 'abcdefghij');
    assert.match((await call('edit_file', { path: 's.txt', old: '', new: 'b' })).content, /"old" must not be empty/);
    assert.match((await call('edit_file', { path: 's.txt', old: 'a' })).content, /missing required argument "new"/);
    assert.match((await call('edit_file', { path: 's.txt', old: 'a', new: 'a' })).content, /identical/);
  });
});

// ---------------------------------------------------------------------------------------------

/** Sandbox settings for direct calls: protected paths none, the run may edit run/ only. */
function sandboxFor(mode: SandboxMode, allow: string[] = ['Edit(run/**)'], network = false): CommandSandbox {
  return {
    settings: { mode, readOnly: [], protected: { dirs: [], paths: [], hidden: [], noCreate: [] } },
    rules: { layers: [{ deny: [], ask: [], allow, ...(network && { network }) }] },
  };
}

const bwrapMissing = spawnSync('bwrap', ['--version']).status !== 0;
if (bwrapMissing && process.env.CI === 'true') throw new Error('bubblewrap (bwrap) is not installed, and CI=true: apt-get install -y bubblewrap');
if (bwrapMissing) process.stderr.write('SKIP run_command under bubblewrap (tests/tools-write-exec-fetch.test.ts): bwrap is not installed\n');

/** A heartbeat file a background process appends to: has it stopped growing? */
async function stoppedGrowing(file: string): Promise<boolean> {
  const size = () => (fs.existsSync(file) ? fs.statSync(file).size : 0);
  const a = size();
  await new Promise((r) => setTimeout(r, 600));
  return size() === a;
}

// The same behaviour sandboxed and not: run_command under bubblewrap, and with the sandbox "off".
for (const mode of ['bwrap', 'off'] as const) {
describe(`run_command (sandbox ${mode})`, { skip: mode === 'bwrap' && bwrapMissing ? 'bubblewrap (bwrap) is not installed' : false }, () => {
  // Scripts live in the workspace (read-only to the command); files they write go to run/ (writable).
  const c = (): ToolContext => ({ workspaceRoot: ws, sandbox: sandboxFor(mode) });
  const runCmd = (args: unknown, extra: Partial<ToolContext> = {}) => call('run_command', args, { ...c(), ...extra });
  const wsScript = (name: string, code: string): string => {
    write(`scripts-${mode}/${name}`, code);
    return wsPath(`scripts-${mode}/${name}`);
  };
  const runDir = (): string => {
    fs.mkdirSync(wsPath('run'), { recursive: true });
    return wsPath('run');
  };

  it('runs argv in the workspace root and returns exit code, stdout and stderr', async () => {
    const s = wsScript('hello.mjs', "console.log('hello from ' + process.cwd()); console.error('a warning'); process.exit(3);\n");
    const r = await runCmd({ argv: [process.execPath, s] });
    assert.equal(r.isError, false, r.content);
    assert.match(r.content, /^exit code 3 \(the command ran and reported failure; read its output below\) \[\d+\.\d s\]\n/);
    assert.ok(r.content.includes(`--- stdout (${`hello from ${ws}\n`.length} bytes) ---\nhello from ${ws}\n`), r.content);
    assert.ok(r.content.includes('--- stderr (10 bytes) ---\na warning'), r.content);
    const ok = await runCmd({ argv: [process.execPath, s.replace('hello.mjs', 'ok.mjs')] });
    assert.equal(ok.isError, false); // exit 1: node cannot find the file, a normal (failed) result
    assert.match(ok.content, /^exit code 1/);
    const zero = await runCmd({ argv: ['/bin/echo'] });
    assert.match(zero.content, /^exit code 0 \[[\d.]+ s\]\n--- stdout \(1 bytes\) ---\n\n--- stderr: \(empty\) ---$/);
  });

  it('passes shell metacharacters literally (no shell)', async () => {
    const argv = ['echo', '$(whoami)', '`id`', ';', 'ls', '|', 'cat', '&&', '*', '$HOME', "'q'", '>', 'f'];
    const r = await runCmd({ argv });
    assert.equal(r.isError, false, r.content);
    assert.ok(r.content.includes(`\n${argv.slice(1).join(' ')}\n`), r.content);
    assert.ok(!fs.existsSync(wsPath('f')), 'no redirection happened');
  });

  it('scrubs the environment and hardens git', async () => {
    const saved = { ...process.env };
    process.env.FAKE_API_KEY = 'sk-fake-key-value';
    process.env.MY_SECRET = 'hunter2';
    process.env.GH_TOKEN = 'ghp_x';
    process.env.ANTHROPIC_BASE_URL = 'http://x';
    process.env.LC_FAKE_PASSWORD = 'pw';
    process.env.LC_ALL = 'C';
    process.env.RANDOM_HARMLESS = 'not allowlisted';
    try {
      const s = wsScript('env.mjs', 'console.log(JSON.stringify(process.env));\n');
      const r = await runCmd({ argv: [process.execPath, s] });
      assert.equal(r.isError, false, r.content);
      const json = r.content.split('\n').find((l) => l.startsWith('{'));
      assert.ok(json, r.content);
      const env = JSON.parse(json) as Record<string, string>;
      for (const k of ['FAKE_API_KEY', 'MY_SECRET', 'GH_TOKEN', 'ANTHROPIC_BASE_URL', 'LC_FAKE_PASSWORD', 'RANDOM_HARMLESS']) {
        assert.equal(env[k], undefined, k);
      }
      assert.ok(!r.content.includes('sk-fake-key-value'));
      assert.ok(!r.content.includes('hunter2'));
      assert.equal(env.PATH, process.env.PATH);
      assert.equal(env.LC_ALL, 'C');
      assert.equal(env.GIT_CONFIG_NOSYSTEM, '1');
      assert.equal(env.GIT_CONFIG_GLOBAL, '/dev/null');
      assert.equal(env.GIT_CONFIG_KEY_0, 'safe.bareRepository');
      assert.equal(env.GIT_CONFIG_VALUE_0, 'explicit');
      if (mode === 'bwrap') assert.equal(env.HOME, '/tmp');
      assert.deepEqual(buildChildEnv({ PATH: '/bin', AWS_SECRET_ACCESS_KEY: 'x', OPENAI_API_KEY: 'y', HOME: '/h' }), {
        PATH: '/bin',
        HOME: '/h',
      });
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
  });

  it('timeout kills the child and its grandchild', async () => {
    const hb = path.join(runDir(), `grandchild-${mode}.hb`);
    const g = wsScript('grandchild.mjs', `import fs from 'node:fs'; setInterval(() => fs.appendFileSync(${JSON.stringify(hb)}, '.'), 50);\n`);
    const ch = wsScript(
      'child.mjs',
      `import { spawn } from 'node:child_process';\nspawn(process.execPath, [${JSON.stringify(g)}], { stdio: 'ignore' });\nconsole.log('started');\nsetInterval(() => {}, 1000);\n`,
    );
    const t0 = Date.now();
    const r = await runCmd({ argv: [process.execPath, ch], timeout_s: 1 });
    const took = Date.now() - t0;
    assert.equal(r.isError, true, r.content);
    assert.match(r.content, /^run_command: killed by SIGTERM after timeout \(1 s\)/);
    assert.ok(r.content.includes('started'));
    assert.ok(took >= 900 && took < 5000, `took ${took} ms`);
    assert.ok(fs.existsSync(hb), 'the grandchild ran');
    assert.ok(await stoppedGrowing(hb), 'the grandchild is still alive');
  });

  it('escalates to SIGKILL when SIGTERM is ignored', async () => {
    const s = wsScript('stubborn.mjs', "process.on('SIGTERM', () => {}); console.log('ready'); setInterval(() => {}, 1000);\n");
    const old = commandLimits.killGraceMs;
    commandLimits.killGraceMs = 300;
    try {
      const r = await runCmd({ argv: [process.execPath, s], timeout_s: 0.5 });
      assert.equal(r.isError, true);
      assert.match(r.content, /^run_command: killed by SIGKILL after timeout \(0.5 s\)/);
    } finally {
      commandLimits.killGraceMs = old;
    }
  });

  it('kills background processes left behind when the command exits', async () => {
    const hb = path.join(runDir(), `bg-${mode}.hb`);
    const bg = wsScript('bg.mjs', `import fs from 'node:fs'; setInterval(() => fs.appendFileSync(${JSON.stringify(hb)}, '.'), 50);\n`);
    const ch = wsScript(
      'spawner.mjs',
      `import { spawn } from 'node:child_process'; import fs from 'node:fs';\n` +
        `const p = spawn(process.execPath, [${JSON.stringify(bg)}], { stdio: 'ignore' }); p.unref();\n` +
        `const t = setInterval(() => { if (fs.existsSync(${JSON.stringify(hb)})) { clearInterval(t); console.log('spawned'); } }, 20);\n`,
    );
    const r = await runCmd({ argv: [process.execPath, ch], timeout_s: 10 });
    assert.match(r.content, /^exit code 0/);
    assert.ok(await stoppedGrowing(hb), 'the background process is still alive');
  });

  it('honours ctx.signal', async () => {
    const s = wsScript('sleep.mjs', "console.log('sleeping'); setInterval(() => {}, 1000);\n");
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 300);
    const t0 = Date.now();
    const r = await runCmd({ argv: [process.execPath, s] }, { signal: ac.signal });
    assert.equal(r.isError, true);
    assert.match(r.content, /^run_command: killed by SIGTERM: the call was cancelled/);
    assert.ok(Date.now() - t0 < 5000);
    const pre = new AbortController();
    pre.abort();
    assert.deepEqual(await runCmd({ argv: ['echo'] }, { signal: pre.signal }), {
      isError: true,
      content: 'run_command: aborted',
    });
  });

  it('caps output, keeping head and tail', async () => {
    const s = wsScript('loud.mjs', "process.stdout.write('HEAD' + 'A'.repeat(20000) + 'TAIL\\n'); process.stderr.write('E'.repeat(30) + '\\n');\n");
    const old = commandLimits.maxOutputBytes;
    commandLimits.maxOutputBytes = 1000;
    try {
      const r = await runCmd({ argv: [process.execPath, s] });
      assert.equal(r.isError, false);
      assert.match(r.content, /--- stdout \(20009 bytes\) ---\nHEADA+\n\[… \d+ bytes omitted …\]\nA+TAIL\n--- stderr \(31 bytes\) ---\nE{30}$/);
      const omitted = Number(/\[… (\d+) bytes omitted …\]/.exec(r.content)![1]);
      const stdoutShown = 20009 - omitted;
      assert.equal(stdoutShown, 1000 - 31);
      assert.ok(r.content.length < 1300, String(r.content.length));
    } finally {
      commandLimits.maxOutputBytes = old;
    }
  });

  it('reports spawn failures and validates argv', async () => {
    const nf = await runCmd({ argv: ['definitely-not-a-program-xyz', 'a'] });
    assert.equal(nf.isError, true);
    assert.match(nf.content, /^run_command: could not start "definitely-not-a-program-xyz": program not found/);
    const noRoot = await runCmd({ argv: ['echo'] }, { workspaceRoot: path.join(base, 'no-such-ws') });
    assert.deepEqual(noRoot, {
      isError: true,
      content: `run_command: the workspace root ${path.join(base, 'no-such-ws')} is not an accessible directory`,
    });
    const cases: [unknown, string][] = [
      [{}, 'run_command: missing required argument "argv" (an array of strings)'],
      [{ argv: 'ls -la' }, 'run_command: "argv" must be an array of strings (program first, then its arguments), got string'],
      [{ argv: [] }, 'run_command: "argv" must not be empty (argv[0] is the program to run)'],
      [{ argv: ['ls', 1] }, 'run_command: argv[1] must be a string, got number'],
      [{ argv: ['ls', 'a\0b'] }, 'run_command: argv[1] contains a NUL byte'],
      [{ argv: [''] }, 'run_command: argv[0] (the program) must not be empty'],
      [{ argv: ['ls'], timeout_s: 601 }, 'run_command: "timeout_s" must be at most 600, got 601'],
      [{ argv: ['ls'], timeout_s: 0 }, 'run_command: "timeout_s" must be > 0, got 0'],
      [{ argv: ['ls'], timeout_s: '5' }, 'run_command: "timeout_s" must be a number of seconds, got string'],
      [{ argv: ['ls'], shell: true }, 'run_command: unknown argument "shell" (expected: argv, timeout_s)'],
    ];
    for (const [args, msg] of cases) {
      assert.deepEqual(await runCmd(args), { isError: true, content: msg }, JSON.stringify(args));
    }
    assert.equal(cases.length, 10);
  });
});
}

describe('run_command under bubblewrap only', { skip: bwrapMissing ? 'bubblewrap (bwrap) is not installed' : false }, () => {
  const scriptIn = (name: string, code: string): string => {
    write(`scripts-bwrap-only/${name}`, code);
    return wsPath(`scripts-bwrap-only/${name}`);
  };

  it('without sandbox settings, nothing runs', async () => {
    assert.deepEqual(await call('run_command', { argv: ['echo', 'x'] }, { workspaceRoot: ws }), {
      isError: true,
      content: 'run_command: refused: no sandbox settings were given for this call; commands are not run without them',
    });
  });

  it('a cancelled call leaves no setsid, double-forked process behind', async () => {
    fs.mkdirSync(wsPath('run'), { recursive: true });
    const late = wsPath('run/cancel-late.txt');
    const s = scriptIn(
      'fork-and-hang.mjs',
      `import { spawn } from 'node:child_process';\n` +
        `spawn('sh', ['-c', '(sleep 1; echo late > ${late}) &'], { detached: true, stdio: 'ignore' }).unref();\n` +
        `console.log('forked'); setInterval(() => {}, 1000);\n`,
    );
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 400);
    const r = await call('run_command', { argv: [process.execPath, s] }, { workspaceRoot: ws, signal: ac.signal, sandbox: sandboxFor('bwrap') });
    assert.match(r.content, /^run_command: killed by SIGTERM: the call was cancelled/);
    await new Promise((res) => setTimeout(res, 1500));
    assert.equal(fs.existsSync(late), false, 'the double-forked process outlived the call');
  });

  it('writes only where Edit rules reach; nothing of the host outside the workspace is visible', async () => {
    const s = scriptIn(
      'probe.mjs',
      `import fs from 'node:fs';\nconst out = {};\n` +
        `for (const p of process.argv.slice(2)) { try { fs.writeFileSync(p, 'x'); out[p] = 'wrote'; } catch (e) { out[p] = e.code; } }\n` +
        `out.outside = fs.existsSync(${JSON.stringify(path.join(outside, 'secret.txt'))});\n` +
        `out.home = fs.existsSync(${JSON.stringify(os.homedir())}) && fs.readdirSync(${JSON.stringify(os.homedir())}).length;\n` +
        `out.procs = fs.readdirSync('/proc').filter((n) => /^\\d+$/.test(n)).length;\n` +
        `const st = fs.statfsSync('/tmp'); out.tmpBytes = st.blocks * st.bsize;\n` +
        // No descriptor of a host directory reaches the command (openat(fd, "..") would walk the host tree).
        `out.dirFds = fs.readdirSync('/proc/self/fd').filter((n) => { try { return fs.statSync('/proc/self/fd/' + n).isDirectory(); } catch { return false; } }).length;\n` +
        `console.log(JSON.stringify(out));\n`,
    );
    const r = await call('run_command', { argv: [process.execPath, s, 'run/ok.txt', 'target.txt', 'new-top.txt'] }, { workspaceRoot: ws, sandbox: sandboxFor('bwrap') });
    const res = JSON.parse(r.content.split('\n').find((l) => l.startsWith('{'))!);
    assert.equal(res['run/ok.txt'], 'wrote');
    assert.equal(res['target.txt'], 'EROFS');
    assert.equal(res['new-top.txt'], 'EROFS');
    assert.equal(res.outside, false);
    assert.ok(res.home === false || res.home === 0, `home visible: ${res.home}`);
    assert.ok(res.procs <= 4, `saw ${res.procs} processes`);
    assert.equal(res.dirFds, 0, 'a directory descriptor was inherited');
    assert.ok(res.tmpBytes <= 1024 ** 3, `private /tmp is ${res.tmpBytes} bytes`);
    assert.equal(readWs('target.txt'), 'target\n');
  });
});

// ---------------------------------------------------------------------------------------------

describe('classifyAddress (the one IP classifier)', () => {
  it('refuses every non-public range and judges embedded IPv4 by what it reaches', () => {
    const priv: [string, string][] = [
      ['10.1.2.3', 'private'], ['172.16.0.1', 'private'], ['172.31.255.255', 'private'], ['192.168.1.1', 'private'],
      ['127.0.0.1', 'loopback'], ['127.255.0.9', 'loopback'], ['169.254.169.254', 'linkLocal'],
      ['100.64.0.1', 'carrierGradeNat'], ['100.127.255.255', 'carrierGradeNat'], ['0.0.0.0', 'unspecified'], ['0.1.2.3', 'unspecified'],
      ['224.0.0.1', 'multicast'], ['255.255.255.255', 'broadcast'], ['240.0.0.1', 'reserved'], ['198.18.0.1', 'reserved'],
      // documentation
      ['192.0.2.1', 'reserved'], ['198.51.100.7', 'reserved'], ['203.0.113.9', 'reserved'], ['2001:db8::1', 'reserved'],
      ['::1', 'loopback'], ['::', 'unspecified'], ['0:0:0:0:0:0:0:1', 'loopback'], ['fe80::1', 'linkLocal'], ['fe80::1%eth0', 'linkLocal'],
      ['febf::1', 'linkLocal'], ['fec0::1', 'deprecatedSiteLocal'], ['fc00::1', 'uniqueLocal'], ['fd12:3456::1', 'uniqueLocal'], ['ff02::1', 'multicast'],
      // IPv4-mapped: the embedded address decides
      ['::ffff:127.0.0.1', 'ipv4Mapped → loopback'], ['::ffff:7f00:1', 'ipv4Mapped → loopback'], ['::ffff:10.0.0.1', 'ipv4Mapped → private'],
      ['::ffff:169.254.169.254', 'ipv4Mapped → linkLocal'], ['[::ffff:192.168.0.1]', 'ipv4Mapped → private'],
      // IPv4-compatible, IPv4-translated and the rest of ::/8
      ['::127.0.0.1', 'reserved ::/8'], ['::8.8.8.8', 'reserved ::/8'], ['::2', 'reserved ::/8'], ['::ffff:0:8.8.8.8', 'rfc6145'],
      // NAT64: the well-known /96 by its IPv4, the local-use /48 always
      ['64:ff9b::a00:1', 'nat64 → private'], ['64:ff9b::7f00:1', 'nat64 → loopback'],
      ['64:ff9b:1::a00:1', 'nat64 local-use'], ['64:ff9b:1::808:808', 'nat64 local-use'], ['64:ff9b:1:abcd::1', 'nat64 local-use'],
      // 6to4 by its IPv4; Teredo always
      ['2002:c0a8:101::1', '6to4 → private'], ['2002:7f00:1::', '6to4 → loopback'], ['2002:0a00:0001::5', '6to4 → private'],
      ['2001::1', 'teredo'], ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'teredo'],
      // discard-only 100::/64 and the rest of 100::/8, outside 2000::/3
      ['100::1', 'discard'], ['100::ffff:ffff:ffff:ffff', 'discard'], ['100:0:0:1::1', 'not global unicast'], ['4000::1', 'not global unicast'],
      ['3fff::1', 'reserved'], ['2001:2::1', 'benchmarking'],
      ['not an ip', 'not an IP address'], ['', 'not an IP address'], ['1.2.3', 'not an IP address'], ['1:2:3', 'not an IP address'],
      ['0x7f.1', 'not an IP address'], ['127.1', 'not an IP address'], ['1::2::3', 'not an IP address'], ['::ffff:1.2.3.999', 'not an IP address'],
    ];
    const pub = ['8.8.8.8', '1.1.1.1', '172.32.0.1', '172.15.255.255', '100.128.0.1', '100.63.255.255', '192.169.0.1', '192.0.3.1',
      '2606:4700::1111', '::ffff:8.8.8.8', '2001:4860:4860::8888', '64:ff9b::808:808', '2002:0808:0808::1'];
    for (const [ip, range] of priv) assert.deepEqual(classifyAddress(ip), { public: false, range }, ip);
    for (const ip of pub) assert.equal(classifyAddress(ip).public, true, ip);
    for (const ip of pub) assert.equal(isPrivateAddress(ip), false, ip);
    assert.equal(priv.length + pub.length, 75);
  });
});

describe('fetch_url', () => {
  let server: http.Server;
  let port: number;
  let origin: string;
  let hits = 0;
  // A gate that lets this test server's loopback address through and refuses other non-public ones.
  const allowLoopback = (_url: string, a: string): { ok: boolean; reason: string } =>
    a === '127.0.0.1' || !isPrivateAddress(a) ? { ok: true, reason: '' } : { ok: false, reason: `${a} is a private address` };

  before(async () => {
    server = http.createServer((req, res) => {
      hits++;
      const u = new URL(req.url ?? '/', 'http://x');
      const p = u.pathname;
      if (p === '/hello') {
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('hello world\n');
      } else if (p.startsWith('/chain/')) {
        const n = Number(p.slice(7));
        if (n === 0) {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end('end of chain');
        } else {
          res.writeHead(302, { location: `/chain/${n - 1}` });
          res.end();
        }
      } else if (p === '/to-blocked') {
        res.writeHead(302, { location: 'http://blocked.example/x' });
        res.end();
      } else if (p === '/to-private') {
        res.writeHead(301, { location: 'http://10.0.0.1/admin' });
        res.end();
      } else if (p === '/to-file') {
        res.writeHead(302, { location: 'file:///etc/passwd' });
        res.end();
      } else if (p === '/big') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        const chunk = 'x'.repeat(16 * 1024);
        let sent = 0;
        const pump = (): void => {
          while (sent < 4 * 1024 * 1024) {
            sent += chunk.length;
            if (!res.write(chunk)) {
              res.once('drain', pump);
              return;
            }
          }
          res.end();
        };
        res.on('error', () => undefined);
        pump();
      } else if (p === '/gzip') {
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
        res.end(zlib.gzipSync(JSON.stringify({ ok: true })));
      } else if (p === '/binary') {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.end(Buffer.from([1, 2, 0, 3, 4]));
      } else if (p === '/404') {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('no such page');
      } else if (p === '/echo') {
        let body = '';
        req.setEncoding('utf8');
        req.on('data', (c: string) => (body += c));
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end(`${req.method} ${req.headers['content-type'] ?? '-'} ${body}`);
        });
      } else if (p === '/slow') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('partial');
        // never ends
      } else {
        res.writeHead(500);
        res.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    origin = `http://127.0.0.1:${port}`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('refuses a loopback host by default, without connecting', async () => {
    const before = hits;
    const r = await call('fetch_url', { url: `${origin}/hello` });
    assert.equal(r.isError, true);
    assert.match(r.content, /^fetch_url: refused http:\/\/127\.0\.0\.1:\d+\/hello: 127\.0\.0\.1 is a private, loopback, link-local or reserved address \(loopback\)/);
    // a name that resolves to loopback is refused at DNS time
    const byName = await call('fetch_url', { url: `http://localhost:${port}/hello` });
    assert.equal(byName.isError, true);
    assert.match(byName.content, /refused http:\/\/localhost:\d+\/hello: localhost resolved to (127\.0\.0\.1|::1), a private, loopback, link-local or reserved address \(loopback\)/);
    for (const u of [`http://[::1]:${port}/`, `http://[::ffff:127.0.0.1]:${port}/`, `http://0x7f.1:${port}/`, `http://169.254.169.254/latest/meta-data/`]) {
      const x = await call('fetch_url', { url: u });
      assert.equal(x.isError, true, u);
      assert.match(x.content, /private, loopback, link-local or reserved/, u);
    }
    assert.equal(hits, before, 'the server was never contacted');
  });

  it('fetches when checkAddress allows the address', async () => {
    const seen: string[] = [];
    const c: ToolContext = { workspaceRoot: ws, checkAddress: (u, a) => (seen.push(`${u} ${a}`), allowLoopback(u, a)) };
    const r = await call('fetch_url', { url: `${origin}/hello` }, c);
    assert.deepEqual(r, { isError: false, content: 'HTTP 200 OK\ncontent-type: text/plain; charset=utf-8\n\nhello world\n' });
    assert.deepEqual(seen, [`${origin}/hello 127.0.0.1`]);
    const nf = await call('fetch_url', { url: `${origin}/404` }, c);
    assert.equal(nf.isError, false, 'an HTTP error status is a normal result');
    assert.match(nf.content, /^HTTP 404 Not Found\n[\s\S]*no such page$/);
    const gz = await call('fetch_url', { url: `${origin}/gzip` }, c);
    assert.match(gz.content, /content-type: application\/json\n\n\{"ok":true\}$/);
    const bin = await call('fetch_url', { url: `${origin}/binary` }, c);
    assert.match(bin.content, /\[binary body \(application\/octet-stream\), 5 bytes; not shown\]$/);
    const post = await call('fetch_url', { url: `${origin}/echo`, method: 'POST', body: '{"a":1}' }, c);
    assert.match(post.content, /\n\nPOST application\/json \{"a":1\}$/);
    const postText = await call('fetch_url', { url: `${origin}/echo`, method: 'post', body: 'plain' }, c);
    assert.match(postText.content, /\n\nPOST text\/plain; charset=utf-8 plain$/);
  });

  it('calls checkUrl on every hop and follows redirects', async () => {
    const checked: string[] = [];
    const c: ToolContext = {
      workspaceRoot: ws,
      checkAddress: allowLoopback,
      checkUrl: (u) => (checked.push(u), { ok: true, reason: '' }),
    };
    const r = await call('fetch_url', { url: `${origin}/chain/3` }, c);
    assert.equal(r.isError, false, r.content);
    assert.match(r.content, new RegExp(`final URL: ${origin}/chain/0 \\(after 3 redirects\\)\\n\\nend of chain$`));
    assert.deepEqual(checked, [3, 2, 1, 0].map((n) => `${origin}/chain/${n}`));
    const tooMany = await call('fetch_url', { url: `${origin}/chain/6` }, c);
    assert.equal(tooMany.isError, true);
    assert.match(tooMany.content, /too many redirects \(more than 5\)/);
  });

  it('refuses a redirect to a URL that checkUrl refuses', async () => {
    const checked: string[] = [];
    const c: ToolContext = {
      workspaceRoot: ws,
      checkAddress: allowLoopback,
      checkUrl: (u) => {
        checked.push(u);
        return new URL(u).hostname === 'blocked.example' ? { ok: false, reason: 'host not in the allowlist' } : { ok: true, reason: '' };
      },
    };
    const r = await call('fetch_url', { url: `${origin}/to-blocked` }, c);
    assert.equal(r.isError, true);
    assert.equal(r.content, `fetch_url: refused http://blocked.example/x (redirect 1 from ${origin}/to-blocked): host not in the allowlist`);
    assert.deepEqual(checked, [`${origin}/to-blocked`, 'http://blocked.example/x']);
    // the first hop is checked too
    const first = await call('fetch_url', { url: 'http://blocked.example/start' }, c);
    assert.equal(first.content, 'fetch_url: refused http://blocked.example/start: host not in the allowlist');
  });

  it('refuses redirects to private hosts and to other schemes', async () => {
    const c: ToolContext = { workspaceRoot: ws, checkAddress: allowLoopback };
    const priv = await call('fetch_url', { url: `${origin}/to-private` }, c);
    assert.equal(priv.isError, true);
    assert.match(priv.content, /^fetch_url: refused http:\/\/10\.0\.0\.1\/admin: 10\.0\.0\.1 is a private/);
    const file = await call('fetch_url', { url: `${origin}/to-file` }, c);
    assert.equal(file.isError, true);
    assert.match(file.content, /only http:\/\/ and https:\/\/ URLs can be fetched; the redirect target file:\/\/\/etc\/passwd uses "file:"/);
  });

  it('caps the response size', async () => {
    const c: ToolContext = { workspaceRoot: ws, checkAddress: allowLoopback };
    const old = netLimits.maxResponseBytes;
    netLimits.maxResponseBytes = 1000;
    try {
      const r = await call('fetch_url', { url: `${origin}/big` }, c);
      assert.equal(r.isError, false);
      assert.match(r.content, /^HTTP 200 OK\ncontent-type: text\/plain\n\nx{1000}\n\[body truncated at 1000 bytes\]$/);
    } finally {
      netLimits.maxResponseBytes = old;
    }
  });

  it('times out, and honours ctx.signal', async () => {
    const c: ToolContext = { workspaceRoot: ws, checkAddress: allowLoopback };
    const old = netLimits.timeoutMs;
    netLimits.timeoutMs = 300;
    try {
      const t0 = Date.now();
      const r = await call('fetch_url', { url: `${origin}/slow` }, c);
      assert.equal(r.isError, true);
      assert.equal(r.content, `fetch_url: timed out after 0.3 s fetching ${origin}/slow`);
      assert.ok(Date.now() - t0 < 3000);
    } finally {
      netLimits.timeoutMs = old;
    }
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    const a = await call('fetch_url', { url: `${origin}/slow` }, { ...c, signal: ac.signal });
    assert.deepEqual(a, { isError: true, content: 'fetch_url: aborted' });
  });

  it('refuses non-http schemes, credentials and bad arguments', async () => {
    for (const u of ['file:///etc/passwd', 'ftp://example.com/x', 'data:text/plain,hi', 'javascript:alert(1)', 'gopher://x/']) {
      const r = await call('fetch_url', { url: u });
      assert.equal(r.isError, true, u);
      assert.match(r.content, /^fetch_url: only http:\/\/ and https:\/\/ URLs can be fetched; the URL uses "[a-z]+:"$/, u);
    }
    assert.match((await call('fetch_url', { url: 'http://user:pw@example.com/' })).content, /embedded credentials/);
    assert.match((await call('fetch_url', { url: 'not a url' })).content, /^fetch_url: invalid URL "not a url"/);
    assert.deepEqual(await call('fetch_url', { url: 'http://example.com', method: 'PUT' }), {
      isError: true,
      content: 'fetch_url: "method" must be "GET" or "POST", got "PUT"',
    });
    assert.deepEqual(await call('fetch_url', { url: 'http://example.com', body: 'x' }), {
      isError: true,
      content: 'fetch_url: "body" is only allowed with method "POST"',
    });
    assert.deepEqual(await call('fetch_url', {}), { isError: true, content: 'fetch_url: missing required argument "url" (a string)' });
    assert.deepEqual(await call('fetch_url', { url: 'http://example.com', headers: {} }), {
      isError: true,
      content: 'fetch_url: unknown argument "headers" (expected: url, method, body)',
    });
  });
});

describe('specs', () => {
  it('every new tool has a well-formed spec keyed by its name', () => {
    assert.deepEqual(Object.keys(writeTools).sort(), ['edit_file', 'write_file']);
    assert.deepEqual(Object.keys(commandTools), ['run_command']);
    assert.deepEqual(Object.keys(netTools), ['fetch_url']);
    const allTools: Record<string, BuiltinTool> = { ...writeTools, ...commandTools, ...netTools };
    assert.equal(Object.keys(allTools).length, 4);
    for (const [name, tool] of Object.entries(allTools)) {
      assert.equal(tool.spec.name, name);
      assert.ok(tool.spec.description.length > 80, name);
      const s = tool.spec.inputSchema as Record<string, unknown>;
      assert.equal(s.type, 'object');
      assert.equal(typeof s.properties, 'object');
      assert.ok(Array.isArray(s.required));
      assert.equal(s.additionalProperties, false);
    }
    const req = (t: BuiltinTool): string[] => (t.spec.inputSchema as { required: string[] }).required;
    assert.deepEqual(req(writeTools.write_file), ['path', 'content']);
    assert.deepEqual(req(writeTools.edit_file), ['path', 'old', 'new']);
    assert.deepEqual(req(commandTools.run_command), ['argv']);
    assert.deepEqual(req(netTools.fetch_url), ['url']);
  });
});
