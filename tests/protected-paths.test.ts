// Protected paths and the state dir, as units: the list (a pure function of the resolved config, which the
// command sandbox uses too), the guard's path checks (symlinks, paths that do not exist yet, ancestors,
// nested .git), the file tools enforcing it on their own (without the tool gate in front), the default
// state dir and the one-time move of an old in-workspace `.delegate-mcp/`.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../src/config/config.js';
import { userConfigDir } from '../src/config/locations.js';
import { SHIPPED_AGENTS_DIR } from '../src/paths.js';
import { defaultStateDir, moveLegacyStateDir, openStateDir, stateHome, workspaceId } from '../src/config/state-dir.js';
import { ProtectedGuard, protectedPaths, serverCodePaths } from '../src/permissions/protected-paths.js';
import { sandboxProtectedPaths } from '../src/sandbox/protected.js';
import { fsTools } from '../src/tools/fs-tools.js';
import { writeTools } from '../src/tools/write-tools.js';
import type { ToolContext } from '../src/tools/types.js';
import { tempDir, writeTree } from './helpers.js';

const tools = { ...fsTools, ...writeTools };
/** Agent dirs outside the workspace the server also loads by default: the user's and the shipped ones. */
const OUTSIDE_AGENT_DIRS = [path.join(userConfigDir(), 'agents'), SHIPPED_AGENTS_DIR];

/** A workspace with mcp.json, agents in three formats, .git and a state dir configured inside it. */
function setup(delegate: Record<string, unknown> = { stateDir: 'state-in' }) {
  const ws = tempDir('dmcp-prot-unit-');
  writeTree(ws, {
    'mcp.json': JSON.stringify({ delegate, mcpServers: {} }),
    'agents/a.yaml': 'name: a\n',
    '.claude/agents/b.md': '---\nname: b\n---\n',
    '.git/config': '[core]\n',
    'src/app.ts': 'export const NEEDLE = 1;\n',
    'state-in/audit/audit-1.jsonl': '{"event":"run_start","input_preview":"NEEDLE"}\n',
  });
  const cfg = loadConfig({}, ws);
  return { ws, cfg };
}

describe('serverCodePaths(cfg): what downstream MCP servers run from the workspace', () => {
  it('existing files named by command and args, and a cwd below the root; not options, not the root, not outside', () => {
    const ws = tempDir('dmcp-prot-srv-');
    const outside = tempDir('dmcp-prot-srv-out-');
    writeTree(outside, { 'far.mjs': '' });
    writeTree(ws, {
      'scripts/srv.mjs': '',
      'tools/py/main.py': '',
      'bin/server': '',
      'mcp.json': JSON.stringify({
        mcpServers: {
          node: { command: 'node', args: ['--import', './scripts/srv.mjs', '--port', '3000', path.join(outside, 'far.mjs')], cwd: '.' },
          py: { command: 'python3', args: ['main.py'], cwd: 'tools/py' },
          bin: { command: './bin/server', args: ['scripts/missing.mjs'], cwd: '.' },
          http: { url: 'http://127.0.0.1:1/mcp' },
        },
      }),
    });
    const cfg = loadConfig({}, ws);
    assert.deepEqual(serverCodePaths(cfg).sort(), [
      path.join(ws, 'bin', 'server'),
      path.join(ws, 'scripts', 'srv.mjs'),
      path.join(ws, 'tools', 'py'),
      path.join(ws, 'tools', 'py', 'main.py'),
    ]);
    const kinds = protectedPaths(cfg).filter((p) => p.kind === 'server');
    assert.equal(kinds.length, 4);
    for (const k of kinds) assert.equal(k.read, 'readable');
    const guard = ProtectedGuard.resolve(protectedPaths(cfg), ws);
    assert.match(guard.check('write', path.join(ws, 'scripts', 'srv.mjs'))?.message ?? '', /downstream MCP server code .* cannot be changed by an agent/);
    assert.match(guard.check('write', path.join(ws, 'tools', 'py', 'new.py'))?.message ?? '', /downstream MCP server code/);
    assert.equal(guard.check('read', path.join(ws, 'scripts', 'srv.mjs')), null);
    assert.equal(guard.check('write', path.join(ws, 'scripts', 'other.mjs')), null);
  });
});

describe('protectedPaths(cfg): one list, from the resolved config', () => {
  it('names the state dir, every agent directory the server loads, mcp.json and .git; pure and repeatable', () => {
    const { ws, cfg } = setup();
    const list = protectedPaths(cfg);
    const byPath = new Map(list.map((p) => [p.path, p]));
    assert.deepEqual(byPath.get(path.join(ws, 'state-in')), { path: path.join(ws, 'state-in'), kind: 'state', read: 'hidden' });
    assert.equal(byPath.has(path.join(ws, 'state-in', 'audit')), false, 'the audit dir is inside it: not listed twice');
    assert.equal(byPath.get(path.join(ws, '.delegate-mcp'))?.kind, 'state', 'the old in-workspace state folder');
    for (const d of ['agents', '.claude/agents', '.codex/agents']) {
      assert.deepEqual(byPath.get(path.join(ws, d)), { path: path.join(ws, d), kind: 'agents', read: 'readable' }, d);
    }
    assert.deepEqual(byPath.get(path.join(ws, 'mcp.json')), { path: path.join(ws, 'mcp.json'), kind: 'config', read: 'name-only' });
    assert.deepEqual(byPath.get(path.join(ws, '.git')), { path: path.join(ws, '.git'), kind: 'git', read: 'readable' });
    assert.deepEqual(protectedPaths(cfg), list);
    assert.equal(existsSync(path.join(ws, '.codex')), false, 'listing creates nothing');
  });

  it('takes configured agentDirs instead of the default ones, and an audit dir configured elsewhere', () => {
    const { ws, cfg } = setup({ agentDirs: [{ path: 'team', format: 'claude-md' }], audit: { dir: 'logs/audit' } });
    const list = protectedPaths(cfg);
    const agents = list.filter((p) => p.kind === 'agents').map((p) => p.path);
    assert.deepEqual(agents, [path.join(ws, 'agents'), path.join(ws, 'team'), ...OUTSIDE_AGENT_DIRS]);
    assert.ok(list.some((p) => p.path === path.join(ws, 'logs', 'audit') && p.kind === 'state'));
    assert.ok(list.some((p) => p.path === cfg.stateDir && p.kind === 'state'));
  });
});

describe('the command sandbox takes the same list', () => {
  it('agent dirs read-only, .git read-only, the state dirs and mcp.json hidden', () => {
    const { ws, cfg } = setup();
    const sb = sandboxProtectedPaths(cfg);
    assert.deepEqual(sb.dirs, [path.join(ws, 'agents'), path.join(ws, '.claude', 'agents'), path.join(ws, '.codex', 'agents'), ...OUTSIDE_AGENT_DIRS]);
    assert.deepEqual(sb.paths, [path.join(ws, '.git')]);
    assert.deepEqual(sb.hidden, [path.join(ws, 'state-in'), path.join(ws, '.delegate-mcp'), path.join(ws, 'mcp.json')]);
    const all = [...sb.dirs, ...sb.paths, ...sb.hidden].sort();
    assert.deepEqual(all, protectedPaths(cfg).map((p) => p.path).sort(), 'nothing left out, nothing added');
  });
});

describe('ProtectedGuard', () => {
  it('catches symlinks into protected dirs, paths that do not exist yet, ancestors of protected paths and nested .git', async () => {
    const { ws, cfg } = setup();
    symlinkSync(path.join(ws, '.claude'), path.join(ws, 'dotclaude'));
    const g = ProtectedGuard.resolve(protectedPaths(cfg), ws);
    const at = (rel: string) => path.join(ws, rel);
    assert.equal(g.check('write', realpathSync(at('dotclaude/agents')) + '/x.md')?.kind, 'agents');
    assert.equal(g.check('write', at('.codex/agents/new.toml'))?.kind, 'agents', 'a directory that does not exist yet');
    assert.equal(g.check('write', at('.codex'))?.kind, 'agents', 'a file in place of its parent would block it');
    assert.equal(g.check('write', at('vendor/x/.git/hooks/pre-commit'))?.kind, 'git');
    assert.equal(g.check('write', at('.git'))?.kind, 'git');
    assert.equal(g.check('write', at('src/.gitignore')), null);
    assert.equal(g.check('write', at('src/app.ts')), null);
    assert.equal(g.check('read', at('.git/config')), null, 'reading .git is fine');
    assert.equal(g.check('read', at('agents/a.yaml')), null, 'agent files are not secret');
    assert.equal(g.check('read', at('mcp.json'))?.kind, 'config');
    assert.equal(g.check('list', at('mcp.json')), null, 'its name may be listed');
    assert.equal(g.check('list', at('state-in'))?.kind, 'state');
    assert.match(g.check('write', at('agents/z.yaml'))!.message, /^protected: agent directory .*agents cannot be changed by an agent/);
  });

  it('a dangling link in place of an agent directory: writing its future target is refused', () => {
    const { ws, cfg } = setup();
    symlinkSync(path.join(ws, 'elsewhere'), path.join(ws, '.codex')); // .codex -> elsewhere (not there yet)
    const g = ProtectedGuard.resolve(protectedPaths(cfg), ws);
    assert.equal(g.check('write', path.join(ws, 'elsewhere', 'agents', 'x.toml'))?.kind, 'agents');
    assert.equal(g.check('write', path.join(ws, 'elsewhere', 'notes.txt')), null);
  });

  it('a link whose target is created later still leads to the protected path (resolved on each call)', async () => {
    const { ws, cfg } = setup();
    symlinkSync(path.join(ws, '.codex'), path.join(ws, 'later')); // dangling for now
    mkdirSync(path.join(ws, '.codex', 'agents'), { recursive: true });
    const g = ProtectedGuard.resolve(protectedPaths(cfg), ws);
    assert.equal(g.check('write', realpathSync(path.join(ws, 'later', 'agents')))?.kind, 'agents');
  });
});

describe('the file tools enforce protected paths themselves (no tool gate in front)', () => {
  const ctxFor = (ws: string, cfg: ReturnType<typeof loadConfig>): ToolContext => ({ workspaceRoot: ws, protect: ProtectedGuard.resolve(protectedPaths(cfg), ws) });

  it('read_file, list_dir and search_files never show the state dir; mcp.json is listed but not read', async () => {
    const { ws, cfg } = setup();
    symlinkSync(path.join(ws, 'state-in'), path.join(ws, 'state-link'));
    const ctx = ctxFor(ws, cfg);
    const read = await tools.read_file.run({ path: 'state-in/audit/audit-1.jsonl' }, ctx);
    assert.equal(read.isError, true);
    assert.match(read.content, /protected: the server's state directory/);
    const viaLink = await tools.read_file.run({ path: 'state-link/audit/audit-1.jsonl' }, ctx);
    assert.equal(viaLink.isError, true);
    const list = await tools.list_dir.run({ path: '.' }, ctx);
    assert.equal(list.isError, false);
    assert.match(list.content, /mcp\.json/);
    assert.doesNotMatch(list.content, /state-in|state-link/);
    const search = await tools.search_files.run({ pattern: 'NEEDLE|mcpServers' }, ctx);
    assert.equal(search.content, 'src/app.ts:1: export const NEEDLE = 1;');
    const cfgRead = await tools.read_file.run({ path: 'mcp.json' }, ctx);
    assert.equal(cfgRead.isError, true);
    assert.match(cfgRead.content, /protected: server config/);
  });

  it('write_file and edit_file refuse agent dirs, mcp.json, .git and the state dir; ordinary files are written', async () => {
    const { ws, cfg } = setup();
    const ctx = ctxFor(ws, cfg);
    const refused = [
      await tools.write_file.run({ path: '.claude/agents/pwned.md', content: 'x' }, ctx),
      await tools.write_file.run({ path: 'agents/pwned.yaml', content: 'x' }, ctx),
      await tools.edit_file.run({ path: 'agents/a.yaml', old: 'name: a', new: 'name: b' }, ctx),
      await tools.write_file.run({ path: 'mcp.json', content: '{}' }, ctx),
      await tools.edit_file.run({ path: '.git/config', old: '[core]', new: '[core]\n\tfsmonitor = x' }, ctx),
      await tools.write_file.run({ path: 'state-in/audit/audit-1.jsonl', content: '' }, ctx),
    ];
    assert.equal(refused.length, 6);
    for (const r of refused) {
      assert.equal(r.isError, true, r.content);
      assert.match(r.content, /protected: .* cannot be changed by an agent/);
    }
    assert.equal(readFileSync(path.join(ws, 'agents', 'a.yaml'), 'utf8'), 'name: a\n');
    assert.equal(readFileSync(path.join(ws, '.git', 'config'), 'utf8'), '[core]\n');
    assert.match(readFileSync(path.join(ws, 'state-in', 'audit', 'audit-1.jsonl'), 'utf8'), /run_start/);
    assert.equal(existsSync(path.join(ws, '.claude', 'agents', 'pwned.md')), false);
    const okWrite = await tools.write_file.run({ path: 'src/new.ts', content: 'x' }, ctx);
    assert.equal(okWrite.isError, false, okWrite.content);
  });
});

describe('state dir location', () => {
  it('defaults to $XDG_STATE_HOME/delegate-mcp/<basename>-<12 hex>, never inside the workspace; ~/.local/state without XDG', () => {
    const ws = tempDir('dmcp-prot-loc-');
    const id = workspaceId(ws);
    assert.match(id, new RegExp(`^${path.basename(ws).replace(/[.]/g, '\\.')}-[0-9a-f]{12}$`));
    assert.equal(workspaceId(ws), id, 'stable');
    assert.notEqual(workspaceId(path.join(ws, 'a', 'proj')), workspaceId(path.join(ws, 'b', 'proj')), 'same name, other place');
    assert.equal(workspaceId('/'), `root-${workspaceId('/').slice(-12)}`);
    assert.equal(defaultStateDir(ws, { XDG_STATE_HOME: '/x/state' }), path.join('/x/state', 'delegate-mcp', id));
    assert.equal(stateHome({ XDG_STATE_HOME: 'relative/state', HOME: '/home/u' }), '/home/u/.local/state', 'a relative XDG_STATE_HOME is ignored (XDG spec)');
    const saved = process.env.XDG_STATE_HOME;
    process.env.XDG_STATE_HOME = '/x/state';
    try {
      const cfg = loadConfig({}, ws);
      assert.equal(cfg.stateDir, path.join('/x/state', 'delegate-mcp', id));
      assert.equal(cfg.auditDir, path.join(cfg.stateDir, 'audit'));
    } finally {
      if (saved === undefined) delete process.env.XDG_STATE_HOME;
      else process.env.XDG_STATE_HOME = saved;
    }
  });

  it('delegate.stateDir overrides it, relative to mcp.json', () => {
    const ws = tempDir('dmcp-prot-loc-');
    writeTree(ws, { 'conf/mcp.json': JSON.stringify({ delegate: { stateDir: '../var/state' } }) });
    assert.equal(loadConfig({ config: 'conf/mcp.json' }, ws).stateDir, path.join(ws, 'var', 'state'));
  });
});

describe('moving an old <workspace>/.delegate-mcp', () => {
  it('moves it when the new one is missing or empty; leaves both alone when both hold state', () => {
    const ws = tempDir('dmcp-prot-mv-');
    const target = path.join(tempDir('dmcp-prot-mv-state-'), 'delegate-mcp', 'w');
    writeTree(ws, { '.delegate-mcp/budget/ledger-2026-01-01.jsonl': 'L1\n' });
    const lines: string[] = [];
    openStateDir({ workspace: ws, stateDir: target }, (l) => lines.push(l));
    assert.equal(lines.length, 1);
    assert.match(lines[0], /moved the server state from .*\.delegate-mcp to .*delegate-mcp\/w/);
    assert.equal(readFileSync(path.join(target, 'budget', 'ledger-2026-01-01.jsonl'), 'utf8'), 'L1\n');
    assert.equal(existsSync(path.join(ws, '.delegate-mcp')), false);
    assert.equal(statSync(target).mode & 0o777, 0o700, 'private to the user');
    openStateDir({ workspace: ws, stateDir: target }, (l) => lines.push(l));
    assert.equal(lines.length, 1, 'once');

    writeTree(ws, { '.delegate-mcp/budget/ledger-2026-01-01.jsonl': 'OLD\n' });
    const msg = moveLegacyStateDir(ws, target);
    assert.match(msg ?? '', /both .* hold server state; using .* and leaving .* alone/);
    assert.equal(readFileSync(path.join(target, 'budget', 'ledger-2026-01-01.jsonl'), 'utf8'), 'L1\n', 'not clobbered');
    assert.equal(readFileSync(path.join(ws, '.delegate-mcp', 'budget', 'ledger-2026-01-01.jsonl'), 'utf8'), 'OLD\n');

    const empty = path.join(tempDir('dmcp-prot-mv-state-'), 'e');
    mkdirSync(empty);
    assert.match(moveLegacyStateDir(ws, empty) ?? '', /moved/, 'an empty target is filled');
    assert.equal(readFileSync(path.join(empty, 'budget', 'ledger-2026-01-01.jsonl'), 'utf8'), 'OLD\n');
  });

  it('a state dir that cannot be made is a config error naming it and the settings that move it', () => {
    const ws = tempDir('dmcp-prot-mv-');
    writeTree(ws, { blocker: 'a file where a folder should be' });
    assert.throws(() => openStateDir({ workspace: ws, stateDir: path.join(ws, 'blocker', 'state') }), (e: Error) => {
      assert.equal(e.name, 'ConfigError');
      assert.match(e.message, /cannot set up the state directory .*blocker\/state: .*\(set delegate\.stateDir in mcp\.json, or XDG_STATE_HOME, to a writable directory\)/);
      return true;
    });
  });

  it('a state dir that is or contains the workspace is refused (it would hide every file from agents)', () => {
    const ws = tempDir('dmcp-prot-mv-');
    for (const stateDir of [ws, path.dirname(ws)]) {
      assert.throws(() => openStateDir({ workspace: ws, stateDir }), /delegate\.stateDir .* is or contains the workspace .*; choose a directory outside it/);
    }
    openStateDir({ workspace: ws, stateDir: path.join(ws, 'state-below') });
    assert.ok(existsSync(path.join(ws, 'state-below')));
  });

  it('across file systems: copies, then removes the old folder', (t) => {
    // /dev/shm is a tmpfs on Linux: a different device from the temp dir, so rename() fails with EXDEV.
    let other: string;
    try {
      other = mkdtempSync('/dev/shm/dmcp-prot-');
    } catch {
      if (process.env.CI === 'true') throw new Error('/dev/shm is needed for the cross-device move test under CI');
      t.skip('no writable /dev/shm: cross-device move not tested');
      return;
    }
    try {
      const ws = tempDir('dmcp-prot-xdev-');
      writeTree(ws, { '.delegate-mcp/audit/audit-1.jsonl': 'A\n', '.delegate-mcp/artifacts/run_1/r.md': 'R\n' });
      const target = path.join(other, 'state', 'w');
      assert.match(moveLegacyStateDir(ws, target) ?? '', /moved/);
      assert.equal(readFileSync(path.join(target, 'audit', 'audit-1.jsonl'), 'utf8'), 'A\n');
      assert.equal(readFileSync(path.join(target, 'artifacts', 'run_1', 'r.md'), 'utf8'), 'R\n');
      assert.equal(existsSync(path.join(ws, '.delegate-mcp')), false);
      assert.equal(existsSync(`${target}.moving-${process.pid}`), false);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });
});
