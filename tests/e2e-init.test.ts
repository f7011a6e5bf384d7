// `delegate-mcp init`: starter files that `agents validate` accepts, a snippet per client that parses
// in that client's format, --write merges that keep every other key, and nothing overwritten without --force.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { CLI, tempDir, runCli } from './helpers.js';

const cli = (args: string[], env: Record<string, string>, cwd: string) => runCli(args, env, cwd);

/** A HOME where Claude Desktop (Linux path), Claude Code, Codex, Cursor and VS Code look installed. */
function fakeHome(): { home: string; env: Record<string, string> } {
  const home = tempDir('dmcp-init-home-');
  mkdirSync(path.join(home, '.config', 'Claude'), { recursive: true });
  writeFileSync(path.join(home, '.config', 'Claude', 'claude_desktop_config.json'), JSON.stringify({ mcpServers: { other: { command: 'other-server' } }, theme: 'dark' }, null, 2));
  writeFileSync(path.join(home, '.claude.json'), '{}');
  mkdirSync(path.join(home, '.codex'), { recursive: true });
  writeFileSync(path.join(home, '.codex', 'config.toml'), '# my settings\nmodel = "gpt-5"\n\n[mcp_servers.other]\ncommand = "other-server"\n');
  mkdirSync(path.join(home, '.cursor'), { recursive: true });
  mkdirSync(path.join(home, '.config', 'Code'), { recursive: true });
  return { home, env: { PATH: '/usr/bin:/bin', HOME: home, XDG_CONFIG_HOME: path.join(home, '.config') } };
}

describe('delegate-mcp init', () => {
  it('in an empty dir writes a starter agent and mcp.json that agents validate accepts, and a parsable snippet per client', async () => {
    const { env } = fakeHome();
    const proj = tempDir('dmcp-init-proj-');
    const r = await cli(['init', '--json'], env, proj);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.deepEqual(report.files.map((f: any) => [path.relative(proj, f.path), f.action]), [
      [path.join('agents', 'explainer.yaml'), 'written'],
      ['mcp.json', 'written'],
    ]);
    assert.equal(JSON.parse(readFileSync(path.join(proj, 'mcp.json'), 'utf8')).delegate.defaultModel, 'anthropic/claude-sonnet-5-5');
    const validate = await cli(['agents', 'validate', '--workspace', proj], env, '/');
    assert.equal(validate.code, 0, validate.stderr);
    assert.match(validate.stdout, /agent\(s\) valid in .*\/agents/);
    const list = JSON.parse((await cli(['agents', 'list', '--workspace', proj, '--json'], env, '/')).stdout);
    assert.equal(list.agents.find((a: any) => a.name === 'explainer').source, 'workspace');

    const clients = report.clients as any[];
    assert.deepEqual(clients.map((c) => c.client), ['claude-desktop', 'claude-code', 'codex', 'cursor', 'vscode']);
    for (const c of clients) assert.equal(c.detected, true, `${c.client} detected`);
    for (const c of clients) {
      const parsed: any = c.format === 'json' ? JSON.parse(c.snippet) : parseToml(c.snippet);
      const entry = c.client === 'vscode' ? parsed.servers.delegate : c.client === 'codex' ? parsed.mcp_servers.delegate : parsed.mcpServers.delegate;
      // The command is this very install, by absolute path.
      assert.equal(entry.command, process.execPath, c.client);
      assert.equal(entry.args[0], CLI, c.client);
      assert.deepEqual(entry.args.slice(1, 3), ['serve', '--workspace'], c.client);
      const ws = entry.args[3];
      if (c.client === 'cursor' || c.client === 'vscode') {
        assert.equal(ws, '${workspaceFolder}');
        assert.equal(entry.env.ANTHROPIC_API_KEY, '${env:ANTHROPIC_API_KEY}');
      } else assert.equal(ws, proj, c.client);
    }
    const codex = parseToml(clients.find((c) => c.client === 'codex').snippet) as any;
    assert.equal(codex.mcp_servers.delegate.required, true);
    assert.ok(codex.mcp_servers.delegate.tool_timeout_sec > 300);
    assert.equal(codex.mcp_servers.delegate.default_tools_approval_mode, 'approve');
    assert.match(clients.find((c) => c.client === 'codex').command, new RegExp(`^codex mcp add delegate -- ${process.execPath} ${CLI} serve --workspace ${proj}$`));
    assert.match(clients.find((c) => c.client === 'claude-code').command, /^claude mcp add delegate .* -- \S+ \S+cli\.js serve --workspace /);
    assert.equal(clients.find((c) => c.client === 'claude-desktop').target, path.join(env.HOME, '.config', 'Claude', 'claude_desktop_config.json'));
    // Without --write nothing outside the project changed.
    assert.equal(JSON.parse(readFileSync(path.join(env.HOME, '.config', 'Claude', 'claude_desktop_config.json'), 'utf8')).mcpServers.delegate, undefined);
    assert.equal(existsSync(path.join(proj, '.mcp.json')), false);

    // The Codex CLI itself accepts the TOML, when it is installed.
    let codexCli = false;
    try {
      execFileSync('codex', ['--version'], { stdio: 'ignore' });
      codexCli = true;
    } catch {
      console.log('# skip: codex CLI not installed; the TOML is checked with smol-toml only');
    }
    if (codexCli) {
      await cli(['init', '--write'], env, proj);
      const out = execFileSync('codex', ['mcp', 'get', 'delegate', '--json'], { env: { ...process.env, ...env }, encoding: 'utf8' });
      assert.match(out, /cli\.js/);
    }
  });

  it('--write merges into every detected client config, keeping existing keys; nothing is overwritten without --force', async () => {
    const { home, env } = fakeHome();
    const proj = tempDir('dmcp-init-proj2-');
    writeFileSync(path.join(proj, 'mcp.json'), '{"delegate": {"watch": false}}\n');
    mkdirSync(path.join(proj, '.vscode'));
    writeFileSync(path.join(proj, '.vscode', 'mcp.json'), JSON.stringify({ servers: { mine: { command: 'x' } }, inputs: [] }));
    const r = await cli(['init', '--write', '--json'], env, proj);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.deepEqual(report.files.map((f: any) => f.action), ['written', 'kept']);
    assert.equal(readFileSync(path.join(proj, 'mcp.json'), 'utf8'), '{"delegate": {"watch": false}}\n', 'existing mcp.json untouched');
    assert.deepEqual(report.merged.map((m: any) => [m.client, m.action]), [
      ['claude-desktop', 'merged'],
      ['claude-code', 'merged'],
      ['codex', 'merged'],
      ['cursor', 'merged'],
      ['vscode', 'merged'],
    ]);
    const desktop = JSON.parse(readFileSync(path.join(home, '.config', 'Claude', 'claude_desktop_config.json'), 'utf8'));
    assert.equal(desktop.theme, 'dark');
    assert.equal(desktop.mcpServers.other.command, 'other-server');
    assert.equal(desktop.mcpServers.delegate.args[3], proj);
    const codexText = readFileSync(path.join(home, '.codex', 'config.toml'), 'utf8');
    assert.ok(codexText.startsWith('# my settings\n'), 'comments kept');
    const codex = parseToml(codexText) as any;
    assert.equal(codex.model, 'gpt-5');
    assert.equal(codex.mcp_servers.other.command, 'other-server');
    assert.equal(codex.mcp_servers.delegate.required, true);
    const vscode = JSON.parse(readFileSync(path.join(proj, '.vscode', 'mcp.json'), 'utf8'));
    assert.equal(vscode.servers.mine.command, 'x');
    assert.deepEqual(vscode.inputs, []);
    assert.equal(vscode.servers.delegate.type, 'stdio');
    assert.ok(JSON.parse(readFileSync(path.join(proj, '.mcp.json'), 'utf8')).mcpServers.delegate);
    assert.ok(JSON.parse(readFileSync(path.join(proj, '.cursor', 'mcp.json'), 'utf8')).mcpServers.delegate);

    // Again: the same entries are already there.
    const again = JSON.parse((await cli(['init', '--write', '--json'], env, proj)).stdout);
    assert.deepEqual(again.merged.map((m: any) => m.action), ['unchanged', 'unchanged', 'unchanged', 'unchanged', 'unchanged']);

    // A different "delegate" entry is refused without --force (exit 1), replaced with it.
    desktop.mcpServers.delegate = { command: 'something-else' };
    writeFileSync(path.join(home, '.config', 'Claude', 'claude_desktop_config.json'), JSON.stringify(desktop));
    writeFileSync(path.join(proj, 'agents', 'explainer.yaml'), 'name: explainer\ndescription: my own edited version of the starter agent\n');
    const refused = await cli(['init', '--write', '--json'], env, proj);
    assert.equal(refused.code, 1);
    const rr = JSON.parse(refused.stdout);
    assert.equal(rr.merged[0].action, 'refused');
    assert.match(rr.merged[0].reason, /already has a "delegate" server; --force replaces it/);
    assert.equal(JSON.parse(readFileSync(path.join(home, '.config', 'Claude', 'claude_desktop_config.json'), 'utf8')).mcpServers.delegate.command, 'something-else');
    assert.match(readFileSync(path.join(proj, 'agents', 'explainer.yaml'), 'utf8'), /my own edited version/);
    const forced = JSON.parse((await cli(['init', '--write', '--force', '--json'], env, proj)).stdout);
    assert.equal(forced.merged[0].action, 'merged');
    assert.deepEqual(forced.files.map((f: any) => f.action), ['overwritten', 'overwritten']);
    const after = JSON.parse(readFileSync(path.join(home, '.config', 'Claude', 'claude_desktop_config.json'), 'utf8'));
    assert.equal(after.mcpServers.delegate.command, process.execPath);
    assert.equal(after.theme, 'dark');
  });
});
