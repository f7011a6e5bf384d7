// The sandbox's pure logic: which directories a run's rules make writable, the bwrap command line, the
// system mounts, resolving mounts against a real directory tree, git's hardening, and the config keys.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, realpathSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadAgentFile } from '../src/agents/loader.js';
import { loadConfig } from '../src/config/config.js';
import { ConfigError } from '../src/config/config-error.js';
import { intersect, rulesForAgent, type RuleSet } from '../src/permissions/index.js';
import { bwrapArgs, type SandboxMounts } from '../src/sandbox/bwrap-args.js';
import { gitHardeningEnv } from '../src/sandbox/index.js';
import { ETC_ENTRIES, closeMounts, systemMounts, workspaceMounts, type HostFs } from '../src/sandbox/mounts.js';
import { beginCommand, endCommand } from '../src/sandbox/created.js';
import { networkAllowed, workspaceAccess } from '../src/sandbox/policy.js';

const ROOT = '/srv/ws';
const layer = (allow: string[], deny: string[] = [], extra: object = {}) => ({ deny, ask: [], allow, ...extra });
const rs = (...layers: ReturnType<typeof layer>[]): RuleSet => ({ layers });
const access = (rules: RuleSet, dirs: string[] = []) => workspaceAccess(rules, [ROOT], (rel) => dirs.includes(rel));

describe('writable directories from Edit rules', () => {
  it('a glob makes its literal directory prefix writable; a non-prefix rule its nearest covering directory', () => {
    const cases: [string[], string[], string[]][] = [
      [['Edit(out/**)'], [], ['out']],
      [['Edit(./out/**)'], [], ['out']],
      [['Edit(src/*.ts)'], [], ['src']],
      [['Edit(a/b/**/*.md)'], [], ['a/b']],
      [['Edit(**/*.md)'], [], ['']],
      [['Edit(package.json)'], [], ['']],
      [['Edit(docs/index.md)'], [], ['docs']],
      [['Edit(out)'], ['out'], ['out']],
      [['Edit(out)'], [], ['']],
      [['Edit'], [], ['']],
      [['Edit(/srv/ws/gen/**)'], [], ['gen']],
      [['Edit(//srv/ws/gen/**)'], [], ['gen']],
      [['Edit(/elsewhere/**)'], [], []],
      [['Edit(out/**)', 'Edit(out/sub/**)', 'Edit(lib/**)'], [], ['lib', 'out']],
      [['Read(**)', 'Bash(npm test)'], [], []],
    ];
    for (const [allow, dirs, writable] of cases) {
      assert.deepEqual(access(rs(layer(allow)), dirs).writable, writable, allow.join(' '));
    }
    assert.equal(cases.length, 15);
  });

  it('ask rules make nothing writable (a command cannot stop to ask)', () => {
    assert.deepEqual(access({ layers: [{ deny: [], ask: ['Edit(**)'], allow: [] }] }).writable, []);
  });

  it('several layers (a delegated run): only where every layer reaches', () => {
    assert.deepEqual(access(rs(layer(['Edit(**)']), layer(['Edit(out/**)']))).writable, ['out']);
    assert.deepEqual(access(rs(layer(['Edit(out/**)']), layer(['Edit(**)']))).writable, ['out']);
    assert.deepEqual(access(rs(layer(['Edit(a/**)']), layer(['Edit(b/**)']))).writable, []);
    assert.deepEqual(access(rs(layer(['Edit(a/**)', 'Edit(b/x/**)']), layer(['Edit(b/**)']))).writable, ['b/x']);
    assert.deepEqual(access(rs(layer(['Edit(**)']), layer(['Read(**)']))).writable, []);
  });

  it('literal deny rules become read-only (Edit) or hidden (Read) mounts; wildcard denies cannot', () => {
    const a = access(rs(layer(['Edit(**)'], ['Edit(out/keep/**)', 'Read(secrets)', 'Read(**/.env*)', 'Edit(secrets/x/**)', 'Read(*.pem)'])));
    assert.deepEqual(a.readOnly, ['out/keep']);
    assert.deepEqual(a.hidden, ['secrets']);
  });
});

describe('network', () => {
  it('only when every layer allows it', () => {
    assert.equal(networkAllowed(rs(layer([], [], { network: true }))), true);
    assert.equal(networkAllowed(rs(layer([], [], { network: true }), layer([]))), false);
    assert.equal(networkAllowed(rs(layer([]))), false);
    assert.equal(networkAllowed({ layers: [] }), false);
  });

  it('an agent file turns it on with sandbox.network; delegation keeps the narrower', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'dmcp-sbx-agent-'));
    const file = path.join(dir, 'a.yaml');
    writeFileSync(file, 'name: a\ndescription: x\nsandbox: {network: true}\n');
    const on = loadAgentFile(file).agent!;
    assert.deepEqual(on.sandbox, { network: true });
    assert.equal(networkAllowed(rulesForAgent(on)), true);
    writeFileSync(file, 'name: b\ndescription: x\n');
    const off = loadAgentFile(file).agent!;
    assert.deepEqual(off.sandbox, { network: false });
    assert.equal(networkAllowed(intersect(rulesForAgent(on), rulesForAgent(off))), false);
    writeFileSync(file, 'name: c\ndescription: x\nsandbox: {netwrk: true}\n');
    const bad = loadAgentFile(file);
    assert.equal(bad.agent, undefined);
    assert.match(bad.errors[0].message, /unknown key "netwrk" \(did you mean "network"\?\)/);
  });
});

describe('the bwrap command line', () => {
  const m: SandboxMounts = {
    workspace: '/tmp/ws',
    writable: [{ path: '/tmp/ws/out', childFd: 3 }],
    readOnly: ['/tmp/ws/.git', '/tmp/ws/out/.claude/agents'],
    hidden: [{ path: '/tmp/ws/.delegate-mcp', kind: 'dir' }, { path: '/tmp/ws/mcp.json', kind: 'file' }],
    system: { readOnly: ['/usr', '/etc/passwd'], symlinks: [{ target: 'usr/bin', path: '/bin' }] },
    network: false,
    env: { PATH: '/usr/bin', HOME: '/tmp' },
    features: { disableUserns: true, tmpfsSize: true },
  };
  const at = (a: string[], ...seq: string[]): number => a.findIndex((_, i) => seq.every((s, j) => a[i + j] === s));

  it('unshares everything, drops capabilities, dies with its parent, clears the environment', () => {
    const a = bwrapArgs(m, ['git', 'status']);
    for (const f of ['--unshare-all', '--unshare-user', '--die-with-parent', '--new-session', '--clearenv']) assert.ok(a.includes(f), f);
    assert.ok(at(a, '--cap-drop', 'ALL') >= 0);
    assert.ok(!a.includes('--share-net'));
    assert.ok(bwrapArgs({ ...m, network: true }, ['x']).includes('--share-net'));
    assert.ok(a.includes('--disable-userns'));
    assert.ok(at(a, '--size', String(1024 ** 3), '--tmpfs', '/tmp') >= 0, 'the private /tmp is capped');
    const old = bwrapArgs({ ...m, features: { disableUserns: false, tmpfsSize: false } }, ['x']);
    assert.ok(!old.includes('--disable-userns') && !old.includes('--size'), 'an older bwrap gets only what it knows');
    assert.ok(at(a, '--setenv', 'PATH', '/usr/bin') > at(a, '--clearenv'));
    assert.ok(at(a, '--setenv', 'HOME', '/tmp') >= 0);
    assert.deepEqual(a.slice(-5), ['--chdir', '/tmp/ws', '--', 'git', 'status']);
  });

  it('mounts in order: system, /proc, /dev, private /tmp, workspace read-only, writable, read-only, hidden, root read-only', () => {
    const a = bwrapArgs(m, ['true']);
    const order = [
      at(a, '--ro-bind-try', '/usr', '/usr'),
      at(a, '--symlink', 'usr/bin', '/bin'),
      at(a, '--proc', '/proc'),
      at(a, '--dev', '/dev'),
      at(a, '--tmpfs', '/tmp'),
      at(a, '--ro-bind', '/tmp/ws', '/tmp/ws'),
      at(a, '--bind-fd', '3', '/tmp/ws/out'),
      at(a, '--ro-bind', '/tmp/ws/.git', '/tmp/ws/.git'),
      at(a, '--ro-bind', '/tmp/ws/out/.claude/agents', '/tmp/ws/out/.claude/agents'),
      at(a, '--tmpfs', '/tmp/ws/.delegate-mcp', '--remount-ro', '/tmp/ws/.delegate-mcp'),
      at(a, '--ro-bind', '/dev/null', '/tmp/ws/mcp.json'),
      at(a, '--remount-ro', '/'),
      at(a, '--chdir'),
    ];
    assert.ok(order.every((i) => i >= 0), JSON.stringify(order));
    assert.deepEqual([...order].sort((x, y) => x - y), order);
    assert.equal(a.filter((x) => x === '--bind' || x === '--bind-fd').length, 1, 'only the writable directory is mounted read-write');
  });
});

describe('system mounts', () => {
  const fakeFs = (links: Record<string, string>, dirs: string[], real: Record<string, string>): HostFs => ({
    lstat: (p) => (p in links ? { isSymbolicLink: () => true, isDirectory: () => false } : dirs.includes(p) ? { isSymbolicLink: () => false, isDirectory: () => true } : undefined),
    readlink: (p) => links[p],
    realpath: (p) => real[p],
  });

  it('merged /usr: /bin, /lib… are symlinks; /usr and a few /etc entries read-only; Node under /usr adds nothing', () => {
    const s = systemMounts({ nodeExecPath: '/usr/bin/node', extra: [] }, fakeFs({ '/bin': 'usr/bin', '/lib': 'usr/lib', '/lib64': 'usr/lib64', '/sbin': 'usr/sbin' }, [], { '/usr/bin/node': '/usr/bin/node' }));
    assert.deepEqual(s.symlinks, [
      { target: 'usr/bin', path: '/bin' },
      { target: 'usr/sbin', path: '/sbin' },
      { target: 'usr/lib', path: '/lib' },
      { target: 'usr/lib64', path: '/lib64' },
    ]);
    assert.deepEqual(s.readOnly, ['/usr', ...ETC_ENTRIES]);
    assert.ok(!s.readOnly.includes('/etc') && !s.readOnly.includes('/home') && !s.readOnly.includes('/root'));
    assert.ok(!ETC_ENTRIES.some((e) => /shadow|npmrc|gitconfig|ssh/.test(e)));
  });

  it('separate /bin and /lib are mounted; a Node install outside /usr and configured paths are added', () => {
    const s = systemMounts(
      { nodeExecPath: '/home/u/.nvm/versions/node/v20/bin/node', extra: ['/opt/tool'] },
      fakeFs({}, ['/bin', '/lib'], { '/home/u/.nvm/versions/node/v20/bin/node': '/home/u/.nvm/versions/node/v20/bin/node' }),
    );
    assert.deepEqual(s.symlinks, []);
    assert.deepEqual(s.readOnly.slice(0, 3), ['/usr', '/bin', '/lib']);
    assert.deepEqual(s.readOnly.slice(-2), ['/home/u/.nvm/versions/node/v20', '/opt/tool']);
  });
});

describe('resolving workspace mounts', () => {
  const tree = () => {
    const base = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'dmcp-sbx-mounts-')));
    const ws = path.join(base, 'ws');
    mkdirSync(path.join(ws, 'src'), { recursive: true });
    mkdirSync(path.join(base, 'outside'));
    symlinkSync(path.join(base, 'outside'), path.join(ws, 'escape'));
    mkdirSync(path.join(ws, '.git'));
    writeFileSync(path.join(ws, 'mcp.json'), '{}');
    mkdirSync(path.join(ws, '.delegate-mcp'));
    return { base, ws };
  };

  it('writable dirs are realpaths inside the workspace; a symlink out is never writable; a missing one is created', () => {
    const { base, ws } = tree();
    const m = workspaceMounts(ws, { writable: ['escape', 'out', 'src'], readOnly: [], hidden: [] }, { dirs: [], paths: [], hidden: [], noCreate: [] });
    assert.deepEqual(m.writable.map((w) => w.path), [path.join(ws, 'out'), path.join(ws, 'src')]);
    // Each comes with a descriptor of that very directory (what bwrap binds).
    for (const w of m.writable) assert.equal(readlinkSync(`/proc/self/fd/${w.fd}`), w.path);
    closeMounts(m);
    assert.ok(existsSync(path.join(ws, 'out')));
    assert.ok(!m.writable.some((w) => w.path.startsWith(path.join(base, 'outside'))));
  });

  it('protected paths: read-only when present; a missing agent dir is created only where a command could write it', () => {
    const { ws } = tree();
    const prot = { dirs: [path.join(ws, '.claude', 'agents'), path.join(ws, 'src', 'agents')], paths: [path.join(ws, '.git'), path.join(ws, 'mcp.json'), path.join(ws, 'nope')], hidden: [path.join(ws, '.delegate-mcp'), path.join(ws, 'mcp.json'), path.join(ws, '.delegate-mcp', 'audit'), path.join(ws, 'mcp.json')], noCreate: [] };
    mkdirSync(path.join(ws, '.delegate-mcp', 'audit'));
    const m = workspaceMounts(ws, { writable: ['src'], readOnly: [], hidden: [] }, prot);
    closeMounts(m);
    assert.equal(existsSync(path.join(ws, '.claude')), false, 'not created: nothing may write the root');
    assert.ok(existsSync(path.join(ws, 'src', 'agents')), 'created: src/ is writable');
    assert.deepEqual(m.readOnly, [path.join(ws, '.git'), path.join(ws, 'src', 'agents')]);
    assert.deepEqual(m.hidden, [{ path: path.join(ws, '.delegate-mcp'), kind: 'dir' }, { path: path.join(ws, 'mcp.json'), kind: 'file' }]);
  });
});

describe('pinned parents of protected paths', () => {
  it('every existing directory between a writable root and a protected path is bound onto itself (it cannot be renamed)', () => {
    const ws = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'dmcp-sbx-pin-')));
    mkdirSync(path.join(ws, '.claude', 'agents'), { recursive: true });
    mkdirSync(path.join(ws, 'tools', 'srv'), { recursive: true });
    writeFileSync(path.join(ws, 'tools', 'srv', 'main.mjs'), '');
    const prot = { dirs: [path.join(ws, '.claude', 'agents')], paths: [path.join(ws, 'tools', 'srv', 'main.mjs')], hidden: [], noCreate: [] };
    const rootWritable = workspaceMounts(ws, { writable: [''], readOnly: [], hidden: [] }, prot);
    closeMounts(rootWritable);
    assert.deepEqual(rootWritable.writable.map((w) => w.path), [ws, path.join(ws, '.claude'), path.join(ws, 'tools'), path.join(ws, 'tools', 'srv')]);
    // Where nothing is writable there is nothing to rename: no pins.
    const srcOnly = workspaceMounts(ws, { writable: ['tools/srv'], readOnly: [], hidden: [] }, prot);
    closeMounts(srcOnly);
    assert.deepEqual(srcOnly.writable.map((w) => w.path), [path.join(ws, 'tools', 'srv')]);
  });
});

describe('protected paths a command created', () => {
  const setup = () => {
    const base = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'dmcp-sbx-created-')));
    const ws = path.join(base, 'ws');
    mkdirSync(path.join(ws, 'sub'), { recursive: true });
    mkdirSync(path.join(base, 'outside'));
    return { base, ws, prot: [path.join(ws, 'mcp.json'), path.join(ws, '.git'), path.join(ws, 'sub', 'srv.mjs'), path.join(ws, 'x', 'y', 'z')] };
  };

  it('removes what exists where a protected path was missing at the start: file, directory tree, symlink (not its target)', () => {
    const { base, ws, prot } = setup();
    writeFileSync(path.join(base, 'outside', 'target'), 'KEEP');
    beginCommand(ws, prot);
    writeFileSync(path.join(ws, 'mcp.json'), '{}');
    mkdirSync(path.join(ws, '.git', 'hooks'), { recursive: true });
    writeFileSync(path.join(ws, '.git', 'config'), '[core]');
    symlinkSync(path.join(base, 'outside', 'target'), path.join(ws, 'sub', 'srv.mjs'));
    mkdirSync(path.join(ws, 'x', 'y'), { recursive: true });
    writeFileSync(path.join(ws, 'x', 'other.txt'), '');
    writeFileSync(path.join(ws, 'ok.txt'), 'stays');
    const removed = endCommand(ws, true);
    // x/ is the first missing component of x/y/z: created by the command, removed with what is in it.
    assert.deepEqual(removed.sort(), [path.join(ws, '.git'), path.join(ws, 'mcp.json'), path.join(ws, 'sub', 'srv.mjs'), path.join(ws, 'x')].sort());
    for (const p of removed) assert.equal(existsSync(p), false, p);
    assert.equal(readFileSync(path.join(base, 'outside', 'target'), 'utf8'), 'KEEP');
    assert.equal(readFileSync(path.join(ws, 'ok.txt'), 'utf8'), 'stays');
  });

  it('paths that existed at the start are left alone', () => {
    const { ws, prot } = setup();
    writeFileSync(path.join(ws, 'mcp.json'), '{"user": true}');
    beginCommand(ws, prot);
    assert.deepEqual(endCommand(ws, true), []);
    assert.equal(readFileSync(path.join(ws, 'mcp.json'), 'utf8'), '{"user": true}');
  });

  it('waits until no command runs any more; a command that started while the path existed does not forget it', () => {
    const { ws, prot } = setup();
    beginCommand(ws, prot); // A: mcp.json missing
    writeFileSync(path.join(ws, 'mcp.json'), '{}'); // created by A
    beginCommand(ws, prot); // B starts while it exists
    assert.deepEqual(endCommand(ws, true), [], 'B still runs: nothing is removed yet');
    assert.ok(existsSync(path.join(ws, 'mcp.json')));
    assert.deepEqual(endCommand(ws, true), [path.join(ws, 'mcp.json')]);
  });

  it('an end that could not confirm the namespace is gone removes nothing; the next end does', () => {
    const { ws, prot } = setup();
    beginCommand(ws, prot);
    writeFileSync(path.join(ws, 'mcp.json'), '{}');
    assert.deepEqual(endCommand(ws, false), []);
    assert.ok(existsSync(path.join(ws, 'mcp.json')));
    beginCommand(ws, prot);
    assert.deepEqual(endCommand(ws, true), [path.join(ws, 'mcp.json')]);
  });

  it('never removes through a parent swapped for a symlink', () => {
    const { base, ws, prot } = setup();
    beginCommand(ws, prot); // sub/ exists, sub/srv.mjs is missing
    renameSync(path.join(ws, 'sub'), path.join(ws, 'sub-old'));
    writeFileSync(path.join(base, 'outside', 'srv.mjs'), 'OUTSIDE');
    symlinkSync(path.join(base, 'outside'), path.join(ws, 'sub'));
    assert.deepEqual(endCommand(ws, true), []);
    assert.equal(readFileSync(path.join(base, 'outside', 'srv.mjs'), 'utf8'), 'OUTSIDE');
  });
});

describe('git hardening', () => {
  it('no system/global config; bare repositories only when named; no fsmonitor, no hooks', () => {
    assert.deepEqual(gitHardeningEnv(), {
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_CONFIG_COUNT: '3',
      GIT_CONFIG_KEY_0: 'safe.bareRepository',
      GIT_CONFIG_VALUE_0: 'explicit',
      GIT_CONFIG_KEY_1: 'core.fsmonitor',
      GIT_CONFIG_VALUE_1: 'false',
      GIT_CONFIG_KEY_2: 'core.hooksPath',
      GIT_CONFIG_VALUE_2: '/dev/null',
    });
  });
});

describe('delegate.sandbox in mcp.json', () => {
  const withConfig = (delegate: unknown) => {
    const dir = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'dmcp-sbx-cfg-')));
    writeFileSync(path.join(dir, 'mcp.json'), JSON.stringify({ delegate }));
    return () => loadConfig({}, dir);
  };

  it('defaults to bwrap; "off" only when chosen', () => {
    assert.deepEqual(withConfig({})().delegate.sandbox, { mode: 'bwrap', readOnly: [] });
    assert.equal(withConfig({ sandbox: { mode: 'off' } })().delegate.sandbox.mode, 'off');
  });

  it('bad values are errors naming the field', () => {
    assert.throws(withConfig({ sandbox: { mode: 'none' } }), (e: Error) => e instanceof ConfigError && /delegate\.sandbox\.mode: .*"bwrap"\|"off"|delegate\.sandbox\.mode: .*bwrap.*off/.test(e.message));
    assert.throws(withConfig({ sandbox: { readOnly: ['rel/dir'] } }), (e: Error) => e instanceof ConfigError && /mcp\.json:1:\d+: delegate\.sandbox\.readOnly\[0\]: must be an absolute path, got "rel\/dir"/.test(e.message));
    assert.throws(withConfig({ sandbox: { network: true } }), (e: Error) => e instanceof ConfigError && /mcp\.json:1:\d+: delegate\.sandbox\.network: unknown key "network"/.test(e.message));
  });
});
