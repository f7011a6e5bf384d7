// Test helpers: spawn the real built server (dist/cli.js) over stdio and drive it with the real MCP
// client, the way a user's client would. Requires `npm run build` first (npm test does it).
import { execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { defaultStateDir } from '../src/config/state-dir.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CLI = path.join(ROOT, 'dist', 'cli.js');

export function tempDir(prefix = 'dmcp-'): string {
  return realpathSync(mkdtempSync(path.join(tmpdir(), prefix)));
}

/** Writes files (path → content) under dir, creating folders. */
export function writeTree(dir: string, files: Record<string, string>): void {
  for (const [rel, content] of Object.entries(files)) {
    const abs = path.join(dir, rel);
    mkdirSync(path.dirname(abs), { recursive: true });
    writeFileSync(abs, content);
  }
}

/** Servers started by tests keep their default state dirs under this temp dir, never under the user's ~/.local/state. */
export const TEST_STATE_HOME = tempDir('dmcp-xdg-');

/** Where a server started with mockEnv keeps the state of `workspace` when mcp.json sets no delegate.stateDir. */
export function stateDirOf(workspace: string, stateHome = TEST_STATE_HOME): string {
  return defaultStateDir(realpathSync(workspace), { XDG_STATE_HOME: stateHome });
}

/**
 * The tests' own HOME (and XDG config dir under it): no test reads the real user's agents
 * (~/.config/delegate-mcp/agents, ~/.claude/agents) or mcp.json.
 */
export const TEST_HOME = tempDir('dmcp-home-');

/** Environment that points the real provider SDKs at the mock model server. */
export function mockEnv(mockUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    HOME: TEST_HOME,
    XDG_CONFIG_HOME: path.join(TEST_HOME, '.config'),
    XDG_STATE_HOME: TEST_STATE_HOME,
    ANTHROPIC_API_KEY: 'sk-ant-test-key',
    ANTHROPIC_BASE_URL: mockUrl,
    OPENAI_API_KEY: 'sk-test-openai-key',
    OPENAI_BASE_URL: `${mockUrl}/v1`,
    DELEGATE_MCP_LOG_LEVEL: 'warn',
    ...extra,
  };
}

export interface ServerHandle {
  client: Client;
  transport: StdioClientTransport;
  stderr: () => string;
  close: () => Promise<void>;
}

export async function startServer(opts: {
  args?: string[];
  env: Record<string, string>;
  cwd?: string;
  era?: 'legacy' | 'modern';
  /** Declares the elicitation capability and answers each approval form with this. */
  elicit?: (params: any) => Promise<any>;
}): Promise<ServerHandle> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, 'serve', ...(opts.args ?? [])],
    env: opts.env,
    cwd: opts.cwd,
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const client = new Client(
    { name: 'delegate-mcp-tests', version: '1.0.0' },
    {
      ...(opts.elicit && { capabilities: { elicitation: { form: {} } } }),
      ...(opts.era === 'modern' && { versionNegotiation: { mode: { pin: '2026-07-28' } } }),
    },
  );
  const elicit = opts.elicit;
  if (elicit) client.setRequestHandler('elicitation/create', async (req: any) => elicit(req.params));
  await client.connect(transport);
  return {
    client,
    transport,
    stderr: () => stderr,
    close: async () => {
      await client.close().catch(() => {});
    },
  };
}

/** A YAML agent file for tests; model decides which wire API the run uses. */
export function agentYaml(name: string, model: string, extra = ''): string {
  return `name: ${name}
description: Test agent ${name} that reads files and answers.
instructions: Answer the task. Use read_file when asked.
model: ${model}
max_turns: 4
tools:
  fs: {read: true}
${extra}`;
}

/** Every audit event under a state directory (all files, all processes), in file order. */
export function readAuditEvents(stateDir: string): any[] {
  const dir = path.join(stateDir, 'audit');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .flatMap((f) => readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)));
}

/** Runs the built CLI once; a non-zero exit is a result (its code and output), not a throw. */
export async function runCli(args: string[], env: Record<string, string>, cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...args], { env, cwd, timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (err: any) {
    if (typeof err.code !== 'number') throw err;
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}
