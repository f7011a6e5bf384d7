// The internal, normalised agent definition. Every accepted file spelling (seed YAML, extended YAML,
// later Claude .md / Codex .toml) is turned into this right after parsing; nothing downstream sees raw files.
import type { JsonSchema } from '../contract/json-schema.js';
import type { AgentGrants } from '../permissions/index.js';

export interface AgentDefinition {
  name: string;
  /** description ?? goal: what MCP clients see as the tool description. */
  description: string;
  goal?: string;
  /** System-prompt body written by the author. */
  instructions?: string;
  /** "<provider>/<model-id>"; undefined means the server's default model. */
  model?: string;
  maxTurns: number; // default 8
  maxOutputTokens: number; // default 4096
  temperature?: number;
  /** Run deadline in seconds (a call argument may only lower it). */
  timeoutS?: number;
  /** JSON Schema (type: object) for the MCP tool input. Default {task: string (required), context?: string}. */
  inputSchema: JsonSchema;
  expose: boolean; // default true
  successCriteria: string[];
  artifacts: ArtifactSpec[];
  /** Built-in tool grants and seed-format capabilities, normalised. */
  tools: AgentGrants['tools'];
  policies: {
    context: { maxTokens?: number; retention?: string };
    secrets: { redact: boolean };
  };
  /** Slots for later issues; present (possibly empty) so consumers need no optional chaining. */
  budget: { runTokens?: number; runUsd?: number; dailyTokens?: number; dailyUsd?: number };
  permissions: AgentGrants['permissions'];
  /** run_command's OS sandbox: whether commands may use the network (default false). */
  sandbox: AgentGrants['sandbox'];
  agents: AgentGrants['agents'];
  /** Whether a delegation chain that already contains this agent may call it again (never with the same task). */
  allowReentry: boolean;
  /** Queue mode: tries in all when a worker is lost (the agent opted in as idempotent); absent: never retried. */
  retry?: { attempts: number };
  outputSchema?: JsonSchema;
  /** Where it came from, for error messages and hot reload. */
  source: { file: string; format: 'yaml' | 'claude-md' | 'codex-toml' | 'dynamic' };
}

export interface ArtifactSpec {
  name: string;
  description?: string;
}

/** One problem found while loading agent files; rendered as "file:line:col: field: message". */
export interface AgentLoadError {
  file: string;
  line?: number;
  column?: number;
  /** Dotted path of the field, e.g. "tools.fs.read"; empty for file-level problems. */
  field: string;
  message: string;
}

export function formatLoadError(e: AgentLoadError): string {
  const pos = e.line !== undefined ? `:${e.line}:${e.column ?? 1}` : '';
  const field = e.field ? `${e.field}: ` : '';
  return `${e.file}${pos}: ${field}${e.message}`;
}

export interface AgentCatalog {
  agents: Map<string, AgentDefinition>;
  errors: AgentLoadError[];
}
