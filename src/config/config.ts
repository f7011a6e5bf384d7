// mcp.json: the project's config file (found in the workspace, then the user's config dir). `mcpServers` has the shape users know from Claude Desktop and
// Cursor; `delegate` holds this server's own settings. Validated with zod; errors name the JSON path.
import { readFileSync, existsSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { ProviderEndpoint, WireApi } from '../contract/endpoint.js';
import { PriceTableSchema } from '../budget/prices.js';
import { AgentDirsSchema, AgentSourcesSchema, CreateAgentConfigSchema, DEFAULT_CREATE_AGENT_CONFIG } from './agents-config.js';
import { HttpConfigSchema } from './http-config.js';
import { SANDBOX_MODES } from './sandbox-modes.js';
import { ConfigError } from './config-error.js';
import { defaultStateDir } from './state-dir.js';
import { DEFAULT_MODEL } from './defaults.js';
import { userConfigDir } from './locations.js';
import { formatPath, suggest, textPositions } from '../file-errors/positions.js';
import { objectKeysAt } from '../file-errors/schema-introspection.js';
import { TelemetryConfigSchema } from './telemetry-config.js';
import { StdioConfigSchema } from './stdio-config.js';
import { errorMessage } from '../describe-cause.js';

const WireApiSchema = z.enum(['anthropic', 'openai-responses', 'openai-chat']);

const ProviderConfigSchema = z.strictObject({
  wireApi: WireApiSchema,
  baseURL: z.string().url().optional(),
  /** Name of the env var holding the key (preferred: keeps keys out of files). */
  apiKeyEnv: z.string().optional(),
  /** Literal key; allowed for local endpoints such as Ollama that accept any string. */
  apiKey: z.string().optional(),
  headers: z.record(z.string(), z.string()).optional(),
});

const McpServerSchema = z.union([
  z.strictObject({
    command: z.string(),
    args: z.array(z.string()).default([]),
    env: z.record(z.string(), z.string()).optional(),
    cwd: z.string().optional(),
  }),
  z.strictObject({
    type: z.enum(['http', 'streamable-http']).optional(),
    url: z.string().url(),
    headers: z.record(z.string(), z.string()).optional(),
  }),
]);

const QueueConfigSchema = z
  .strictObject({
    /** redis://[user:pass@]HOST:PORT/DB (or rediss://). */
    url: z
      .string()
      .refine((u) => /^rediss?:\/\/[^\s/]+(\/\d{1,2})?$/.test(u), { error: (iss) => `expected redis://HOST:PORT/DB, got ${JSON.stringify(iss.input)}` })
      .optional(),
    /** Key prefix of every queue key in Redis: several deployments can share one Redis. */
    prefix: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'letters, digits, _ . : - (1-64)').default('dmcp'),
    /** Jobs waiting for a worker before new runs are refused with "server busy". */
    maxWaiting: z.number().int().min(1).default(1024),
    /** A worker that stopped renewing its jobs' locks this long is lost: its runs fail ("worker lost"). */
    lostAfterS: z.number().min(2).max(300).default(10),
    /**
     * The file holding the key fronts and workers sign queue messages with (relative to mcp.json; readable
     * by its owner only). Default: DELEGATE_MCP_QUEUE_KEY, else `queue.key` in the state dir (src/queue/signing.ts).
     */
    keyFile: z.string().min(1, 'a path to the queue key file (or leave it out: DELEGATE_MCP_QUEUE_KEY, else queue.key in the state dir)').optional(),
  })
  .default({ prefix: 'dmcp', maxWaiting: 1024, lostAfterS: 10 });

export const DelegateConfigSchema = z.strictObject({
  /** The workspace's YAML agents directory (relative to mcp.json); default `<workspace>/agents`. */
  agentsDir: z.string().optional(),
  /** Agent directories outside the workspace: the user's own and the shipped ones. */
  agentSources: AgentSourcesSchema.default(AgentSourcesSchema.parse({})),
  /** Reload agent files when they change while serving (notifies clients with tools/list_changed). */
  watch: z.boolean().default(true),
  /** More agent directories by format; default: .claude/agents and .codex/agents under the workspace when present. */
  agentDirs: AgentDirsSchema.optional(),
  /** The create_agent tool / `agents create`: drafting model, permission ceiling, saving. */
  createAgent: CreateAgentConfigSchema.default(DEFAULT_CREATE_AGENT_CONFIG),
  workspace: z.string().optional(),
  /** Budget ledger, audit log, artifacts; default ${XDG_STATE_HOME:-~/.local/state}/delegate-mcp/<workspace id> (state-dir.ts). */
  stateDir: z.string().optional(),
  defaultModel: z.string().optional(),
  providers: z.record(z.string(), ProviderConfigSchema).default({}),
  /** Server-wide daily windows (UTC day), shared by every agent. */
  budget: z
    .strictObject({ daily_tokens: z.number().positive().optional(), daily_usd: z.number().positive().optional() })
    .default({}),
  /** The audit log: JSONL under <stateDir>/audit by default; previews of prompts/outputs only when asked. */
  audit: z
    .strictObject({ enabled: z.boolean().default(true), dir: z.string().optional(), previews: z.boolean().default(false) })
    .default({ enabled: true, previews: false }),
  /** Artifacts of finished runs: kept for the newest `count` runs and at most `days` days, pruned at start and after runs. */
  artifacts: z
    .strictObject({
      keep: z
        .strictObject({ count: z.number().int().min(1).optional(), days: z.number().positive().optional() })
        .default({ count: 200, days: 30 }),
    })
    .default({ keep: { count: 200, days: 30 } }),
  /** Agents delegating to agents (`agents: [...]` in a definition): through a child delegate-mcp by default. */
  reentry: z
    .strictObject({
      mode: z.enum(['process', 'in-process']).default('process'),
      /** The deepest a delegation chain may go (a top-level run is depth 0). */
      maxDepth: z.number().int().min(0).max(16).default(3),
    })
    .default({ mode: 'process', maxDepth: 3 }),
  /** USD per million tokens, merged over the built-in list prices; key = provider-local model id. */
  prices: PriceTableSchema.default({}),
  requests: z
    .strictObject({
      maxRetries: z.number().int().min(0).max(10).default(3),
      timeoutS: z.number().positive().default(600),
      streamIdleTimeoutS: z.number().positive().default(120),
    })
    .default({ maxRetries: 3, timeoutS: 600, streamIdleTimeoutS: 120 }),
  pool: z
    .strictObject({
      minThreads: z.number().int().min(0).default(1),
      maxThreads: z.number().int().min(1).default(2),
      concurrentTasksPerWorker: z.number().int().min(1).default(64),
      maxQueue: z.number().int().min(0).default(256),
      /** Heap cap per worker (MB): a runaway run fails alone instead of taking the process down. */
      maxOldGenerationSizeMb: z.number().int().min(16).default(512),
    })
    .default({ minThreads: 1, maxThreads: 2, concurrentTasksPerWorker: 64, maxQueue: 256, maxOldGenerationSizeMb: 512 }),
  runs: z
    .strictObject({
      /** Default deadline of a run; an agent's timeout_s or a call argument may lower it. */
      timeoutS: z.number().positive().default(1800),
      /** How long finished background run records are kept. */
      keepS: z.number().positive().default(3600),
      /** Grace period after a cooperative cancel before the worker thread is killed. */
      cancelGraceMs: z.number().int().positive().default(2000),
    })
    .default({ timeoutS: 1800, keepS: 3600, cancelGraceMs: 2000 }),
  /** Tool execution: downstream MCP servers (mcpServers) and approvals for `ask` rules. */
  tools: z
    .strictObject({
      /** Deadline of one downstream MCP tool call (also bounds starting the server and listing its tools). */
      mcpCallTimeoutS: z.number().positive().default(60),
      /** Downstream MCP tool output beyond this many bytes is cut, with a note to the model. */
      mcpMaxOutputBytes: z.number().int().min(1024).default(64 * 1024),
      /** Largest message read from a stdio downstream MCP server (then cut to mcpMaxOutputBytes); a larger one is an error naming this limit. */
      mcpMaxMessageBytes: z.number().int().min(1024).default(64 * 1024 * 1024),
      /** How long an `ask` rule waits for the client to answer before the call is denied. */
      askTimeoutS: z.number().positive().default(120),
    })
    .default({ mcpCallTimeoutS: 60, mcpMaxOutputBytes: 64 * 1024, mcpMaxMessageBytes: 64 * 1024 * 1024, askTimeoutS: 120 }),
  /**
   * The OS sandbox of run_command (src/sandbox/): "bwrap" (bubblewrap; commands are refused when it is
   * missing) or "off" (explicitly no sandbox: warned about at start, recorded in every run's audit).
   */
  sandbox: z
    .strictObject({
      mode: z.enum(SANDBOX_MODES).default('bwrap'),
      /** Extra host paths mounted read-only in the sandbox (a toolchain outside /usr); absolute. */
      readOnly: z
        .array(z.string().refine((p) => path.isAbsolute(p), { error: (iss) => `must be an absolute path, got ${JSON.stringify(iss.input)}` }))
        .default([]),
    })
    .default({ mode: 'bwrap', readOnly: [] }),
  /** `serve --http`: bind address, bearer token, limits, shutdown grace (http-config.ts). */
  http: HttpConfigSchema,
  /** OpenTelemetry traces and metrics over OTLP/HTTP (src/telemetry/config.ts); off unless an endpoint is set. */
  telemetry: TelemetryConfigSchema,
  /** `serve` over stdio: the largest message read, and the shutdown grace (stdio-config.ts). */
  stdio: StdioConfigSchema,
  /** Queue mode (src/queue/): runs go to BullMQ jobs on Redis; off unless a URL is given (here, --queue or DELEGATE_MCP_QUEUE_URL). */
  queue: QueueConfigSchema,
});

export const ConfigFileSchema = z.strictObject({
  $schema: z.string().optional(),
  mcpServers: z.record(z.string(), McpServerSchema).default({}),
  delegate: DelegateConfigSchema.default(DelegateConfigSchema.parse({})),
});

export type ConfigFile = z.infer<typeof ConfigFileSchema>;
export type DelegateConfig = z.infer<typeof DelegateConfigSchema>;

/** Config after resolving paths and CLI overrides: what the rest of the server uses. */
export interface ResolvedConfig {
  configFile?: string;
  agentsDir: string;
  /** Whether agentsDir was named (--agents, delegate.agentsDir): then a missing directory is an error. */
  agentsDirExplicit: boolean;
  /** Realpath of the workspace; every file tool is confined to it. */
  workspace: string;
  /** Absolute; outside the workspace unless configured there (protected either way: permissions/protected-paths.ts). */
  stateDir: string;
  /** Audit directory (absolute), or undefined when the audit log is switched off. */
  auditDir?: string;
  defaultModel: string;
  delegate: DelegateConfig;
  mcpServers: ConfigFile['mcpServers'];
}

export interface ConfigOverrides {
  config?: string;
  agents?: string;
  workspace?: string;
}

/**
 * Where mcp.json is looked for when --config is absent, in order: the workspace (--workspace, else the
 * current directory), then the user's config dir (`$XDG_CONFIG_HOME/delegate-mcp`, default
 * `~/.config/delegate-mcp`). The first that exists is used; none at all means built-in defaults.
 */
export function configCandidates(workspace: string, env: NodeJS.ProcessEnv = process.env): string[] {
  return [path.join(workspace, 'mcp.json'), path.join(userConfigDir(env), 'mcp.json')];
}

/**
 * Loads mcp.json (explicit --config, else the first of `configCandidates`, else defaults) and resolves
 * paths: relative paths in the file are relative to the file; CLI overrides are relative to the cwd.
 * Only when --workspace is absent (and the file names no workspace) is the cwd the workspace.
 */
export function loadConfig(overrides: ConfigOverrides = {}, cwd = process.cwd(), env: NodeJS.ProcessEnv = process.env): ResolvedConfig {
  const cliWorkspace = overrides.workspace ? path.resolve(cwd, overrides.workspace) : undefined;
  if (cliWorkspace && !existsSync(cliWorkspace)) throw new ConfigError(`workspace directory not found: ${cliWorkspace}`);
  let file: string | undefined;
  if (overrides.config) {
    file = path.resolve(cwd, overrides.config);
    if (!existsSync(file)) throw new ConfigError(`config file not found: ${file}`);
  } else {
    file = configCandidates(cliWorkspace ?? cwd, env).find((f) => existsSync(f));
  }
  const parsed = file ? parseConfigFile(file) : ConfigFileSchema.parse({});
  const base = file ? path.dirname(file) : cwd;
  const d = parsed.delegate;
  const workspaceRaw = cliWorkspace ?? (d.workspace ? path.resolve(base, d.workspace) : cwd);
  if (!existsSync(workspaceRaw)) throw new ConfigError(`workspace directory not found: ${workspaceRaw}`);
  const workspace = realpathSync(workspaceRaw);
  // The workspace's agents/ unless named: by --agents (cwd-relative) or delegate.agentsDir (file-relative).
  const agentsDir = overrides.agents
    ? path.resolve(cwd, overrides.agents)
    : d.agentsDir
      ? path.resolve(base, d.agentsDir)
      : path.join(workspace, 'agents');
  const stateDir = d.stateDir ? path.resolve(base, d.stateDir) : defaultStateDir(workspace);
  if (d.queue.keyFile) d.queue.keyFile = path.resolve(base, d.queue.keyFile);
  return {
    configFile: file,
    agentsDir,
    agentsDirExplicit: Boolean(overrides.agents || d.agentsDir),
    workspace,
    stateDir,
    auditDir: d.audit.enabled ? (d.audit.dir ? path.resolve(base, d.audit.dir) : path.join(stateDir, 'audit')) : undefined,
    defaultModel: env.DELEGATE_MCP_MODEL || d.defaultModel || DEFAULT_MODEL,
    delegate: d,
    mcpServers: parsed.mcpServers,
  };
}

/** Reads and validates one mcp.json; every problem names file:line:col and the key (with a "did you mean"). */
export function parseConfigFile(file: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read: ${errorMessage(err)}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${file}${jsonErrorPosition(text, errorMessage(err))}: invalid JSON: ${errorMessage(err).replace(/ in JSON at position \d+.*$/, '').replace(/^JSON\.parse: /, '')}`);
  }
  const result = ConfigFileSchema.safeParse(raw);
  if (result.success) return result.data;
  const where = textPositions(text);
  const at = (p: { line?: number; column?: number }) => (p.line !== undefined ? `:${p.line}:${p.column ?? 1}` : '');
  const lines: string[] = [];
  for (const issue of result.error.issues) {
    if (issue.code === 'unrecognized_keys') {
      const allowed = objectKeysAt(issue.path, ConfigFileSchema) ?? [];
      for (const key of issue.keys) {
        const keyPath = [...issue.path, key];
        const hint = suggest(key, allowed);
        const tail = hint ? ` (did you mean "${hint}"?)` : allowed.length ? `; allowed keys here: ${allowed.join(', ')}` : '';
        lines.push(`${file}${at(where.key(keyPath))}: ${formatPath(keyPath)}: unknown key "${key}"${tail}`);
      }
      continue;
    }
    lines.push(`${file}${at(where.value(issue.path))}: ${formatPath(issue.path) || '(root)'}: ${issue.message}`);
  }
  throw new ConfigError(`invalid config:\n${lines.map((l) => `  ${l}`).join('\n')}`);
}

/** ":line:col" of a JSON.parse error (Node 20 says "at position N"; newer ones also give line and column). */
function jsonErrorPosition(text: string, message: string): string {
  const lc = /\(line (\d+) column (\d+)\)/.exec(message);
  if (lc) return `:${lc[1]}:${lc[2]}`;
  const m = /at position (\d+)/.exec(message);
  const offset = m ? Number(m[1]) : /Unexpected end of JSON input/.test(message) ? text.length : undefined;
  if (offset === undefined) return '';
  const before = text.slice(0, offset).split('\n');
  return `:${before.length}:${before[before.length - 1].length + 1}`;
}

/** Built-in providers: the SDKs' own env vars work with no config. */
const BUILTIN_PROVIDERS: Record<string, { wireApi: WireApi; apiKeyEnv: string; baseURLEnv: string }> = {
  anthropic: { wireApi: 'anthropic', apiKeyEnv: 'ANTHROPIC_API_KEY', baseURLEnv: 'ANTHROPIC_BASE_URL' },
  openai: { wireApi: 'openai-responses', apiKeyEnv: 'OPENAI_API_KEY', baseURLEnv: 'OPENAI_BASE_URL' },
  'openai-chat': { wireApi: 'openai-chat', apiKeyEnv: 'OPENAI_API_KEY', baseURLEnv: 'OPENAI_BASE_URL' },
};

/** Every provider name a `model:` may use: the built-in ones and those in delegate.providers. */
export function knownProviders(cfg: ResolvedConfig): string[] {
  return [...Object.keys(BUILTIN_PROVIDERS), ...Object.keys(cfg.delegate.providers)];
}

/** Resolves a provider name to a plain-data endpoint (it crosses to a worker). Throws ConfigError when unknown. */
export function resolveEndpoint(cfg: ResolvedConfig, provider: string, env = process.env): ProviderEndpoint {
  const custom = cfg.delegate.providers[provider];
  const builtin = BUILTIN_PROVIDERS[provider];
  if (!custom && !builtin) {
    const known = [...Object.keys(BUILTIN_PROVIDERS), ...Object.keys(cfg.delegate.providers)];
    throw new ConfigError(
      `unknown provider "${provider}" (known: ${known.join(', ')}; add it under delegate.providers in mcp.json)`,
    );
  }
  const wireApi = custom?.wireApi ?? builtin!.wireApi;
  const apiKeyEnv = custom?.apiKeyEnv ?? (custom ? undefined : builtin!.apiKeyEnv);
  const apiKey = custom?.apiKey ?? (apiKeyEnv ? env[apiKeyEnv] : undefined) ?? undefined;
  const baseURL = custom?.baseURL ?? (builtin ? env[builtin.baseURLEnv] : undefined) ?? undefined;
  const r = cfg.delegate.requests;
  return {
    provider,
    wireApi,
    baseURL: baseURL || undefined,
    apiKey: apiKey || undefined,
    apiKeyEnv: apiKeyEnv ?? (custom ? `delegate.providers.${provider}.apiKey` : undefined),
    headers: custom?.headers,
    maxRetries: r.maxRetries,
    requestTimeoutMs: r.timeoutS * 1000,
    streamIdleTimeoutMs: r.streamIdleTimeoutS * 1000,
  };
}

/** Every secret value the server holds from config (keys, header values, child env), for redaction. */
export function configSecrets(cfg: ResolvedConfig): string[] {
  const out: string[] = [];
  for (const p of Object.values(cfg.delegate.providers)) {
    if (p.apiKey) out.push(p.apiKey);
    for (const v of Object.values(p.headers ?? {})) out.push(v);
  }
  for (const srv of Object.values(cfg.mcpServers)) {
    if ('env' in srv) out.push(...Object.values(srv.env ?? {}));
    if ('headers' in srv) out.push(...Object.values(srv.headers ?? {}));
  }
  if (cfg.delegate.http.token) out.push(cfg.delegate.http.token);
  return out.filter((v) => v.length >= 8);
}
