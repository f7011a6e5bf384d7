// `delegate-mcp init`: sets up a project (a starter agent and mcp.json) and tells each MCP client on this
// machine how to start this install for it — the exact snippet, with absolute paths, printed or (with
// --write) merged into the client's config. Nothing that exists is overwritten without --force.
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml';
import { ConfigError } from '../config/config-error.js';
import { DEFAULT_MODEL } from '../config/defaults.js';
import { homeDir } from '../config/locations.js';
import { CLI_ENTRY } from '../paths.js';
import { errorMessage } from '../describe-cause.js';

/** The server's entry in each client's config. */
export const SERVER_NAME = 'delegate';

export type ClientId = 'claude-desktop' | 'claude-code' | 'codex' | 'cursor' | 'vscode';

export interface ClientSnippet {
  client: ClientId;
  label: string;
  /** Whether this client looks installed or configured on this machine. */
  detected: boolean;
  /** The file the snippet belongs in (merged there by --write). */
  target: string;
  format: 'json' | 'toml';
  /** The whole file content to merge: the server entry under the client's key. */
  snippet: string;
  /** A one-line alternative, where the client has its own command for it. */
  command?: string;
  note?: string;
}

export interface InitOptions {
  dir: string;
  force?: boolean;
  write?: boolean;
  env?: NodeJS.ProcessEnv;
  platform?: NodeJS.Platform;
}

export interface InitReport {
  dir: string;
  /** Project files: written, or left alone because they exist (use --force). */
  files: { path: string; action: 'written' | 'kept' | 'overwritten' }[];
  clients: ClientSnippet[];
  /** With --write: what happened to each detected client's config. */
  merged: { client: ClientId; target: string; action: 'merged' | 'unchanged' | 'refused'; reason?: string }[];
}

const EXAMPLE_AGENT = `# A starter agent: edit it, copy it, or delete it. Every key is described in delegate-mcp's README.
name: explainer
description: >-
  Answers questions about this project's code: finds the relevant files, reads them and explains how
  something works, citing file:line. Read-only. Put the question in \`task\`.
instructions: |
  You explain code. Find the files that matter with list_dir and search_files, read them with
  read_file, and answer the question precisely, citing file:line for every claim. Say so when the
  code does not answer the question; never guess.
max_turns: 12
tools:
  fs: { read: true, write: false }
`;

function starterConfig(): string {
  return JSON.stringify({ mcpServers: {}, delegate: { defaultModel: DEFAULT_MODEL } }, null, 2) + '\n';
}

/** The argv a client must run: this very install, by absolute path (clients start servers from anywhere). */
export function serverArgv(projectDir: string): { command: string; args: string[] } {
  return { command: process.execPath, args: [CLI_ENTRY, 'serve', '--workspace', projectDir] };
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function onPath(program: string, env: NodeJS.ProcessEnv): boolean {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    try {
      if (statSync(path.join(dir, program)).isFile()) return true;
    } catch {
      /* not in this PATH entry */
    }
  }
  return false;
}

/** Claude Desktop's config file on each OS. */
export function claudeDesktopConfigPath(env: NodeJS.ProcessEnv, platform: NodeJS.Platform): string {
  const home = homeDir(env);
  if (platform === 'darwin') return path.join(home, 'Library', 'Application Support', 'Claude', 'claude_desktop_config.json');
  if (platform === 'win32') return path.join(env.APPDATA ?? path.join(home, 'AppData', 'Roaming'), 'Claude', 'claude_desktop_config.json');
  return path.join(env.XDG_CONFIG_HOME || path.join(home, '.config'), 'Claude', 'claude_desktop_config.json');
}

function vscodeUserDir(env: NodeJS.ProcessEnv, platform: NodeJS.Platform): string {
  const home = homeDir(env);
  if (platform === 'darwin') return path.join(home, 'Library', 'Application Support', 'Code');
  if (platform === 'win32') return path.join(env.APPDATA ?? path.join(home, 'AppData', 'Roaming'), 'Code');
  return path.join(env.XDG_CONFIG_HOME || path.join(home, '.config'), 'Code');
}

/** Every client's snippet for a project, and whether the client is on this machine. */
export function clientSnippets(projectDir: string, env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): ClientSnippet[] {
  const home = homeDir(env);
  const { command, args } = serverArgv(projectDir);
  const oneLine = [command, ...args].map(shellQuote).join(' ');
  const json = (v: unknown) => JSON.stringify(v, null, 2) + '\n';
  const desktop = claudeDesktopConfigPath(env, platform);
  const codexConfig = path.join(home, '.codex', 'config.toml');
  return [
    {
      client: 'claude-desktop',
      label: 'Claude Desktop',
      detected: existsSync(path.dirname(desktop)),
      target: desktop,
      format: 'json',
      snippet: json({ mcpServers: { [SERVER_NAME]: { command, args } } }),
      note: 'Claude Desktop passes no environment: add "env": {"ANTHROPIC_API_KEY": "…"} to the entry (or keep the key in the environment Claude Desktop is started from). Restart Claude Desktop after the change.',
    },
    {
      client: 'claude-code',
      label: 'Claude Code',
      detected: existsSync(path.join(home, '.claude.json')) || existsSync(path.join(home, '.claude')) || onPath('claude', env),
      target: path.join(projectDir, '.mcp.json'),
      format: 'json',
      snippet: json({ mcpServers: { [SERVER_NAME]: { type: 'stdio', command, args, env: { ANTHROPIC_API_KEY: '${ANTHROPIC_API_KEY}' } } } }),
      command: `claude mcp add ${SERVER_NAME} -e ANTHROPIC_API_KEY="$ANTHROPIC_API_KEY" -- ${oneLine}`,
    },
    {
      client: 'codex',
      label: 'Codex',
      detected: existsSync(codexConfig) || existsSync(path.join(home, '.codex')) || onPath('codex', env),
      target: codexConfig,
      format: 'toml',
      // required: Codex's first model request waits for this server; tool_timeout_sec: agent runs take
      // minutes (Codex stops a call after 300 s by default); approval "approve": `codex exec` has nobody
      // to approve each MCP tool call.
      snippet: stringifyToml({
        mcp_servers: {
          [SERVER_NAME]: { command, args, required: true, startup_timeout_sec: 30, tool_timeout_sec: 1800, default_tools_approval_mode: 'approve' },
        },
      }) + '\n',
      command: `codex mcp add ${SERVER_NAME} -- ${oneLine}`,
      note: 'Codex starts MCP servers with a reduced environment: put ANTHROPIC_API_KEY under [mcp_servers.delegate.env] or in the environment Codex forwards.',
    },
    {
      client: 'cursor',
      label: 'Cursor',
      detected: existsSync(path.join(home, '.cursor')) || onPath('cursor', env),
      target: path.join(projectDir, '.cursor', 'mcp.json'),
      format: 'json',
      snippet: json({
        mcpServers: { [SERVER_NAME]: { command, args: [CLI_ENTRY, 'serve', '--workspace', '${workspaceFolder}'], env: { ANTHROPIC_API_KEY: '${env:ANTHROPIC_API_KEY}' } } },
      }),
    },
    {
      client: 'vscode',
      label: 'VS Code',
      detected: existsSync(vscodeUserDir(env, platform)) || existsSync(path.join(home, '.vscode')) || onPath('code', env),
      target: path.join(projectDir, '.vscode', 'mcp.json'),
      format: 'json',
      snippet: json({
        servers: {
          [SERVER_NAME]: { type: 'stdio', command, args: [CLI_ENTRY, 'serve', '--workspace', '${workspaceFolder}'], env: { ANTHROPIC_API_KEY: '${env:ANTHROPIC_API_KEY}' } },
        },
      }),
    },
  ];
}

function writeProjectFile(file: string, content: string, force: boolean | undefined, out: InitReport['files']): void {
  const exists = existsSync(file);
  if (exists && !force) {
    out.push({ path: file, action: 'kept' });
    return;
  }
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, content);
  out.push({ path: file, action: exists ? 'overwritten' : 'written' });
}

/**
 * Merges a snippet into a client's config: every other key stays; our entry is added, or replaced only
 * with --force when it differs. A file that does not parse is never touched.
 */
export function mergeClientConfig(s: ClientSnippet, force: boolean | undefined): InitReport['merged'][number] {
  const parse = s.format === 'json' ? (t: string) => JSON.parse(t) as Record<string, unknown> : (t: string) => parseToml(t) as Record<string, unknown>;
  const add = parse(s.snippet);
  const section = Object.keys(add)[0];
  const entry = (add[section] as Record<string, unknown>)[SERVER_NAME];
  let current: Record<string, unknown> = {};
  let text = '';
  if (existsSync(s.target)) {
    text = readFileSync(s.target, 'utf8');
    try {
      current = text.trim() ? parse(text) : {};
    } catch (err) {
      return { client: s.client, target: s.target, action: 'refused', reason: `cannot parse it (${errorMessage(err).split('\n')[0]}); add the snippet by hand` };
    }
  }
  const servers = (current[section] ?? {}) as Record<string, unknown>;
  if (typeof servers !== 'object' || Array.isArray(servers)) {
    return { client: s.client, target: s.target, action: 'refused', reason: `"${section}" is not a table/object there` };
  }
  if (servers[SERVER_NAME] !== undefined) {
    if (JSON.stringify(servers[SERVER_NAME]) === JSON.stringify(entry)) return { client: s.client, target: s.target, action: 'unchanged' };
    if (!force) return { client: s.client, target: s.target, action: 'refused', reason: `it already has a "${SERVER_NAME}" server; --force replaces it` };
  }
  mkdirSync(path.dirname(s.target), { recursive: true });
  if (s.format === 'toml' && servers[SERVER_NAME] === undefined) {
    // Appending keeps the user's comments and layout; only a replacement (--force) rewrites the file.
    writeFileSync(s.target, (text && !text.endsWith('\n') ? `${text}\n` : text) + (text ? '\n' : '') + s.snippet);
  } else {
    current[section] = { ...servers, [SERVER_NAME]: entry };
    writeFileSync(s.target, s.format === 'json' ? JSON.stringify(current, null, 2) + '\n' : stringifyToml(current) + '\n');
  }
  return { client: s.client, target: s.target, action: 'merged' };
}

export function runInit(opts: InitOptions): InitReport {
  const env = opts.env ?? process.env;
  const dir = path.resolve(opts.dir);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ConfigError(`not a directory: ${dir}`);
  const files: InitReport['files'] = [];
  writeProjectFile(path.join(dir, 'agents', 'explainer.yaml'), EXAMPLE_AGENT, opts.force, files);
  writeProjectFile(path.join(dir, 'mcp.json'), starterConfig(), opts.force, files);
  const clients = clientSnippets(dir, env, opts.platform);
  const merged = opts.write ? clients.filter((c) => c.detected).map((c) => mergeClientConfig(c, opts.force)) : [];
  return { dir, files, clients, merged };
}

/** The human report: what was written, then each client's snippet. */
export function renderInit(r: InitReport): string {
  const out: string[] = [];
  for (const f of r.files) out.push(f.action === 'kept' ? `kept ${f.path} (exists; --force overwrites)` : `${f.action} ${f.path}`);
  out.push('');
  for (const c of r.clients) {
    const m = r.merged.find((x) => x.client === c.client);
    out.push(`## ${c.label}${c.detected ? '' : ' (not detected on this machine)'} — ${c.target}`);
    if (m) out.push(m.action === 'refused' ? `not merged: ${m.reason}` : m.action === 'merged' ? 'merged into the file above' : 'already there, unchanged');
    if (c.command) out.push(`one line: ${c.command}`, 'or add to the file:');
    out.push(c.snippet.trimEnd());
    if (c.note) out.push(`note: ${c.note}`);
    out.push('');
  }
  if (!r.merged.length) out.push('Nothing was changed outside the project: --write merges these into the detected clients\' files.');
  return out.join('\n') + '\n';
}
